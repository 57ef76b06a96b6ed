"""Each stock handler against in-memory state: the store over the in-memory database, the
write-ahead log, and the consumer's unit of work as `lotline.stock.app` wires it. Receipts,
sales (first expiry first out, and the flags: oversold, unknown or expired lot, recalled
lot), returns, recalls (quarantine, and a recall before its product), the serial registry's
refusals, reorder points, and a sale of a product nobody registered."""

from __future__ import annotations

import json
import time
from datetime import UTC, date, datetime, timedelta
from typing import Any
from uuid import NAMESPACE_URL, uuid4, uuid5

import pytest
from memory_db import MemoryDatabase, MemoryPublisher, memory_consumers

from lotline.events import (
    AdjustmentDirection,
    AdjustmentReason,
    BatchRecalled,
    CloudEvent,
    CountedLot,
    DisposalMethod,
    EventData,
    EventType,
    FlagReason,
    ItemReceived,
    ItemReturned,
    ItemSold,
    Lot,
    ProductRegistered,
    ReceiptRejected,
    RejectReason,
    ReorderPointSet,
    ReturnReason,
    StockAdjusted,
    StockCounted,
    StockDisposed,
    Tracking,
    decode,
    envelope_of,
)
from lotline.runtime.consumer import BatchHandler, Delivery, GiveUp
from lotline.runtime.owned import OwnedState
from lotline.runtime.settings import Settings
from lotline.runtime.wal import WriteAheadLog
from lotline.stock.handlers import REGISTRY_SOURCE, StockHandlers
from lotline.stock.store import StockStore

SOLD_AT = datetime(2026, 11, 30, 12, 0, tzinfo=UTC)
ISSUED_AT = datetime(2026, 11, 30, 15, 0, tzinfo=UTC)
AFTER_RECALL = ISSUED_AT + timedelta(days=1)


class Stock:
    """The stock service's consumers over in-memory state; `send` is one batch of a topic."""

    def __init__(self) -> None:
        self.db = MemoryDatabase()
        self.publisher = MemoryPublisher()
        self.settings = Settings(consumer_retry_backoff_s=1e-6, consumer_retry_backoff_max_s=1e-6)
        owned = OwnedState()
        self.wal = WriteAheadLog(self.db, self.publisher)  # type: ignore[arg-type]
        self.store = StockStore(self.db, owned, self.wal)  # type: ignore[arg-type]
        handlers = StockHandlers(self.store, self.settings)
        # As lotline.stock.app registers them.
        wiring: dict[EventType, tuple[BatchHandler, GiveUp | None]] = {
            EventType.PRODUCT_REGISTERED: (handlers.on_products_registered, None),
            EventType.REORDER_POINT_SET: (handlers.on_reorder_points_set, None),
            EventType.ITEM_RECEIVED: (handlers.on_items_received, None),
            EventType.RECEIPT_REJECTED: (handlers.on_receipts_rejected, None),
            EventType.ITEM_RETURNED: (handlers.on_items_returned, None),
            EventType.BATCH_RECALLED: (handlers.on_batches_recalled, None),
            EventType.ITEM_SOLD: (handlers.on_items_sold, handlers.on_give_up_sales),
            EventType.STOCK_COUNTED: (handlers.on_stock_counted, None),
            EventType.STOCK_ADJUSTED: (handlers.on_stock_adjusted, None),
            EventType.STOCK_DISPOSED: (handlers.on_stock_disposed, None),
        }
        self.consumers = memory_consumers(
            "stock",
            wiring,
            db=self.db,
            publisher=self.publisher,
            settings=self.settings,
            owned=owned,
            wal=self.wal,
        )
        self.offsets: dict[str, int] = {}

    def delivery(self, item: EventData | CloudEvent[Any], source: str = "till") -> Delivery:
        event = item if isinstance(item, CloudEvent) else envelope_of(item, source=source)
        topic = event.type.topic
        self.offsets[topic] = self.offsets.get(topic, -1) + 1
        return Delivery(event, topic, 0, self.offsets[topic])

    async def send(
        self, *items: EventData | CloudEvent[Any], source: str = "till"
    ) -> list[Delivery]:
        """One batch of one topic; returns the events to read again (deferred)."""
        deliveries = [self.delivery(item, source) for item in items]
        return await self.apply(deliveries)

    async def apply(self, deliveries: list[Delivery]) -> list[Delivery]:
        (event_type,) = {d.event.type for d in deliveries}
        for delivery in deliveries:
            self.wal.observe(delivery.data.key, delivery.partition)
        return await self.consumers[event_type].process_deliveries(deliveries)

    async def level(self, sku: str, location: str) -> dict[str, Any]:
        """A level as any reader sees it (the HTTP side: through the log)."""
        found = [doc for doc in await self.store.levels_of_sku(sku) if doc["location"] == location]
        assert len(found) == 1, f"{sku} at {location}: {found}"
        return found[0]

    async def lots(self, sku: str, location: str) -> dict[str | None, dict[str, Any]]:
        return {lot["code"]: lot for lot in (await self.level(sku, location))["lots"]}

    def sent(self, event_type: EventType) -> list[Any]:
        return [event.data for event in self.publisher.events(event_type)]


