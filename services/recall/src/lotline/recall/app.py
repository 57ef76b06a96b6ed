"""Wires the recall service: recalls in MongoDB, its four consumed events, the outbox relay
that broadcasts `batch-recalled`, operator authentication, the HTTP API and the console."""

from __future__ import annotations

import secrets
from datetime import timedelta
from functools import partial

from lotline.events import EventType
from lotline.recall import api, console, trace
from lotline.recall.auth import AuthSettings, SessionSigner, TokenConfigError, own_tokens
from lotline.recall.handlers import (
    on_item_returned,
    on_sale_flagged,
    on_stock_quarantined,
    on_units_recalled,
)
from lotline.recall.store import RecallStore
from lotline.runtime.auth import Access
from lotline.runtime.service import Service

service = Service("recall", database="recall", http_port=8004, title="Lotline recall console")
settings = service.settings
store = RecallStore(service.db, timedelta(days=settings.outbox_relay_horizon_days))
outbox = service.relay(store, "recall")
service.on_startup(store.create_indexes)
service.consume(EventType.STOCK_QUARANTINED, partial(on_stock_quarantined, store))
service.consume(EventType.UNITS_RECALLED, partial(on_units_recalled, store))
service.consume(EventType.SALE_FLAGGED, partial(on_sale_flagged, store))
service.consume(EventType.ITEM_RETURNED, partial(on_item_returned, store))
service.http.state.recall_store = store
service.http.state.recall_outbox = outbox

auth = AuthSettings()
try:
    access = Access.from_env("recall", [own_tokens(auth)])
except TokenConfigError as error:
    raise SystemExit(f"lotline-recall: {error}") from None
service.http.state.access = access
session_secret = (
    auth.session_secret.get_secret_value().encode()
    if auth.session_secret
    else secrets.token_bytes(32)
)
service.http.state.sessions = SessionSigner(session_secret, auth.session_max_age_s)
service.http.state.session_idle_s = auth.session_idle_s
service.http.state.cookie_secure = auth.cookie_secure
api.install(service.http)
console.install(service.http)
service.http.include_router(trace.router)


async def _say_how_changes_are_authorized() -> None:
    if not access.people.configured:
        service.log.warning("no_operator_tokens", detail=access.no_tokens)
    if auth.session_secret is None:
        service.log.info(
            "console_sessions_per_process",
            detail="RECALL_SESSION_SECRET unset: console logins end when this process stops",
        )


service.on_startup(_say_how_changes_are_authorized)


def main() -> None:
    service.run()
