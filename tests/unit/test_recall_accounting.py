"""A recall's accounting: every unit of its lots (or serials) placed, N of M, and closing."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from lotline.events import Classification, StockQuarantined, UnitStatus
from lotline.recall.domain import (
    Accounting,
    AccountingBasis,
    CloseRefused,
    FlaggedSale,
    MatchedBy,
    Progress,
    QuarantinedStock,
    Recall,
    RecallRequest,
    ReturnedUnits,
    UnitsChunk,
)

NOW = datetime(2026, 11, 22, 9, 30, tzinfo=UTC)


def recall(lot_codes: tuple[str, ...] = ("L.1",), serials: tuple[str, ...] = ()) -> Recall:
    request = RecallRequest("YOG-1", lot_codes, serials, "listeria", Classification.I, "ana")
    return Recall.issue("RC-1", request, NOW)


def held(
    location: str, quantity: int, received: int, disposed: int = 0, sold_before: int = 0
) -> QuarantinedStock:
    return QuarantinedStock(
        "RC-1",
        location,
        "L.1",
        quantity,
        received=received,
        disposed=disposed,
        sold_before_recall=sold_before,
    )


def returned(return_id: str, quantity: int, lot_code: str | None = "L.1") -> ReturnedUnits:
    return ReturnedUnits("RC-1", return_id, 1, "S1", quantity, MatchedBy.LOT, lot_code=lot_code)


def sold_after(sale_id: str, quantity: int) -> FlaggedSale:
    return FlaggedSale(
        "RC-1", sale_id, 1, "S1", quantity, "recalled", MatchedBy.LOT, "lotline/stock"
    )


def test_a_lot_recall_counts_every_unit_received_held_disposed_or_sold() -> None:
    # S1 received 10: 4 sold before the recall, 2 after, 1 of those returned; 3 disposed,
    # so 10 - 4 - 2 + 1 - 3 = 2 are held. S2 received 5 and holds them all.
    progress = Progress.of(
        quarantine=[held("S1", 2, 10, disposed=3, sold_before=4), held("S2", 5, 5)],
        flagged=[sold_after("T-1", 2)],
        returns=[returned("R-1", 1)],
    )
    accounting = Accounting.of(recall(), progress)
    assert accounting.basis is AccountingBasis.LOTS
    assert (accounting.accounted, accounting.expected) == (15, 15)
    assert accounting.quarantined == 7
    assert accounting.disposed == 3
    assert accounting.sold_before_recall == 4
    assert accounting.sold_after_recall == 2
    assert accounting.returned == 1
    assert accounting.complete
    accounting.check_close("RC-1", None)


def test_a_return_naming_no_lot_is_held_apart_and_not_taken_off_twice() -> None:
    # 5 received, 4 held, 1 sold before the recall and brought back by serial only: stock
    # holds it outside the lot's quarantine, so the lot's figures never counted it back.
    progress = Progress.of(
        quarantine=[held("S1", 4, 5, sold_before=1)], returns=[returned("R-1", 1, None)]
    )
    accounting = Accounting.of(recall(), progress)
    assert (accounting.accounted, accounting.expected, accounting.returned) == (5, 5, 1)


def test_units_written_off_or_missing_are_not_accounted_for_and_closing_needs_a_reason() -> None:
    # 10 received, 3 held, 6 sold before: one unit went missing (a count's variance).
    progress = Progress.of(quarantine=[held("S1", 3, 10, sold_before=6)])
    accounting = Accounting.of(recall(), progress)
    assert (accounting.accounted, accounting.expected) == (9, 10)
    assert not accounting.complete
    with pytest.raises(CloseRefused, match=r"accounts for 9 of 10 units.*field reason"):
        accounting.check_close("RC-1", None)
    with pytest.raises(CloseRefused):
        accounting.check_close("RC-1", "   ")
    accounting.check_close("RC-1", "one unit stolen, police report 77")


def test_the_latest_report_of_a_lot_replaces_the_earlier_one() -> None:
    first = held("S1", 5, 5)
    after_disposal = QuarantinedStock(
        "RC-1", "S1", "L.1", 0, offset=9, received=5, disposed=5, sold_before_recall=0
    )
    accounting = Accounting.of(recall(), Progress.of(quarantine=[first, after_disposal]))
    assert (accounting.quarantined, accounting.disposed, accounting.accounted) == (0, 5, 5)
    assert accounting.complete


def test_a_recall_nothing_was_reported_of_is_not_complete() -> None:
    accounting = Accounting.of(recall(), Progress.of())
    assert (accounting.accounted, accounting.expected) == (0, 0)
    assert not accounting.complete


def test_reports_without_the_lots_account_count_nothing_expected() -> None:
    # stock-quarantined from before the account was reported: a total, nothing more.
    old = QuarantinedStock("RC-1", "S1", "L.1", 4)
    accounting = Accounting.of(recall(), Progress.of(quarantine=[old]))
    assert (accounting.expected, accounting.quarantined) == (0, 4)


def test_the_lots_account_comes_from_stock_quarantined() -> None:
    event = StockQuarantined(
        sku="YOG-1",
        recall_id="RC-1",
        location="S1",
        lot_code="L.1",
        quantity=2,
        received=9,
        disposed=3,
        sold_before_recall=4,
    )
    line = QuarantinedStock.from_event(event, stream="p0", offset=1, at=NOW)
    assert (line.received, line.disposed, line.sold_before_recall) == (9, 3, 4)


def test_a_lot_recall_of_a_serial_product_is_accounted_by_the_registry() -> None:
    # Stock's lot figures may disagree with the units (a serial sold after the recall without
    # its lot is booked outside the lot): the registry knows each unit.
    chunk = UnitsChunk("RC-1", 1, 2, {UnitStatus.IN_STOCK.value: 12, UnitStatus.SOLD.value: 3})
    progress = Progress.of(
        quarantine=[held("S1", 12, 15, sold_before=3)],
        chunks=[chunk],
        flagged=[sold_after("T-9", 1)],
    )
    accounting = Accounting.of(recall(), progress)
    assert accounting.basis is AccountingBasis.SERIALS
    assert (accounting.accounted, accounting.expected) == (15, 15)
    assert not accounting.complete  # chunk 2 of 2 has not arrived
    last = UnitsChunk("RC-1", 2, 2, {UnitStatus.RETURNED.value: 1})
    done = Accounting.of(recall(), Progress.of(chunks=[chunk, last]))
    assert (done.accounted, done.expected, done.complete) == (16, 16, True)


def test_a_recall_of_serials_counts_the_units_the_registry_placed() -> None:
    chunk = UnitsChunk(
        "RC-1",
        1,
        1,
        {UnitStatus.IN_STOCK.value: 1, UnitStatus.SOLD.value: 1},
        unknown_serials=("SN-3",),
    )
    accounting = Accounting.of(
        recall(lot_codes=(), serials=("SN-1", "SN-2", "SN-3")), Progress.of(chunks=[chunk])
    )
    assert accounting.basis is AccountingBasis.SERIALS
    assert (accounting.accounted, accounting.expected) == (2, 3)
    assert not accounting.complete


def test_units_a_count_missed_or_written_off_are_expected_and_not_accounted_for() -> None:
    # The registry's answer: 5 units, of which a count missed one and one was stolen; two
    # disposed of (destroyed, sent back) are accounted for, as stock's disposed units are.
    chunk = UnitsChunk(
        "RC-1",
        1,
        1,
        {
            UnitStatus.IN_STOCK.value: 1,
            UnitStatus.MISSING.value: 1,
            UnitStatus.WRITTEN_OFF.value: 1,
            UnitStatus.DESTROYED.value: 1,
            UnitStatus.RETURNED_TO_SUPPLIER.value: 1,
        },
    )
    accounting = Accounting.of(recall(), Progress.of(chunks=[chunk]))
    assert accounting.basis is AccountingBasis.SERIALS
    assert (accounting.accounted, accounting.expected) == (3, 5)
    assert not accounting.complete
