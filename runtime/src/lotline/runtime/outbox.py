"""The outbox of changes made by a request: saved with their events, then published.

Lotline has two ways to make a change and the events it emits durable together, by who
makes the change:
- **A partition's owner** (a consumer's batch, or a timer of that instance, like stock's
  expiry warnings) makes it one unit of work on the write-ahead log
  (`lotline.runtime.wal`): one insert, published after it, re-published by the partition's
  next owner if the owner died in between.
- **A request**, which any instance may answer (a product registered in the catalog, a
  recall issued), cannot write a partition's log, whose only writer is its owner. Its
  service saves the event inside the document the request writes, in the same single-
  document write, and this relay publishes it: right after the request's write
  (`try_publish`), and from a loop on every instance for whatever a crash or a broker
  outage left pending longer than `grace` (`relay`).

An event's id is derived from what it announces, so a publish repeated after a crash, or
by two instances at once, is a copy that consumers drop.
"""

from __future__ import annotations

import asyncio
from datetime import timedelta
from typing import Protocol

import structlog

from lotline.runtime.wal import Publishes

log = structlog.get_logger(__name__)


class SavedEvents(Protocol):
    """Where a service keeps the events its requests saved, by the key of what changed (a
    SKU, a recall id)."""

    async def waiting(self, older_than: timedelta) -> list[str]:
        """The keys whose events were saved longer than `older_than` ago, not sent yet."""
        ...

    async def flush(self, key: str, publisher: Publishes) -> bool:
        """Send the key's pending events, then mark them sent; True once none is pending."""
        ...


class Relay:
    def __init__(
        self, saved: SavedEvents, publisher: Publishes, *, grace_s: float, name: str
    ) -> None:
        self.saved = saved
        self.publisher = publisher
        self.grace = timedelta(seconds=grace_s)
        self.name = name

    async def publish(self, key: str) -> bool:
        """Send `key`'s pending events now; True once none is pending."""
        return await self.saved.flush(key, self.publisher)

    async def try_publish(self, key: str, timeout_s: float = 10.0) -> bool:
        """The attempt right after a request saved its change. The change is saved already,
        so the request has succeeded whatever happens here: if this fails, the relay
        publishes later."""
        try:
            return await asyncio.wait_for(self.publish(key), timeout_s)
        except Exception as exc:
            log.warning("publish_deferred", outbox=self.name, key=key, error=repr(exc))
            return False

    async def relay(self) -> None:
        """One pass: publish what waited longer than `grace` (run periodically)."""
        for key in await self.saved.waiting(self.grace):
            if await self.publish(key):
                log.info("relayed", outbox=self.name, key=key)
