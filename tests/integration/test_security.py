"""The security matrix: every forbidden action is tried against the real broker and services
and must be denied; the allowed ones beside them must succeed, so a denial is the ACL's doing.
Also: the ACL model follows the contract, `up` converges the ACLs, and no secret is logged."""

from __future__ import annotations

import asyncio
import logging
import os
import subprocess
import sys
from collections.abc import Awaitable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.errors import (
    GroupAuthorizationFailedError,
    KafkaConnectionError,
    TopicAuthorizationFailedError,
)
from pydantic import ValidationError

from lotline.devstack import ADMIN, LocalStack, StackSecrets, grants, principals
from lotline.devstack.kafka import run_async
from lotline.devstack.security import Grant, apply_acls
from lotline.events import ItemReceived, ItemSold, Lot
from lotline.events.topics import (
    CONSUMED_BY,
    PUBLISHED_BY,
    EventType,
    consumer_group,
    dlq_topic,
    router_of,
)
from lotline.runtime.service import kafka_security
from lotline.runtime.settings import Settings

from support import AS_OPERATOR, AS_STAFF, STAFF_TOKEN, eventually

ROOT = Path(__file__).resolve().parents[2]

Login = dict[str, Any]


@pytest.fixture(scope="module")
def secrets(infra) -> StackSecrets:  # type: ignore[no-untyped-def]
    if infra.secrets is None:
        pytest.skip("the security matrix needs the local stack's SASL broker and its principals")
    return infra.secrets  # type: ignore[no-any-return]


def login(secrets: StackSecrets, principal: str, password: str | None = None) -> Login:
    options = secrets.credentials(principal).client_options()
    if password is not None:
        options["sasl_plain_password"] = password
    return options


# No login at all: a plain client on the SASL listener.
ANONYMOUS: Login = {"security_protocol": "PLAINTEXT"}


async def produce(bootstrap: str, who: Login, topic: str, key: str) -> Probe:
    """One record, as a POS or a service would send it; raises if the broker refuses.
    The value is not an event, so a service that reads it dead-letters it at once."""
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, request_timeout_ms=10_000, **who)
    try:
        await producer.start()
        sent = await producer.send_and_wait(topic, b"security matrix probe", key=key.encode())
    finally:
        await producer.stop()
    return Probe(TopicPartition(topic, sent.partition), sent.offset, key.encode())


@dataclass(frozen=True)
class Probe:
    """Where a probe record landed, to read exactly it back."""

    partition: TopicPartition
    offset: int
    key: bytes


async def fetch(bootstrap: str, who: Login, probe: Probe, group: str | None = None) -> None:
    """Read the probe record back (and, with a group, that group's committed offset) without
    joining the group, so no running service is rebalanced. Raises if the broker refuses."""
    topic = probe.partition.topic
    # A principal that may not even see the topic gets an explicit refusal in the metadata;
    # a consumer would only log it and wait.
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=10_000, **who)
    try:
        await admin.start()
        (described,) = await admin.describe_topics([topic])
    finally:
        await admin.close()
    if described["error_code"] == TopicAuthorizationFailedError.errno:
        raise TopicAuthorizationFailedError(topic)
    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap,
        group_id=group,
        enable_auto_commit=False,
        request_timeout_ms=10_000,
        **who,
    )
    try:
        await consumer.start()
        consumer.assign([probe.partition])
        if group is not None:
            await consumer.committed(probe.partition)
        consumer.seek(probe.partition, probe.offset)
        records = await consumer.getmany(probe.partition, timeout_ms=10_000)
    finally:
        await consumer.stop()
    keys = [record.key for record in records.get(probe.partition, [])]
    assert probe.key in keys, f"the probe on {topic} was not read back"


# What a refusal looks like: an ACL denial names the topic or group; a client that cannot log
# in never gets past bootstrap (the allowed twin of each such case shows the broker is up).
DENIED = (TopicAuthorizationFailedError, GroupAuthorizationFailedError, KafkaConnectionError)


