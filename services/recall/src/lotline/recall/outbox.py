"""Publishes each recall's pending `batch-recalled`: right after it is issued, and from a
relay loop for whatever a crash (or a broker outage) left pending. A republish carries the
same event id, so consumers apply the recall once."""

from __future__ import annotations

import asyncio
from datetime import timedelta

import structlog

from lotline.recall.store import RecallStore
from lotline.runtime.consumer import Publisher

log = structlog.get_logger(__name__)


class RecallOutbox:
    def __init__(
        self,
        store: RecallStore,
        publisher: Publisher,
        *,
        relay_grace_s: float = 2.0,
        relay_horizon_days: float = 30.0,
    ) -> None:
        self.store = store
        self.publisher = publisher
        self.relay_grace = timedelta(seconds=relay_grace_s)
        self.relay_horizon = timedelta(days=relay_horizon_days)

    async def publish(self, recall_id: str) -> bool:
        """Send the recall's broadcast if still pending, then mark it sent."""
        message = await self.store.pending_broadcast(recall_id)
        if message is None:
            return True
        await self.publisher.send([message])
        await self.store.mark_broadcast(recall_id, str(message.event.id))
        log.info("recall_broadcast", recall_id=recall_id, event_id=str(message.event.id))
        return True

    async def try_publish(self, recall_id: str, timeout_s: float = 10.0) -> bool:
        """The immediate attempt after issuing; if it fails the relay sends it later."""
        try:
            return await asyncio.wait_for(self.publish(recall_id), timeout_s)
        except Exception as exc:
            # Saved already: the relay publishes it, so the command itself has succeeded.
            log.warning("recall_broadcast_deferred", recall_id=recall_id, error=repr(exc))
            return False

    async def relay(self) -> None:
        """One pass of the relay: sends broadcasts left pending (run periodically)."""
        for recall_id in await self.store.waiting_broadcasts(self.relay_grace, self.relay_horizon):
            await self.publish(recall_id)
