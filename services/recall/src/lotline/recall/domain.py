"""Recall rules: issuing a recall, which recall an event belongs to, and how far it has come.

Plain Python, no I/O. Every fact the recall service records is keyed by its natural key
(location + lot, serial, sale + line, return + line), so a fact reported twice — redelivered,
re-sent with a new event id, or flagged by two services — is counted once.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import TypeVar
from uuid import NAMESPACE_URL, UUID, uuid4, uuid5

from lotline.events import (
    BatchRecalled,
    Classification,
    ItemReturned,
    SaleFlagged,
    SoldUnit,
    StockQuarantined,
    UnitsRecalled,
    UnitStatus,
)

SOURCE = "lotline/recall"
EVENT_NAMESPACE = uuid5(NAMESPACE_URL, "https://lotline/recall")
# Identifiers, lot codes and serials are printable ASCII without spaces, so a space
# separates the parts of a natural key unambiguously.
KEY_SEPARATOR = " "


class RecallState(StrEnum):
    OPEN = "open"
    CLOSED = "closed"


class MatchedBy(StrEnum):
    """How an event that did not name its recall was attributed to one."""

    RECALL_ID = "recall_id"
    SERIAL = "serial"
    LOT = "lot"
    SOLD_UNIT = "sold_unit"
    SKU = "sku"


class RecallError(Exception):
    """A recall command refused; the message names the recall and the problem."""


class RecallConflict(RecallError):
    """The recall id is taken by a recall with different content."""


class IdempotencyKeyReused(RecallError):
    """The Idempotency-Key was used before for a different request."""


def natural_key(*parts: object) -> str:
    return KEY_SEPARATOR.join("" if part is None else str(part) for part in parts)


def new_recall_id(now: datetime) -> str:
    return f"RC-{now:%Y%m%d}-{uuid4().hex[:8].upper()}"


@dataclass(frozen=True)
class RecallRequest:
    """What an operator asks for; `recall_id` is theirs if they chose one."""

    sku: str
    lot_codes: tuple[str, ...]
    serials: tuple[str, ...]
    reason: str
    classification: Classification
    issued_by: str
    recall_id: str | None = None

    def fingerprint(self) -> str:
        """Identifies the request's content (who sends it again does not matter)."""
        canonical = {
            "recall_id": self.recall_id,
            "sku": self.sku,
            "lot_codes": sorted(set(self.lot_codes)),
            "serials": sorted(set(self.serials)),
            "reason": self.reason,
            "classification": self.classification.value,
        }
        return hashlib.sha256(json.dumps(canonical, sort_keys=True).encode()).hexdigest()

    def differences(self, recall: Recall) -> list[str]:
        """The fields in which this request differs from an issued recall."""
        differing = []
        if self.sku != recall.sku:
            differing.append("sku")
        if set(self.lot_codes) != set(recall.lot_codes):
            differing.append("lot_codes")
        if set(self.serials) != set(recall.serials):
            differing.append("serials")
        if self.reason != recall.reason:
            differing.append("reason")
        if self.classification is not recall.classification:
            differing.append("classification")
        return differing


@dataclass(frozen=True)
class Recall:
    recall_id: str
    sku: str
    lot_codes: tuple[str, ...]
    serials: tuple[str, ...]
    reason: str
    classification: Classification
    issued_by: str
    issued_at: datetime
    state: RecallState = RecallState.OPEN
    closed_at: datetime | None = None
    closed_by: str | None = None
    close_reason: str | None = None

    @classmethod
    def issue(cls, recall_id: str, request: RecallRequest, issued_at: datetime) -> Recall:
        return cls(
            recall_id=recall_id,
            sku=request.sku,
            lot_codes=tuple(dict.fromkeys(request.lot_codes)),
            serials=tuple(dict.fromkeys(request.serials)),
            reason=request.reason,
            classification=request.classification,
            issued_by=request.issued_by,
            issued_at=issued_at,
        )

    @property
    def is_open(self) -> bool:
        return self.state is RecallState.OPEN

    @property
    def event_id(self) -> UUID:
        """The broadcast's id: every republish of it is the same event."""
        return uuid5(EVENT_NAMESPACE, f"batch-recalled/{self.recall_id}")

    def batch_recalled(self) -> BatchRecalled:
        return BatchRecalled(
            recall_id=self.recall_id,
            sku=self.sku,
            lot_codes=list(self.lot_codes),
            serials=list(self.serials),
            reason=self.reason,
            classification=self.classification,
            issued_by=self.issued_by,
            issued_at=self.issued_at,
        )

    def covers(
        self, *, lot_code: str | None, serial: str | None, sold_serials: Iterable[str] = ()
    ) -> MatchedBy | None:
        """Whether a unit (by serial, or by lot) is one this recall names, and how."""
        if serial is not None and serial in self.serials:
            return MatchedBy.SERIAL
        if lot_code is not None and lot_code in self.lot_codes:
            return MatchedBy.LOT
        if serial is not None and serial in set(sold_serials):
            return MatchedBy.SOLD_UNIT
        return None


