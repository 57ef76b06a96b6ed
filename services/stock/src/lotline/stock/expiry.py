"""Expiry warnings: which lots on hand reached a warning threshold, each published once.

The rules (`warnings_due`) are plain Python. `ExpiryWarnings` runs them periodically in
every stock instance and owns the `expiry_warnings` collection, an insert-only outbox keyed
by lot and threshold:

- **Once, however many instances run.** Every instance scans all levels and tries to insert
  a claim for each warning due; the `_id` is "sku location lot threshold", so exactly one
  insert succeeds and that instance publishes. Scanning only the levels an instance owns
  would need the consumer's partition assignment, which moves with every rebalance, and it
  would not make the read cheaper: FerretDB scans for this query whatever the filter.
- **Not lost in a crash.** A claim is saved with its encoded event and `published: false`,
  then published and marked. Claims still unpublished long after their insert
  (`STOCK_EXPIRY_RESEND_AFTER_S`: their instance stopped in between) are published by
  whichever instance checks next. The CloudEvent id is computed from the claim's `_id`,
  so a re-send of a warning that did go out is a duplicate that consumers drop.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any
from uuid import NAMESPACE_URL, UUID, uuid5

import structlog
from pymongo import UpdateOne
from pymongo.asynchronous.collection import AsyncCollection
from pymongo.asynchronous.database import AsyncDatabase
from pymongo.errors import DuplicateKeyError

from lotline.events import LotExpiring, OutgoingMessage, decode, encode, encode_event
from lotline.runtime.consumer import Publisher
from lotline.runtime.mongo import bulk_write_in_parts
from lotline.stock.store import StockStore

SOURCE = "lotline/stock"
# Claims of lots expired this long ago can go: such a lot is never due again, and the margin
# covers instances whose clocks disagree about the date.
KEEP_EXPIRED_CLAIMS = timedelta(days=7)
# Concurrent claim inserts: well below FerretDB's pool of 100 connections.
CLAIMS_IN_FLIGHT = 20

log = structlog.get_logger("stock.expiry")


# --- the rules ------------------------------------------------------------------------------


@dataclass(frozen=True)
class LotOnHand:
    """A lot's sellable stock at one location (quarantined and damaged units excluded)."""

    sku: str
    location: str
    lot_code: str
    expires_on: date
    on_hand: int


@dataclass(frozen=True)
class ExpiryWarning:
    sku: str
    location: str
    lot_code: str
    expires_on: date
    days_left: int
    threshold_days: int
    quantity_on_hand: int

    @property
    def key(self) -> str:
        # Identifiers and lot codes are printable without spaces, so a space cannot be ambiguous.
        return f"{self.sku} {self.location} {self.lot_code} {self.threshold_days}"

    def event(self) -> LotExpiring:
        return LotExpiring(
            sku=self.sku,
            location=self.location,
            lot_code=self.lot_code,
            expires_on=self.expires_on,
            days_left=self.days_left,
            threshold_days=self.threshold_days,
            quantity_on_hand=self.quantity_on_hand,
        )


def threshold_reached(days_left: int, thresholds: Iterable[int]) -> int | None:
    """The nearest threshold a lot with `days_left` has reached, if any.

    A lot first seen with 5 days left under thresholds 30, 7 and 1 is due for the 7-day
    warning only: a 30-day warning would be stale news by then."""
    return min((t for t in thresholds if days_left <= t), default=None)


def warnings_due(
    lots: Iterable[LotOnHand], thresholds: Sequence[int], today: date
) -> list[ExpiryWarning]:
    """The warnings due today. Nothing for a lot with no sellable stock (sold out, or all
    of it quarantined), nor for one already expired: FEFO stops picking it and a sale from
    it is flagged `expired`, which is the louder signal."""
    due = []
    for lot in lots:
        if lot.on_hand <= 0:
            continue
        days_left = (lot.expires_on - today).days
        if days_left < 0:
            continue
        threshold = threshold_reached(days_left, thresholds)
        if threshold is None:
            continue
        due.append(
            ExpiryWarning(
                sku=lot.sku,
                location=lot.location,
                lot_code=lot.lot_code,
                expires_on=lot.expires_on,
                days_left=days_left,
                threshold_days=threshold,
                quantity_on_hand=lot.on_hand,
            )
        )
    return due


