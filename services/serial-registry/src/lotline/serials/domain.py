"""What receipts, sales, returns, recalls, warranty claims and a store's own operations (counts,
adjustments, disposals) do to one serialized unit. No I/O."""

from __future__ import annotations

import calendar
import hashlib
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, date, datetime
from enum import StrEnum
from math import ceil
from uuid import NAMESPACE_URL, UUID, uuid5

from lotline.events import (
    AdjustmentDirection,
    BatchRecalled,
    ClaimKind,
    ClaimRefusal,
    DisposalMethod,
    EventType,
    FlagReason,
    ItemReceived,
    ItemReturned,
    ItemSold,
    RejectReason,
    ReturnReason,
    SoldUnit,
    StockAdjusted,
    StockCounted,
    StockDisposed,
    Tracking,
    TransferReceived,
    TransferShipped,
    UnitsRecalled,
    UnitStatus,
    WarrantyClaimed,
    gs1,
)

SOURCE = "lotline/serial-registry"
# A unit sees a handful of events in its life; the cap only guards against a runaway producer.
# The first entry (how the unit came to be known) is always kept.
HISTORY_LIMIT = 100
# The contract caps `units-recalled.sold_units` at 1,000 per event.
RECALL_CHUNK_SIZE = 1000
_NAMESPACE = uuid5(NAMESPACE_URL, "https://lotline/serial-registry")


# Free text in events (a flag's or rejection's detail) is capped by the contract.
DETAIL_LIMIT = 500


def clip(text: str, limit: int = DETAIL_LIMIT) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def unit_id(sku: str, serial: str) -> str:
    """A unit's key: neither a SKU nor a serial can contain a space."""
    return f"{sku} {serial}"


def lot_key(sku: str, lot_code: str) -> str:
    """A lot's key: neither a SKU nor a lot code can contain a space."""
    return f"{sku} {lot_code}"


def digital_link(gtin: str | None, serial: str) -> str | None:
    """The GS1 Digital Link URI of one unit (AI 01 GTIN + AI 21 serial); None without a GTIN
    or for a serial GS1 cannot encode (outside its character set 82, or over 20 long)."""
    return gs1.unit_link(gtin, serial)


@dataclass(frozen=True)
class Product:
    """What this registry knows of a product, from `product-registered`."""

    sku: str
    tracking: Tracking
    revision: int
    gtin: str | None = None
    name: str | None = None
    warranty_months: int | None = None

    @property
    def serialized(self) -> bool:
        return self.tracking is Tracking.SERIAL


@dataclass(frozen=True)
class Flag:
    """Why a sale of this unit needs a person: becomes one `sale-flagged` event."""

    reason: FlagReason
    detail: str
    recall_id: str | None = None


@dataclass(frozen=True)
class HistoryEntry:
    """One event that touched a unit. `ref` is the business key (sale#line, receipt, recall)
    that recognises the same fact re-sent under a new event id."""

    type: EventType
    event_id: str
    at: datetime
    what: str
    ref: str | None = None
    flags: tuple[Flag, ...] = ()
    # Where it happened (a store); None for a recall, and for entries older than the field.
    location: str | None = None


@dataclass(frozen=True)
class RecallScope:
    """What one recall of a SKU names: whole lots and/or single serials."""

    recall_id: str
    event_id: str
    issued_at: datetime
    lot_codes: frozenset[str] = frozenset()
    serials: frozenset[str] = frozenset()
    reason: str = ""

    def covers(self, serial: str, lot_code: str | None) -> bool:
        return serial in self.serials or (lot_code is not None and lot_code in self.lot_codes)


@dataclass(frozen=True)
class WarrantyClaim:
    """A warranty claim as applied to the claimed unit (refused claims change no unit)."""

    claim_id: str
    kind: ClaimKind
    event_id: str
    at: datetime
    location: str
    in_warranty: bool
    warranty_ends_on: date | None = None
    replacement_serial: str | None = None
    override_reason: str | None = None
    problem: str | None = None
    claimed_by: str | None = None


@dataclass(frozen=True)
class Unit:
    """One serialized unit: where it physically is (status) and, apart from that, any recall."""

    sku: str
    serial: str
    status: UnitStatus
    location: str
    lot_code: str | None = None
    lot_expires_on: date | None = None
    receipt_id: str | None = None
    received_event: str | None = None
    received_at: datetime | None = None
    received_location: str | None = None
    sale_id: str | None = None
    line: int | None = None
    customer_ref: str | None = None
    sold_at: datetime | None = None
    return_id: str | None = None
    return_reason: ReturnReason | None = None
    returned_at: datetime | None = None
    recall_ids: tuple[str, ...] = ()
    recalled_at: datetime | None = None
    # Warranty: a replacement keeps its original's start (the sale), and both units name
    # each other; the claims taken on this unit, in the order applied.
    warranty_from: datetime | None = None
    replaced_by: str | None = None
    replaces: str | None = None
    claims: tuple[WarrantyClaim, ...] = ()
    history: tuple[HistoryEntry, ...] = ()
    # A transfer: the unit's last one, and where it is going while it is on the way (it
    # stays at `location`, in stock, until it is received; one never received stays so).
    transfer_id: str | None = None
    in_transit_to: str | None = None

    @property
    def id(self) -> str:
        return unit_id(self.sku, self.serial)

    @property
    def recalled(self) -> bool:
        return bool(self.recall_ids)

    @property
    def registered(self) -> bool:
        """Received through a receipt (a unit first seen in a sale or return is not)."""
        return self.receipt_id is not None

    def entries_for(self, type: EventType, event_id: str, ref: str) -> list[HistoryEntry]:
        """The history entries of this very event, or of the same fact sent again."""
        return [
            entry
            for entry in self.history
            if entry.event_id == event_id or (entry.type is type and entry.ref == ref)
        ]

    def with_entry(self, entry: HistoryEntry) -> Unit:
        history = (*self.history, entry)
        if len(history) > HISTORY_LIMIT:
            history = (history[0], *history[-(HISTORY_LIMIT - 1) :])
        return replace(self, history=history)


