"""Garbage on every consumed topic lands in its DLQ with a reason naming the problem, from every
service that consumes it, and the services go on consuming the good events after it."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest

from lotline.events import (
    CONSUMED_BY,
    AdjustmentDirection,
    AdjustmentReason,
    BatchRecalled,
    ClaimKind,
    ClaimRefusal,
    Classification,
    CountedLot,
    DisposalMethod,
    EventData,
    EventType,
    FlagReason,
    ItemReceived,
    ItemReturned,
    ItemSold,
    ProductRegistered,
    ReceiptRejected,
    RejectReason,
    ReorderPointSet,
    ReturnReason,
    SaleFlagged,
    StockAdjusted,
    StockCounted,
    StockDisposed,
    StockQuarantined,
    Tracking,
    TransferReceived,
    TransferredLot,
    TransferShipped,
    UnitsRecalled,
    WarrantyClaimed,
    WarrantyClaimRefused,
    decode,
    encode,
)

from support import eventually

pytestmark = pytest.mark.infra

NOW = datetime.now(UTC)


def sample(event_type: EventType, sku: str) -> EventData:
    """A valid event of each consumed type, to be spoiled one way at a time."""
    samples: dict[EventType, EventData] = {
        EventType.PRODUCT_REGISTERED: ProductRegistered(
            sku=sku, name="Flour", tracking=Tracking.QUANTITY
        ),
        EventType.ITEM_RECEIVED: ItemReceived(sku=sku, receipt_id="R-1", location="S1", quantity=3),
        EventType.ITEM_SOLD: ItemSold(
            sku=sku, sale_id="T-1", line=1, location="S1", quantity=1, sold_at=NOW
        ),
        EventType.ITEM_RETURNED: ItemReturned(
            sku=sku, return_id="RT-1", location="S1", quantity=1, reason=ReturnReason.CUSTOMER
        ),
        EventType.BATCH_RECALLED: BatchRecalled(
            sku=sku,
            recall_id="RC-1",
            lot_codes=["L1"],
            reason="Mould",
            classification=Classification.II,
            issued_by="qa",
            issued_at=NOW,
        ),
        EventType.STOCK_QUARANTINED: StockQuarantined(
            sku=sku, recall_id="RC-1", location="S1", lot_code="L1", quantity=2
        ),
        EventType.UNITS_RECALLED: UnitsRecalled(
            sku=sku, recall_id="RC-1", chunk=1, chunks=1, counts={}
        ),
        EventType.SALE_FLAGGED: SaleFlagged(
            sku=sku,
            sale_id="T-1",
            line=1,
            location="S1",
            reason=FlagReason.RECALLED,
            detail="recalled",
        ),
        EventType.RECEIPT_REJECTED: ReceiptRejected(
            sku=sku,
            receipt_id="R-1",
            location="S1",
            reason=RejectReason.DUPLICATE_SERIAL,
            detail="already registered",
            serials=["A1"],
            quantity=1,
        ),
        EventType.REORDER_POINT_SET: ReorderPointSet(
            sku=sku, location="S1", reorder_point=5, set_at=NOW
        ),
        EventType.STOCK_COUNTED: StockCounted(
            sku=sku,
            count_id="C-1",
            location="S1",
            lots=[CountedLot(lot_code="L1", quantity=2)],
            counted_at=NOW,
        ),
        EventType.STOCK_ADJUSTED: StockAdjusted(
            sku=sku,
            adjustment_id="A-1",
            location="S1",
            quantity=1,
            direction=AdjustmentDirection.OUT,
            reason=AdjustmentReason.DAMAGED,
            adjusted_at=NOW,
        ),
        EventType.STOCK_DISPOSED: StockDisposed(
            sku=sku,
            disposal_id="D-1",
            location="S1",
            lot_code="L1",
            quantity=1,
            method=DisposalMethod.DESTROYED,
            reference="CERT-1",
            disposed_at=NOW,
        ),
        EventType.WARRANTY_CLAIMED: WarrantyClaimed(
            sku=sku,
            claim_id="W-1",
            serial="SN-1",
            location="S1",
            kind=ClaimKind.REPAIR,
            claimed_at=NOW,
            claimed_by="desk",
        ),
        EventType.TRANSFER_SHIPPED: TransferShipped(
            sku=sku,
            transfer_id="TR-1",
            location="S1",
            to_location="S2",
            lots=[TransferredLot(lot_code="L1", quantity=1)],
            shipped_at=NOW,
        ),
        EventType.TRANSFER_RECEIVED: TransferReceived(
            sku=sku,
            transfer_id="TR-1",
            location="S2",
            lots=[TransferredLot(lot_code="L1", quantity=1)],
            received_at=NOW,
        ),
        EventType.WARRANTY_CLAIM_REFUSED: WarrantyClaimRefused(
            sku=sku,
            claim_id="W-1",
            serial="SN-1",
            location="S1",
            kind=ClaimKind.REPAIR,
            reason=ClaimRefusal.NOT_SOLD,
            detail="not sold",
        ),
    }
    return samples[event_type]


def spoiled(event_type: EventType, sku: str) -> list[tuple[bytes, str, str]]:
    """(message, field named in the DLQ header, words in the reason) for each kind of garbage."""
    good = json.loads(encode(sample(event_type, sku), source="tests").value)
    cases = [(b"\xff\xfe not json at all", "(message)", "not valid JSON")]
    old_envelope = dict(good, specversion="0.3")
    cases.append((json.dumps(old_envelope).encode(), "specversion", "'1.0'"))
    required = next(
        name
        for name, f in type(sample(event_type, sku)).model_fields.items()
        if f.is_required() and name != "sku"
    )
    missing = dict(good, data={k: v for k, v in good["data"].items() if k != required})
    cases.append((json.dumps(missing).encode(), f"data.{required}", "required field is missing"))
    if "quantity" in good["data"]:
        negative = dict(good, data=dict(good["data"], quantity=-1))
        cases.append((json.dumps(negative).encode(), "data.quantity", "greater than"))
    if event_type is EventType.PRODUCT_REGISTERED:
        weird = dict(good, data=dict(good["data"], tracking="by-weight"))
        cases.append((json.dumps(weird).encode(), "data.tracking", "'serial', 'batch'"))
    return cases


def consumers_of(event_type: EventType) -> set[str]:
    return {service for service, types in CONSUMED_BY.items() if event_type in types}


async def test_garbage_on_every_consumed_topic_is_dead_lettered_with_its_reason(  # type: ignore[no-untyped-def]
    bus, start_service, run_id
) -> None:
    stock = start_service("stock")
    for name in ("catalog", "serial-registry", "recall"):
        start_service(name)
    sku = f"FLOUR-{run_id}"
    consumed = sorted({t for types in CONSUMED_BY.values() for t in types}, key=str)
    expected: dict[tuple[str, str], set[tuple[str, str]]] = {}
    for event_type in consumed:
        for value, field, words in spoiled(event_type, sku):
            await bus.send_raw(event_type.topic, value, key=sku.encode())
            for service in consumers_of(event_type):
                expected.setdefault((event_type.topic, service), set()).add((field, words))

    # The good events after the garbage are still applied.
    await bus.publish(
        sample(EventType.PRODUCT_REGISTERED, sku), sample(EventType.ITEM_RECEIVED, sku)
    )

    async def still_consuming() -> None:
        async with httpx.AsyncClient(base_url=stock.url) as client:
            response = await client.get(f"/stock/{sku}")
        assert response.status_code == 200
        assert response.json()["on_hand"] == 3

    await eventually(still_consuming, timeout=60)

    async def dead_lettered() -> None:
        found: dict[tuple[str, str], dict[str, tuple[str, str]]] = {}
        for topic in {topic for topic, _ in expected}:
            for record in await bus.read_all(f"{topic}.dlq"):
                if record.key != sku.encode():
                    continue
                h = {k: v.decode() for k, v in record.headers}
                # Counted once per original record (a redelivery dead-letters it again).
                found.setdefault((topic, h["lotline-dlq-service"]), {})[h["lotline-dlq-offset"]] = (
                    h["lotline-dlq-field"],
                    h["lotline-dlq-reason"],
                )
        assert set(found) == set(expected)
        for key, wanted in expected.items():
            got = list(found[key].values())
            assert len(got) == len(wanted), (key, got)
            for field, words in wanted:
                assert any(f == field and words in reason for f, reason in got), (key, field, got)

    await eventually(dead_lettered, timeout=60)


def test_every_consumed_topic_is_covered() -> None:
    consumed: set[Any] = {t for types in CONSUMED_BY.values() for t in types}
    assert consumed == {
        EventType.PRODUCT_REGISTERED,
        EventType.ITEM_RECEIVED,
        EventType.ITEM_SOLD,
        EventType.ITEM_RETURNED,
        EventType.BATCH_RECALLED,
        EventType.STOCK_QUARANTINED,
        EventType.UNITS_RECALLED,
        EventType.SALE_FLAGGED,
        EventType.RECEIPT_REJECTED,
        EventType.REORDER_POINT_SET,
        EventType.STOCK_COUNTED,
        EventType.STOCK_ADJUSTED,
        EventType.STOCK_DISPOSED,
        EventType.WARRANTY_CLAIMED,
        EventType.TRANSFER_SHIPPED,
        EventType.TRANSFER_RECEIVED,
        EventType.WARRANTY_CLAIM_REFUSED,
    }
    for event_type in consumed:
        assert len(spoiled(event_type, "X")) >= 3


def receipt_record(data: dict[str, Any], subject: str | None = None) -> bytes:
    """A receipt as a dock's own producer writes it: JSON that the committed schema accepts."""
    envelope = {
        "specversion": "1.0",
        "id": f"dock-{data['sku']}-{data['receipt_id']}",
        "source": "dock/7",
        "type": "item-received",
        "subject": subject or data["sku"],
        "data": data,
    }
    return json.dumps(envelope).encode()


