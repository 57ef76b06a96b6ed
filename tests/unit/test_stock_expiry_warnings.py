"""Expiry warnings through the unit of work, over in-memory state: the owner of a SKU's
partition warns once per lot and threshold, whatever the passes, the instance holding the
partition next, or a crash between the log's insert and the publish."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

from memory_db import MemoryPublisher
from test_stock_handlers import Stock, product, receipt

from lotline.events import EventType, Tracking
from lotline.runtime.dedupe import digest
from lotline.runtime.owned import OwnedState
from lotline.runtime.wal import WriteAheadLog
from lotline.stock.expiry import ExpiryWarnings, warning_event_id, warning_fact
from lotline.stock.store import StockStore

# In the past: the warnings' times (the days their thresholds were reached) are older than
# the owner's memory of applied events (72 hours) once written out, so the log's record of
# forgotten events is what answers for them.
TODAY = date(2026, 10, 1)
THRESHOLDS = (30, 7, 1)


def owning(*skus: str) -> dict[str, int]:
    return {sku: n for n, sku in enumerate(skus)}


def warnings(
    stock: Stock, owned: dict[str, int], wal: WriteAheadLog | None = None
) -> ExpiryWarnings:
    """An instance's expiry check: it holds the partitions in `owned` (SKU: partition)."""
    return ExpiryWarnings(
        stock.store,
        wal or stock.wal,
        owned.get,
        thresholds=THRESHOLDS,
        today=lambda: TODAY,
    )


def sent(publisher: MemoryPublisher) -> list[tuple[str, str, str, int, int]]:
    return sorted(
        (e.data.sku, e.data.location, e.data.lot_code, e.data.days_left, e.data.threshold_days)
        for e in publisher.events(EventType.LOT_EXPIRING)
    )


async def stocked() -> Stock:
    stock = Stock()
    await stock.send(product("MILK", Tracking.BATCH), product("CHEESE", Tracking.BATCH))
    await stock.send(
        receipt("MILK", 4, "L-05", TODAY + timedelta(days=5), receipt_id="R-1"),
        receipt("MILK", 6, "L-20", TODAY + timedelta(days=20), receipt_id="R-2"),
        receipt("MILK", 9, "L-45", TODAY + timedelta(days=45), receipt_id="R-3"),
        receipt("CHEESE", 2, "C-01", TODAY + timedelta(days=1), receipt_id="R-4"),
    )
    stock.publisher.clear()
    return stock


async def test_the_owner_warns_once_per_lot_and_threshold_however_many_passes() -> None:
    stock = await stocked()
    check = warnings(stock, owning("MILK", "CHEESE"))
    for _ in range(3):
        await check.check()
    assert sent(stock.publisher) == [
        ("CHEESE", "S1", "C-01", 1, 1),
        ("MILK", "S1", "L-05", 5, 7),
        ("MILK", "S1", "L-20", 20, 30),
    ]
    ids = {e.id for e in stock.publisher.events(EventType.LOT_EXPIRING)}
    keys = ("CHEESE S1 C-01 1", "MILK S1 L-05 7", "MILK S1 L-20 30")
    assert ids == {str(warning_event_id(key)) for key in keys}
    # A new pass on another day: the same lots reached no new threshold, nothing more.
    check.today = lambda: TODAY + timedelta(days=1)
    await check.check()
    assert len(sent(stock.publisher)) == 3


async def test_only_the_skus_of_the_partitions_an_instance_holds_are_its_to_warn_about() -> None:
    stock = await stocked()
    await warnings(stock, owning("MILK")).check()
    assert {warning[0] for warning in sent(stock.publisher)} == {"MILK"}
    await warnings(stock, {}).check()  # holds nothing (before its assignment)
    assert len(sent(stock.publisher)) == 2


async def test_the_partitions_next_owner_knows_what_was_sent_from_the_log() -> None:
    stock = await stocked()
    await warnings(stock, owning("MILK", "CHEESE")).check()
    await stock.wal.materialize()  # written out: the record is in the partitions' pages
    assert len(sent(stock.publisher)) == 3

    # Another instance takes the partitions over (a rebalance, or a restart).
    publisher = MemoryPublisher()
    wal = WriteAheadLog(stock.db, publisher)  # type: ignore[arg-type]
    stock.store = StockStore(stock.db, OwnedState(), wal)  # type: ignore[arg-type]
    await warnings(stock, owning("MILK", "CHEESE"), wal).check()
    assert sent(publisher) == []


async def test_warnings_logged_but_not_published_are_sent_by_the_next_owner() -> None:
    stock = await stocked()
    stock.publisher.fail_next(ConnectionError("the broker went away"))
    check = warnings(stock, owning("MILK", "CHEESE"))
    try:
        await check.check()
    except ConnectionError:
        pass
    else:
        raise AssertionError("the publish was to fail")
    assert sent(stock.publisher) == []

    # The instance dies; the next owner restores the partitions and publishes their events.
    publisher = MemoryPublisher()
    wal = WriteAheadLog(stock.db, publisher)  # type: ignore[arg-type]
    await wal.restore([0, 1])
    assert sent(publisher) == [
        ("CHEESE", "S1", "C-01", 1, 1),
        ("MILK", "S1", "L-05", 5, 7),
        ("MILK", "S1", "L-20", 20, 30),
    ]
    # And knows they are sent: its own pass sends none of them again.
    stock.store = StockStore(stock.db, OwnedState(), wal)  # type: ignore[arg-type]
    await warnings(stock, owning("MILK", "CHEESE"), wal).check()
    assert len(sent(publisher)) == 3


async def test_a_warning_older_than_the_owners_memory_is_found_in_what_it_forgot() -> None:
    stock = await stocked()
    check = warnings(stock, owning("MILK", "CHEESE"))
    await check.check()
    await stock.wal.materialize()
    keys = ("CHEESE S1 C-01 1", "MILK S1 L-05 7", "MILK S1 L-20 30")
    fingerprints = {digest(warning_fact(key)) for key in keys}
    # Forgotten by memory, kept in `wal_applied`: the times are older than the window.
    for partition in (0, 1):
        recent = stock.wal._recent[partition]
        assert fingerprints.isdisjoint(recent.seen)
        assert datetime.fromtimestamp(recent.since, UTC).date() > TODAY
    assert fingerprints <= {doc["_id"] for doc in stock.db["wal_applied"].documents()}
    fresh = warnings(stock, owning("MILK", "CHEESE"))  # knows nothing it sent itself
    await fresh.check()
    assert len(sent(stock.publisher)) == 3