@dataclass(frozen=True)
class Outcome:
    """A unit after an event, and the flags to publish. `changed` is False when the event (or
    the same fact under another id) was applied before: the flags are then those recorded."""

    unit: Unit
    flags: tuple[Flag, ...] = ()
    changed: bool = True


def _applied_before(unit: Unit, type: EventType, event_id: str, ref: str) -> Outcome | None:
    entries = unit.entries_for(type, event_id, ref)
    if not entries:
        return None
    return Outcome(unit, tuple(f for entry in entries for f in entry.flags), changed=False)


# ---------------------------------------------------------------------------------- receipts


@dataclass(frozen=True)
class ReceiptProblem:
    reason: RejectReason
    detail: str


def receipt_problem(receipt: ItemReceived, product: Product) -> ReceiptProblem | None:
    """Why this registry cannot take a receipt; None if it registers its units or it has none
    for this registry (a quantity or batch item without serials is stock's business)."""
    serials = receipt.serials or []
    if product.serialized and not serials:
        return ReceiptProblem(
            RejectReason.MISSING_SERIALS,
            f"{receipt.sku} is tracked by serial, but receipt {receipt.receipt_id} lists no "
            f"serials for its {receipt.quantity} units: none were registered",
        )
    if not product.serialized and serials:
        return ReceiptProblem(
            RejectReason.TRACKING_MISMATCH,
            f"{receipt.sku} is tracked by {product.tracking.value}, not by serial, but receipt "
            f"{receipt.receipt_id} lists {len(serials)} serials: none were registered",
        )
    return None


def received_what(
    location: str | None, receipt_id: str, lot_code: str | None, recall_ids: Iterable[str] = ()
) -> str:
    lot = f", lot {lot_code}" if lot_code else ""
    what = f"received at {location} in receipt {receipt_id}{lot}"
    recalls = ", ".join(recall_ids)
    return f"{what}; already under recall {recalls}" if recalls else what


def received_entry(
    receipt: ItemReceived, event_id: str, at: datetime, recalls: Sequence[RecallScope] = ()
) -> HistoryEntry:
    what = received_what(
        receipt.location,
        receipt.receipt_id,
        receipt.lot.code if receipt.lot else None,
        (r.recall_id for r in recalls),
    )
    return HistoryEntry(
        EventType.ITEM_RECEIVED,
        event_id,
        at,
        what,
        ref=receipt.receipt_id,
        location=receipt.location,
    )


@dataclass(frozen=True)
class ReceivedUnits:
    """The units a receipt registers: alike but for their serials (`template`, whose serial
    is empty), except those a recall names by serial, which carry that recall (`named`). A
    100,000-serial receipt is then one unit and a list, not 100,000 units."""

    template: Unit
    serials: tuple[str, ...]
    named: Mapping[str, Unit] = field(default_factory=dict)

    @property
    def sku(self) -> str:
        return self.template.sku

    def unit(self, serial: str) -> Unit:
        return self.named.get(serial) or replace(self.template, serial=serial)

    def only(self, serials: Iterable[str]) -> ReceivedUnits:
        return replace(self, serials=tuple(serials))

    def __len__(self) -> int:
        return len(self.serials)


def receipt_units(
    receipt: ItemReceived, event_id: str, at: datetime, recalls: Sequence[RecallScope] = ()
) -> ReceivedUnits:
    """The units a receipt registers, in stock at its location; a recall already issued for
    their lot or serial flags them at once (recall wins, even over a late receipt)."""
    lot_code = receipt.lot.code if receipt.lot else None
    lot_recalls = [r for r in recalls if lot_code is not None and lot_code in r.lot_codes]
    template = Unit(
        sku=receipt.sku,
        serial="",
        status=UnitStatus.IN_STOCK,
        location=receipt.location,
        lot_code=lot_code,
        lot_expires_on=receipt.lot.expires_on if receipt.lot else None,
        receipt_id=receipt.receipt_id,
        received_event=event_id,
        received_at=at,
        received_location=receipt.location,
        recall_ids=tuple(r.recall_id for r in lot_recalls),
        recalled_at=max((r.issued_at for r in lot_recalls), default=None),
        history=(received_entry(receipt, event_id, at, lot_recalls),),
    )
    serials = tuple(receipt.serials or ())
    named: dict[str, Unit] = {}
    by_serial = [r for r in recalls if r.serials]
    for serial in serials if by_serial else ():
        if any(serial in r.serials for r in by_serial):
            covering = [r for r in recalls if r.covers(serial, lot_code)]
            named[serial] = replace(
                template,
                serial=serial,
                recall_ids=tuple(r.recall_id for r in covering),
                recalled_at=max((r.issued_at for r in covering), default=None),
                history=(received_entry(receipt, event_id, at, covering),),
            )
    return ReceivedUnits(template, serials, named)


def received_units(
    receipt: ItemReceived, event_id: str, at: datetime, recalls: Sequence[RecallScope] = ()
) -> list[Unit]:
    """Each unit a receipt registers (`receipt_units`), one by one."""
    received = receipt_units(receipt, event_id, at, recalls)
    return [received.unit(serial) for serial in received.serials]


