"""Counts, adjustments, disposals and reorder points: stock's rules and the ledger's record."""

from __future__ import annotations

from datetime import UTC, date, datetime
from typing import Any

import pytest
from pydantic import ValidationError

from lotline.events import (
    AdjustmentDirection,
    AdjustmentReason,
    CloudEvent,
    DisposalMethod,
    ReturnReason,
    StockAdjusted,
    StockCounted,
    StockDisposed,
    Tracking,
    envelope_of,
)
from lotline.stock.domain import NO_LOT, Level, Recall
from lotline.stock.ledger import MovementKind, counts_of, movements

NOW = datetime(2026, 3, 1, 12, tzinfo=UTC)


def level_with(**lots: int) -> Level:
    level = Level("MILK", "S1")
    for n, (code, quantity) in enumerate(lots.items()):
        level.receive(quantity, code, date(2026, 4, 1 + n), None)
    return level


def event(data: Any) -> CloudEvent[Any]:
    return envelope_of(data, source="tests")


def test_a_count_sets_each_lot_to_what_was_found_and_a_lot_not_named_to_zero() -> None:
    level = level_with(L1=10, L2=5)
    variances = level.count({"L1": 7})
    assert {v.lot_code: (v.booked, v.counted) for v in variances} == {"L1": (10, 7), "L2": (5, 0)}
    assert level.lots["L1"].on_hand == 7
    assert level.lots["L1"].variance == -3
    assert level.lots["L2"].on_hand == 0
    assert level.lots["L2"].variance == -5


def test_units_counted_without_a_lot_fill_the_other_lots_first_expiry_first() -> None:
    level = level_with(L1=4, L2=4)
    level.count({NO_LOT: 6})
    assert (level.lots["L1"].on_hand, level.lots["L2"].on_hand) == (4, 2)
    level.count({NO_LOT: 10})
    # Beyond what the books hold in lots, the units found stay without a lot.
    assert (level.lots["L1"].on_hand, level.lots["L2"].on_hand) == (4, 2)
    assert level.lots[NO_LOT].on_hand == 4
    assert level.on_hand == 10


def test_a_count_leaves_quarantined_stock_alone() -> None:
    level = level_with(L1=5)
    level.quarantine_lot("L1", "RC-1")
    level.count({"L1": 0})
    assert level.lots["L1"].quarantined == 5
    assert level.lots["L1"].on_hand == 0


def test_an_adjustment_out_takes_the_named_lot_or_first_expiry_first() -> None:
    level = level_with(L1=3, L2=5)
    picks = level.adjust(4, AdjustmentDirection.OUT, None)
    assert [(p.lot_code, p.quantity) for p in picks] == [("L1", 3), ("L2", 1)]
    level.adjust(2, AdjustmentDirection.OUT, "L2")
    level.adjust(1, AdjustmentDirection.IN, "L2")
    assert level.lots["L2"].on_hand == 3
    assert level.lots["L2"].adjusted_out == 3
    assert level.lots["L2"].adjusted_in == 1


def test_a_disposal_takes_quarantine_first_and_reports_the_recalls_new_total() -> None:
    level = level_with(L1=5)
    level.quarantine_lot("L1", "RC-1")
    quarantine = level.dispose(3, "L1")
    assert quarantine is not None
    assert (quarantine.recall_id, quarantine.quantity) == ("RC-1", 2)
    assert level.lots["L1"].disposed == 3
    # Beyond what is held apart, destroyed units were on the shelf after all.
    level.return_item(1, "L1", ReturnReason.DAMAGED, None)
    level.lots["L1"].on_hand = 4
    level.dispose(5, "L1")
    assert (level.lots["L1"].quarantined, level.lots["L1"].damaged) == (0, 0)
    assert level.lots["L1"].on_hand == 2
    assert level.lots["L1"].disposed == 8


def test_sales_before_a_recall_are_counted_as_such() -> None:
    level = level_with(L1=5)
    recall = Recall("RC-1", "L1", NOW)
    level.sell(2, "L1", Tracking.BATCH, NOW, {})
    level.quarantine_lot("L1", "RC-1")
    assert level.lots["L1"].sold_before_recall == 2
    earlier = NOW.replace(hour=9)
    level.sell(1, "L1", Tracking.BATCH, earlier, {"L1": recall})
    assert level.lots["L1"].sold_before_recall == 3