def attribute(
    recalls: Sequence[Recall],
    *,
    lot_code: str | None,
    serial: str | None,
    sold_serials: Mapping[str, set[str]] | None = None,
) -> list[tuple[Recall, MatchedBy]]:
    """The recall(s) of a SKU an event that names no recall belongs to.

    The open recalls that cover the unit; if none is open, the closed ones that cover it
    (a closed recall still records what happens to its units). A unit named by neither lot
    nor serial goes to the SKU's only open recall, and to none if there are several.
    """
    sold = sold_serials or {}
    matches = [
        (recall, how)
        for recall in recalls
        if (
            how := recall.covers(
                lot_code=lot_code, serial=serial, sold_serials=sold.get(recall.recall_id, ())
            )
        )
    ]
    open_matches = [(recall, how) for recall, how in matches if recall.is_open]
    if open_matches:
        return open_matches
    if matches:
        return matches
    if lot_code is None and serial is None:
        open_recalls = [recall for recall in recalls if recall.is_open]
        if len(open_recalls) == 1:
            return [(open_recalls[0], MatchedBy.SKU)]
    return []


def awaits_units_answer(
    recalls: Sequence[Recall], *, lot_code: str | None, serial: str | None, answered: set[str]
) -> bool:
    """Whether an unattributed unit may yet turn out to be a recalled one.

    A serial seen without its lot can belong to a lot recall; the recall learns which
    serials it covers from the serial registry's answer, so until every open lot recall
    of the SKU has its complete answer, the unit is worth another look.
    """
    return (
        serial is not None
        and lot_code is None
        and any(
            recall.is_open and recall.lot_codes and recall.recall_id not in answered
            for recall in recalls
        )
    )


@dataclass(frozen=True)
class QuarantinedStock:
    """Units of a recall held at one location and lot: the latest total stock reported."""

    recall_id: str
    location: str
    lot_code: str | None
    quantity: int
    stream: str = ""
    offset: int = -1
    reported_at: datetime | None = None
    # The lot's account here, as stock reported it with the total (None: not reported).
    received: int | None = None
    disposed: int | None = None
    sold_before_recall: int | None = None

    @property
    def key(self) -> str:
        return natural_key(self.recall_id, self.location, self.lot_code)

    @classmethod
    def from_event(
        cls, data: StockQuarantined, *, stream: str, offset: int, at: datetime
    ) -> QuarantinedStock:
        return cls(
            data.recall_id,
            data.location,
            data.lot_code,
            data.quantity,
            stream,
            offset,
            at,
            data.received,
            data.disposed,
            data.sold_before_recall,
        )


@dataclass(frozen=True)
class UnitsChunk:
    """One chunk of the serial registry's answer: its counts by status, its unknown serials."""

    recall_id: str
    chunk: int
    chunks: int
    counts: Mapping[str, int]
    unknown_serials: tuple[str, ...] = ()

    @property
    def key(self) -> str:
        return natural_key(self.recall_id, self.chunk)

    @classmethod
    def from_event(cls, data: UnitsRecalled) -> UnitsChunk:
        counts = {status.value: count for status, count in data.counts.items()}
        return cls(data.recall_id, data.chunk, data.chunks, counts, tuple(data.unknown_serials))


@dataclass(frozen=True)
class CustomerContact:
    """A recalled unit that left with a customer: someone to call, keyed by serial."""

    recall_id: str
    serial: str
    lot_code: str | None = None
    sale_id: str | None = None
    location: str | None = None
    sold_at: datetime | None = None
    customer_ref: str | None = None

    @property
    def key(self) -> str:
        return natural_key(self.recall_id, self.serial)

    @classmethod
    def from_sold_unit(cls, recall_id: str, unit: SoldUnit) -> CustomerContact:
        return cls(
            recall_id,
            unit.serial,
            unit.lot_code,
            unit.sale_id,
            unit.location,
            unit.sold_at,
            unit.customer_ref,
        )