class Claim(StrEnum):
    """Whose a serial is when a receipt finds it already in the registry."""

    OWN = "own"  # registered by this very receipt before (a redelivery or a resend)
    ADOPT = "adopt"  # first seen in a sale or return, before its receipt arrived
    DUPLICATE = "duplicate"  # registered by another receipt: not overwritten, reported


def claim(existing: Unit, receipt: ItemReceived, event_id: str) -> Claim:
    if existing.received_event == event_id or existing.receipt_id == receipt.receipt_id:
        return Claim.OWN
    if not existing.registered:
        return Claim.ADOPT
    return Claim.DUPLICATE


def adopt(
    existing: Unit,
    receipt: ItemReceived,
    event_id: str,
    at: datetime,
    recalls: Sequence[RecallScope] = (),
) -> Unit:
    """A receipt catches up with a unit already sold or returned: it supplies the origin
    (receipt, lot) but not the status or location, which the later facts decided."""
    lot_code = existing.lot_code or (receipt.lot.code if receipt.lot else None)
    expires_on = existing.lot_expires_on or (receipt.lot.expires_on if receipt.lot else None)
    covering = [
        r
        for r in recalls
        if r.covers(existing.serial, lot_code) and r.recall_id not in existing.recall_ids
    ]
    entry = received_entry(receipt, event_id, at, covering)
    entry = replace(entry, what=f"{entry.what} (after it was {existing.status.value})")
    return replace(
        existing,
        lot_code=lot_code,
        lot_expires_on=expires_on,
        receipt_id=receipt.receipt_id,
        received_event=event_id,
        received_at=at,
        received_location=receipt.location,
        recall_ids=(*existing.recall_ids, *(r.recall_id for r in covering)),
        recalled_at=max((r.issued_at for r in covering), default=existing.recalled_at),
    ).with_entry(entry)


def serial_digest(serials: Iterable[str]) -> str:
    return hashlib.sha256("\n".join(sorted(serials)).encode()).hexdigest()[:16]


def receipt_key(receipt: ItemReceived) -> str:
    """A receipt as registered: the same id with the same serials is the same receipt."""
    return f"{receipt.sku} {receipt.receipt_id} {serial_digest(receipt.serials or ())}"


def rejection_event_id(
    sku: str, receipt_id: str, reason: RejectReason, serials: Iterable[str]
) -> UUID:
    """The same rejection of the same receipt is the same event, whatever id the receipt had."""
    digest = serial_digest(serials)
    return uuid5(_NAMESPACE, f"receipt-rejected {sku} {receipt_id} {reason.value} {digest}")


# ------------------------------------------------------------------------------------- sales


def sale_ref(sale: ItemSold) -> str:
    return f"{sale.sale_id}#{sale.line}"


def _with_recalls(unit: Unit, recalls: Sequence[RecallScope]) -> Unit:
    """A unit with every recall in force for its serial or lot, each in its history (a recall
    of a lot writes none of its units: whatever changes a unit records its recalls)."""
    return as_recalled(unit, recalls)


def sell(
    unit: Unit | None, sale: ItemSold, event_id: str, recalls: Sequence[RecallScope] = ()
) -> Outcome:
    """A sale is a fact: the unit is recorded as sold whatever its state, and every surprise
    (unknown serial, not in stock, under recall) becomes a flag a person will act on."""
    assert sale.serial is not None
    ref = sale_ref(sale)
    if unit is not None and (earlier := _applied_before(unit, EventType.ITEM_SOLD, event_id, ref)):
        return earlier
    flags: list[Flag] = []
    if unit is None:
        flags.append(
            Flag(
                FlagReason.UNKNOWN_SERIAL,
                f"serial {sale.serial} of {sale.sku} was never received; the sale is recorded "
                "and the unit registered as sold",
            )
        )
        unit = Unit(
            sku=sale.sku,
            serial=sale.serial,
            status=UnitStatus.SOLD,
            location=sale.location,
            lot_code=sale.lot_code,
        )
    elif unit.status is UnitStatus.SOLD:
        flags.append(
            Flag(
                FlagReason.SERIAL_NOT_IN_STOCK,
                f"serial {sale.serial} of {sale.sku} was already sold in sale {unit.sale_id} "
                f"line {unit.line} at {unit.location}",
            )
        )
    unit = _with_recalls(unit, recalls)
    if unit.recalled:
        # Also when the till sold it before the recall was issued and the sale arrives late:
        # the recall's answer went out without this customer, so the flag is what names them.
        flags.append(_recalled_flag(unit, sale.sold_at, unit.recall_ids[-1], unit.recalled_at))
    what = f"sold at {sale.location} in sale {sale.sale_id} line {sale.line}"
    if sale.lot_code is not None and unit.lot_code is not None and sale.lot_code != unit.lot_code:
        what += f" (till scanned lot {sale.lot_code}, unit is of lot {unit.lot_code})"
    # Sales and returns travel on two topics: a return may be applied before the sale it
    # undoes. The unit's last event in time, the return, then decides where it is.
    returned_later = (
        unit.status is UnitStatus.RETURNED
        and unit.returned_at is not None
        and sale.sold_at < unit.returned_at
    )
    if returned_later:
        what += f"; reported after its later return {unit.return_id}, so it stays returned"
    entry = HistoryEntry(
        EventType.ITEM_SOLD, event_id, sale.sold_at, what, ref, tuple(flags), sale.location
    )
    sold = replace(
        unit,
        status=unit.status if returned_later else UnitStatus.SOLD,
        location=unit.location if returned_later else sale.location,
        sale_id=sale.sale_id,
        line=sale.line,
        customer_ref=sale.customer_ref,
        sold_at=sale.sold_at,
    ).with_entry(entry)
    return Outcome(sold, tuple(flags))