def test_low_stock_is_reported_once_per_crossing() -> None:
    level = level_with(L1=10)
    assert not level.crossed_below_reorder_point()  # no reorder point: never low
    level.set_reorder_point(5)
    assert not level.crossed_below_reorder_point()
    level.adjust(6, AdjustmentDirection.OUT, None)
    assert level.crossed_below_reorder_point()
    assert level.low
    level.adjust(1, AdjustmentDirection.OUT, None)
    assert not level.crossed_below_reorder_point(), "still below: not a new crossing"
    level.adjust(3, AdjustmentDirection.IN, "L1")
    assert not level.crossed_below_reorder_point()
    assert not level.low
    level.adjust(2, AdjustmentDirection.OUT, None)
    assert level.crossed_below_reorder_point()
    level.set_reorder_point(None)
    assert not level.crossed_below_reorder_point()
    assert not level.low


def test_a_level_keeps_its_operations_through_its_document() -> None:
    level = level_with(L1=5)
    level.set_reorder_point(3)
    level.count({"L1": 2})
    level.crossed_below_reorder_point()
    level.dispose(1, "L1")
    again = Level.from_document(level.to_document())
    assert again == level


def test_the_ledger_records_a_count_with_its_variance_even_when_it_matched() -> None:
    level = level_with(L1=10, L2=5)
    before = counts_of(level)
    count = StockCounted(
        sku="MILK",
        count_id="C-1",
        location="S1",
        lots=[{"lot_code": "L1", "quantity": 10}, {"lot_code": "L2", "quantity": 4}],
        counted_at=NOW,
    )
    level.count({"L1": 10, "L2": 4})
    found = {m.lot_code: m for m in movements(event(count), before, level)}
    assert {code: (m.kind, m.quantity, m.variance) for code, m in found.items()} == {
        "L1": (MovementKind.COUNTED, 10, 0),
        "L2": (MovementKind.COUNTED, 4, -1),
    }
    assert found["L2"].document_type == "count"
    assert found["L2"].document_id == "C-1"


def test_the_ledger_records_adjustments_and_disposals_with_their_reasons() -> None:
    level = level_with(L1=10)
    level.quarantine_lot("L1", "RC-1")
    adjustment = StockAdjusted(
        sku="MILK",
        adjustment_id="A-1",
        location="S1",
        quantity=2,
        direction=AdjustmentDirection.IN,
        reason=AdjustmentReason.FOUND,
        lot_code="L1",
        adjusted_at=NOW,
    )
    before = counts_of(level)
    level.adjust(2, AdjustmentDirection.IN, "L1")
    (moved,) = movements(event(adjustment), before, level)
    assert (moved.kind, moved.quantity, moved.adjust_reason, moved.direction) == (
        MovementKind.ADJUSTED,
        2,
        "found",
        "in",
    )
    disposal = StockDisposed(
        sku="MILK",
        disposal_id="D-1",
        location="S1",
        lot_code="L1",
        quantity=10,
        method=DisposalMethod.DESTROYED,
        reference="CERT-9",
        disposed_at=NOW,
    )
    before = counts_of(level)
    level.dispose(10, "L1")
    (moved,) = movements(event(disposal), before, level)
    assert (moved.kind, moved.quantity, moved.reference, moved.recall_id) == (
        MovementKind.DISPOSED,
        10,
        "CERT-9",
        "RC-1",
    )


def test_the_contract_refuses_a_count_whose_serials_do_not_match_its_units() -> None:
    with pytest.raises(ValidationError, match="serials lists 1 serials but lots count 2"):
        StockCounted(
            sku="PHONE",
            count_id="C-1",
            location="S1",
            lots=[{"quantity": 2}],
            serials=["A"],
            counted_at=NOW,
        )
    with pytest.raises(ValidationError, match="not distinct"):
        StockCounted(
            sku="PHONE",
            count_id="C-1",
            location="S1",
            lots=[{"lot_code": "L1", "quantity": 1}, {"lot_code": "L1", "quantity": 1}],
            counted_at=NOW,
        )
