"""Tokens and roles, the login throttle, console sessions and CSRF tokens: the rules,
without I/O."""

from __future__ import annotations

import time
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from lotline.recall.auth import (
    AuthSettings,
    LoginRecord,
    Operators,
    Role,
    Session,
    SessionSigner,
    TokenConfigError,
    hash_token,
    parse_credentials,
    recall_operators,
)
from lotline.runtime.auth import LoginThrottle, TokenSettings

ANA, BO = "ana-" + "a" * 16, "bo-" + "b" * 16


def test_entries_by_comma_or_line_with_tokens_or_their_hashes() -> None:
    text = f"ana:operator:{ANA}, # first\n\nbo:staff:{hash_token(BO)}\n# a comment\n"
    operators = Operators(parse_credentials(text, "test"))
    ana, bo = operators.authenticate(ANA), operators.authenticate(BO)
    assert ana is not None
    assert (ana.name, ana.role, ana.may_change_recalls) == (
        "ana",
        Role.OPERATOR,
        True,
    )
    assert bo is not None
    assert (bo.name, bo.role, bo.may_change_recalls) == ("bo", Role.STAFF, False)
    assert operators.authenticate(hash_token(BO)) is None  # the hash is not the token
    assert operators.authenticate(ANA + "x") is None
    assert operators.authenticate(ANA, "ana") == ana
    assert operators.authenticate(ANA, "bo") is None  # name and token must belong together
    assert operators.authenticate(ANA, "anä") is None
    assert operators.authenticate("tökén-" + "x" * 16) is None
    assert ANA not in repr(ana)
    assert "digest" not in repr(ana)


@pytest.mark.parametrize(
    ("text", "says"),
    [
        (
            f"ana:admin:{ANA}",
            "test, entry 1 (ana): role 'admin' is not one of 'operator', 'catalog', 'staff'",
        ),
        ("ana:operator:short", "test, entry 1 (ana): the token must be at least 16 characters"),
        (f"a na:operator:{ANA}", "test, entry 1: operator name 'a na' must be"),
        (f"ana:operator:{ANA},ana:staff:{BO}", "test, entry 2: operator 'ana' is configured twice"),
        ("ana:operator:sha256:abc", "test, entry 1 (ana): a hash must be sha256: and 64 hex"),
        (f":operator:{ANA}", "test, entry 1: operator name '' must be"),
    ],
)
def test_a_bad_entry_is_named_without_its_secret(text: str, says: str) -> None:
    with pytest.raises(TokenConfigError) as error:
        parse_credentials(text, "test")
    assert str(error.value).startswith(says)
    assert ANA not in str(error.value)
    assert BO not in str(error.value)


NONE = TokenSettings(tokens=None, tokens_file=None)


def test_settings_read_the_variable_and_the_file(tmp_path: Path) -> None:
    tokens_file = tmp_path / "tokens"
    tokens_file.write_text(f"bo:operator:{hash_token(BO)}\n")
    settings = AuthSettings(operator_tokens=f"ana:staff:{ANA}", operator_tokens_file=tokens_file)
    operators = recall_operators(settings, NONE)
    assert [operators.authenticate(t).name for t in (ANA, BO)] == ["ana", "bo"]  # type: ignore[union-attr]
    assert not recall_operators(AuthSettings(operator_tokens=None), NONE).configured
    missing = AuthSettings(operator_tokens_file=tmp_path / "nope")
    with pytest.raises(TokenConfigError, match="RECALL_OPERATOR_TOKENS_FILE: cannot read"):
        recall_operators(missing, NONE)
    twice = AuthSettings(operator_tokens=f"bo:staff:{ANA}", operator_tokens_file=tokens_file)
    with pytest.raises(TokenConfigError, match="operator 'bo' is configured twice"):
        recall_operators(twice, NONE)


def test_the_shared_tokens_and_the_recall_ones_add_up() -> None:
    shared = TokenSettings(tokens=f"ana:operator:{ANA},cat:catalog:{'c' * 16}")
    # The same person given by both (the tests do that) counts once.
    both = recall_operators(AuthSettings(operator_tokens=f"ana:operator:{ANA}"), shared)
    ana, cat = both.authenticate(ANA), both.authenticate("c" * 16)
    assert ana is not None
    assert cat is not None
    assert (ana.may_change_recalls, ana.may_change_products, ana.may_read_personal_data) == (
        True,
        True,
        True,
    )
    assert (cat.may_change_recalls, cat.may_change_products, cat.may_read_personal_data) == (
        False,
        True,
        False,
    )
    staff = Operators(parse_credentials(f"bo:staff:{BO}", "test")).authenticate(BO)
    assert staff is not None
    assert (staff.may_change_recalls, staff.may_change_products, staff.may_read_personal_data) == (
        False,
        False,
        True,
    )
    with pytest.raises(TokenConfigError, match="operator 'ana' is configured twice"):
        recall_operators(AuthSettings(operator_tokens=f"ana:staff:{ANA}"), shared)


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_failed_logins_back_off_then_lock_out_per_key() -> None:
    clock = Clock()
    throttle = LoginThrottle(
        free_failures=3, backoff_s=1.0, lockout_failures=6, lockout_s=600.0, clock=clock
    )
    ana, here, there = "name:ana", "address:10.0.0.1", "address:10.0.0.2"
    waits = []
    for _ in range(5):
        assert throttle.retry_after([ana, here]) == 0
        waits.append(throttle.failed([ana, here]))
        clock.now += waits[-1]  # a patient guesser waits each backoff out
    assert waits == [0, 0, 0, 1.0, 2.0]  # three free, then doubling
    assert throttle.failed([ana, here]) == 600.0  # the sixth: locked out
    assert throttle.retry_after([ana]) == 600.0
    assert throttle.retry_after([ana, there]) == 600.0  # the name, from anywhere
    assert throttle.retry_after(["name:bo", here]) == 600.0  # the address, for any name
    assert throttle.retry_after(["name:bo", there]) == 0
    clock.now += 599
    assert throttle.retry_after([ana]) == pytest.approx(1.0)
    clock.now += 1
    assert throttle.retry_after([ana, here]) == 0  # served: counting starts again
    assert throttle.failed([ana, here]) == 0