def product(sku: str, tracking: Tracking, revision: int = 1) -> ProductRegistered:
    return ProductRegistered(sku=sku, name=sku.title(), tracking=tracking, revision=revision)


def receipt(
    sku: str,
    quantity: int,
    lot: str | None = None,
    expires_on: date | None = None,
    location: str = "S1",
    receipt_id: str = "R-1",
    serials: list[str] | None = None,
) -> ItemReceived:
    return ItemReceived(
        sku=sku,
        receipt_id=receipt_id,
        location=location,
        quantity=quantity,
        lot=Lot(code=lot, expires_on=expires_on) if lot else None,
        serials=serials,
    )


def sold(
    sku: str,
    quantity: int,
    sale_id: str = "T-1",
    lot: str | None = None,
    location: str = "S1",
    at: datetime = SOLD_AT,
) -> ItemSold:
    return ItemSold(
        sku=sku,
        sale_id=sale_id,
        line=1,
        location=location,
        quantity=quantity,
        lot_code=lot,
        customer_ref="C-7",
        sold_at=at,
    )


def recall(sku: str, *lots: str, recall_id: str = "RC-1") -> BatchRecalled:
    return BatchRecalled(
        sku=sku,
        recall_id=recall_id,
        lot_codes=list(lots),
        reason="Listeria",
        classification="I",
        issued_by="operator",
        issued_at=ISSUED_AT,
    )


def returned(
    sku: str, reason: ReturnReason, lot: str | None = None, return_id: str = "RT-1"
) -> ItemReturned:
    return ItemReturned(
        sku=sku, return_id=return_id, location="S1", quantity=1, lot_code=lot, reason=reason
    )


def on_hand(lots: dict[str | None, dict[str, Any]]) -> dict[str | None, int]:
    return {code: lot["on_hand"] for code, lot in lots.items()}


@pytest.fixture
async def stock() -> Stock:
    shop = Stock()
    await shop.send(
        product("MILK", Tracking.BATCH),
        product("SALT", Tracking.QUANTITY),
        product("PHONE", Tracking.SERIAL),
        source="lotline/catalog",
    )
    return shop


# ----------------------------------------------------------------------------------- receipts


