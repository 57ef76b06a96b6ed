"""Poison messages while good events flow: every kind of garbage on every consumed topic lands
in `<topic>.dlq` with its reason, every good event is applied, and no consumer stalls."""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import UTC, date, datetime
from typing import Any

import httpx
import pytest
from test_bad_input import consumers_of, sample

from lotline.events import (
    CONSUMED_BY,
    EventDecodeError,
    EventType,
    ItemReceived,
    ItemReturned,
    ItemSold,
    Lot,
    ProductRegistered,
    ReturnReason,
    Tracking,
    decode,
    encode,
)

from support import AS_OPERATOR, OPERATOR_ENV, consumer_lag, eventually

# A JSON document nested deeper than the parser's recursion limit.
DEEP = b"[" * 5000 + b"]" * 5000

Spoil = Callable[[dict[str, Any]], bytes]


def _with(good: dict[str, Any], **changes: Any) -> bytes:
    return json.dumps(dict(good, **changes)).encode()


def _with_data(good: dict[str, Any], **changes: Any) -> bytes:
    return json.dumps(dict(good, data=dict(good["data"], **changes))).encode()


def _required(event_type: EventType) -> str:
    model = type(sample(event_type, "X"))
    return next(n for n, f in model.model_fields.items() if f.is_required() and n != "sku")


def _other_type(event_type: EventType) -> str:
    return next(t.value for t in EventType if t is not event_type)


# Values the schema refuses because the database could not hold them: a time that leaves
# BSON's range once converted to UTC, and an integer beyond 64 bits. A till with a bad clock
# sends the first; before the contract bounded them they froze a consumer at write time.
FAR_FUTURE, FAR_PAST = "9999-12-31T23:59:59-14:00", "0001-01-01T00:00:00+01:00"
HUGE = 2**70
DATA_TIME = {
    EventType.ITEM_RECEIVED: "received_at",
    EventType.ITEM_SOLD: "sold_at",
    EventType.ITEM_RETURNED: "returned_at",
    EventType.BATCH_RECALLED: "issued_at",
    EventType.SALE_FLAGGED: "sold_at",
}
DATA_INTEGER = {
    EventType.PRODUCT_REGISTERED: "revision",
    EventType.ITEM_RECEIVED: "quantity",
    EventType.ITEM_SOLD: "line",
    EventType.ITEM_RETURNED: "line",
    EventType.STOCK_QUARANTINED: "quantity",
    EventType.UNITS_RECALLED: "chunk",
    EventType.SALE_FLAGGED: "line",
}


def unstorable(event_type: EventType, good: dict[str, Any]) -> list[tuple[str, bytes, str, str]]:
    """The kinds of garbage a database cannot store, for one event type."""
    out = [
        ("time far in the future", _with(good, time=FAR_FUTURE), "time", "outside 1000..9998"),
        ("time far in the past", _with(good, time=FAR_PAST), "time", "outside 1000..9998"),
    ]
    if event_type in DATA_TIME:
        name = DATA_TIME[event_type]
        out.append(("data time", _with_data(good, **{name: FAR_FUTURE}), f"data.{name}", "outside"))
    if event_type in DATA_INTEGER:
        name = DATA_INTEGER[event_type]
        out.append(
            ("huge integer", _with_data(good, **{name: HUGE}), f"data.{name}", "less than or")
        )
    return out


def garbage(event_type: EventType, sku: str) -> list[tuple[str, bytes, str, str]]:
    """(kind, message, field named in the DLQ header, words of the reason) of each kind."""
    good = json.loads(encode(sample(event_type, sku), source="poison").value)
    required = _required(event_type)
    return [
        ("not JSON", b"\xff\xfe not json at all", "(message)", "not valid JSON"),
        ("empty", b"", "(message)", "empty message"),
        ("not an object", b"[1, 2, 3]", "(message)", "expected a JSON object"),
        ("old envelope", _with(good, specversion="0.3"), "specversion", "'1.0'"),
        (
            "type of another topic",
            _with(good, type=_other_type(event_type)),
            "type",
            "does not belong on topic",
        ),
        ("no data", _with(good, data=None), "data", "valid dictionary"),
        (
            "missing field",
            json.dumps(
                dict(good, data={k: v for k, v in good["data"].items() if k != required})
            ).encode(),
            f"data.{required}",
            "required field is missing",
        ),
        ("wrong type", _with_data(good, sku=12345), "data.sku", "valid string"),
        ("huge value", _with_data(good, sku="X" * 300_000), "data.sku", "at most"),
        *unstorable(event_type, good),
    ]