@dataclass
class Matrix:
    """Attempts and their outcomes, printed as one table at the end."""

    rows: list[tuple[str, str, str]] = field(default_factory=list)

    async def forbidden(self, what: str, attempt: Awaitable[object]) -> None:
        try:
            await asyncio.wait_for(attempt, timeout=60)
        except DENIED as error:
            self.rows.append(("forbidden", what, f"denied ({type(error).__name__})"))
        except Exception as error:  # anything else is not a denial: show it
            self.rows.append(("forbidden", what, f"NOT DENIED: {type(error).__name__}: {error}"))
        else:
            self.rows.append(("forbidden", what, "NOT DENIED: it succeeded"))

    async def allowed(self, what: str, attempt: Awaitable[object]) -> None:
        try:
            await asyncio.wait_for(attempt, timeout=60)
        except Exception as error:
            self.rows.append(("allowed", what, f"FAILED: {type(error).__name__}: {error}"))
        else:
            self.rows.append(("allowed", what, "succeeded"))

    def report(self, kind: str) -> tuple[int, int]:
        rows = [row for row in self.rows if row[0] == kind]
        good = "denied" if kind == "forbidden" else "succeeded"
        return len(rows), sum(1 for row in rows if row[2].startswith(good))

    def table(self) -> str:
        width = max(len(what) for _, what, _ in self.rows)
        return "\n".join(
            f"  {kind:9}  {what:{width}}  {outcome}" for kind, what, outcome in self.rows
        )


