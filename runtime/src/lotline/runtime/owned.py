"""In-memory copies of the documents this instance is the only writer of.

Every event of a SKU reaches one instance of a service (co-partitioned topics, range
assignor), which applies one batch at a time: while it holds the SKU's partitions, what it
last wrote is what the database holds. So it may keep what it read and wrote in memory and
skip reading it again: at thousands of events a second, those reads are most of the work.

The copies are dropped whenever that reasoning may not hold:
- the partitions move (a rebalance: another instance may write them meanwhile);
- a batch fails half-way (memory may hold changes the database never got).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

import structlog
from aiokafka import ConsumerRebalanceListener, TopicPartition

log = structlog.get_logger(__name__)


class OwnedState:
    """The caches of one service instance, all dropped together."""

    def __init__(self) -> None:
        self._caches: list[MutableMapping[Any, Any]] = []

    def cache(self) -> dict[Any, Any]:
        """A new cache, dropped with the others."""
        cache: dict[Any, Any] = {}
        self._caches.append(cache)
        return cache

    def forget(self, why: str) -> None:
        if any(self._caches):
            log.info("owned_state_forgotten", why=why)
        for cache in self._caches:
            cache.clear()


class ForgetOnRebalance(ConsumerRebalanceListener):  # type: ignore[misc]
    """Drops the owned state whenever partitions are revoked or assigned; `on_revoke` lets
    other holders of a partition's state (the write-ahead log) give it up first, and
    `on_assign` lets them take it over (the log restores the partitions' entries at once:
    a partition no event reaches afterwards would otherwise keep them unwritten)."""

    def __init__(
        self,
        state: OwnedState,
        on_revoke: Callable[[set[int]], Awaitable[None]] | None = None,
        on_assign: Callable[[set[int]], Awaitable[None]] | None = None,
    ) -> None:
        self._state = state
        self._on_revoke = on_revoke
        self._on_assign = on_assign

    async def on_partitions_revoked(self, revoked: list[TopicPartition]) -> None:
        if self._on_revoke is not None:
            await self._on_revoke({tp.partition for tp in revoked})
        self._state.forget("partitions revoked")

    async def on_partitions_assigned(self, assigned: list[TopicPartition]) -> None:
        self._state.forget("partitions assigned")
        if self._on_assign is not None:
            try:
                # Within the rebalance: no revocation can come before it is done.
                await self._on_assign({tp.partition for tp in assigned})
            except Exception as exc:  # the first batch of each partition restores it then
                log.warning("partitions_not_restored", error=repr(exc))
