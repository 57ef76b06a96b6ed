"""Wires the recall service: recalls in MongoDB, its four consumed events, the outbox relay
that broadcasts `batch-recalled`, and the console's HTTP side."""

from __future__ import annotations

from functools import partial

from lotline.events import EventType
from lotline.recall import api, trace
from lotline.recall.handlers import (
    on_item_returned,
    on_sale_flagged,
    on_stock_quarantined,
    on_units_recalled,
)
from lotline.recall.outbox import RecallOutbox
from lotline.recall.store import RecallStore
from lotline.runtime.service import Service

service = Service("recall", database="recall", http_port=8004, title="Lotline recall console")
settings = service.settings
store = RecallStore(service.db)
outbox = RecallOutbox(
    store,
    service.publisher,
    relay_grace_s=settings.outbox_relay_grace_s,
    relay_horizon_days=settings.outbox_relay_horizon_days,
)
service.on_startup(store.create_indexes)
service.consume(EventType.STOCK_QUARANTINED, partial(on_stock_quarantined, store))
service.consume(EventType.UNITS_RECALLED, partial(on_units_recalled, store))
service.consume(EventType.SALE_FLAGGED, partial(on_sale_flagged, store))
service.consume(EventType.ITEM_RETURNED, partial(on_item_returned, store))
service.periodically(outbox.relay, settings.outbox_relay_interval_s, "recall_relay")
service.http.state.recall_store = store
service.http.state.recall_outbox = outbox
api.install(service.http)
service.http.include_router(trace.router)


def main() -> None:
    service.run()