@pytest.mark.infra
async def test_every_forbidden_action_is_denied_and_every_allowed_one_succeeds(  # type: ignore[no-untyped-def]
    infra, secrets: StackSecrets, run_id: str, capsys
) -> None:
    # aiokafka logs each refused connection at ERROR; the table below says what happened.
    logging.getLogger("aiokafka").setLevel(logging.CRITICAL)
    bootstrap = infra.kafka_bootstrap
    key = f"SEC-{run_id}"
    matrix = Matrix()

    def as_(principal: str) -> Login:
        return login(secrets, principal)

    # Forbidden: writes outside one's part of the contract.
    await matrix.forbidden(
        "pos produces batch-recalled", produce(bootstrap, as_("pos"), "batch-recalled", key)
    )
    await matrix.forbidden(
        "pos produces item-received", produce(bootstrap, as_("pos"), "item-received", key)
    )
    await matrix.forbidden(
        "receiving produces item-sold", produce(bootstrap, as_("receiving"), "item-sold", key)
    )
    await matrix.forbidden(
        "stock produces batch-recalled", produce(bootstrap, as_("stock"), "batch-recalled", key)
    )
    await matrix.forbidden(
        "catalog produces item-sold", produce(bootstrap, as_("catalog"), "item-sold", key)
    )
    await matrix.forbidden(
        "pos produces item-sold.dlq", produce(bootstrap, as_("pos"), "item-sold.dlq", key)
    )
    # Forbidden: reads of what one does not consume, and other services' consumer groups.
    # Each reads a probe its rightful writer just put there.
    quarantined = await produce(bootstrap, as_("stock"), "stock-quarantined", key)
    units = await produce(bootstrap, as_("serial-registry"), "units-recalled", key)
    sold = await produce(bootstrap, as_("pos"), "item-sold", key)
    returned = await produce(bootstrap, as_("pos"), "item-returned", key)
    received = await produce(bootstrap, as_("receiving"), "item-received", key)
    await matrix.forbidden(
        "stock reads stock-quarantined (the recall's)",
        fetch(bootstrap, as_("stock"), quarantined),
    )
    await matrix.forbidden(
        "stock reads units-recalled (the recall's)", fetch(bootstrap, as_("stock"), units)
    )
    await matrix.forbidden(
        "stock uses the recall's group lotline-recall",
        fetch(bootstrap, as_("stock"), returned, group=consumer_group("recall")),
    )
    await matrix.forbidden("pos reads item-sold", fetch(bootstrap, as_("pos"), sold))
    await matrix.forbidden(
        "receiving reads item-received", fetch(bootstrap, as_("receiving"), received)
    )
    await matrix.forbidden(
        "catalog reads item-sold (it consumes receipts only)",
        fetch(bootstrap, as_("catalog"), sold),
    )
    # Forbidden: no login, or a wrong password (same principal and topic as an allowed twin).
    await matrix.forbidden(
        "unauthenticated client produces item-sold",
        produce(bootstrap, ANONYMOUS, "item-sold", key),
    )
    await matrix.forbidden(
        "unauthenticated client consumes item-sold", fetch(bootstrap, ANONYMOUS, sold)
    )
    await matrix.forbidden(
        "pos with a wrong password produces item-sold",
        produce(bootstrap, login(secrets, "pos", "not-the-password"), "item-sold", key),
    )
    await matrix.forbidden(
        "stock with a wrong password consumes item-sold",
        fetch(bootstrap, login(secrets, "stock", "not-the-password"), sold),
    )
    await matrix.forbidden(
        "a principal nobody created produces item-sold",
        produce(
            bootstrap, {**as_("pos"), "sasl_plain_username": f"intruder-{run_id}"}, "item-sold", key
        ),
    )

    # Allowed: the twins of the cases above.
    await matrix.allowed("pos produces item-sold", produce(bootstrap, as_("pos"), "item-sold", key))
    await matrix.allowed(
        "pos produces item-returned", produce(bootstrap, as_("pos"), "item-returned", key)
    )
    await matrix.allowed(
        "receiving produces item-received",
        produce(bootstrap, as_("receiving"), "item-received", key),
    )
    await matrix.allowed(
        "recall produces batch-recalled", produce(bootstrap, as_("recall"), "batch-recalled", key)
    )
    await matrix.allowed(
        "stock produces item-sold.dlq", produce(bootstrap, as_("stock"), "item-sold.dlq", key)
    )
    await matrix.allowed(
        "recall reads stock-quarantined", fetch(bootstrap, as_("recall"), quarantined)
    )
    await matrix.allowed("recall reads units-recalled", fetch(bootstrap, as_("recall"), units))
    await matrix.allowed(
        "stock reads item-sold in lotline-stock",
        fetch(bootstrap, as_("stock"), sold, group=consumer_group("stock")),
    )
    await matrix.allowed(
        "recall reads item-returned in lotline-recall",
        fetch(bootstrap, as_("recall"), returned, group=consumer_group("recall")),
    )
    await matrix.allowed("catalog reads item-received", fetch(bootstrap, as_("catalog"), received))

    attempts, denied = matrix.report("forbidden")
    allowed, succeeded = matrix.report("allowed")
    with capsys.disabled():
        print(f"\nsecurity matrix (Kafka):\n{matrix.table()}")
        print(
            f"forbidden attempts: {attempts}, denied: {denied}; "
            f"allowed attempts: {allowed}, succeeded: {succeeded}"
        )
    assert denied == attempts, matrix.table()
    assert succeeded == allowed, matrix.table()


@pytest.mark.infra
async def test_an_anonymous_recall_is_refused(start_service, run_id: str, capsys) -> None:  # type: ignore[no-untyped-def]
    # Operators are configured: the refusal is for lack of proof, not for lack of operators.
    recall = start_service("recall", RECALL_OPERATOR_TOKENS=f"qa:operator:{'q' * 32}")
    # Valid in every way but one: it claims an operator's name and proves nothing.
    body = {
        "sku": f"SEC-{run_id}",
        "lot_codes": ["L-SEC"],
        "reason": "security matrix: an anonymous change must be refused",
        "classification": "III",
        "issued_by": "mallory",
    }
    async with httpx.AsyncClient(base_url=recall.url, timeout=20) as http:
        response = await http.post("/recalls", json=body, headers={"X-Operator": "mallory"})
    denied = response.status_code == 401
    with capsys.disabled():
        print(
            f"\nsecurity matrix (HTTP): anonymous POST /recalls -> {response.status_code}; "
            f"attempts: 1, denied: {int(denied)}"
        )
    assert response.status_code == 401, response.text