def _recalled_flag(
    unit: Unit, sold_at: datetime, recall_id: str, recalled_at: datetime | None
) -> Flag:
    when = (
        f"sold before recall {recall_id} was issued but reported after it"
        if recalled_at is not None and sold_at < recalled_at
        else f"under recall {recall_id}"
    )
    return Flag(
        FlagReason.RECALLED,
        f"serial {unit.serial} of {unit.sku} is {when}: contact the customer",
        recall_id=recall_id,
    )


def recalled_while_selling(
    unit: Unit, sale: ItemSold, event_id: str, recalls: Sequence[RecallScope] = ()
) -> Outcome | None:
    """A sale recorded while a recall was being applied (by another consumer) may have missed
    it: `recalls` are the ones that appeared meanwhile. Flagged now: recall wins, even a race.
    None if the unit is not covered or the sale is already flagged for a recall."""
    flagged = any(
        f.reason is FlagReason.RECALLED
        for entry in unit.entries_for(EventType.ITEM_SOLD, event_id, sale_ref(sale))
        for f in entry.flags
    )
    recalled = _with_recalls(unit, recalls)
    if flagged or not recalled.recalled:
        return None
    flag = _recalled_flag(unit, sale.sold_at, recalled.recall_ids[-1], recalled.recalled_at)
    entry = HistoryEntry(
        EventType.ITEM_SOLD,
        event_id,
        sale.sold_at,
        f"sale {sale.sale_id} line {sale.line} flagged: recall {flag.recall_id} reached the unit "
        "while the sale was being recorded",
        sale_ref(sale),
        (flag,),
        sale.location,
    )
    return Outcome(recalled.with_entry(entry), (flag,))


def sold_under_recall(unit: Unit, scope: RecallScope) -> Outcome | None:
    """A recall applied after the sale of a unit it covers, sold when the recall was already
    issued: the sale is flagged now, as it would have been had the recall been applied first.
    Which topic is applied first must not decide whether a recalled unit left unnoticed.

    A unit sold before the recall was issued gets no flag here: the recall's answer names
    its customer (sold units to contact). None if the unit is not sold under this recall;
    unchanged, with the flags it has, if its sale is already flagged for a recall."""
    if (
        unit.status is not UnitStatus.SOLD
        or unit.sale_id is None
        or unit.line is None
        or unit.sold_at is None
        or unit.sold_at < scope.issued_at
        or not scope.covers(unit.serial, unit.lot_code)
    ):
        return None
    ref = f"{unit.sale_id}#{unit.line}"
    sales = [e for e in unit.history if e.type is EventType.ITEM_SOLD and e.ref == ref]
    flagged = tuple(f for e in sales for f in e.flags if f.reason is FlagReason.RECALLED)
    if flagged:
        return Outcome(unit, flagged, changed=False)
    recalled = as_recalled(unit, [scope])
    flag = _recalled_flag(unit, unit.sold_at, scope.recall_id, scope.issued_at)
    entry = HistoryEntry(
        EventType.ITEM_SOLD,
        sales[-1].event_id if sales else scope.event_id,
        unit.sold_at,
        f"sale {unit.sale_id} line {unit.line} flagged: recall {scope.recall_id}, issued before "
        "the sale, was applied after it",
        ref,
        (flag,),
        unit.location,
    )
    return Outcome(recalled.with_entry(entry), (flag,))


def sale_without_serial(sale: ItemSold) -> Flag:
    """A serial item sold without its serial: which unit left cannot be traced. Flagged as an
    unknown serial (the registry cannot tell which unit it was); no unit changes."""
    return Flag(
        FlagReason.UNKNOWN_SERIAL,
        f"{sale.sku} is tracked by serial but sale {sale.sale_id} line {sale.line} carries no "
        f"serial: {sale.quantity} unit(s) left untraced",
    )


def flag_event_id(sku: str, sale_id: str, line: int, reason: FlagReason) -> UUID:
    """One flag per sale line and reason, whatever id the sale event had."""
    return uuid5(_NAMESPACE, f"sale-flagged {sku} {sale_id} {line} {reason.value}")


# ----------------------------------------------------------------------------------- returns


def return_ref(ret: ItemReturned) -> str:
    return f"{ret.return_id}#{ret.line}"


def return_unit(
    unit: Unit | None,
    ret: ItemReturned,
    event_id: str,
    at: datetime,
    recalls: Sequence[RecallScope] = (),
) -> Outcome:
    """The unit is back, at the return location. A recall flag stays: a unit returned because
    of a recall (or for any other reason) is still a recalled unit."""
    assert ret.serial is not None
    ref = return_ref(ret)
    if unit is not None and (
        earlier := _applied_before(unit, EventType.ITEM_RETURNED, event_id, ref)
    ):
        return earlier
    what = f"returned at {ret.location} in return {ret.return_id} ({ret.reason.value})"
    if unit is None:
        what += "; the serial was never received or sold here"
        unit = Unit(
            sku=ret.sku,
            serial=ret.serial,
            status=UnitStatus.RETURNED,
            location=ret.location,
            lot_code=ret.lot_code,
        )
    elif unit.status is not UnitStatus.SOLD:
        what += f"; it was {unit.status.value}, not sold"
    elif ret.sale_id is not None and unit.sale_id is not None and ret.sale_id != unit.sale_id:
        what += f"; it was sold in sale {unit.sale_id}, not {ret.sale_id}"
    unit = _with_recalls(unit, recalls)
    if ret.reason is ReturnReason.RECALL and not unit.recalled:
        what += "; returned for a recall, but no recall of this unit is known"
    entry = HistoryEntry(EventType.ITEM_RETURNED, event_id, at, what, ref, location=ret.location)
    returned = replace(
        unit,
        status=UnitStatus.RETURNED,
        location=ret.location,
        return_id=ret.return_id,
        return_reason=ret.reason,
        returned_at=at,
    ).with_entry(entry)
    return Outcome(returned)


