"""Remembers which events a service has applied, so a re-sent copy (new offset) changes nothing.

Redelivery of the same record is caught by each effect's own offset guard. A copy of an event
sent twice by its producer sits at another offset; it is caught here by its CloudEvents
`source` + `id`. Both copies share a key, hence a partition, so the first is always remembered
before the second is read.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import TYPE_CHECKING, Any

from pymongo.asynchronous.collection import AsyncCollection
from pymongo.errors import BulkWriteError

from lotline.runtime.mongo import find_by_ids

if TYPE_CHECKING:
    from lotline.runtime.consumer import Delivery

DUPLICATE_KEY = 11000
FAR_FUTURE = 1e18  # seconds since the epoch: "knows nothing" as stored


class Dedupe(StrEnum):
    """How a consumer recognises a re-sent copy of an event it applied (a new offset)."""

    # Look every event up in `seen_events` before applying, remember it after.
    LOOKUP = "lookup"
    # The handler recognises copies from its documents (`RecentEvents`) and asks
    # `seen_events` only for old events; the consumer remembers what was applied.
    DOCUMENT = "document"
    # Applying twice is harmless (e.g. the newest product revision wins).
    NONE = "none"


class SeenEvents:
    def __init__(self, collection: AsyncCollection[dict[str, Any]]) -> None:
        self._collection = collection

    async def unseen(self, deliveries: list[Delivery]) -> list[Delivery]:
        """The deliveries not applied before, each event once (first copy wins)."""
        first: dict[str, Delivery] = {}
        for delivery in deliveries:
            first.setdefault(delivery.event.dedupe_key, delivery)
        if not first:
            return []
        seen = await find_by_ids(self._collection, first, {"_id": 1})
        return [d for key, d in first.items() if key not in seen]

    async def remember(self, deliveries: list[Delivery]) -> None:
        docs = [
            {"_id": d.event.dedupe_key, "type": d.event.type.value, "at": d.event.time}
            for d in deliveries
        ]
        if not docs:
            return
        try:
            await self._collection.insert_many(docs, ordered=False)
        except BulkWriteError as exc:
            # Already remembered by an earlier, interrupted run of the same batch.
            if any(e.get("code") != DUPLICATE_KEY for e in exc.details.get("writeErrors", [])):
                raise


def digest(dedupe_key: str) -> str:
    """A short, stable fingerprint of an event's source + id (64 bits: collisions need
    billions of events on one document)."""
    return hashlib.blake2b(dedupe_key.encode(), digest_size=8).hexdigest()


@dataclass
class RecentEvents:
    """The events applied to one document lately, kept in the document itself.

    A re-sent copy of an event usually arrives soon after the original; looking each event
    up in `seen_events` costs a round trip per event, which at thousands of events a second
    is most of the work. A document that every event of a key passes through (a stock
    level) instead carries the fingerprints of the events it applied since `since`, and
    answers for those without a round trip. For an event older than `since` it cannot tell
    (`knows` returns None) and the caller asks `seen_events`, which holds every event.
    """

    seen: dict[str, float] = field(default_factory=dict)
    # Every event applied to the document whose time is >= since is in `seen`.
    since: float = float("-inf")

    @classmethod
    def starting(cls, now: datetime) -> RecentEvents:
        """For a document written before it kept recent events: it vouches only for events
        stamped from an hour from now on (a producer's clock may run ahead)."""
        return cls(since=now.timestamp() + 3600)

    def knows(self, dedupe_key: str, at: datetime) -> bool | None:
        """True: applied already; False: not applied; None: too old to tell from here."""
        if at.timestamp() < self.since:
            return None
        return digest(dedupe_key) in self.seen

    def add(self, dedupe_key: str, at: datetime) -> None:
        self.seen[digest(dedupe_key)] = at.timestamp()

    def prune(self, now: datetime, window_s: float, max_entries: int) -> None:
        """Forget events older than the window, and the oldest beyond `max_entries`;
        `since` moves up so that what is forgotten is looked up instead."""
        cutoff = now.timestamp() - window_s
        if len(self.seen) > max_entries:
            times = sorted(self.seen.values())
            cutoff = max(cutoff, times[len(times) - max_entries])
        if cutoff <= self.since:
            return
        self.seen = {key: at for key, at in self.seen.items() if at >= cutoff}
        self.since = cutoff

    def to_document(self) -> dict[str, Any]:
        # JSON has no infinities (FerretDB stores JSON): -inf is None, +inf a far future.
        since = None if self.since == float("-inf") else min(self.since, FAR_FUTURE)
        return {"since": since, "seen": self.seen}

    @classmethod
    def from_document(cls, doc: dict[str, Any] | None, now: datetime) -> RecentEvents:
        if doc is None:
            return cls.starting(now)
        since = doc.get("since")
        return cls(dict(doc.get("seen") or {}), float("-inf") if since is None else since)
