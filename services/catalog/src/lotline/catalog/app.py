"""Wires the catalog: products in MongoDB, `item-received` in, `product-registered` out, HTTP.

The catalog consumes `item-received` (DESIGN.md lists it as consuming nothing; the issue
"changing a product's tracking mode once stock exists is refused" wins): it may not read the
stock service's database, so it keeps its own record of which SKUs have stock.
"""

from __future__ import annotations

from functools import partial

from lotline.catalog import api
from lotline.catalog.handlers import on_item_received
from lotline.catalog.store import ProductStore
from lotline.events import EventType
from lotline.runtime.auth import Access, TokenConfigError
from lotline.runtime.service import Service

service = Service("catalog", database="catalog", http_port=8001, title="Lotline catalog")
store = ProductStore(service.db, service.wal)
outbox = service.relay(store, "product")
service.on_startup(store.create_indexes)
service.consume(EventType.ITEM_RECEIVED, partial(on_item_received, store))
service.http.state.product_store = store
service.http.state.product_outbox = outbox
try:
    # Who may change products (LOTLINE_TOKENS); without tokens, nobody may.
    service.http.state.access = Access.from_env("catalog")
except TokenConfigError as error:
    raise SystemExit(f"lotline-catalog: {error}") from None
api.install(service.http)


async def _say_how_changes_are_authorized() -> None:
    if not service.http.state.access.people.configured:
        service.log.warning("no_tokens", detail=service.http.state.access.no_tokens)


service.on_startup(_say_how_changes_are_authorized)


def main() -> None:
    service.run()
