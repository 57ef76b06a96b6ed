"""How a consumer tells a re-sent copy of an event from a new one.

Every consumer answers "applied already?" in one place, the unit of work
(`lotline.runtime.consumer`, on the write-ahead log of `lotline.runtime.wal`): the log
records the events a batch applied in the same insert as the batch's changes, and each
partition's owner remembers the recent ones in memory (`RecentEvents`); what memory forgot
is looked up by _id in `wal_applied`. Both copies of an event share a key, hence a
partition, so the first is always recorded before the second is read.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

FAR_FUTURE = 1e18  # seconds since the epoch: "knows nothing" as stored


def digest(dedupe_key: str) -> str:
    """A short, stable fingerprint of an event's source + id (64 bits: collisions need
    billions of events on one document)."""
    return hashlib.blake2b(dedupe_key.encode(), digest_size=8).hexdigest()


@dataclass
class RecentEvents:
    """The events applied lately (by one partition's owner: `lotline.runtime.wal`).

    A re-sent copy of an event usually arrives soon after the original; looking each event
    up costs a round trip per event, which at thousands of events a second is most of the
    work. So the fingerprints of the events applied since `since` are held in memory, and
    answer for those without a round trip. For an event older than `since` that is not held
    it cannot tell (`knows` returns None) and the caller looks it up where the forgotten
    ones went.
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
        return self.knows_digest(digest(dedupe_key), at.timestamp())

    def knows_digest(self, fingerprint: str, at: float) -> bool | None:
        if fingerprint in self.seen:
            return True
        return None if at < self.since else False

    def add(self, dedupe_key: str, at: datetime) -> None:
        self.seen[digest(dedupe_key)] = at.timestamp()

    def prune(self, now: datetime, window_s: float, max_entries: int) -> dict[str, float]:
        """Forget events older than the window, and the oldest beyond `max_entries`;
        `since` moves up so that what is forgotten is looked up instead. Returns what was
        forgotten (fingerprint: time), for the caller to keep where lookups find it."""
        cutoff = self.cutoff(now, window_s, max_entries)
        if cutoff <= self.since:
            return {}
        forgotten = {key: at for key, at in self.seen.items() if at < cutoff}
        self.seen = {key: at for key, at in self.seen.items() if at >= cutoff}
        self.since = cutoff
        return forgotten

    def cutoff(self, now: datetime, window_s: float, max_entries: int) -> float:
        """Where `since` moves to when pruning now (no lower than it is). Beyond
        `max_entries`, down to nine tenths of it: a full memory is sorted once per tenth of
        new events, not at every prune (a sort of 100,000 times, each materializer round)."""
        cutoff = now.timestamp() - window_s
        if len(self.seen) > max_entries:
            times = sorted(self.seen.values())
            cutoff = max(cutoff, times[len(times) - (max_entries - max_entries // 10)])
        return max(cutoff, self.since)

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
