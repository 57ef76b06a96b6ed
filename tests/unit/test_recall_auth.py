"""Operator tokens, console sessions and CSRF tokens: the rules, without I/O."""

from __future__ import annotations

import time
from dataclasses import replace
from pathlib import Path

import pytest

from lotline.recall.auth import (
    AuthSettings,
    Operators,
    Role,
    Session,
    SessionSigner,
    TokenConfigError,
    hash_token,
    parse_credentials,
)

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
        (f"ana:admin:{ANA}", "test, entry 1 (ana): role 'admin' is not one of 'operator', 'staff'"),
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


def test_settings_read_the_variable_and_the_file(tmp_path: Path) -> None:
    tokens_file = tmp_path / "tokens"
    tokens_file.write_text(f"bo:operator:{hash_token(BO)}\n")
    settings = AuthSettings(operator_tokens=f"ana:staff:{ANA}", operator_tokens_file=tokens_file)
    operators = Operators.from_settings(settings)
    assert [operators.authenticate(t).name for t in (ANA, BO)] == ["ana", "bo"]  # type: ignore[union-attr]
    assert not Operators.from_settings(AuthSettings(operator_tokens=None)).configured
    missing = AuthSettings(operator_tokens_file=tmp_path / "nope")
    with pytest.raises(TokenConfigError, match="RECALL_OPERATOR_TOKENS_FILE: cannot read"):
        Operators.from_settings(missing)
    twice = AuthSettings(operator_tokens=f"bo:staff:{ANA}", operator_tokens_file=tokens_file)
    with pytest.raises(TokenConfigError, match="operator 'bo' is configured twice"):
        Operators.from_settings(twice)


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


def test_the_dev_token_the_devstack_writes_is_one_the_recall_service_accepts(
    tmp_path: Path,
) -> None:
    from lotline.devstack.services import DEV_OPERATOR, SERVICES, LocalServices

    services = LocalServices(tmp_path)
    token = services.ensure_operator_token()
    assert services.ensure_operator_token() == token  # kept across restarts
    for path in (services.operator_token_file, services.operator_tokens_file):
        assert path.stat().st_mode & 0o777 == 0o600
    assert token not in services.operator_tokens_file.read_text()  # the service gets a hash
    recall = next(s for s in SERVICES if s.name == "recall")
    env = services._spec(recall).env or {}
    settings = AuthSettings(operator_tokens_file=Path(env["RECALL_OPERATOR_TOKENS_FILE"]))
    found = Operators.from_settings(settings).authenticate(token, DEV_OPERATOR)
    assert found is not None
    assert found.may_change_recalls