async def test_a_receipt_books_its_lot_at_its_location_once(stock: Stock) -> None:
    first = receipt("MILK", 24, "L1", date(2027, 3, 1))
    assert await stock.send(first) == []
    # The dock sends the same receipt line again under a new envelope id: a copy.
    assert await stock.send(receipt("MILK", 24, "L1", date(2027, 3, 1))) == []
    await stock.send(receipt("MILK", 12, "L2", date(2027, 2, 1), receipt_id="R-2"))
    level = await stock.level("MILK", "S1")
    assert (level["on_hand"], level["quarantined"], level["next_expiry"]) == (36, 0, "2027-02-01")
    lots = await stock.lots("MILK", "S1")
    assert on_hand(lots) == {"L1": 24, "L2": 12}
    assert (lots["L1"]["received"], lots["L1"]["expires_on"]) == (24, "2027-03-01")
    assert "_wal" not in level
    assert level["version"] == 2  # two receipts changed it; the copy did not
    movements = await stock.store.lot_movements("MILK", "L1")
    assert [(m["kind"], m["quantity"], m["document_id"]) for m in movements] == [
        ("received", 24, "R-1")
    ]
    assert stock.publisher.sent == []  # a plain receipt emits nothing


def decoded(event_type: EventType, **data: Any) -> CloudEvent[Any]:
    """An event as a consumer decodes it from its bytes: held to its schema only, not to the
    rules a schema cannot state (those the consumer answers)."""
    envelope = {"specversion": "1.0", "id": str(uuid4()), "source": "dock", "type": event_type}
    raw = json.dumps({**envelope, "subject": data["sku"], "data": data})
    return decode(raw.encode(), event_type)


async def test_a_receipt_breaking_a_rule_its_schema_cannot_state_is_booked_nowhere(
    stock: Stock,
) -> None:
    """Serials that are not `quantity`, a lot produced after it expires: schema-valid, so
    not dead-lettered, but booked nowhere; the serial registry answers with receipt-rejected
    naming the rule (tests/unit/test_serial_handlers.py)."""
    lot = {"code": "L2", "produced_on": "2027-03-02", "expires_on": "2027-03-01"}
    received = EventType.ITEM_RECEIVED
    serials = ["IMEI-1", "IMEI-2", "IMEI-3"]
    assert (
        await stock.send(
            receipt("MILK", 24, "L1", date(2027, 3, 1)),
            decoded(received, sku="MILK", receipt_id="R-2", location="S1", quantity=6, lot=lot),
            decoded(
                received, sku="PHONE", receipt_id="R-3", location="S1", quantity=2, serials=serials
            ),
        )
        == []
    )
    assert on_hand(await stock.lots("MILK", "S1")) == {"L1": 24}
    assert await stock.store.levels_of_sku("PHONE") == []
    assert stock.publisher.sent == []  # the registry's to answer, once


async def test_a_receipt_of_a_product_not_registered_yet_waits_for_it() -> None:
    shop = Stock()
    waiting = await shop.send(receipt("NEW", 5))
    assert [d.offset for d in waiting] == [0]
    assert await shop.store.levels_of_sku("NEW") == []
    await shop.send(product("NEW", Tracking.QUANTITY), source="lotline/catalog")
    assert await shop.apply(waiting) == []  # read again from its offset
    assert (await shop.level("NEW", "S1"))["on_hand"] == 5


# -------------------------------------------------------------------------------------- sales


async def test_a_sale_without_a_lot_takes_the_first_expiring_sellable_lot_first(
    stock: Stock,
) -> None:
    await stock.send(
        receipt("MILK", 5, "LATE", date(2027, 6, 1), receipt_id="R-1"),
        receipt("MILK", 3, "SOON", date(2027, 2, 1), receipt_id="R-2"),
        receipt("MILK", 2, "OLD", date(2026, 1, 1), receipt_id="R-3"),  # expired by then
    )
    await stock.send(sold("MILK", 4))
    assert on_hand(await stock.lots("MILK", "S1")) == {"LATE": 4, "SOON": 0, "OLD": 2}
    assert stock.sent(EventType.SALE_FLAGGED) == []
    # More than the sellable lots hold: the rest is sold from no lot, and flagged.
    await stock.send(sold("MILK", 10, sale_id="T-2"))
    lots = await stock.lots("MILK", "S1")
    assert on_hand(lots) == {"LATE": 0, "SOON": 0, "OLD": 2, None: -6}
    assert (lots["LATE"]["sold"], lots["SOON"]["sold"], lots[None]["sold"]) == (5, 3, 6)
    (flag,) = stock.sent(EventType.SALE_FLAGGED)
    assert (flag.sale_id, flag.reason, flag.quantity, flag.lot_code, flag.detail) == (
        "T-2",
        FlagReason.INSUFFICIENT_STOCK,
        6,
        None,
        "sold 6 more than stock on hand at S1",
    )
    assert (flag.customer_ref, flag.location, flag.sold_at) == ("C-7", "S1", SOLD_AT)


