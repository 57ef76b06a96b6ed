"""Expiry warnings: which lots on hand reached a warning threshold, each published once.

The rules (`warnings_due`) are plain Python. `ExpiryWarnings` runs them periodically in
every stock instance, and publishes through the unit of work like every change of stock:

- **By the owner of the SKU.** An instance warns only about the SKUs whose partitions it
  holds (`ServiceConsumer.owner_of`): the partition's owner is the only writer of its
  documents and of its part of the write-ahead log, so two instances never both warn.
- **Once.** A warning is a fact of its partition (a key of SKU, location, lot and threshold,
  timed at the day the threshold is reached): the log answers whether it was sent already,
  from memory, or for an old one from what memory forgot (`wal_applied`), whichever instance
  held the partition then.
- **Not lost in a crash.** The warnings and their record are one entry of the log, inserted
  before they are published; a crash in between leaves the entry to the partition's next
  owner, who publishes them again as it restores the partition. The CloudEvent id is
  computed from the warning's key, so a re-send is a duplicate that consumers drop.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from uuid import NAMESPACE_URL, UUID, uuid5

import structlog

from lotline.events import LotExpiring, encode
from lotline.runtime.wal import Fact, WriteAheadLog
from lotline.stock.store import StockStore

SOURCE = "lotline/stock"

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

    @property
    def reached_at(self) -> datetime:
        """When the lot reached the threshold (the start of that day, UTC): the warning's
        time as the log records it, the same on every pass and every instance."""
        reached = self.expires_on - timedelta(days=self.threshold_days)
        return datetime.combine(reached, time(), tzinfo=UTC)

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
        stock: StockStore,
        wal: WriteAheadLog,
        owner_of: Callable[[str], int | None],
        *,
        thresholds: Sequence[int],
        today: Callable[[], date] = _utc_today,
    ) -> None:
        if not thresholds:
            raise ValueError("thresholds: name at least one number of days")
        self.stock = stock
        self.wal = wal
        self.owner_of = owner_of
        self.thresholds = tuple(thresholds)
        self.today = today
        # Warnings known to be sent (by this instance, or found in the log), so later passes
        # need not ask the log again; only what is still due stays, as small as `due`.
        self._sent: set[str] = set()

    async def check(self) -> None:
        """One pass: the warnings due about this instance's SKUs, each sent once."""
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
        self._sent &= {warning.key for warning in due}
        owners = {warning.sku: self.owner_of(warning.sku) for warning in due}
        mine = [
            (warning, partition)
            for warning in due
            if warning.key not in self._sent and (partition := owners[warning.sku]) is not None
        ]
        if not mine:
            return
        async with self.wal.unit_of_work():
            facts = []
            for warning, partition in mine:
                self.wal.observe(warning.sku, partition)
                facts.append(Fact(partition, warning_fact(warning.key), warning.reached_at))
            done = await self.wal.applied(facts)
            now = datetime.now(UTC)
            sent = []
            for (warning, _), fact, old in zip(mine, facts, done, strict=True):
                if old:
                    continue
                message = encode(
                    warning.event(), source=SOURCE, id=warning_event_id(warning.key), time=now
                )
                self.wal.emit(warning.sku, [message])
                sent.append(fact)
            self.wal.record(sent)
        # Committed and published: known from now on, in memory and in the log.
        self._sent.update(warning.key for warning, _ in mine)
        if sent:
            log.info("expiry_warnings_published", due=len(due), published=len(sent))


def warning_fact(key: str) -> str:
    """What the log records a warning under (apart from any event's idempotency key)."""
    return f"{SOURCE}/lot-expiring/{key}"
