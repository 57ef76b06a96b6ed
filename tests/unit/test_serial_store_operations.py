"""The serial registry applies a store's own operations to its units, as stock applies them to
its levels (issue 12): a count's missing and found serials, write-offs and units found, and
disposals; each in the unit's history and its lot's journal, and in a recall's answer. The
handlers run on the in-memory database through the consumer's unit of work."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from memory_db import MemoryDatabase, memory_consumers
from test_serial_handlers import Registry, product, recall, receipt, sold

from lotline.events import (
    AdjustmentDirection,
    AdjustmentReason,
    CountedLot,
    DisposalMethod,
    EventType,
    ItemReturned,
    ReturnReason,
    StockAdjusted,
    StockCounted,
    StockDisposed,
    Tracking,
    UnitsRecalled,
    UnitStatus,
)
from lotline.serials.handlers import SerialHandlers

COUNTED_AT = datetime(2026, 12, 1, 8, 0, tzinfo=UTC)
OPS = "store-ops"


class Shop(Registry):
    """The registry with the store-operation consumers `lotline.serials.app` registers."""

    def __init__(self, db: MemoryDatabase | None = None) -> None:
        super().__init__(db)
        handlers = SerialHandlers(self.store)
        any_consumer = next(iter(self.consumers.values()))
        self.consumers.update(
            memory_consumers(
                "serial-registry",
                {
                    EventType.STOCK_COUNTED: (handlers.on_stock_counted, None),
                    EventType.STOCK_ADJUSTED: (handlers.on_stock_adjusted, None),
                    EventType.STOCK_DISPOSED: (handlers.on_stock_disposed, None),
                },
                db=self.db,
                publisher=self.publisher,
                settings=self.settings,
                owned=any_consumer.owned,
                wal=self.wal,
            )
        )


@pytest.fixture
async def shop() -> Shop:
    registry = Shop()
    await registry.send(
        product("PHONE"), product("SALT", Tracking.QUANTITY), source="lotline/catalog"
    )
    await registry.send(receipt("IMEI-1", "IMEI-2", "IMEI-3", "IMEI-4"))
    return registry


def count(*serials: str, count_id: str = "C-1", location: str = "S1") -> StockCounted:
    return StockCounted(
        sku="PHONE",
        count_id=count_id,
        location=location,
        lots=[CountedLot(lot_code="L1", quantity=len(serials))],
        serials=list(serials),
        counted_at=COUNTED_AT,
    )


def adjustment(
    *serials: str,
    direction: AdjustmentDirection = AdjustmentDirection.OUT,
    reason: AdjustmentReason = AdjustmentReason.THEFT,
    adjustment_id: str = "A-1",
) -> StockAdjusted:
    return StockAdjusted(
        sku="PHONE",
        adjustment_id=adjustment_id,
        location="S1",
        quantity=len(serials),
        direction=direction,
        reason=reason,
        lot_code="L1",
        serials=list(serials),
        adjusted_at=COUNTED_AT,
    )


def disposal(
    *serials: str, method: DisposalMethod = DisposalMethod.DESTROYED, disposal_id: str = "D-1"
) -> StockDisposed:
    return StockDisposed(
        sku="PHONE",
        disposal_id=disposal_id,
        location="S1",
        lot_code="L1",
        quantity=len(serials),
        serials=list(serials),
        method=method,
        reference="CERT-88",
        recall_id="RC-1",
        disposed_at=COUNTED_AT,
    )


async def statuses(shop: Shop) -> dict[str, tuple[str, str]]:
    """Each unit of lot L1 as its lot's journal has it: (status, location)."""
    states = await shop.store.lot_states("PHONE", "L1")
    return {serial: (doc["status"], doc["location"]) for serial, doc in states.items()}


async def test_a_count_makes_the_units_it_did_not_find_missing_there_once(shop: Shop) -> None:
    await shop.send(count("IMEI-1", "IMEI-3"), source=OPS)
    await shop.send(count("IMEI-1", "IMEI-3"), source=OPS)  # resent under a new id
    assert await statuses(shop) == {
        "IMEI-1": ("in_stock", "S1"),
        "IMEI-2": ("missing", "S1"),
        "IMEI-3": ("in_stock", "S1"),
        "IMEI-4": ("missing", "S1"),
    }
    missing = await shop.unit("IMEI-2")
    assert [(e.type, e.ref, e.location) for e in missing.history[1:]] == [
        (EventType.STOCK_COUNTED, "C-1", "S1")
    ]
    assert missing.history[-1].what == "missing at S1: count C-1 did not find it"
    # A unit the count found is left as it was: no history entry for every count.
    assert len((await shop.unit("IMEI-1")).history) == 1


async def test_a_count_finds_units_missing_or_elsewhere_and_unknown_ones(shop: Shop) -> None:
    await shop.send(count("IMEI-1", count_id="C-1"), source=OPS)
    # IMEI-2 was missing at S1, turns up at S2; IMEI-9 was never received.
    await shop.send(count("IMEI-2", "IMEI-9", count_id="C-2", location="S2"), source=OPS)
    assert (await statuses(shop))["IMEI-2"] == ("in_stock", "S2")
    found = await shop.unit("IMEI-2")
    assert found.history[-1].what == "found at S2 in count C-2 (it was missing at S1)"
    unknown = await shop.unit("IMEI-9")
    assert (unknown.status, unknown.location, unknown.registered) == (
        UnitStatus.IN_STOCK,
        "S2",
        False,
    )
    # A count at S1 does not touch what is at S2.
    await shop.send(count("IMEI-1", count_id="C-3"), source=OPS)
    assert (await shop.unit("IMEI-2")).status is UnitStatus.IN_STOCK