# ----------------------------------------------------------------------------------- recalls


def recall_scope(recall: BatchRecalled, event_id: str) -> RecallScope:
    return RecallScope(
        recall_id=recall.recall_id,
        event_id=event_id,
        issued_at=recall.issued_at,
        lot_codes=frozenset(recall.lot_codes),
        serials=frozenset(recall.serials),
        reason=recall.reason,
    )


def recall_entry(scope: RecallScope, classification: str | None = None) -> HistoryEntry:
    """The history entry every unit of a recall gets (written by one update for all of them)."""
    klass = f" (class {classification})" if classification else ""
    what = f"recalled under {scope.recall_id}{klass}: {scope.reason}".rstrip(": ")
    return HistoryEntry(
        EventType.BATCH_RECALLED, scope.event_id, scope.issued_at, what, ref=scope.recall_id
    )


def recall_unit(unit: Unit, scope: RecallScope, entry: HistoryEntry) -> Unit | None:
    """A unit named by a recall, flagged; None if this recall flagged it already."""
    if scope.recall_id in unit.recall_ids:
        return None
    return replace(
        unit, recall_ids=(*unit.recall_ids, scope.recall_id), recalled_at=scope.issued_at
    ).with_entry(entry)


def as_recalled(unit: Unit, recalls: Sequence[RecallScope]) -> Unit:
    """The unit as its recalls leave it. A recall of a lot is one fact about the lot, saved
    once (its scope), not a write to each of its units: a million-unit recall takes effect
    the moment its scope is saved. Every reader (this view, a sale, a return) applies the
    scopes covering the unit, with the recall in its history."""
    for scope in sorted(recalls, key=lambda r: r.issued_at):
        if scope.covers(unit.serial, unit.lot_code):
            unit = recall_unit(unit, scope, recall_entry(scope)) or unit
    return unit


def recall_answer_key(recall: BatchRecalled) -> str:
    """The same recall (id and scope) gets the same answer, whatever id its event had."""
    scope = serial_digest([*(f"lot:{c}" for c in recall.lot_codes), *recall.serials])
    return f"{recall.sku} {recall.recall_id} {scope}"


def units_recalled_event_id(answer_key: str, chunk: int) -> UUID:
    return uuid5(_NAMESPACE, f"units-recalled {answer_key} {chunk}")


# The statuses every count by status names, zero or not (the store's operations' statuses
# are named only when a unit has one: a count without them is what the contract gave before).
ANSWERED_ALWAYS = (UnitStatus.IN_STOCK, UnitStatus.SOLD, UnitStatus.RETURNED)


def units_recalled(
    recall: BatchRecalled,
    counts: dict[UnitStatus, int],
    unknown_serials: Iterable[str],
    sold_units: Iterable[SoldUnit],
    chunk_size: int = RECALL_CHUNK_SIZE,
) -> list[UnitsRecalled]:
    """The answer to a recall, in chunks of at most `chunk_size` sold units (and as many
    unknown serials). Every chunk carries the totals, so any one of them tells the whole
    picture; the lists are sorted, so the same state always gives the same chunks."""
    sold = sorted(sold_units, key=lambda u: u.serial)
    unknown = sorted(set(unknown_serials))
    chunks = max(1, ceil(len(sold) / chunk_size), ceil(len(unknown) / chunk_size))
    totals = {
        status: counts.get(status, 0)
        for status in UnitStatus
        if status in ANSWERED_ALWAYS or counts.get(status, 0)
    }
    return [
        UnitsRecalled(
            sku=recall.sku,
            recall_id=recall.recall_id,
            chunk=index + 1,
            chunks=chunks,
            counts=totals,
            unknown_serials=unknown[index * chunk_size : (index + 1) * chunk_size],
            sold_units=sold[index * chunk_size : (index + 1) * chunk_size],
        )
        for index in range(chunks)
    ]


# ---------------------------------------------------------------------------------- warranty


class WarrantyStatus(StrEnum):
    IN_WARRANTY = "in_warranty"
    EXPIRED = "expired"
    NONE = "none"  # not sold (in stock, returned, replaced) or the product has no warranty


@dataclass(frozen=True)
class Warranty:
    status: WarrantyStatus
    months: int | None = None
    starts_on: date | None = None
    ends_on: date | None = None


def add_months(day: date, months: int) -> date:
    """The same day `months` later, or that month's last day when it is shorter (31 January
    plus one month is 28 or 29 February)."""
    index = day.month - 1 + months
    year, month = day.year + index // 12, index % 12 + 1
    return date(year, month, min(day.day, calendar.monthrange(year, month)[1]))


def warranty_of(unit: Unit, months: int | None, on: date) -> Warranty:
    """A sold unit's warranty on day `on`: from its sale (a replacement's, from the original
    sale) for the product's months, ending on that day `months` later, which is still
    covered. None for a unit not sold, or for a product without warranty terms."""
    start = unit.warranty_from or unit.sold_at
    if unit.status is not UnitStatus.SOLD or start is None or not months:
        return Warranty(WarrantyStatus.NONE, months)
    starts_on = start.astimezone(UTC).date()
    ends_on = add_months(starts_on, months)
    status = WarrantyStatus.IN_WARRANTY if on <= ends_on else WarrantyStatus.EXPIRED
    return Warranty(status, months, starts_on, ends_on)


