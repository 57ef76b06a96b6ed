"""The movements ledger without I/O: each applied event yields the movements the domain made."""

from __future__ import annotations

from datetime import UTC, date, datetime
from typing import Any

from lotline.events import (
    BatchRecalled,
    Classification,
    CloudEvent,
    EventData,
    ItemReceived,
    ItemReturned,
    ItemSold,
    Lot,
    ReceiptRejected,
    RejectReason,
    ReturnReason,
    Tracking,
    envelope_of,
)
from lotline.stock.domain import Level, Recall
from lotline.stock.ledger import MovementKind, counts_of, movements

AT = datetime(2026, 11, 22, 10, 0, tzinfo=UTC)


def envelope(data: EventData) -> CloudEvent[Any]:
    return envelope_of(data, source="tests", time=AT)


def receipt(quantity: int, lot: str, receipt_id: str = "R-1") -> ItemReceived:
    return ItemReceived(
        sku="MILK",
        receipt_id=receipt_id,
        location="STORE-1",
        quantity=quantity,
        lot=Lot(code=lot, expires_on=date(2026, 12, 5)),
        supplier="Dairy Co",
    )


def sale(quantity: int, lot: str | None = None, sale_id: str = "S-1") -> ItemSold:
    return ItemSold(
        sku="MILK",
        sale_id=sale_id,
        line=2,
        location="STORE-1",
        quantity=quantity,
        lot_code=lot,
        customer_ref="C-7",
        sold_at=AT,
    )


def test_a_receipt_is_one_received_movement_with_supplier_and_document() -> None:
    level = Level("MILK", "STORE-1")
    event = envelope(receipt(10, "L1"))
    before = counts_of(level)
    level.receive(10, "L1", date(2026, 12, 5), None)
    [moved] = movements(event, before, level)
    assert moved.kind is MovementKind.RECEIVED
    assert (moved.lot_code, moved.quantity, moved.supplier) == ("L1", 10, "Dairy Co")
    assert (moved.document_type, moved.document_id) == ("receipt", "R-1")
    assert moved.at == AT  # no received_at: the event's time
    assert moved.id == f"{event.dedupe_key}#STORE-1#L1#received"


def test_a_sale_split_by_fefo_is_one_movement_per_lot_with_the_customer() -> None:
    level = Level("MILK", "STORE-1")
    level.receive(2, "L-NOV", date(2026, 11, 25), None)
    level.receive(5, "L-DEC", date(2026, 12, 5), None)
    event = envelope(sale(4))
    before = counts_of(level)
    level.sell(4, None, Tracking.BATCH, AT, {})
    moved = {m.lot_code: m for m in movements(event, before, level)}
    assert {code: m.quantity for code, m in moved.items()} == {"L-NOV": 2, "L-DEC": 2}
    assert all(m.kind is MovementKind.SOLD for m in moved.values())
    assert moved["L-DEC"].customer_ref == "C-7"
    assert (moved["L-DEC"].sale_id, moved["L-DEC"].line) == ("S-1", 2)
    assert moved["L-NOV"].id != moved["L-DEC"].id


def test_units_sold_before_their_lot_arrived_are_attributed_by_the_receipt() -> None:
    level = Level("MILK", "STORE-1")
    level.sell(3, None, Tracking.BATCH, AT, {})
    event = envelope(receipt(10, "L1"))
    before = counts_of(level)
    level.receive(10, "L1", date(2026, 12, 5), None)
    kinds = {(m.kind, m.lot_code): m.quantity for m in movements(event, before, level)}
    assert kinds == {(MovementKind.RECEIVED, "L1"): 10, (MovementKind.SALE_ATTRIBUTED, "L1"): 3}