async def test_customer_references_are_shown_to_staff_and_operators_only(  # type: ignore[no-untyped-def]
    start_service, bus, run_id: str
) -> None:
    catalog = start_service("catalog")
    stock = start_service("stock")
    serials = start_service("serial-registry")
    recall = start_service(
        "recall", CATALOG_URL=catalog.url, SERIALS_URL=serials.url, STOCK_URL="http://127.0.0.1:9"
    )
    sku, customer = f"PII-{run_id}", f"CUST-PII-{run_id}"
    units = [f"PII-{run_id}-{n}" for n in range(3)]
    async with httpx.AsyncClient(timeout=20) as http:
        body = {"sku": sku, "name": "Phone PII", "tracking": "serial"}
        created = await http.post(f"{catalog.url}/products", json=body, headers=AS_OPERATOR)
        assert created.status_code == 201, created.text
        await bus.publish(
            ItemReceived(sku=sku, receipt_id=f"R-{run_id}", location="S1", quantity=3,
                         lot=Lot(code="L1"), serials=units),
        )  # fmt: skip

        async def registered() -> None:
            found = await http.get(f"{serials.url}/units/{sku}/{units[2]}")
            assert found.status_code == 200

        await eventually(registered, timeout=60)
        await bus.publish(
            ItemSold(sku=sku, sale_id=f"T-{run_id}", line=1, location="S1", quantity=1,
                     serial=units[0], customer_ref=customer, sold_at=datetime.now(UTC)),
        )  # fmt: skip
        unit_url = f"{serials.url}/units/{sku}/{units[0]}"

        async def sold() -> None:
            found = await http.get(unit_url, headers=AS_STAFF)
            assert found.json()["customer_ref"] == customer

        await eventually(sold, timeout=60)
        issued = await http.post(
            f"{recall.url}/recalls",
            json={"sku": sku, "lot_codes": ["L1"], "reason": "PII test", "classification": "II"},
            headers=AS_OPERATOR,
        )
        assert issued.status_code == 201, issued.text
        recall_id = issued.json()["recall_id"]

        async def contact_listed() -> None:
            found = await http.get(f"{recall.url}/recalls/{recall_id}", headers=AS_STAFF)
            assert [c["customer_ref"] for c in found.json()["contacts"]] == [customer]

        await eventually(contact_listed, timeout=60)

        # Each place a customer reference is served: anonymous, staff, operator.
        places = [
            unit_url,
            f"{serials.url}/lots/{sku}/L1/units",
            f"{stock.url}/lots/{sku}/L1/trace",
            f"{recall.url}/recalls/{recall_id}",
            f"{recall.url}/trace/units/{sku}/{units[0]}",
            f"{recall.url}/trace/units/{sku}/{units[0]}/epcis",
        ]
        for url in places:
            for headers, shown in (({}, False), (AS_STAFF, True), (AS_OPERATOR, True)):
                response = await http.get(url, headers=headers)
                assert response.status_code == 200, (url, response.text)
                assert response.headers["Cache-Control"] == "no-store", url
                assert (customer in response.text) is shown, (url, headers)
        anonymous = (await http.get(f"{recall.url}/recalls/{recall_id}")).json()
        assert anonymous["progress"]["units_to_contact"] == 1  # the count, not the customer
        refused = await http.get(unit_url, headers={"Authorization": "Bearer " + "n" * 20})
        assert refused.status_code == 401  # a wrong token is not read as anonymous

        # The console: the recall's page and its contact list.
        page = await http.get(f"{recall.url}/console/recalls/{recall_id}")
        assert page.status_code == 200
        assert page.headers["Cache-Control"] == "no-store"
        assert customer not in page.text
        assert "1 recalled unit(s) sold to customers before the recall" in page.text
        csv_url = f"{recall.url}/console/recalls/{recall_id}/contacts.csv"
        download = await http.get(csv_url)
        assert download.status_code == 401
        assert customer not in download.text
    async with httpx.AsyncClient(base_url=recall.url, timeout=20) as staff:
        form = await staff.get("/console/login")
        csrf = form.text.split('name="csrf_token" value="', 1)[1].split('"', 1)[0]
        logged_in = await staff.post(
            "/console/login",
            data={"csrf_token": csrf, "name": "tests-staff", "token": STAFF_TOKEN},
        )
        assert logged_in.status_code == 303
        page = await staff.get(f"/console/recalls/{recall_id}")
        assert customer in page.text
        download = await staff.get(f"/console/recalls/{recall_id}/contacts.csv")
        assert (download.status_code, download.headers["Cache-Control"]) == (200, "no-store")
        assert customer in download.text