@dataclass(frozen=True)
class ClaimOutcome:
    """What a claim does: the units it changes (before, after), or why it is refused.
    `changed` is False when the claim was applied before (the same event, or the fact sent
    again under another id): nothing is written and nothing refused."""

    changes: tuple[tuple[Unit, Unit], ...] = ()
    refusal: ClaimRefusal | None = None
    detail: str = ""
    warranty: Warranty = Warranty(WarrantyStatus.NONE)
    changed: bool = True


def _refused(reason: ClaimRefusal, detail: str, warranty: Warranty | None = None) -> ClaimOutcome:
    return ClaimOutcome(
        refusal=reason, detail=clip(detail), warranty=warranty or Warranty(WarrantyStatus.NONE)
    )


def claim_refused_event_id(sku: str, claim_id: str) -> UUID:
    """One refusal per claim, whatever id the claim's event had."""
    return uuid5(_NAMESPACE, f"warranty-claim-refused {sku} {claim_id}")


def take_claim(
    unit: Unit | None,
    replacement: Unit | None,
    claim: WarrantyClaimed,
    event_id: str,
    months: int | None,
    recalls: Sequence[RecallScope] = (),
) -> ClaimOutcome:
    """Apply a warranty claim to a sold unit, or refuse it naming the rule.

    Only a sold unit can be claimed on; outside its warranty (or without one) only with an
    `override_reason`. A replacement must be in stock at the claim's location and under no
    recall (no override: a recalled unit is never handed out). The claimed unit keeps the
    claim in its history; a refund or replacement takes it back (returned, at the claim's
    location); the replacement becomes sold to the same customer, under the same sale, its
    warranty running from the original sale, and each unit names the other."""
    name = f"serial {claim.serial} of {claim.sku}"
    if unit is None:
        return _refused(ClaimRefusal.UNKNOWN_SERIAL, f"{name} is not in the registry")
    if any(c.claim_id == claim.claim_id for c in unit.claims) or unit.entries_for(
        EventType.WARRANTY_CLAIMED, event_id, claim.claim_id
    ):
        return ClaimOutcome(changed=False)
    if unit.status is not UnitStatus.SOLD:
        return _refused(
            ClaimRefusal.NOT_SOLD,
            f"{name} is {unit.status.value} at {unit.location}, not sold: only a sold unit "
            f"has a warranty to claim on (claim {claim.claim_id})",
        )
    warranty = warranty_of(unit, months, claim.claimed_at.astimezone(UTC).date())
    covered = warranty.status is WarrantyStatus.IN_WARRANTY
    if not covered and claim.override_reason is None:
        if warranty.status is WarrantyStatus.NONE:
            return _refused(
                ClaimRefusal.NO_WARRANTY,
                f"{claim.sku} has no warranty terms, so {name} has no warranty: claim "
                f"{claim.claim_id} needs an override_reason",
                warranty,
            )
        return _refused(
            ClaimRefusal.OUTSIDE_WARRANTY,
            f"the warranty of {name} ended on {warranty.ends_on} (sold {warranty.starts_on}, "
            f"{months} months); claim {claim.claim_id} of {claim.claimed_at.date()} needs an "
            "override_reason",
            warranty,
        )
    if claim.kind is ClaimKind.REPLACEMENT:
        other = f"replacement serial {claim.replacement_serial}"
        if replacement is None:
            return _refused(
                ClaimRefusal.REPLACEMENT_NOT_IN_STOCK,
                f"{other} of {claim.sku} is not in the registry (claim {claim.claim_id})",
                warranty,
            )
        offered = as_recalled(replacement, recalls)
        if offered.status is not UnitStatus.IN_STOCK or offered.location != claim.location:
            return _refused(
                ClaimRefusal.REPLACEMENT_NOT_IN_STOCK,
                f"{other} is {offered.status.value} at {offered.location}, not in stock "
                f"at {claim.location} where claim {claim.claim_id} was taken",
                warranty,
            )
        if offered.recalled:
            return _refused(
                ClaimRefusal.REPLACEMENT_RECALLED,
                f"{other} is under recall {', '.join(offered.recall_ids)}: it cannot "
                f"replace {name} (claim {claim.claim_id})",
                warranty,
            )
    record = WarrantyClaim(
        claim_id=claim.claim_id,
        kind=claim.kind,
        event_id=event_id,
        at=claim.claimed_at,
        location=claim.location,
        in_warranty=covered,
        warranty_ends_on=warranty.ends_on,
        replacement_serial=claim.replacement_serial,
        override_reason=claim.override_reason,
        problem=claim.problem,
        claimed_by=claim.claimed_by,
    )
    if covered:
        terms = f"in warranty until {warranty.ends_on}"
    else:
        ended = f"warranty ended {warranty.ends_on}" if warranty.ends_on else "no warranty"
        terms = f"{ended}, granted: {claim.override_reason}"
    what = f"warranty claim {claim.claim_id} ({claim.kind.value}) at {claim.location}"
    if claim.kind is ClaimKind.REPLACEMENT:
        what += f": replaced by serial {claim.replacement_serial}"
    elif claim.kind is ClaimKind.REFUND:
        what += ": refunded, the unit taken back"
    what += f"; {terms}"
    entry = HistoryEntry(
        EventType.WARRANTY_CLAIMED,
        event_id,
        claim.claimed_at,
        clip(what),
        ref=claim.claim_id,
        location=claim.location,
    )
    claimed = as_recalled(unit, recalls)
    claimed = replace(claimed, claims=(*claimed.claims, record))
    if claim.kind is not ClaimKind.REPAIR:
        claimed = replace(
            claimed,
            status=UnitStatus.RETURNED,
            location=claim.location,
            return_id=claim.claim_id,
            return_reason=ReturnReason.DAMAGED,
            returned_at=claim.claimed_at,
            replaced_by=claim.replacement_serial,
        )
    changes = [(unit, claimed.with_entry(entry))]
    if claim.kind is ClaimKind.REPLACEMENT:
        assert replacement is not None
        given = HistoryEntry(
            EventType.WARRANTY_CLAIMED,
            event_id,
            claim.claimed_at,
            f"given at {claim.location} under warranty claim {claim.claim_id} to replace "
            f"serial {claim.serial}, to the same customer",
            ref=claim.claim_id,
            location=claim.location,
        )
        changes.append(
            (
                replacement,
                replace(
                    as_recalled(replacement, recalls),
                    status=UnitStatus.SOLD,
                    sale_id=unit.sale_id,
                    line=unit.line,
                    customer_ref=unit.customer_ref,
                    sold_at=claim.claimed_at,
                    warranty_from=unit.warranty_from or unit.sold_at,
                    replaces=claim.serial,
                ).with_entry(given),
            )
        )
    return ClaimOutcome(changes=tuple(changes), warranty=warranty)