CONSUMED = sorted({t for types in CONSUMED_BY.values() for t in types}, key=str)


def test_every_kind_of_garbage_is_refused_by_the_codec_with_its_field() -> None:
    for event_type in CONSUMED:
        for kind, value, field, words in garbage(event_type, "X-1"):
            with pytest.raises(EventDecodeError) as refused:
                decode(value, event_type)
            assert refused.value.field == field, (event_type, kind)
            assert words in refused.value.problem, (event_type, kind, refused.value.problem)


def test_a_deeply_nested_message_is_refused_not_raised() -> None:
    with pytest.raises(EventDecodeError):
        decode(DEEP, EventType.ITEM_SOLD)


def test_a_quantity_beyond_what_a_database_can_store_is_refused() -> None:
    good = json.loads(encode(sample(EventType.ITEM_RECEIVED, "X-1"), source="poison").value)
    with pytest.raises(EventDecodeError):
        decode(_with_data(good, quantity=10**40), EventType.ITEM_RECEIVED)


@pytest.mark.infra
@pytest.mark.timeout(600)
async def test_garbage_among_good_events_is_dead_lettered_and_nothing_stalls(  # type: ignore[no-untyped-def]
    infra, bus, start_service, run_id
) -> None:
    env = {"CONSUMER_MAX_RECORDS": "50", **OPERATOR_ENV}
    services = {name: start_service(name, **env) for name in CONSUMED_BY}
    flour, milk, phone = f"PFLOUR-{run_id}", f"PMILK-{run_id}", f"PPHONE-{run_id}"
    now = datetime.now(UTC)
    await bus.publish(
        ProductRegistered(sku=flour, name="Flour", tracking=Tracking.QUANTITY),
        ProductRegistered(sku=milk, name="Milk", tracking=Tracking.BATCH),
        ProductRegistered(sku=phone, name="Phone", tracking=Tracking.SERIAL),
    )
    # Garbage goes out keyed by the SKUs of the good events, so it shares their partitions:
    # whatever it does to a consumer, it does to the one applying them.
    # Where each piece of garbage landed (partition, offset), and what the DLQ must say of it.
    sent: dict[str, dict[tuple[str, str], tuple[str, str, str]]] = {}
    kinds = [(t, g) for t in CONSUMED for g in garbage(t, flour)]
    serials = [f"IMEI-{run_id}-{n:03d}" for n in range(40)]
    rounds = 20
    for n in range(rounds):
        good = [
            ItemReceived(sku=flour, receipt_id=f"R-{run_id}-{n}", location="S1", quantity=10),
            ItemSold(
                sku=flour,
                sale_id=f"T-{run_id}-{n}",
                line=1,
                location="S1",
                quantity=3,
                sold_at=now,
            ),
            ItemReceived(
                sku=milk,
                receipt_id=f"RM-{run_id}-{n}",
                location=f"S{1 + n % 2}",
                quantity=5,
                lot=Lot(code="M1", expires_on=date(2031, 1, 1)),
            ),
            ItemReceived(
                sku=phone,
                receipt_id=f"RP-{run_id}-{n}",
                location="S1",
                quantity=2,
                serials=serials[2 * n : 2 * n + 2],
                lot=Lot(code="P1"),
            ),
            ItemSold(
                sku=phone,
                sale_id=f"TP-{run_id}-{n}",
                line=1,
                location="S1",
                quantity=1,
                serial=serials[2 * n],
                sold_at=now,
            ),
        ]
        await bus.publish(*good)
        for event_type, (kind, value, field, words) in kinds[n::rounds]:
            producer = await bus.producer(event_type.topic)
            where = await producer.send_and_wait(event_type.topic, value, key=flour.encode())
            sent.setdefault(event_type.topic, {})[(str(where.partition), str(where.offset))] = (
                kind,
                field,
                words,
            )
    assert sum(len(v) for v in sent.values()) == len(kinds)

    # The recall service's topics get good events too: a recall of the milk lot makes stock
    # report quarantine and the registry answer, a returned unit and a flagged sale follow.
    async with httpx.AsyncClient(base_url=services["recall"].url, timeout=30) as client:
        issued = await client.post(
            "/recalls",
            json={
                "recall_id": f"RC-{run_id}",
                "sku": milk,
                "lot_codes": ["M1"],
                "reason": "Poison test",
                "classification": "II",
            },
            headers=AS_OPERATOR,
        )
    assert issued.status_code == 201, issued.text

    async def quarantined() -> None:
        async with httpx.AsyncClient(base_url=services["stock"].url) as client:
            response = await client.get(f"/stock/{milk}")
        assert response.json()["quarantined"] == rounds * 5

    await eventually(quarantined, timeout=120)
    await bus.publish(
        ItemReturned(
            sku=milk,
            return_id=f"RT-{run_id}",
            location="S1",
            quantity=2,
            lot_code="M1",
            reason=ReturnReason.RECALL,
        ),
        ItemSold(
            sku=milk,
            sale_id=f"TM-{run_id}",
            line=1,
            # Where the lot never was: the sale is flagged, no quarantined unit leaves.
            location="S3",
            quantity=1,
            lot_code="M1",
            sold_at=datetime.now(UTC),
        ),
    )

    async def good_events_applied() -> None:
        async with httpx.AsyncClient(timeout=30) as client:
            stock = (await client.get(f"{services['stock'].url}/stock/{flour}")).json()
            assert stock["on_hand"] == rounds * (10 - 3)
            units = await client.get(
                f"{services['serial-registry'].url}/lots/{phone}/P1/units", params={"limit": 1}
            )
            assert units.status_code == 200, units.text  # 404 until the lot is registered
            assert units.json()["counts"]["sold"] == rounds
            assert units.json()["counts"]["in_stock"] == rounds
            recall = (await client.get(f"{services['recall'].url}/recalls/RC-{run_id}")).json()
            progress = recall["progress"]
            assert progress["quarantined_units"] == rounds * 5 + 2
            assert progress["units_returned"] == 2
            assert progress["sales_after_recall"] == 1
            assert progress["units_answer"]["complete"]

    await eventually(good_events_applied, timeout=120)

    async def dead_lettered() -> None:
        for topic, wanted in sent.items():
            found: dict[str, dict[tuple[str, str], tuple[str, str]]] = {}
            for record in await bus.read_all(f"{topic}.dlq", timeout=15):
                if record.key != flour.encode():
                    continue  # other tests' dead letters and probes share the topic
                h = {k: v.decode() for k, v in record.headers}
                position = (h["lotline-dlq-partition"], h["lotline-dlq-offset"])
                if position in wanted:
                    # Once per original record: a redelivered batch dead-letters it again.
                    found.setdefault(h["lotline-dlq-service"], {})[position] = (
                        h["lotline-dlq-field"],
                        h["lotline-dlq-reason"],
                    )
            assert set(found) == consumers_of(EventType(topic)), (topic, set(found))
            for service, letters in found.items():
                missing = [wanted[p][0] for p in wanted if p not in letters]
                assert not missing, (topic, service, missing)
                for position, (kind, field, words) in wanted.items():
                    got_field, reason = letters[position]
                    assert got_field == field, (topic, service, kind, got_field, reason)
                    assert words in reason, (topic, service, kind, reason)

    await eventually(dead_lettered, timeout=120, interval=2)

    async def caught_up() -> None:
        lags = {
            name: await consumer_lag(infra.kafka_bootstrap, name, infra.client_options())
            for name in CONSUMED_BY
        }
        assert not any(lags.values()), lags

    await eventually(caught_up, timeout=120, interval=1)
    for name, service in services.items():
        assert service.process is not None
        assert service.process.poll() is None, f"{name} died:\n{service.log_tail()}"
        async with httpx.AsyncClient(base_url=service.url, timeout=10) as client:
            ready = await client.get("/health/ready")
        assert ready.status_code == 200, (name, ready.text)
        assert ready.json()["checks"]["consumer"], (name, ready.text)
