"""The catalog learns which SKUs have stock from `item-received` (its tracking mode is then
frozen), through the unit of work like every consumer: only a receipt that was booked
counts, the first one wins, a copy is dropped, and every reader sees it once committed,
over the in-memory database."""

from __future__ import annotations

import json
from functools import partial
from typing import Any

from memory_db import MemoryDatabase, MemoryPublisher, memory_consumers

from lotline.catalog.handlers import on_item_received
from lotline.catalog.store import RECEIPTS, ProductStore
from lotline.events import EventType, decode
from lotline.runtime.consumer import Delivery
from lotline.runtime.owned import OwnedState
from lotline.runtime.settings import Settings
from lotline.runtime.wal import WriteAheadLog


def delivery(offset: int, event_id: str | None = None, **data: Any) -> Delivery:
    raw = {
        "specversion": "1.0",
        "id": event_id or f"e-{offset}",
        "source": "dock",
        "type": "item-received",
        "subject": data["sku"],
        "time": "2026-11-22T09:30:00Z",
        "data": data,
    }
    event = decode(json.dumps(raw).encode(), EventType.ITEM_RECEIVED)
    return Delivery(event, "item-received", 0, offset)


class Catalog:
    """The catalog's consumer as lotline.catalog.app wires it, over in-memory state."""

    def __init__(self) -> None:
        self.db = MemoryDatabase()
        self.wal = WriteAheadLog(self.db, MemoryPublisher())  # type: ignore[arg-type]
        self.store = ProductStore(self.db, self.wal)  # type: ignore[arg-type]
        handler = partial(on_item_received, self.store)
        (self.consumer,) = memory_consumers(
            "catalog",
            {EventType.ITEM_RECEIVED: (handler, None)},
            db=self.db,
            publisher=MemoryPublisher(),
            settings=Settings(),
            owned=OwnedState(),
            wal=self.wal,
        ).values()

    async def send(self, *deliveries: Delivery) -> None:
        for item in deliveries:
            self.wal.observe(item.data.key, item.partition)
        assert await self.consumer.process_deliveries(list(deliveries)) == []

    def reader(self) -> ProductStore:
        """Another instance's store: it reads through the log, owning nothing."""
        return ProductStore(self.db, WriteAheadLog(self.db))  # type: ignore[arg-type]


async def test_a_receipt_booked_nowhere_does_not_freeze_the_tracking_mode() -> None:
    """Serials that are not `quantity`: schema-valid, so decoded, but booked nowhere (the
    serial registry rejects it), so the product still has no stock."""
    catalog = Catalog()
    await catalog.send(
        delivery(0, sku="PHONE", receipt_id="R-1", location="S1", quantity=2, serials=["A"]),
        delivery(1, sku="SALT", receipt_id="R-2", location="S1", quantity=2),
    )
    assert await catalog.store.first_receipt("PHONE") is None
    assert await catalog.store.first_receipt("SALT") == "R-2"


async def test_the_first_receipt_wins_and_every_instance_reads_it_before_it_is_written_out() -> (
    None
):
    catalog = Catalog()
    await catalog.send(delivery(0, sku="SALT", receipt_id="R-1", location="S1", quantity=2))
    # Not written out yet: only the log's entry holds it, and every reader sees it there.
    assert await catalog.db[RECEIPTS].find_one({"_id": "SALT"}) is None
    assert await catalog.reader().first_receipt("SALT") == "R-1"

    await catalog.send(
        delivery(1, sku="SALT", receipt_id="R-2", location="S2", quantity=5),
        delivery(2, sku="SUGAR", receipt_id="R-3", location="S1", quantity=1),
    )
    await catalog.wal.materialize()
    stored = await catalog.db[RECEIPTS].find_one({"_id": "SALT"})
    assert stored is not None
    assert stored["receipt_id"] == "R-1"
    assert await catalog.reader().first_receipt("SUGAR") == "R-3"


async def test_a_copy_of_a_receipt_is_recognised_by_the_unit_of_work() -> None:
    catalog = Catalog()
    first = delivery(0, sku="SALT", receipt_id="R-1", location="S1", quantity=2)
    await catalog.send(first)
    before = catalog.consumer.metrics.duplicate._value.get()
    # A redelivery of the same envelope (a new offset): dropped before the handler.
    await catalog.send(Delivery(first.event, first.topic, first.partition, 7))
    assert catalog.consumer.metrics.duplicate._value.get() == before + 1