async def test_an_oversold_quantity_item_goes_below_zero_and_is_flagged_once(stock: Stock) -> None:
    await stock.send(receipt("SALT", 3))
    sale = stock.delivery(sold("SALT", 5))
    await stock.apply([sale])
    await stock.apply([stock.delivery(sale.event)])  # redelivered: no second flag
    assert (await stock.level("SALT", "S1"))["on_hand"] == -2
    flags = stock.publisher.events(EventType.SALE_FLAGGED)
    assert [(f.data.reason, f.data.quantity) for f in flags] == [(FlagReason.INSUFFICIENT_STOCK, 2)]
    # Its id derives from the sale, so a flag sent again is recognised downstream.
    expected = uuid5(NAMESPACE_URL, f"{sale.event.dedupe_key}/SALT S1/flag/0")
    assert (flags[0].id, flags[0].source) == (str(expected), "lotline/stock")


async def test_a_scanned_lot_never_received_or_expired_is_flagged(stock: Stock) -> None:
    await stock.send(receipt("MILK", 2, "OLD", date(2026, 1, 1)))
    await stock.send(sold("MILK", 1, lot="GHOST"), sold("MILK", 1, sale_id="T-2", lot="OLD"))
    flags = stock.sent(EventType.SALE_FLAGGED)
    assert [(f.sale_id, f.reason, f.lot_code, f.detail) for f in flags] == [
        ("T-1", FlagReason.UNKNOWN_LOT, "GHOST", "lot GHOST was never received"),
        ("T-2", FlagReason.EXPIRED, "OLD", "lot OLD expired on 2026-01-01"),
    ]
    assert on_hand(await stock.lots("MILK", "S1")) == {"OLD": 1, "GHOST": -1}


async def test_a_sale_of_a_product_nobody_registered_is_flagged_when_given_up(
    stock: Stock,
) -> None:
    sale = stock.delivery(sold("GHOST-SKU", 2))
    consumer = stock.consumers[EventType.ITEM_SOLD]
    # It was first deferred longer ago than the limit (no test waits for a clock).
    consumer._deferred_since[(sale.stream, sale.offset)] = (
        time.monotonic() - stock.settings.consumer_defer_max_s
    )
    assert await stock.apply([sale]) == []
    assert [(t, h["lotline-dlq-offset"]) for t, _, _, h in stock.publisher.dead_letters] == [
        ("item-sold.dlq", "0")
    ]
    (flag,) = stock.sent(EventType.SALE_FLAGGED)
    assert (flag.sku, flag.reason, flag.quantity, flag.detail) == (
        "GHOST-SKU",
        FlagReason.UNKNOWN_SKU,
        2,
        "sku GHOST-SKU is not in the catalog; the sale went to the DLQ",
    )


# ------------------------------------------------------------------------------------ recalls