def test_a_success_clears_the_name_not_the_address() -> None:
    clock = Clock()
    throttle = LoginThrottle(free_failures=1, backoff_s=5.0, lockout_failures=9, clock=clock)
    throttle.failed(["name:ana", "address:a"])
    throttle.failed(["name:ana", "address:a"])
    assert throttle.retry_after(["name:ana"]) == 5.0
    throttle.succeeded("name:ana")
    assert throttle.retry_after(["name:ana"]) == 0
    assert throttle.retry_after(["address:a"]) == 5.0  # one good token does not reset it
    # A key quiet for the lockout time is forgotten.
    clock.now += throttle.lockout_s
    assert throttle.failed(["address:a"]) == 0


def test_memory_of_failures_is_bounded() -> None:
    throttle = LoginThrottle(max_keys=3, clock=Clock())
    for n in range(10):
        throttle.failed([f"address:{n}"])
    assert [throttle.failures(f"address:{n}") for n in range(10)] == [0] * 7 + [1] * 3


def test_a_login_ends_when_it_is_unused_for_the_idle_time() -> None:
    start = datetime(2026, 1, 1, tzinfo=UTC)
    record = LoginRecord("k", "ana", start, start)
    assert not record.idle(start + timedelta(seconds=1799), 1800)
    assert record.idle(start + timedelta(seconds=1800), 1800)
    # Last-seen is written at most once a minute (or a quarter of a short idle time).
    assert not record.needs_touch(start + timedelta(seconds=59), 1800)
    assert record.needs_touch(start + timedelta(seconds=60), 1800)
    assert record.needs_touch(start + timedelta(seconds=1), 4)
    assert Session("n").key == Session("n").key != Session("m").key
    assert "n" not in Session("n").key


def test_a_session_cookie_is_signed_and_ends_with_its_token() -> None:
    signer = SessionSigner(b"secret", max_age_s=3600)
    operators = Operators(parse_credentials(f"ana:operator:{ANA}", "test"))
    ana = operators.authenticate(ANA)
    assert ana is not None
    session = signer.login(ana)
    cookie = signer.dumps(session)
    assert signer.loads(cookie) == session
    assert signer.who(session, operators) == ana
    assert ANA not in cookie

    payload, mac = cookie.split(".")
    assert signer.loads(payload[:-2] + "xx." + mac) is None  # tampered
    assert signer.loads(cookie + "x") is None
    assert SessionSigner(b"other", 3600).loads(cookie) is None  # another secret
    assert signer.loads(signer.dumps(replace(session, expires=int(time.time()) - 1))) is None
    assert signer.loads("not a cookie") is None

    # The token is replaced in the configuration: the old login no longer counts.
    renewed = Operators(parse_credentials(f"ana:operator:{BO}", "test"))
    assert signer.who(session, renewed) is None
    assert signer.who(session, Operators([])) is None


def test_the_csrf_token_belongs_to_one_session() -> None:
    signer = SessionSigner(b"secret", max_age_s=3600)
    one, other = Session.anonymous(3600), Session.anonymous(3600)
    token = signer.csrf_token(one)
    assert signer.csrf_ok(one, token)
    assert not signer.csrf_ok(other, token)
    assert not signer.csrf_ok(one, None)
    assert not signer.csrf_ok(one, "")
    assert not signer.csrf_ok(one, "jeton-é")  # text from a form may be anything
    # Logging in starts a new session: a token planted before it is worthless after.
    operators = Operators(parse_credentials(f"ana:operator:{ANA}", "test"))
    ana = operators.authenticate(ANA)
    assert ana is not None
    assert not signer.csrf_ok(signer.login(ana), token)


def test_the_dev_token_the_devstack_writes_is_one_every_service_accepts(
    tmp_path: Path,
) -> None:
    from lotline.devstack.services import DEV_OPERATOR, SERVICES, LocalServices

    services = LocalServices(tmp_path)
    token = services.ensure_operator_token()
    assert services.ensure_operator_token() == token  # kept across restarts
    for path in (services.operator_token_file, services.operator_tokens_file):
        assert path.stat().st_mode & 0o777 == 0o600
    assert token not in services.operator_tokens_file.read_text()  # the service gets a hash
    for service in SERVICES:
        env = services._spec(service).env or {}
        shared = TokenSettings(tokens_file=Path(env["LOTLINE_TOKENS_FILE"]))
        found = recall_operators(AuthSettings(), shared).authenticate(token, DEV_OPERATOR)
        assert found is not None, service.name
        assert found.may_change_recalls
        assert found.may_change_products
        assert found.may_read_personal_data