async def test_a_schema_valid_receipt_breaking_a_rule_is_answered_not_dead_lettered(  # type: ignore[no-untyped-def]
    bus, start_service, run_id
) -> None:
    """Rules no schema can state (serials = quantity, produced_on <= expires_on) get
    receipt-rejected naming the rule from the serial registry and are booked nowhere; a
    subject that differs from data.sku is corrected. The DLQ holds none of them."""
    stock = start_service("stock")
    registry = start_service("serial-registry")
    phone, milk = f"PHONE-{run_id}", f"MILK-{run_id}"
    await bus.publish(
        ProductRegistered(sku=phone, name="Phone", tracking=Tracking.SERIAL),
        ProductRegistered(sku=milk, name="Milk", tracking=Tracking.BATCH),
        source="lotline/catalog",
    )
    lot = {"code": "L1", "produced_on": "2027-03-02", "expires_on": "2027-03-01"}
    records = [
        (phone, {"receipt_id": "R-1", "quantity": 2, "serials": ["A-1", "A-2", "A-3"]}, None),
        (milk, {"receipt_id": "R-2", "quantity": 5, "lot": lot}, None),
        (milk, {"receipt_id": "R-3", "quantity": 4, "lot": {"code": "L2"}}, "SOMETHING-ELSE"),
        (phone, {"receipt_id": "R-4", "quantity": 1, "serials": ["B-1"]}, None),
    ]
    producer = await bus.producer("item-received")
    sent = set()
    for sku, data, subject in records:
        value = receipt_record({"sku": sku, "location": "S1", **data}, subject)
        written = await producer.send_and_wait("item-received", value, key=sku.encode())
        sent.add((written.partition, written.offset))

    async def booked_what_keeps_the_rules() -> None:
        async with httpx.AsyncClient(base_url=stock.url) as client:
            milk_stock = (await client.get(f"/stock/{milk}")).json()
            phone_stock = (await client.get(f"/stock/{phone}")).json()
        # R-3 (its subject corrected) and R-4 only: the receipts after the broken ones.
        assert (milk_stock.get("on_hand"), phone_stock.get("on_hand")) == (4, 1)

    await eventually(booked_what_keeps_the_rules, timeout=60)

    async def rejected_naming_the_rule() -> None:
        rejections = {
            (r.data.sku, r.data.receipt_id): (r.data.reason, r.data.detail)
            for r in (
                decode(record.value, EventType.RECEIPT_REJECTED)
                for record in await bus.read_all("receipt-rejected")
                if record.key in (phone.encode(), milk.encode())
            )
        }
        assert rejections == {
            (phone, "R-1"): (
                RejectReason.SERIALS_NOT_QUANTITY,
                "receipt R-1 was not booked: serials lists 3 serials but quantity is 2",
            ),
            (milk, "R-2"): (
                RejectReason.PRODUCED_AFTER_EXPIRY,
                "receipt R-2 was not booked: lot L1: produced_on 2027-03-02 is after "
                "expires_on 2027-03-01",
            ),
        }

    await eventually(rejected_naming_the_rule, timeout=60)
    # Read from these services' own logs: on the shared stack, instances of other versions
    # may join the same consumer groups and dead-letter with their own rules.
    dead = [
        line
        for service in (stock, registry)
        for line in (
            json.loads(raw) for raw in service.log_path.read_text().splitlines() if raw[:1] == "{"
        )
        if line.get("event") == "dead_lettered"
        and line.get("topic") == "item-received"
        and (line.get("partition"), line.get("offset")) in sent
    ]
    assert dead == []