async def test_a_recall_quarantines_its_lot_everywhere_and_flags_later_sales(stock: Stock) -> None:
    await stock.send(
        receipt("MILK", 24, "L1", date(2027, 3, 1), location="S1"),
        receipt("MILK", 10, "L1", date(2027, 3, 1), location="S2"),
        receipt("MILK", 6, "L2", date(2027, 4, 1), location="S1", receipt_id="R-2"),
    )
    await stock.send(sold("MILK", 4, lot="L1"))  # before the recall was issued
    await stock.send(recall("MILK", "L1"))
    quarantined = stock.sent(EventType.STOCK_QUARANTINED)
    assert sorted(
        (q.location, q.lot_code, q.quantity, q.received, q.sold_before_recall) for q in quarantined
    ) == [("S1", "L1", 20, 24, 4), ("S2", "L1", 10, 10, 0)]
    assert {q.recall_id for q in quarantined} == {"RC-1"}
    lots = await stock.lots("MILK", "S1")
    assert (lots["L1"]["on_hand"], lots["L1"]["quarantined"], lots["L1"]["recall_id"]) == (
        0,
        20,
        "RC-1",
    )
    assert lots["L2"]["on_hand"] == 6  # another lot is not touched

    stock.publisher.clear()
    later = ISSUED_AT + timedelta(hours=1)
    await stock.send(
        sold("MILK", 1, sale_id="T-2", lot="L1", at=later),
        sold("MILK", 2, sale_id="T-3", at=later),  # no lot scanned: FEFO skips the recalled lot
    )
    (flag,) = stock.sent(EventType.SALE_FLAGGED)
    assert (flag.sale_id, flag.reason, flag.lot_code, flag.recall_id, flag.detail) == (
        "T-2",
        FlagReason.RECALLED,
        "L1",
        "RC-1",
        "lot L1 is under recall RC-1",
    )
    # The unit sold out of the quarantine lowers the recall's total there.
    assert [(q.location, q.quantity) for q in stock.sent(EventType.STOCK_QUARANTINED)] == [
        ("S1", 19)
    ]
    assert on_hand(await stock.lots("MILK", "S1")) == {"L1": 0, "L2": 4}


async def test_a_recall_before_its_product_quarantines_the_lot_on_arrival(stock: Stock) -> None:
    assert await stock.send(recall("LATE-1", "L9")) == []  # not deferred: kept
    assert stock.sent(EventType.STOCK_QUARANTINED) == []
    await stock.send(product("LATE-1", Tracking.BATCH), source="lotline/catalog")
    stored = stock.db["products"].get("LATE-1")
    assert stored is not None
    assert (stored["tracking"], stored["revision"], [r["lot_code"] for r in stored["recalls"]]) == (
        "batch",
        1,
        ["L9"],
    )
    await stock.send(
        receipt("LATE-1", 6, "L9", date(2027, 1, 1)),
        receipt("LATE-1", 4, "L8", date(2027, 1, 1), receipt_id="R-2"),
    )
    lots = await stock.lots("LATE-1", "S1")
    assert {c: (lot["on_hand"], lot["quarantined"]) for c, lot in lots.items()} == {
        "L9": (0, 6),
        "L8": (4, 0),
    }
    (quarantine,) = stock.sent(EventType.STOCK_QUARANTINED)
    assert (quarantine.lot_code, quarantine.quantity, quarantine.received) == ("L9", 6, 6)
    await stock.send(sold("LATE-1", 1, lot="L9", at=ISSUED_AT + timedelta(days=1)))
    assert [(f.reason, f.recall_id) for f in stock.sent(EventType.SALE_FLAGGED)] == [
        (FlagReason.RECALLED, "RC-1")
    ]


async def test_a_recall_redelivered_under_a_new_id_quarantines_nothing_twice(stock: Stock) -> None:
    await stock.send(receipt("MILK", 5, "L1"))
    await stock.send(recall("MILK", "L1"))
    await stock.send(recall("MILK", "L1"))
    assert (await stock.lots("MILK", "S1"))["L1"]["quarantined"] == 5
    stored = stock.db["products"].get("MILK")
    assert stored is not None
    assert len(stored["recalls"]) == 1


# ------------------------------------------------------------------------------------ returns