def test_a_recall_quarantines_and_a_return_of_the_lot_goes_to_quarantine() -> None:
    level = Level("MILK", "STORE-1")
    level.receive(10, "L1", None, None)
    level.sell(4, "L1", Tracking.BATCH, AT, {})
    recall = BatchRecalled(
        sku="MILK",
        recall_id="RC-1",
        lot_codes=["L1"],
        reason="Listeria",
        classification=Classification.I,
        issued_by="qa",
        issued_at=AT,
    )
    before = counts_of(level)
    level.quarantine_lot("L1", "RC-1")
    [moved] = movements(envelope(recall), before, level)
    assert (moved.kind, moved.quantity, moved.recall_id) == (MovementKind.QUARANTINED, 6, "RC-1")
    assert (moved.document_type, moved.document_id) == ("recall", "RC-1")

    returned = ItemReturned(
        sku="MILK",
        return_id="RT-1",
        sale_id="S-1",
        location="STORE-1",
        quantity=1,
        lot_code="L1",
        reason=ReturnReason.RECALL,
    )
    before = counts_of(level)
    level.return_item(1, "L1", ReturnReason.RECALL, Recall("RC-1", "L1", AT))
    kinds = {m.kind: m for m in movements(envelope(returned), before, level)}
    assert kinds[MovementKind.RETURNED].quantity == 1
    assert kinds[MovementKind.RETURNED].return_reason == "recall"
    assert kinds[MovementKind.QUARANTINED].quantity == 1


def test_an_event_that_changed_nothing_here_moves_nothing() -> None:
    level = Level("MILK", "STORE-1")
    level.receive(10, "L1", None, None)
    before = counts_of(level)
    assert level.quarantine_lot("L2", "RC-9") is None
    recall = BatchRecalled(
        sku="MILK",
        recall_id="RC-9",
        lot_codes=["L2"],
        reason="x",
        classification=Classification.III,
        issued_by="qa",
        issued_at=AT,
    )
    assert movements(envelope(recall), before, level) == []


def phone_receipt(receipt_id: str, quantity: int = 2) -> ItemReceived:
    return ItemReceived(
        sku="PHONE",
        receipt_id=receipt_id,
        location="STORE-2",
        quantity=quantity,
        lot=Lot(code="P1"),
        serials=[f"IMEI-{n}" for n in range(quantity)],
    )


def rejection(receipt_id: str, quantity: int = 2) -> ReceiptRejected:
    return ReceiptRejected(
        sku="PHONE",
        receipt_id=receipt_id,
        location="STORE-2",
        reason=RejectReason.DUPLICATE_SERIAL,
        detail="already registered",
        serials=[f"IMEI-{n}" for n in range(quantity)],
        quantity=quantity,
        lot_code="P1",
    )


def test_a_rejection_of_a_booked_receipt_is_a_refused_movement_naming_the_receipt() -> None:
    level = Level("PHONE", "STORE-2")
    level.receive(2, "P1", None, None, ("R-2", AT))
    event = envelope(rejection("R-2"))
    before = counts_of(level)
    level.refuse_receipt("R-2", "P1", 2, RejectReason.DUPLICATE_SERIAL)
    [moved] = movements(event, before, level)
    assert moved.kind is MovementKind.REFUSED
    assert (moved.lot_code, moved.quantity) == ("P1", 2)
    assert (moved.document_type, moved.document_id, moved.reject_reason) == (
        "receipt",
        "R-2",
        "duplicate_serial",
    )
    assert moved.at == AT
    assert moved.id == f"{event.dedupe_key}#STORE-2#P1#refused"


def test_a_receipt_that_finds_its_refusal_waiting_moves_received_and_refused() -> None:
    level = Level("PHONE", "STORE-2")
    waiting = envelope(rejection("R-2"))
    before = counts_of(level)
    level.refuse_receipt("R-2", "P1", 2, RejectReason.DUPLICATE_SERIAL)
    assert movements(waiting, before, level) == []
    event = envelope(phone_receipt("R-2"))
    before = counts_of(level)
    level.receive(2, "P1", None, None, ("R-2", AT))
    moved = {m.kind: m for m in movements(event, before, level)}
    assert {kind: m.quantity for kind, m in moved.items()} == {
        MovementKind.RECEIVED: 2,
        MovementKind.REFUSED: 2,
    }
    assert moved[MovementKind.REFUSED].reject_reason == "duplicate_serial"
    assert moved[MovementKind.RECEIVED].reject_reason is None
    assert moved[MovementKind.REFUSED].document_id == "R-2"
