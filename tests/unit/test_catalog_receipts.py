"""The catalog learns which SKUs have stock from `item-received` (its tracking mode is then
frozen): only a receipt that was booked counts, over the in-memory database."""

from __future__ import annotations

import json
from typing import Any

from memory_db import MemoryDatabase

from lotline.catalog.handlers import on_item_received
from lotline.catalog.store import ProductStore
from lotline.events import EventType, decode
from lotline.runtime.consumer import Delivery


def delivery(offset: int, **data: Any) -> Delivery:
    raw = {
        "specversion": "1.0",
        "id": f"e-{offset}",
        "source": "dock",
        "type": "item-received",
        "subject": data["sku"],
        "time": "2026-11-22T09:30:00Z",
        "data": data,
    }
    event = decode(json.dumps(raw).encode(), EventType.ITEM_RECEIVED)
    return Delivery(event, "item-received", 0, offset)


async def test_a_receipt_booked_nowhere_does_not_freeze_the_tracking_mode() -> None:
    """Serials that are not `quantity`: schema-valid, so decoded, but booked nowhere (the
    serial registry rejects it), so the product still has no stock."""
    store = ProductStore(MemoryDatabase())  # type: ignore[arg-type]
    await on_item_received(
        store,
        [
            delivery(0, sku="PHONE", receipt_id="R-1", location="S1", quantity=2, serials=["A"]),
            delivery(1, sku="SALT", receipt_id="R-2", location="S1", quantity=2),
        ],
    )
    assert await store.first_receipt("PHONE") is None
    assert await store.first_receipt("SALT") == "R-2"
