"""Wires the serial registry: its consumers, its store, its HTTP side; `main` runs it."""

from __future__ import annotations

from lotline.events import EventType
from lotline.runtime.auth import Access, TokenConfigError
from lotline.runtime.service import Service
from lotline.serials.api import router
from lotline.serials.handlers import SerialHandlers
from lotline.serials.store import SerialStore

service = Service(
    "serial-registry", database="serials", http_port=8003, title="Lotline serial registry"
)
store = SerialStore(service.db, service.owned, service.wal)
handlers = SerialHandlers(store)


async def index_serials() -> None:
    """A registry upgraded from one without serial fingerprints indexes its units once."""
    indexed = await store.index_serials()
    if indexed is not None:
        service.log.info("serials_indexed", units=indexed)


service.on_startup(index_serials)

# The product topic is compacted and replayed in full by a new group: revisions make a
# replay harmless, so its events need no seen-events bookkeeping.
service.consume(EventType.PRODUCT_REGISTERED, handlers.on_products_registered)
service.consume(
    EventType.ITEM_RECEIVED,
    handlers.on_items_received,
    give_up=handlers.on_receipts_given_up,
)
# Topics are applied in this order within a batch (one consumer for all of them). Recalls
# before sales, as in stock: a sale in the same batch as its unit's recall is flagged
# `recalled` by both services, whenever it was made. A sale applied before its recall (in an
# earlier batch) is still flagged if it was made once the recall was issued: see
# SerialHandlers._flag_sold_under_recall.
service.consume(EventType.BATCH_RECALLED, handlers.on_batches_recalled)
# Each event is applied once by the write-ahead log's unit of work; a unit's history also
# names every event that changed it (by id and by sale or return line).
service.consume(
    EventType.ITEM_SOLD,
    handlers.on_items_sold,
    give_up=handlers.on_sales_given_up,
)
service.consume(EventType.ITEM_RETURNED, handlers.on_items_returned)
# The store's own operations after the sales and returns of their batch, as in stock: a count
# is of the shelf as the tills left it. Each applied once (and named in each unit's history).
service.consume(EventType.STOCK_COUNTED, handlers.on_stock_counted)
service.consume(EventType.STOCK_ADJUSTED, handlers.on_stock_adjusted)
service.consume(EventType.STOCK_DISPOSED, handlers.on_stock_disposed)
# Last: a claim sees the sales, returns and receipts of its batch (its unit sold, its
# replacement received).
service.consume(
    EventType.WARRANTY_CLAIMED,
    handlers.on_warranty_claims,
    give_up=handlers.on_warranty_claims_given_up,
)
# Transfers after the sales and returns of their batch, like stock: a unit sold before it
# was shipped is still seen sold.
service.consume(EventType.TRANSFER_SHIPPED, handlers.on_transfers_shipped)
service.consume(EventType.TRANSFER_RECEIVED, handlers.on_transfers_received)
service.http.state.serial_store = store
try:
    # Who may read a unit's customer (LOTLINE_TOKENS); without tokens, nobody may.
    service.http.state.access = Access.from_env("serial-registry")
except TokenConfigError as error:
    raise SystemExit(f"lotline-serials: {error}") from None
service.http.include_router(router)
app = service.http


def main() -> None:
    service.run()