async def test_a_count_leaves_recalled_sold_and_damaged_units_alone(shop: Shop) -> None:
    await shop.send(recall("IMEI-1"))
    await shop.send(sold("IMEI-2"))
    await shop.send(
        ItemReturned(
            sku="PHONE",
            return_id="RT-1",
            location="S1",
            quantity=1,
            serial="IMEI-2",
            reason=ReturnReason.DAMAGED,
        )
    )
    await shop.send(
        ItemReturned(
            sku="PHONE",
            return_id="RT-2",
            location="S1",
            quantity=1,
            serial="IMEI-3",
            reason=ReturnReason.CUSTOMER,
        )
    )
    await shop.send(count(count_id="C-1"), source=OPS)
    # Recalled (in quarantine) and damaged units are held apart, as stock holds them; a
    # customer's return went back on the shelf, so the count missed it.
    assert await statuses(shop) == {
        "IMEI-1": ("in_stock", "S1"),
        "IMEI-2": ("returned", "S1"),
        "IMEI-3": ("missing", "S1"),
        "IMEI-4": ("missing", "S1"),
    }


async def test_a_write_off_keeps_its_reason_and_a_unit_found_comes_back(shop: Shop) -> None:
    await shop.send(adjustment("IMEI-1", "IMEI-2"), source=OPS)
    await shop.send(adjustment("IMEI-1", "IMEI-2"), source=OPS)  # resent under a new id
    stolen = await shop.unit("IMEI-1")
    assert (stolen.status, stolen.location) == (UnitStatus.WRITTEN_OFF, "S1")
    assert [(e.type, e.ref) for e in stolen.history[1:]] == [(EventType.STOCK_ADJUSTED, "A-1")]
    assert stolen.history[-1].what == "written off at S1 (theft) in adjustment A-1"
    found = adjustment(
        "IMEI-2",
        direction=AdjustmentDirection.IN,
        reason=AdjustmentReason.FOUND,
        adjustment_id="A-2",
    )
    await shop.send(found, source=OPS)
    back = await shop.unit("IMEI-2")
    assert back.status is UnitStatus.IN_STOCK
    assert back.history[-1].what == "found at S1 in adjustment A-2 (it was written_off at S1)"
    assert (await statuses(shop))["IMEI-1"] == ("written_off", "S1")


async def test_a_disposal_destroys_or_returns_units_with_its_reference(shop: Shop) -> None:
    await shop.send(recall(lots=("L1",)))
    await shop.send(disposal("IMEI-1"), source=OPS)
    await shop.send(
        disposal("IMEI-2", method=DisposalMethod.RETURNED_TO_SUPPLIER, disposal_id="D-2"),
        source=OPS,
    )
    await shop.send(disposal("IMEI-1"), source=OPS)  # resent under a new id
    destroyed = await shop.unit("IMEI-1")
    assert destroyed.status is UnitStatus.DESTROYED
    assert destroyed.history[-1].what == (
        "destroyed from S1 in disposal D-1, reference CERT-88, for recall RC-1"
    )
    assert [e.type for e in destroyed.history].count(EventType.STOCK_DISPOSED) == 1
    assert (await shop.unit("IMEI-2")).status is UnitStatus.RETURNED_TO_SUPPLIER
    # The recall's answer counts them from the lot's journal.
    counts = await shop.store.recalled_units(
        "PHONE", (await shop.store.recall_scopes(["PHONE"]))["PHONE"][0]
    )
    assert counts.counts[UnitStatus.DESTROYED] == 1
    assert counts.counts[UnitStatus.RETURNED_TO_SUPPLIER] == 1
    assert counts.counts[UnitStatus.IN_STOCK] == 2


async def test_a_recall_answer_counts_missing_and_written_off_units(shop: Shop) -> None:
    await shop.send(count("IMEI-1", "IMEI-2", "IMEI-3"), source=OPS)
    await shop.send(adjustment("IMEI-3"), source=OPS)
    await shop.send(recall(lots=("L1",)))
    [answer] = shop.sent(EventType.UNITS_RECALLED)
    assert isinstance(answer, UnitsRecalled)
    assert {s: n for s, n in answer.counts.items() if n} == {
        UnitStatus.IN_STOCK: 2,
        UnitStatus.MISSING: 1,
        UnitStatus.WRITTEN_OFF: 1,
    }


async def test_operations_without_serials_or_of_other_products_change_no_unit(
    shop: Shop,
) -> None:
    await shop.send(
        StockCounted(
            sku="PHONE",
            count_id="C-1",
            location="S1",
            lots=[CountedLot(lot_code="L1", quantity=1)],
            counted_at=COUNTED_AT,
        ),
        StockCounted(
            sku="SALT",
            count_id="C-2",
            location="S1",
            lots=[CountedLot(quantity=1)],
            counted_at=COUNTED_AT,
        ),
        source=OPS,
    )
    assert set((await statuses(shop)).values()) == {("in_stock", "S1")}
