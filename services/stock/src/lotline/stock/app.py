"""Wires the stock service: its consumers, its store, its HTTP side; `main` runs it."""

from __future__ import annotations

import asyncio

from lotline.events import EventType
from lotline.runtime.service import Service
from lotline.stock.api import router
from lotline.stock.handlers import StockHandlers
from lotline.stock.store import StockStore

OUTBOX_SWEEP_SECONDS = 5.0

service = Service("stock", database="stock", http_port=8002, title="Lotline stock")
store = StockStore(service.db)
handlers = StockHandlers(store, service.publisher)

service.on_startup(store.create_indexes)
service.consume(EventType.PRODUCT_REGISTERED, handlers.on_products_registered, dedupe=False)
service.consume(EventType.ITEM_RECEIVED, handlers.on_items_received)
service.consume(EventType.ITEM_SOLD, handlers.on_items_sold, give_up=handlers.on_give_up_sales)
service.consume(EventType.ITEM_RETURNED, handlers.on_items_returned)
service.consume(EventType.BATCH_RECALLED, handlers.on_batches_recalled)
service.http.state.stock_store = store
service.http.include_router(router)
app = service.http


async def _sweep_outboxes() -> None:
    """Events saved with a change but never confirmed sent (a crash in between) go out here."""
    while True:
        await handlers.publish_pending()
        await asyncio.sleep(OUTBOX_SWEEP_SECONDS)


service.in_background(_sweep_outboxes)


def main() -> None:
    service.run()