# --- the ACL model and how `up` applies it --------------------------------------------------


def test_the_acls_follow_the_contract() -> None:
    model = grants()
    writes = {
        (g.principal, g.name) for g in model if g.resource == "topic" and g.operation == "WRITE"
    }
    reads = {
        (g.principal, g.name) for g in model if g.resource == "topic" and g.operation == "READ"
    }
    groups = {(g.principal, g.name) for g in model if g.resource == "group"}

    expected_writes = {(p, e.topic) for p, events in PUBLISHED_BY.items() for e in events}
    expected_writes |= {
        (s, dlq_topic(e.topic)) for s, events in CONSUMED_BY.items() for e in events
    }
    # The router of an outside producer's topic moves misrouted events to their partition.
    expected_writes |= {(router_of(e), e.topic) for e in EventType if router_of(e) is not None}
    assert writes == expected_writes
    assert reads == {(s, e.topic) for s, events in CONSUMED_BY.items() for e in events}
    assert groups == {(s, consumer_group(s)) for s in CONSUMED_BY}
    assert {g.operation for g in model} == {"READ", "WRITE"}  # never ALL, DELETE, ALTER...
    assert set(principals()) == {*CONSUMED_BY, *PUBLISHED_BY}
    assert ADMIN not in principals()

    # The rules, spelled out.
    writers = {topic: {p for p, t in writes if t == topic} for _, topic in writes}
    assert writers[EventType.BATCH_RECALLED.topic] == {"recall"}
    # Tills write sales; stock only moves a till's misrouted sale to its SKU's partition.
    assert writers[EventType.ITEM_SOLD.topic] == {"pos", "stock"}
    assert writers[EventType.ITEM_RECEIVED.topic] == {"receiving", "stock"}
    assert {t for p, t in writes if p == "pos"} == {"item-sold", "item-returned"}
    assert {t for p, t in writes if p == "receiving"} == {"item-received"}
    assert not {t for p, t in reads if p in ("pos", "receiving")}


@pytest.mark.infra
def test_up_converges_the_acls_to_the_contract(infra, secrets: StackSecrets) -> None:  # type: ignore[no-untyped-def]
    admin = secrets.admin.client_options()
    # A grant the contract does not give (POS reading sales) is removed by the next apply.
    stray = Grant("pos", "topic", EventType.ITEM_SOLD.topic, "READ")
    added = run_async(apply_acls(infra.kafka_bootstrap, admin, [*grants(), stray]))
    assert added.created == 1
    assert added.deleted == 0
    converged = run_async(apply_acls(infra.kafka_bootstrap, admin))
    assert converged.deleted == 1
    assert converged.created == 0
    again = run_async(apply_acls(infra.kafka_bootstrap, admin))
    assert (again.created, again.deleted, again.kept) == (0, 0, len(grants()))


@pytest.mark.infra
def test_the_secrets_file_is_private(secrets: StackSecrets) -> None:
    assert secrets.path.stat().st_mode & 0o777 == 0o600
    stack = LocalStack.from_env()
    for config in (stack.kafka.server_properties, stack.kafka.admin_properties):
        assert config.stat().st_mode & 0o777 == 0o600
    assert {ADMIN, *principals()} <= set(secrets.names)
    passwords = secrets.all_passwords()
    assert len(set(passwords)) == len(passwords)
    assert all(len(password) >= 32 for password in passwords)