async def test_returns_come_back_sellable_damaged_or_quarantined(stock: Stock) -> None:
    await stock.send(
        receipt("MILK", 5, "L1", date(2027, 3, 1)),
        receipt("MILK", 5, "L2", date(2027, 3, 1), receipt_id="R-2"),
    )
    await stock.send(sold("MILK", 3, lot="L1"), sold("MILK", 2, sale_id="T-2", lot="L2"))
    await stock.send(recall("MILK", "L2"))
    stock.publisher.clear()
    await stock.send(
        returned("MILK", ReturnReason.CUSTOMER, "L1", return_id="RT-1"),
        returned("MILK", ReturnReason.DAMAGED, "L1", return_id="RT-2"),
        returned("MILK", ReturnReason.CUSTOMER, "L2", return_id="RT-3"),
    )
    await stock.send(returned("MILK", ReturnReason.CUSTOMER, "L1", return_id="RT-1"))  # a copy
    lots = await stock.lots("MILK", "S1")
    assert {c: (lot["on_hand"], lot["damaged"], lot["quarantined"]) for c, lot in lots.items()} == {
        "L1": (3, 1, 0),
        "L2": (0, 0, 4),
    }
    assert (lots["L1"]["returned"], lots["L2"]["returned"]) == (2, 1)
    assert [(q.lot_code, q.quantity) for q in stock.sent(EventType.STOCK_QUARANTINED)] == [
        ("L2", 4)
    ]


# ------------------------------------------------------------------ the registry's refusals


def rejection(
    reason: RejectReason, quantity: int, receipt_id: str = "R-1", serials: list[str] | None = None
) -> ReceiptRejected:
    return ReceiptRejected(
        sku="PHONE",
        receipt_id=receipt_id,
        location="S1",
        reason=reason,
        detail="already registered",
        serials=serials or [],
        quantity=quantity,
    )


async def test_units_the_registry_refused_leave_on_hand_once(stock: Stock) -> None:
    await stock.send(receipt("PHONE", 3, serials=["IMEI-1", "IMEI-2", "IMEI-3"]))
    refusal = rejection(RejectReason.DUPLICATE_SERIAL, 2, serials=["IMEI-1", "IMEI-2"])
    await stock.send(refusal, source=REGISTRY_SOURCE)
    await stock.send(refusal, source=REGISTRY_SOURCE)  # re-derived under a new id
    # Not the registry's refusal of units: the receiving desk's business, not stock's.
    await stock.send(rejection(RejectReason.TRACKING_MISMATCH, 1), source=REGISTRY_SOURCE)
    await stock.send(rejection(RejectReason.MISSING_SERIALS, 1), source="someone-else")
    level = await stock.level("PHONE", "S1")
    assert (level["on_hand"], level["refused"]) == (1, 2)
    assert [(r["receipt_id"], r["quantity"], r["pending"]) for r in level["refusals"]] == [
        ("R-1", 2, False)
    ]


async def test_a_refusal_before_its_receipt_waits_for_it(stock: Stock) -> None:
    await stock.send(
        rejection(RejectReason.MISSING_SERIALS, 4, receipt_id="R-9"), source=REGISTRY_SOURCE
    )
    level = await stock.level("PHONE", "S1")
    assert (level["on_hand"], level["refused"]) == (0, 0)
    assert [(r["receipt_id"], r["pending"]) for r in level["refusals"]] == [("R-9", True)]
    await stock.send(receipt("PHONE", 4, receipt_id="R-9"))
    level = await stock.level("PHONE", "S1")
    assert (level["on_hand"], level["refused"]) == (0, 4)
    assert [(r["receipt_id"], r["pending"]) for r in level["refusals"]] == [("R-9", False)]


# ----------------------------------------------------------------------------- reorder points


async def test_a_crossing_below_the_reorder_point_is_reported_once(stock: Stock) -> None:
    await stock.send(receipt("SALT", 6))
    await stock.send(
        ReorderPointSet(sku="SALT", location="S1", reorder_point=5, set_at=SOLD_AT),
        source="store-ops",
    )
    assert stock.sent(EventType.STOCK_LOW) == []
    await stock.send(sold("SALT", 2))
    await stock.send(sold("SALT", 1, sale_id="T-2"))
    lows = stock.sent(EventType.STOCK_LOW)
    assert [(low.on_hand, low.reorder_point, low.cause) for low in lows] == [(4, 5, "item-sold")]
    assert (await stock.level("SALT", "S1"))["low"] is True