@dataclass(frozen=True)
class ReturnedUnits:
    """Units of a recall brought back, keyed by return and line."""

    recall_id: str
    return_id: str
    line: int
    location: str
    quantity: int
    matched_by: MatchedBy
    sale_id: str | None = None
    serial: str | None = None
    lot_code: str | None = None
    returned_at: datetime | None = None

    @property
    def key(self) -> str:
        return natural_key(self.recall_id, self.return_id, self.line)

    @classmethod
    def from_event(
        cls, recall_id: str, data: ItemReturned, matched_by: MatchedBy, at: datetime
    ) -> ReturnedUnits:
        return cls(
            recall_id=recall_id,
            return_id=data.return_id,
            line=data.line,
            location=data.location,
            quantity=data.quantity,
            matched_by=matched_by,
            sale_id=data.sale_id,
            serial=data.serial,
            lot_code=data.lot_code,
            returned_at=data.returned_at or at,
        )


@dataclass(frozen=True)
class FlaggedSale:
    """A recalled unit sold after the recall, keyed by sale and line (flagged once)."""

    recall_id: str
    sale_id: str
    line: int
    location: str
    quantity: int
    detail: str
    matched_by: MatchedBy
    flagged_by: str
    serial: str | None = None
    lot_code: str | None = None
    customer_ref: str | None = None
    sold_at: datetime | None = None

    @property
    def key(self) -> str:
        return natural_key(self.recall_id, self.sale_id, self.line)

    @classmethod
    def from_event(
        cls, recall_id: str, data: SaleFlagged, matched_by: MatchedBy, flagged_by: str
    ) -> FlaggedSale:
        return cls(
            recall_id=recall_id,
            sale_id=data.sale_id,
            line=data.line,
            location=data.location,
            quantity=data.quantity,
            detail=data.detail,
            matched_by=matched_by,
            flagged_by=flagged_by,
            serial=data.serial,
            lot_code=data.lot_code,
            customer_ref=data.customer_ref,
            sold_at=data.sold_at,
        )


Keyed = TypeVar("Keyed", QuarantinedStock, UnitsChunk, CustomerContact, ReturnedUnits, FlaggedSale)


def first_by_key(facts: Iterable[Keyed]) -> list[Keyed]:
    """One per natural key, the first reported (a fact does not change when re-reported)."""
    kept: dict[str, Keyed] = {}
    for fact in facts:
        kept.setdefault(fact.key, fact)
    return list(kept.values())


def latest_by_key(facts: Iterable[Keyed]) -> list[Keyed]:
    """One per natural key, the last reported (a level reported again replaces the old)."""
    kept: dict[str, Keyed] = {}
    for fact in facts:
        kept.pop(fact.key, None)
        kept[fact.key] = fact
    return list(kept.values())


@dataclass(frozen=True)
class UnitsAnswer:
    """The serial registry's answer so far.

    Each chunk counts the units it covers, so the recall's figures are the sums over the
    chunks received; the answer is complete when chunks 1..chunks have all arrived.
    """

    chunks_expected: int | None
    chunks_received: tuple[int, ...]
    counts: dict[str, int]
    unknown_serials: tuple[str, ...]

    @property
    def complete(self) -> bool:
        return self.chunks_expected is not None and set(self.chunks_received) >= set(
            range(1, self.chunks_expected + 1)
        )

    @classmethod
    def of(cls, chunks: Iterable[UnitsChunk]) -> UnitsAnswer:
        by_number = {chunk.chunk: chunk for chunk in chunks}
        counts: dict[str, int] = {}
        unknown: dict[str, None] = {}
        for number in sorted(by_number):
            chunk = by_number[number]
            for status, count in chunk.counts.items():
                counts[status] = counts.get(status, 0) + count
            unknown.update(dict.fromkeys(chunk.unknown_serials))
        expected = max((chunk.chunks for chunk in by_number.values()), default=None)
        return cls(expected, tuple(sorted(by_number)), counts, tuple(unknown))


def lots_matching_nothing(
    lot_codes: Iterable[str],
    *,
    quarantine: Iterable[QuarantinedStock] = (),
    contacts: Iterable[CustomerContact] = (),
    returns: Iterable[ReturnedUnits] = (),
    flagged: Iterable[FlaggedSale] = (),
) -> tuple[str, ...]:
    """The recalled lots nothing has been reported of yet: no store holds them, no sale or
    return named them. A recall may come before the goods do (stock and the registry keep
    it and apply it on arrival); an operator should see that it matched nothing so far."""
    seen = {
        fact.lot_code
        for facts in (quarantine, contacts, returns, flagged)
        for fact in facts
        if fact.lot_code is not None
    }
    return tuple(code for code in lot_codes if code not in seen)