# --- secrets never in logs ------------------------------------------------------------------


def leaked(text: str, secrets: list[str]) -> list[str]:
    return [secret[:4] + "…" for secret in secrets if secret in text]


@pytest.mark.infra
def test_a_service_never_logs_its_password(  # type: ignore[no-untyped-def]
    start_service, secrets: StackSecrets
) -> None:
    # DEBUG: the most a service ever says, Kafka client and HTTP server included.
    stock = start_service("stock", LOG_LEVEL="DEBUG")
    password = secrets.credentials("stock").password.get_secret_value()
    httpx.get(f"{stock.url}/health/ready", timeout=10).raise_for_status()
    stock.stop()
    log = stock.log_path.read_text(errors="replace")
    assert "started" in log  # the log is the service's, and it got going
    assert password not in log


@pytest.mark.infra
def test_the_stack_and_the_cli_never_print_a_password(  # type: ignore[no-untyped-def]
    infra, secrets: StackSecrets, run_id: str
) -> None:
    passwords = secrets.all_passwords()
    env = {**os.environ, **infra.env()}
    up = subprocess.run(
        [sys.executable, "-m", "lotline.devstack", "up"],
        env=env,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert up.returncode == 0, up.stderr
    assert not leaked(up.stdout + up.stderr, passwords)
    stack = LocalStack.from_env()
    kafka_log = (stack.dir / "logs" / "kafka.log").read_text(errors="replace")
    assert not leaked(kafka_log, passwords)

    # A wrong password: one clear line, which does not echo it.
    wrong = f"wrong-{run_id}-password"
    sale = subprocess.run(
        [sys.executable, "-m", "lotline.cli", "sell", f"SEC-{run_id}", "-l", "S1"],
        env={**env, "KAFKA_USERNAME": "pos", "KAFKA_PASSWORD": wrong},
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert sale.returncode != 0
    assert "cannot publish to Kafka" in sale.stderr
    assert wrong not in sale.stdout + sale.stderr
    assert not leaked(sale.stdout + sale.stderr, passwords)


# --- client settings (no I/O) ---------------------------------------------------------------


def test_a_username_means_a_sasl_login_that_never_shows_its_password(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    for name in ("KAFKA_SECURITY_PROTOCOL", "KAFKA_USERNAME", "KAFKA_PASSWORD"):
        monkeypatch.delenv(name, raising=False)
    assert Settings().kafka_client_options() == {"security_protocol": "PLAINTEXT"}

    settings = Settings(kafka_username="pos", kafka_password="s3cret-known-value")
    assert settings.kafka_security_protocol == "SASL_PLAINTEXT"
    options = settings.kafka_client_options()
    assert options["sasl_mechanism"] == "SCRAM-SHA-512"
    assert options["sasl_plain_username"] == "pos"
    assert options["sasl_plain_password"] == "s3cret-known-value"
    assert "s3cret-known-value" not in repr(settings) + str(settings)

    security = kafka_security(settings)
    assert security is not None
    assert security.get_requirement() == [{"scram512": []}]


@pytest.mark.parametrize(
    ("env", "says"),
    [
        ({"KAFKA_USERNAME": "pos"}, "needs KAFKA_PASSWORD"),
        ({"KAFKA_SECURITY_PROTOCOL": "SASL_SSL"}, "needs KAFKA_USERNAME"),
        (
            {
                "KAFKA_SECURITY_PROTOCOL": "PLAINTEXT",
                "KAFKA_USERNAME": "pos",
                "KAFKA_PASSWORD": "x",
            },
            "would never send it",
        ),
    ],
)
def test_a_half_login_is_refused_by_name(
    monkeypatch: pytest.MonkeyPatch, env: dict[str, str], says: str
) -> None:
    for name in ("KAFKA_SECURITY_PROTOCOL", "KAFKA_USERNAME", "KAFKA_PASSWORD"):
        monkeypatch.delenv(name, raising=False)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    with pytest.raises(ValidationError, match=says):
        Settings()
