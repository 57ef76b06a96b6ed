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
    UnitsRecalled,
    WarrantyClaimed,
    WarrantyClaimRefused,
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
        EventType.WARRANTY_CLAIM_REFUSED,
    }
    for event_type in consumed:
        assert len(spoiled(event_type, "X")) >= 3
