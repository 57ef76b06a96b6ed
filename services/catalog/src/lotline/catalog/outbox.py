"""Publishes the pending `product-registered` of a product: right after a change, and from a
relay loop for whatever a crash (or a broker outage) left pending."""

from __future__ import annotations

import asyncio
from datetime import timedelta

import structlog

from lotline.catalog.domain import SOURCE
from lotline.catalog.store import ProductStore
from lotline.events import encode
from lotline.runtime.consumer import Publisher

log = structlog.get_logger(__name__)

# Enough to outlast any interleaving of writers; each round publishes a newer revision.
MAX_ROUNDS = 20


class ProductOutbox:
    def __init__(
        self,
        store: ProductStore,
        publisher: Publisher,
        *,
        relay_grace_s: float = 2.0,
    ) -> None:
        self.store = store
        self.publisher = publisher
        self.relay_grace = timedelta(seconds=relay_grace_s)

    async def publish(self, sku: str) -> bool:
        async with self.store.writing(sku):
            return await self._publish(sku)

    async def _publish(self, sku: str) -> bool:
        """Publish the product's latest revision if pending; True once it is on the topic.

        The topic is compacted, so its last record per SKU must be the latest revision. Two
        writers may publish out of order (A sends revision 2 after B sent 3); A then finds it
        cannot mark 2 published, sees 3 and sends 3 again (same event id, so consumers drop
        the copy) — the last record is 3 again.
        """
        sent = 0
        for _ in range(MAX_ROUNDS):
            record = await self.store.load(sku)
            if record is None:
                return False
            product = record.product
            if record.unpublished_revision is None and (sent == 0 or product.revision <= sent):
                return True  # published, and nothing we sent can be the stale last record
            message = encode(product.registered(), source=SOURCE, id=product.event_id)
            await self.publisher.send([message])
            sent = product.revision
            if await self.store.mark_published(sku, product.revision):
                return True
        log.warning("product_publish_unsettled", sku=sku, rounds=MAX_ROUNDS)
        return False

    async def try_publish(self, sku: str, timeout_s: float = 10.0) -> bool:
        """The immediate attempt after a change; if it fails the relay publishes later."""
        try:
            return await asyncio.wait_for(self.publish(sku), timeout_s)
        except Exception as exc:
            # Saved already: the relay publishes it, so the command itself has succeeded.
            log.warning("product_publish_deferred", sku=sku, error=repr(exc))
            return False

    async def relay(self) -> None:
        """One pass of the relay: publishes changes left pending (run periodically)."""
        for sku in await self.store.pending(self.relay_grace):
            if await self.publish(sku):
                log.info("product_relayed", sku=sku)