def warning_event_id(key: str) -> UUID:
    """The same warning always has the same CloudEvent id, so a re-send is a duplicate."""
    return uuid5(NAMESPACE_URL, f"{SOURCE}/lot-expiring/{key}")


# --- running them ---------------------------------------------------------------------------


def _utc_today() -> date:
    return datetime.now(UTC).date()


class ExpiryWarnings:
    """Looks for lots to warn about and publishes each warning once (see the module doc)."""

    def __init__(
        self,
        db: AsyncDatabase[dict[str, Any]],
        stock: StockStore,
        publisher: Publisher,
        *,
        thresholds: Sequence[int],
        relay_grace_s: float,
        today: Callable[[], date] = _utc_today,
    ) -> None:
        if not thresholds:
            raise ValueError("thresholds: name at least one number of days")
        self.claims: AsyncCollection[dict[str, Any]] = db["expiry_warnings"]
        self.stock = stock
        self.publisher = publisher
        self.thresholds = tuple(thresholds)
        self.relay_grace = timedelta(seconds=relay_grace_s)
        self.today = today
        # Warnings known to be claimed (by any instance), so later passes skip their insert.
        self._claimed: set[str] = set()

    async def check(self) -> None:
        """One pass: claim and publish the warnings due, re-send orphaned claims, prune."""
        today = self.today()
        rows = await self.stock.expiring_lots(today + timedelta(days=max(self.thresholds)))
        lots = [
            LotOnHand(
                sku=row["sku"],
                location=row["location"],
                lot_code=row["lot_code"],
                expires_on=date.fromisoformat(row["expires_on"]),
                on_hand=row["on_hand"],
            )
            for row in rows
            if row.get("lot_code")
        ]
        due = warnings_due(lots, self.thresholds, today)
        # Only what is still due stays remembered, so the set stays as small as `due`.
        self._claimed &= {warning.key for warning in due}
        won = await self._claim([w for w in due if w.key not in self._claimed])
        self._claimed.update(warning.key for warning in due)
        await self._publish(won)
        orphans = await self._orphaned_claims()
        await self._publish(orphans)
        await self.claims.delete_many(
            {"published": True, "expires_on": {"$lt": (today - KEEP_EXPIRED_CLAIMS).isoformat()}}
        )
        if won or orphans:
            log.info(
                "expiry_warnings_published",
                due=len(due),
                claimed=len(won),
                resent=len(orphans),
            )

    async def _claim(self, due: list[ExpiryWarning]) -> list[dict[str, Any]]:
        """Insert a claim per warning; the ones this instance won, with their events."""
        gate = asyncio.Semaphore(CLAIMS_IN_FLIGHT)

        async def claim(warning: ExpiryWarning) -> dict[str, Any] | None:
            now = datetime.now(UTC)
            message = encode(
                warning.event(), source=SOURCE, id=warning_event_id(warning.key), time=now
            )
            doc = {
                "_id": warning.key,
                "sku": warning.sku,
                "location": warning.location,
                "lot_code": warning.lot_code,
                "threshold_days": warning.threshold_days,
                "expires_on": warning.expires_on.isoformat(),
                "published": False,
                "event": message.value.decode(),
            }
            async with gate:
                doc["claimed_at"] = datetime.now(UTC)  # when the insert goes, not when queued
                try:
                    await self.claims.insert_one(doc)
                except DuplicateKeyError:
                    return None  # Another instance, or an earlier pass, has this warning.
            return doc

        claimed = await asyncio.gather(*(claim(w) for w in due))
        return [doc for doc in claimed if doc is not None]

    async def _orphaned_claims(self) -> list[dict[str, Any]]:
        """Claims whose owner did not get to publish them (it crashed in between)."""
        cutoff = datetime.now(UTC) - self.relay_grace
        unpublished = self.claims.find({"published": False})
        return [doc async for doc in unpublished if doc["claimed_at"] < cutoff]

    async def _publish(self, claims: list[dict[str, Any]]) -> None:
        if not claims:
            return
        await self.publisher.send(_messages(claims))
        published_at = datetime.now(UTC)
        await bulk_write_in_parts(
            self.claims,
            [
                UpdateOne(
                    {"_id": doc["_id"]},
                    {"$set": {"published": True, "published_at": published_at}},
                )
                for doc in claims
            ],
            ordered=False,
        )


def _messages(claims: list[dict[str, Any]]) -> list[OutgoingMessage]:
    return [encode_event(decode(doc["event"].encode())) for doc in claims]
