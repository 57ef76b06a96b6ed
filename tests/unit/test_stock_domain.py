"""Stock rules without I/O: FEFO picking, splitting lines, quarantine, and what each flag means."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

from lotline.events import FlagReason, RejectReason, ReturnReason, Tracking
from lotline.stock.domain import NO_LOT, Level, Pick, Quarantine, Recall, Refusal

SOLD_AT = datetime(2026, 11, 22, 10, 0, tzinfo=UTC)
TODAY = SOLD_AT.date()


def milk_shelf() -> Level:
    level = Level("MILK", "STORE-1")
    level.receive(10, "L-DEC", date(2026, 12, 5), None)
    level.receive(4, "L-NOV", date(2026, 11, 25), None)
    level.receive(6, "L-JAN", date(2027, 1, 10), None)
    return level


def on_hand(level: Level) -> dict[str | None, int]:
    return {code: lot.on_hand for code, lot in level.lots.items()}


def test_fefo_takes_the_lot_that_expires_first() -> None:
    level = milk_shelf()
    outcome = level.sell(3, None, Tracking.BATCH, SOLD_AT, {})
    assert outcome.picks == [Pick("L-NOV", 3)]
    assert outcome.flags == []
    assert on_hand(level) == {"L-DEC": 10, "L-NOV": 1, "L-JAN": 6}


def test_a_line_is_split_across_lots_in_expiry_order() -> None:
    level = milk_shelf()
    outcome = level.sell(16, None, Tracking.BATCH, SOLD_AT, {})
    assert outcome.picks == [Pick("L-NOV", 4), Pick("L-DEC", 10), Pick("L-JAN", 2)]
    assert outcome.flags == []
    assert on_hand(level) == {"L-DEC": 0, "L-NOV": 0, "L-JAN": 4}


def test_fefo_skips_expired_and_recalled_lots() -> None:
    level = milk_shelf()
    level.quarantine_lot("L-DEC", "RC-1")
    later = datetime(2026, 11, 28, 9, 0, tzinfo=UTC)  # L-NOV has expired by then
    outcome = level.sell(2, None, Tracking.BATCH, later, {})
    assert outcome.picks == [Pick("L-JAN", 2)]
    assert outcome.flags == []


def test_selling_more_than_on_hand_is_applied_and_flagged() -> None:
    level = milk_shelf()
    outcome = level.sell(25, None, Tracking.BATCH, SOLD_AT, {})
    assert outcome.picks == [
        Pick("L-NOV", 4),
        Pick("L-DEC", 10),
        Pick("L-JAN", 6),
        Pick(NO_LOT, 5),
    ]
    assert [(f.reason, f.quantity) for f in outcome.flags] == [(FlagReason.INSUFFICIENT_STOCK, 5)]
    assert level.on_hand == -5


def test_a_scanned_expired_lot_is_sold_and_flagged_expired() -> None:
    level = milk_shelf()
    later = datetime(2026, 11, 26, 9, 0, tzinfo=UTC)
    outcome = level.sell(1, "L-NOV", Tracking.BATCH, later, {})
    assert outcome.picks == [Pick("L-NOV", 1)]
    assert [(f.reason, f.detail) for f in outcome.flags] == [
        (FlagReason.EXPIRED, "lot L-NOV expired on 2026-11-25")
    ]
    assert on_hand(level)["L-NOV"] == 3


def test_recall_quarantines_the_lot_and_a_later_sale_of_it_is_flagged_recalled() -> None:
    level = milk_shelf()
    assert level.quarantine_lot("L-DEC", "RC-1") == Quarantine("RC-1", "L-DEC", 10)
    assert level.lots["L-DEC"].on_hand == 0
    recall = Recall("RC-1", "L-DEC", datetime(2026, 11, 22, 8, 0, tzinfo=UTC))
    outcome = level.sell(1, "L-DEC", Tracking.BATCH, SOLD_AT, {"L-DEC": recall})
    assert [(f.reason, f.recall_id) for f in outcome.flags] == [(FlagReason.RECALLED, "RC-1")]
    assert level.lots["L-DEC"].quarantined == 9
    assert level.lots["L-DEC"].on_hand == 0


def test_a_sale_made_before_the_recall_is_not_a_violation() -> None:
    level = milk_shelf()
    level.quarantine_lot("L-DEC", "RC-1")
    recall = Recall("RC-1", "L-DEC", datetime(2026, 11, 22, 12, 0, tzinfo=UTC))
    outcome = level.sell(2, "L-DEC", Tracking.BATCH, SOLD_AT, {"L-DEC": recall})
    assert outcome.flags == []
    assert level.lots["L-DEC"].quarantined == 8


def test_quarantine_of_a_lot_never_received_here_changes_nothing() -> None:
    level = milk_shelf()
    assert level.quarantine_lot("L-OTHER", "RC-1") is None
    assert "L-OTHER" not in level.lots


def test_a_receipt_of_a_recalled_lot_goes_straight_to_quarantine() -> None:
    level = Level("MILK", "STORE-2")
    recall = Recall("RC-1", "L-DEC", SOLD_AT)
    assert level.receive(5, "L-DEC", date(2026, 12, 5), recall) == Quarantine("RC-1", "L-DEC", 5)
    assert level.on_hand == 0
    assert level.quarantined == 5


def test_returns_go_back_on_sale_unless_recalled_or_damaged() -> None:
    level = milk_shelf()
    level.sell(3, None, Tracking.BATCH, SOLD_AT, {})
    assert level.return_item(1, "L-NOV", ReturnReason.CUSTOMER, None) is None
    assert level.lots["L-NOV"].on_hand == 2
    assert level.return_item(1, "L-NOV", ReturnReason.DAMAGED, None) is None
    assert level.lots["L-NOV"].damaged == 1
    recall = Recall("RC-9", "L-NOV", SOLD_AT)
    assert level.return_item(1, "L-NOV", ReturnReason.CUSTOMER, recall) == Quarantine(
        "RC-9", "L-NOV", 1
    )
    assert level.lots["L-NOV"].on_hand == 2


def test_quantity_items_have_no_lots() -> None:
    level = Level("SOAP", "STORE-1")
    level.receive(12, None, None, None)
    outcome = level.sell(5, None, Tracking.QUANTITY, SOLD_AT, {})
    assert outcome.picks == [Pick(NO_LOT, 5)]
    assert level.on_hand == 7


def test_level_survives_a_round_trip_through_its_document() -> None:
    level = milk_shelf()
    level.quarantine_lot("L-DEC", "RC-1")
    copy = Level.from_document(level.to_document())
    assert copy == level


def test_units_sold_before_their_lot_arrived_are_settled_against_it() -> None:
    level = Level("MILK", "STORE-3")
    outcome = level.sell(3, None, Tracking.BATCH, SOLD_AT, {})
    assert [f.reason for f in outcome.flags] == [FlagReason.INSUFFICIENT_STOCK]
    level.receive(10, "L-DEC", date(2026, 12, 5), None)
    assert on_hand(level) == {NO_LOT: 0, "L-DEC": 7}
    assert level.lots["L-DEC"].sold == 3


# Serial units the serial registry refused (receipt-rejected) leave on-hand.

RECEIVED_AT = datetime(2026, 11, 22, 9, 0, tzinfo=UTC)


def phones_at(location: str, receipt_id: str, quantity: int = 2, lot: str | None = "P1") -> Level:
    level = Level("PHONE", location)
    level.receive(quantity, lot, None, None, (receipt_id, RECEIVED_AT))
    return level


def counts(level: Level, lot: str | None = "P1") -> tuple[int, int, int, int]:
    stock = level.lots[lot]
    return (stock.received, stock.on_hand, stock.quarantined, stock.refused)


def test_a_refused_receipt_leaves_on_hand_for_refused() -> None:
    level = phones_at("STORE-2", "R-2", quantity=3)
    assert level.refuse_receipt("R-2", "P1", 2, RejectReason.DUPLICATE_SERIAL) is None
    assert counts(level) == (3, 1, 0, 2)
    assert (level.on_hand, level.refused) == (1, 2)
    assert level.refusals["R-2"] == Refusal("R-2", "P1", 2, RejectReason.DUPLICATE_SERIAL)


def test_a_refusal_is_applied_once_per_receipt_however_often_it_comes() -> None:
    level = phones_at("STORE-2", "R-2")
    level.refuse_receipt("R-2", "P1", 2, RejectReason.DUPLICATE_SERIAL)
    level.refuse_receipt("R-2", "P1", 2, RejectReason.DUPLICATE_SERIAL)
    assert counts(level) == (2, 0, 0, 2)


def test_a_refusal_before_its_receipt_waits_for_it_and_ends_as_in_the_other_order() -> None:
    first = Level("PHONE", "STORE-2")
    first.refuse_receipt("R-2", "P1", 2, RejectReason.DUPLICATE_SERIAL)
    # Nothing to take yet: on-hand does not go below zero while the receipt is on its way.
    assert first.on_hand == 0
    assert first.refused == 0
    assert first.refusals["R-2"].pending
    first.receive(2, "P1", None, None, ("R-2", RECEIVED_AT))
    then = phones_at("STORE-2", "R-2")
    then.refuse_receipt("R-2", "P1", 2, RejectReason.DUPLICATE_SERIAL)
    assert counts(first) == counts(then) == (2, 0, 0, 2)
    assert first.refusals == then.refusals
    assert not first.refusals["R-2"].pending


def test_a_waiting_refusal_is_taken_from_its_own_receipt_not_another() -> None:
    level = Level("PHONE", "STORE-2")
    level.refuse_receipt("R-2", "P1", 1, RejectReason.DUPLICATE_SERIAL)
    level.receive(5, "P1", None, None, ("R-3", RECEIVED_AT))
    assert counts(level) == (5, 5, 0, 0)
    level.receive(1, "P1", None, None, ("R-2", RECEIVED_AT))
    assert counts(level) == (6, 5, 0, 1)


def test_the_receipts_lot_decides_where_the_refused_units_come_from() -> None:
    level = phones_at("STORE-2", "R-2", lot=None)
    level.refuse_receipt("R-2", "P9", 2, RejectReason.DUPLICATE_SERIAL)
    assert counts(level, None) == (2, 0, 0, 2)
    assert "P9" not in level.lots


def test_a_refusal_of_a_receipt_without_serials_takes_all_its_units() -> None:
    level = phones_at("STORE-2", "R-4", quantity=4, lot=None)
    level.refuse_receipt("R-4", None, 4, RejectReason.MISSING_SERIALS)
    assert counts(level, None) == (4, 0, 0, 4)


def test_refused_units_of_a_recalled_lot_leave_its_quarantine() -> None:
    level = phones_at("STORE-2", "R-2", quantity=3)
    level.quarantine_lot("P1", "RC-1")
    quarantine = level.refuse_receipt("R-2", "P1", 2, RejectReason.DUPLICATE_SERIAL)
    assert quarantine == Quarantine("RC-1", "P1", 1)
    assert counts(level) == (3, 0, 1, 2)


def test_a_receipt_into_a_recalled_lot_reports_quarantine_net_of_a_waiting_refusal() -> None:
    level = Level("PHONE", "STORE-2")
    level.refuse_receipt("R-2", "P1", 2, RejectReason.DUPLICATE_SERIAL)
    recall = Recall("RC-1", "P1", RECEIVED_AT)
    quarantine = level.receive(3, "P1", None, recall, ("R-2", RECEIVED_AT))
    assert quarantine == Quarantine("RC-1", "P1", 1)
    assert counts(level) == (3, 0, 1, 2)


def test_a_refusal_of_a_receipt_older_than_the_levels_memory_applies_at_once() -> None:
    level = phones_at("STORE-2", "R-2")
    level.forget_receipts(RECEIVED_AT + timedelta(hours=1))
    assert level.serial_receipts == {}
    level.refuse_receipt("R-2", "P1", 2, RejectReason.DUPLICATE_SERIAL, receipt_forgotten=True)
    assert counts(level) == (2, 0, 0, 2)


def test_receipts_within_the_memory_are_kept() -> None:
    level = phones_at("STORE-2", "R-2")
    level.forget_receipts(RECEIVED_AT)
    assert set(level.serial_receipts) == {"R-2"}


def test_a_refused_units_sale_is_not_settled_from_a_later_lot() -> None:
    # Refused units are gone, not sold: a receipt of another lot settles real sales only.
    level = phones_at("STORE-2", "R-2", lot=None)
    level.refuse_receipt("R-2", None, 2, RejectReason.DUPLICATE_SERIAL)
    level.receive(3, "P2", None, None, ("R-3", RECEIVED_AT))
    assert counts(level, None) == (2, 0, 0, 2)
    assert counts(level, "P2") == (3, 3, 0, 0)
    assert level.lots["P2"].sold == 0


def test_refusals_and_remembered_receipts_survive_the_document() -> None:
    level = phones_at("STORE-2", "R-2")
    level.refuse_receipt("R-2", "P1", 1, RejectReason.DUPLICATE_SERIAL)
    level.refuse_receipt("R-5", "P1", 3, RejectReason.MISSING_SERIALS)
    doc = level.to_document()
    assert (doc["on_hand"], doc["refused"]) == (1, 1)
    assert Level.from_document(doc) == level