@dataclass(frozen=True)
class Progress:
    """The figures an operator watches a recall close by."""

    quarantined_units: int = 0
    units_to_contact: int = 0
    units_returned: int = 0
    sales_after_recall: int = 0
    units_sold_after_recall: int = 0
    units: UnitsAnswer = field(default_factory=lambda: UnitsAnswer.of(()))
    # Stock's account of the recalled lots, summed over locations.
    units_received: int = 0
    units_disposed: int = 0
    units_sold_before_recall: int = 0
    units_returned_into_lot: int = 0

    @classmethod
    def of(
        cls,
        *,
        quarantine: Iterable[QuarantinedStock] = (),
        chunks: Iterable[UnitsChunk] = (),
        contacts: Iterable[CustomerContact] = (),
        returns: Iterable[ReturnedUnits] = (),
        flagged: Iterable[FlaggedSale] = (),
    ) -> Progress:
        flagged_sales = first_by_key(flagged)
        lines = latest_by_key(quarantine)
        returned = first_by_key(returns)
        return cls(
            quarantined_units=sum(line.quantity for line in lines),
            units_to_contact=len(first_by_key(contacts)),
            units_returned=sum(line.quantity for line in returned),
            sales_after_recall=len(flagged_sales),
            units_sold_after_recall=sum(sale.quantity for sale in flagged_sales),
            units=UnitsAnswer.of(chunks),
            units_received=sum(line.received or 0 for line in lines),
            units_disposed=sum(line.disposed or 0 for line in lines),
            units_sold_before_recall=sum(line.sold_before_recall or 0 for line in lines),
            units_returned_into_lot=sum(
                line.quantity for line in returned if line.lot_code is not None
            ),
        )


# The registry's statuses that account for a recalled unit: it is held, with a customer,
# back in a store, or disposed of. A unit a count missed or that was written off (stolen,
# given away...) is expected and not accounted for, as stock's lots say of theirs.
PLACED = frozenset(
    status.value
    for status in (
        UnitStatus.IN_STOCK,
        UnitStatus.SOLD,
        UnitStatus.RETURNED,
        UnitStatus.DESTROYED,
        UnitStatus.RETURNED_TO_SUPPLIER,
    )
)


class AccountingBasis(StrEnum):
    """Whose figures account for a recall's units."""

    LOTS = "lots"  # stock's account of each recalled lot at each location
    SERIALS = "serials"  # the serial registry's answer, unit by unit


class CloseRefused(RecallError):
    """A recall not fully accounted for was closed without saying why."""


@dataclass(frozen=True)
class Accounting:
    """Where every unit of a recall is: `accounted` of `expected` units.

    By serials (a serial product: the serial registry's answer counted units, or the recall
    names serials only): the registry knows each unit, so expected = the units its answer
    covers plus the recalled serials it never saw; accounted = the units it placed (in
    stock, sold, returned, destroyed or returned to the supplier; not missing or written
    off). By lots (a product without serials): expected = the units of the recalled lots
    received at any location, less those the registry refused (stock's account); accounted
    = held in quarantine + disposed of + sold before the recall + sold after it - returned
    into a lot (stock holds a unit returned with its lot in that lot's quarantine, so it
    would count twice: once sold, once held; a return naming no lot is held apart and not
    reported).
    The other figures are shown in both cases; they only explain N in the second.
    """

    basis: AccountingBasis
    expected: int
    quarantined: int
    disposed: int
    sold_before_recall: int
    sold_after_recall: int
    returned: int
    accounted: int
    answered: bool = True

    @property
    def complete(self) -> bool:
        """Every unit expected is accounted for, and there was something to account for (a
        recall whose lots no store has reported yet is not done: they may still arrive)."""
        return self.answered and self.expected > 0 and self.accounted == self.expected

    @classmethod
    def of(cls, recall: Recall, progress: Progress) -> Accounting:
        counted = sum(progress.units.counts.values())
        placed = sum(n for status, n in progress.units.counts.items() if status in PLACED)
        by_serials = bool(counted) or not recall.lot_codes
        held, disposed = progress.quarantined_units, progress.units_disposed
        after, returned = progress.units_sold_after_recall, progress.units_returned
        if by_serials:
            before = progress.units_to_contact
            expected, accounted = counted + len(progress.units.unknown_serials), placed
        else:
            before = progress.units_sold_before_recall
            expected = progress.units_received
            into_lot = progress.units_returned_into_lot
            accounted = max(held + disposed + before + after - into_lot, 0)
        return cls(
            basis=AccountingBasis.SERIALS if by_serials else AccountingBasis.LOTS,
            expected=expected,
            quarantined=held,
            disposed=disposed,
            sold_before_recall=before,
            sold_after_recall=after,
            returned=returned,
            accounted=accounted,
            answered=progress.units.complete if by_serials else True,
        )

    def check_close(self, recall_id: str, reason: str | None) -> None:
        """Closing a recall not fully accounted for needs a reason, kept with the closing."""
        if not self.complete and not (reason and reason.strip()):
            raise CloseRefused(
                f"recall {recall_id} accounts for {self.accounted} of {self.expected} units: "
                "closing it needs a reason (field reason)"
            )