# --------------------------------------------------------------------------------- transfers


def ship_unit(unit: Unit | None, shipped: TransferShipped, serial: str, event_id: str) -> Outcome:
    """The unit left its location in a transfer: in transit to the destination until it is
    received there. A unit not in stock where it left from is shipped all the same (the
    goods left), with the surprise in its history."""
    ref = f"{shipped.transfer_id} shipped"
    if unit is not None and (
        earlier := _applied_before(unit, EventType.TRANSFER_SHIPPED, event_id, ref)
    ):
        return earlier
    what = (
        f"shipped from {shipped.location} to {shipped.to_location} in transfer "
        f"{shipped.transfer_id}"
    )
    if unit is None:
        what += "; the serial was never received here"
        unit = Unit(
            sku=shipped.sku, serial=serial, status=UnitStatus.IN_STOCK, location=shipped.location
        )
    elif unit.status is not UnitStatus.IN_STOCK or unit.location != shipped.location:
        what += f"; it was {unit.status.value} at {unit.location}"
    entry = HistoryEntry(
        EventType.TRANSFER_SHIPPED,
        event_id,
        shipped.shipped_at,
        what,
        ref,
        location=shipped.location,
    )
    moved = replace(
        unit,
        status=UnitStatus.IN_STOCK,
        location=shipped.location,
        transfer_id=shipped.transfer_id,
        in_transit_to=shipped.to_location,
    )
    return Outcome(moved.with_entry(entry))


def receive_unit(
    unit: Unit | None,
    received: TransferReceived,
    serial: str,
    event_id: str,
    recalls: Sequence[RecallScope] = (),
) -> Outcome:
    """The unit arrived with a transfer: in stock at the destination. One that was not shipped
    in this transfer (or anywhere near here) arrived all the same, with the difference in its
    history, as the transfer shows it in stock."""
    ref = f"{received.transfer_id} received"
    if unit is not None and (
        earlier := _applied_before(unit, EventType.TRANSFER_RECEIVED, event_id, ref)
    ):
        return earlier
    what = f"received at {received.location} in transfer {received.transfer_id}"
    if unit is None:
        what += "; the serial was never received or shipped"
        unit = Unit(
            sku=received.sku, serial=serial, status=UnitStatus.IN_STOCK, location=received.location
        )
    elif unit.transfer_id != received.transfer_id or unit.in_transit_to is None:
        what += (
            f"; it was not shipped in this transfer (it was {unit.status.value} at {unit.location})"
        )
    elif unit.in_transit_to != received.location:
        what += f"; it was sent to {unit.in_transit_to}"
    unit = _with_recalls(unit, recalls)
    entry = HistoryEntry(
        EventType.TRANSFER_RECEIVED,
        event_id,
        received.received_at,
        what,
        ref,
        location=received.location,
    )
    arrived = replace(
        unit,
        status=UnitStatus.IN_STOCK,
        location=received.location,
        transfer_id=received.transfer_id,
        in_transit_to=None,
    )
    return Outcome(arrived.with_entry(entry))


# -------------------------------------------------------------------- the store's operations

# Units on a store's shelf as stock books them: in stock, or back from a customer for no
# fault (stock puts those on hand again). Recalled units are held apart in quarantine, and
# units returned damaged or for a recall are held apart too: a shelf count is not of them.
_SHELF = frozenset({UnitStatus.IN_STOCK, UnitStatus.RETURNED})
# Where a unit is no longer part of any store's stock.
GONE = frozenset({UnitStatus.WRITTEN_OFF, UnitStatus.DESTROYED, UnitStatus.RETURNED_TO_SUPPLIER})


def on_shelf(unit: Unit, location: str) -> bool:
    """Whether a store's count of its shelf is a count of this unit (see `_SHELF`)."""
    if unit.location != location or unit.status not in _SHELF or unit.recalled:
        return False
    return unit.status is UnitStatus.IN_STOCK or unit.return_reason is ReturnReason.CUSTOMER


def _was(unit: Unit) -> str:
    return f"{unit.status.value} at {unit.location}"


