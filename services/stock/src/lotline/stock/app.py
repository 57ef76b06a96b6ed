"""Wires the stock service: its consumers, its store, its HTTP side; `main` runs it."""

from __future__ import annotations

from lotline.events import EventType
from lotline.runtime.auth import Access, TokenConfigError
from lotline.runtime.service import Service
from lotline.stock import trace
from lotline.stock.api import router
from lotline.stock.expiry import ExpiryWarnings
from lotline.stock.handlers import StockHandlers
from lotline.stock.store import StockStore

service = Service("stock", database="stock", http_port=8002, title="Lotline stock")
store = StockStore(service.db, service.owned, service.wal)
handlers = StockHandlers(store, service.settings)

service.on_startup(store.create_indexes)
# Within a batch, topics are applied in this order: products first, receipts before the
# sales they cover, and a recall before the sales that must be flagged by it.
service.consume(EventType.PRODUCT_REGISTERED, handlers.on_products_registered)
# A reorder point before the sales of its batch, so a sale below it is reported.
service.consume(EventType.REORDER_POINT_SET, handlers.on_reorder_points_set)
# Receipts, returns, sales and recalls are applied once each by the write-ahead log's unit of
# work (by business key: a sale line, a return line, a receipt's lot; else the event id).
service.consume(EventType.ITEM_RECEIVED, handlers.on_items_received)
# The registry's refusals of serial units right after the receipts they correct, before the
# sales that must not count on those units. One level each, like receipts; a refusal is also
# recorded per receipt, so one re-derived under a new id changes nothing either.
service.consume(EventType.RECEIPT_REJECTED, handlers.on_receipts_rejected)
service.consume(EventType.ITEM_RETURNED, handlers.on_items_returned)
service.consume(EventType.BATCH_RECALLED, handlers.on_batches_recalled)
service.consume(
    EventType.ITEM_SOLD,
    handlers.on_items_sold,
    give_up=handlers.on_give_up_sales,
)
# The store's own operations after the sales of their batch: a count is of the shelf as the
# tills left it. Each applied once by its business key (count, adjustment, disposal id).
service.consume(EventType.STOCK_COUNTED, handlers.on_stock_counted)
service.consume(EventType.STOCK_ADJUSTED, handlers.on_stock_adjusted)
service.consume(EventType.STOCK_DISPOSED, handlers.on_stock_disposed)
# Transfers last: a shipment takes what the batch's sales and counts left on the shelf.
# Each applied once by its business key (the transfer and SKU, shipped or received).
service.consume(EventType.TRANSFER_SHIPPED, handlers.on_transfers_shipped)
service.consume(EventType.TRANSFER_RECEIVED, handlers.on_transfers_received)
# Warranty claims last, after the receipts and sales of their batch (as in the registry); a
# refusal right after them, so a claim and its refusal in one batch leave nothing moved.
service.consume(EventType.WARRANTY_CLAIMED, handlers.on_warranty_claims)
service.consume(EventType.WARRANTY_CLAIM_REFUSED, handlers.on_warranty_claims_refused)
expiry_warnings = ExpiryWarnings(
    store,
    service.wal,
    service.consumer.owner_of,
    thresholds=service.settings.stock_expiry_warning_days,
)
service.periodically(
    expiry_warnings.check, service.settings.stock_expiry_check_interval_s, "expiry_check"
)
service.http.state.stock_store = store
try:
    # Who may read a sale's customer in a lot trace (LOTLINE_TOKENS); without tokens, nobody.
    service.http.state.access = Access.from_env("stock")
except TokenConfigError as error:
    raise SystemExit(f"lotline-stock: {error}") from None
service.http.include_router(router)
service.http.include_router(trace.router)
app = service.http


def main() -> None:
    service.run()