# ------------------------------------------------------------------------- failed commits


@pytest.mark.parametrize("after_write", [False, True])
async def test_a_sale_retried_after_a_failed_commit_counts_once(
    stock: Stock, after_write: bool
) -> None:
    from pymongo.errors import AutoReconnect

    await stock.send(receipt("SALT", 1))
    stock.db.fail_next("wal", "insert_many", AutoReconnect("lost"), after_write=after_write)
    await stock.send(sold("SALT", 3))
    assert (await stock.level("SALT", "S1"))["on_hand"] == -2
    flags = stock.sent(EventType.SALE_FLAGGED)
    assert [(f.reason, f.quantity) for f in flags] == [(FlagReason.INSUFFICIENT_STOCK, 2)]
    entries = [doc for doc in stock.db["wal"].documents() if "p" in doc]  # not checkpoints
    assert len(entries) == 3  # the product, the receipt and the sale, once each


async def test_movements_of_one_millisecond_keep_the_order_they_were_applied_in(
    stock: Stock,
) -> None:
    """Stored times keep milliseconds, so a sale made in the receipt's millisecond ties with
    it: the trace keeps the order the two were applied in, not their ids' order."""
    at = datetime(2026, 12, 2, 9, 0, 0, 123000, tzinfo=UTC)
    await stock.send(receipt("MILK", 3, "L1").model_copy(update={"received_at": at}))
    for sale_id in ["T-9", "T-0", "T-5"]:
        await stock.send(sold("MILK", 1, sale_id=sale_id, lot="L1", at=at))
    movements = await stock.store.lot_movements("MILK", "L1")
    assert [(m["kind"], m["document_id"]) for m in movements] == [
        ("received", "R-1"),
        ("sold", "T-9"),
        ("sold", "T-0"),
        ("sold", "T-5"),
    ]


async def test_a_lots_trace_holds_written_and_pending_movements_in_order(stock: Stock) -> None:
    await stock.send(receipt("MILK", 5, "L1", date(2027, 3, 1)))
    await stock.wal.materialize()  # the receipt's changes are written out
    later = datetime.now(UTC)  # after the receipt's time, its envelope's
    await stock.send(sold("MILK", 2, lot="L1", at=later))  # the sale's are still in the log
    movements = await stock.store.lot_movements("MILK", "L1")
    assert [(m["kind"], m["quantity"], m["document_id"]) for m in movements] == [
        ("received", 5, "R-1"),
        ("sold", 2, "T-1"),
    ]
    assert all(m["at"].tzinfo is not None for m in movements)


# -------------------------------------------------------------------- the store's operations