def counted_missing(
    unit: Unit, count: StockCounted, event_id: str, recalls: Sequence[RecallScope] = ()
) -> Outcome | None:
    """A unit on the shelf at the count's location that the count did not list: missing
    there (its location kept, for whoever looks for it). None if it is not the count's."""
    ref = count.count_id
    if earlier := _applied_before(unit, EventType.STOCK_COUNTED, event_id, ref):
        return earlier
    unit = as_recalled(unit, recalls)
    if not on_shelf(unit, count.location):
        return None
    entry = HistoryEntry(
        EventType.STOCK_COUNTED,
        event_id,
        count.counted_at,
        f"missing at {count.location}: count {count.count_id} did not find it",
        ref,
        location=count.location,
    )
    return Outcome(replace(unit, status=UnitStatus.MISSING).with_entry(entry))


def counted_found(
    unit: Unit | None,
    count: StockCounted,
    serial: str,
    event_id: str,
    recalls: Sequence[RecallScope] = (),
) -> Outcome | None:
    """A serial the count found at its location: in stock there, whatever the registry
    thought (missing, in stock elsewhere, sold...): a count is a physical fact, and stock
    has it on hand. A serial never received is registered in stock there, for its receipt
    to adopt. None if the unit was on the shelf there already."""
    ref = count.count_id
    if unit is not None and (
        earlier := _applied_before(unit, EventType.STOCK_COUNTED, event_id, ref)
    ):
        return earlier
    what = f"found at {count.location} in count {count.count_id}"
    if unit is None:
        what += "; the serial was never received here"
        unit = Unit(
            sku=count.sku, serial=serial, status=UnitStatus.IN_STOCK, location=count.location
        )
    else:
        unit = as_recalled(unit, recalls)
        if on_shelf(unit, count.location) and unit.status is UnitStatus.IN_STOCK:
            return None
        if unit.location != count.location or unit.status is not UnitStatus.IN_STOCK:
            what += f" (it was {_was(unit)})"
    entry = HistoryEntry(
        EventType.STOCK_COUNTED, event_id, count.counted_at, what, ref, location=count.location
    )
    return Outcome(
        replace(unit, status=UnitStatus.IN_STOCK, location=count.location).with_entry(entry)
    )


def adjust_unit(
    unit: Unit | None,
    adjustment: StockAdjusted,
    serial: str,
    event_id: str,
    recalls: Sequence[RecallScope] = (),
) -> Outcome:
    """A unit written off (out: it leaves stock, `written_off`, with the reason) or found
    (in: in stock at the adjustment's location again). Applied whatever the unit's state
    (a physical fact, as stock applies it), with what it was in the history."""
    ref = adjustment.adjustment_id
    if unit is not None and (
        earlier := _applied_before(unit, EventType.STOCK_ADJUSTED, event_id, ref)
    ):
        return earlier
    out = adjustment.direction is AdjustmentDirection.OUT
    status = UnitStatus.WRITTEN_OFF if out else UnitStatus.IN_STOCK
    if out:
        what = (
            f"written off at {adjustment.location} ({adjustment.reason.value}) in "
            f"adjustment {adjustment.adjustment_id}"
        )
    else:
        what = f"found at {adjustment.location} in adjustment {adjustment.adjustment_id}"
    if unit is None:
        what += "; the serial was never received here"
        unit = Unit(sku=adjustment.sku, serial=serial, status=status, location=adjustment.location)
    else:
        unit = as_recalled(unit, recalls)
        if (
            not out
            or unit.status is not UnitStatus.IN_STOCK
            or unit.location != adjustment.location
        ):
            what += f" (it was {_was(unit)})"
    if adjustment.note:
        what += f": {adjustment.note}"
    entry = HistoryEntry(
        EventType.STOCK_ADJUSTED,
        event_id,
        adjustment.adjusted_at,
        clip(what),
        ref,
        location=adjustment.location,
    )
    return Outcome(replace(unit, status=status, location=adjustment.location).with_entry(entry))


def dispose_unit(
    unit: Unit | None,
    disposal: StockDisposed,
    serial: str,
    event_id: str,
    recalls: Sequence[RecallScope] = (),
) -> Outcome:
    """A held unit left for good: destroyed, or returned to the supplier, under the
    disposal's reference (and the recall it clears). Applied whatever the unit's state."""
    ref = disposal.disposal_id
    if unit is not None and (
        earlier := _applied_before(unit, EventType.STOCK_DISPOSED, event_id, ref)
    ):
        return earlier
    destroyed = disposal.method is DisposalMethod.DESTROYED
    status = UnitStatus.DESTROYED if destroyed else UnitStatus.RETURNED_TO_SUPPLIER
    done = "destroyed" if destroyed else "returned to the supplier"
    what = (
        f"{done} from {disposal.location} in disposal {disposal.disposal_id}, "
        f"reference {disposal.reference}"
    )
    if disposal.recall_id:
        what += f", for recall {disposal.recall_id}"
    if unit is None:
        what += "; the serial was never received here"
        unit = Unit(sku=disposal.sku, serial=serial, status=status, location=disposal.location)
    else:
        unit = as_recalled(unit, recalls)
        if (
            unit.location != disposal.location
            or unit.status in GONE
            or unit.status is UnitStatus.SOLD
        ):
            what += f" (it was {_was(unit)})"
    entry = HistoryEntry(
        EventType.STOCK_DISPOSED,
        event_id,
        disposal.disposed_at,
        clip(what),
        ref,
        location=disposal.location,
    )
    return Outcome(replace(unit, status=status, location=disposal.location).with_entry(entry))