async def test_a_count_an_adjustment_and_a_disposal_each_apply_once(stock: Stock) -> None:
    await stock.send(
        receipt("MILK", 10, "L1", date(2027, 3, 1)),
        receipt("MILK", 5, "L2", date(2027, 2, 1), receipt_id="R-2"),
    )
    count = StockCounted(
        sku="MILK",
        count_id="C-1",
        location="S1",
        lots=[CountedLot(lot_code="L1", quantity=8)],
        counted_at=SOLD_AT,
    )
    await stock.send(count, source="store-ops")
    await stock.send(count, source="store-ops")  # resent under a new id
    lots = await stock.lots("MILK", "S1")
    assert {c: (lot["on_hand"], lot["variance"]) for c, lot in lots.items()} == {
        "L1": (8, -2),
        "L2": (0, -5),  # not named by the count: not found
    }
    write_off = StockAdjusted(
        sku="MILK",
        adjustment_id="A-1",
        location="S1",
        quantity=3,
        direction=AdjustmentDirection.OUT,
        reason=AdjustmentReason.DAMAGED,
        adjusted_at=SOLD_AT,
    )
    await stock.send(write_off, write_off, source="store-ops")  # twice in one batch
    lots = await stock.lots("MILK", "S1")
    assert (lots["L1"]["on_hand"], lots["L1"]["adjusted_out"], lots["L2"]["on_hand"]) == (5, 3, 0)
    await stock.send(recall("MILK", "L1"))
    stock.publisher.clear()
    disposal = StockDisposed(
        sku="MILK",
        disposal_id="D-1",
        location="S1",
        lot_code="L1",
        quantity=2,
        method=DisposalMethod.DESTROYED,
        reference="CERT-1",
        recall_id="RC-1",
        disposed_at=AFTER_RECALL,
    )
    await stock.send(disposal, source="store-ops")
    await stock.send(disposal, source="store-ops")
    lots = await stock.lots("MILK", "S1")
    assert (lots["L1"]["quarantined"], lots["L1"]["disposed"], lots["L1"]["on_hand"]) == (3, 2, 0)
    assert [
        (q.lot_code, q.quantity, q.disposed) for q in stock.sent(EventType.STOCK_QUARANTINED)
    ] == [("L1", 3, 2)]


async def test_store_operations_breaking_a_rule_their_schema_cannot_state_apply_by_quantity(
    stock: Stock,
) -> None:
    """Schema-valid, so not dead-lettered: stock books units, so a count naming a lot twice
    adds them up, and the serials of a count or an adjustment (not as many as its units) are
    the serial registry's to answer; stock applies the quantities."""
    await stock.send(receipt("PHONE", 4, "L1", date(2027, 3, 1)))
    count = decoded(
        EventType.STOCK_COUNTED,
        sku="PHONE",
        count_id="C-1",
        location="S1",
        lots=[{"lot_code": "L1", "quantity": 2}, {"lot_code": "L1", "quantity": 1}],
        serials=["IMEI-1"],
        counted_at=SOLD_AT.isoformat(),
    )
    write_off = decoded(
        EventType.STOCK_ADJUSTED,
        sku="PHONE",
        adjustment_id="A-1",
        location="S1",
        quantity=1,
        direction="out",
        reason="damaged",
        serials=["IMEI-1", "IMEI-2"],
        adjusted_at=SOLD_AT.isoformat(),
    )
    assert await stock.send(count, source="store-ops") == []
    assert on_hand(await stock.lots("PHONE", "S1")) == {"L1": 3}
    assert await stock.send(write_off, source="store-ops") == []
    assert on_hand(await stock.lots("PHONE", "S1")) == {"L1": 2}
    assert stock.publisher.dead_letters == []


# ------------------------------------------------------------------- queries on other fields


async def test_expiring_and_low_levels_cover_written_and_pending_levels(stock: Stock) -> None:
    await stock.send(receipt("MILK", 4, "SOON", date(2027, 1, 10), location="S1"))
    await stock.send(
        ReorderPointSet(sku="MILK", location="S1", reorder_point=5, set_at=SOLD_AT),
        source="store-ops",
    )
    await stock.wal.materialize()  # S1's level is written out
    await stock.send(receipt("MILK", 2, "SOON", date(2027, 1, 10), location="S2"))  # pending
    await stock.send(receipt("MILK", 9, "LATER", date(2027, 6, 1), location="S2", receipt_id="R-2"))
    rows = await stock.store.expiring_lots(date(2027, 1, 31))
    assert [(r["location"], r["lot_code"], r["on_hand"]) for r in rows] == [
        ("S1", "SOON", 4),
        ("S2", "SOON", 2),
    ]
    assert [r["location"] for r in await stock.store.expiring_lots(date(2027, 1, 31), "S2")] == [
        "S2"
    ]
    low = await stock.store.low_levels()
    assert [(doc["location"], doc["on_hand"], doc["reorder_point"]) for doc in low] == [
        ("S1", 4, 5)
    ]
