"""Stock rules: receiving, FEFO picking, quarantine, what a sale or a return does to a level.

Plain Python, no I/O. A `Level` is the stock of one SKU at one location, with its lots; it
is the unit of consistency: every event changes exactly one level, so each change is one
atomic document write.

Serial units the serial registry refused (`receipt-rejected`: their serials were already
registered elsewhere, or the receipt listed none) are not on hand: they move from what their
receipt booked into the lot's `refused` figure, so stock shows what the registry holds and a
person still sees the units. The rejection may arrive before its receipt (two topics), so a
level remembers the serial receipts it booked lately and keeps a refusal of a receipt it has
not booked yet until that receipt arrives, so waiting for it never takes on-hand below zero.

A store's own operations change a level too: a count sets each lot's on-hand to what was
found (the difference is the lot's `variance`), an adjustment writes units off or books
units found, and a disposal takes quarantined (then damaged) units out for good. A level
with a reorder point knows whether it is `low`, so each crossing below it is reported once.

A transfer moves units between two levels of one SKU: shipping takes them off the source
(`transferred_out`) and puts them `in_transit` at the destination; the receipt books what
arrived there (`transferred_in`) and leaves what did not as `missing_in_transit`, visible on
the `Transfer` as its difference. A recalled lot arriving goes straight to quarantine, and
its account (`accounted_received`) follows the units, so a recall counts each unit once.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Any

from lotline.events import (
    AdjustmentDirection,
    ClaimKind,
    FlagReason,
    RejectReason,
    ReturnReason,
    Tracking,
)

# Stock without a lot (quantity items, or units sold beyond every known lot) sits here.
NO_LOT: str | None = None


@dataclass(frozen=True)
class Recall:
    """A recall of one lot of a SKU, as the stock service knows it."""

    recall_id: str
    lot_code: str
    issued_at: datetime


@dataclass
class LotStock:
    code: str | None
    expires_on: date | None = None
    on_hand: int = 0
    quarantined: int = 0
    damaged: int = 0
    recall_id: str | None = None
    received: int = 0
    sold: int = 0
    returned: int = 0
    # Units its receipts booked that the serial registry refused: not on hand, not here.
    refused: int = 0
    # What the store's own operations did: counted minus booked (signed, summed over
    # counts), units written off and found, units destroyed or sent back to the supplier.
    variance: int = 0
    adjusted_out: int = 0
    adjusted_in: int = 0
    disposed: int = 0
    # Units sold before the lot's recall was issued (customers to contact, not a mistake).
    sold_before_recall: int = 0
    # Transfers: units shipped from here, on their way here, arrived here, and shipped here
    # but never arrived (a short receipt).
    transferred_out: int = 0
    in_transit: int = 0
    transferred_in: int = 0
    missing_in_transit: int = 0

    @property
    def accounted_received(self) -> int:
        """The units of the lot this location answers for: received (less what the serial
        registry refused: those were never here), plus what transfers brought or are
        bringing here (arrived, on the way, lost on the way), less what they took away.
        Summed over locations, each unit counts once."""
        return (
            self.received
            - self.refused
            + self.transferred_in
            + self.in_transit
            + self.missing_in_transit
            - self.transferred_out
        )

    # Units handed to customers by the after-sales desk to replace faulty ones (warranty).
    replaced: int = 0

    def is_expired(self, today: date) -> bool:
        return self.expires_on is not None and self.expires_on < today

    def is_sellable(self, today: date) -> bool:
        return self.recall_id is None and not self.is_expired(today) and self.on_hand > 0

    def fefo_order(self) -> tuple[date, str]:
        return (self.expires_on or date.max, self.code or "")


@dataclass(frozen=True)
class Pick:
    lot_code: str | None
    quantity: int


@dataclass(frozen=True)
class Flag:
    reason: FlagReason
    detail: str
    quantity: int
    lot_code: str | None = None
    recall_id: str | None = None


@dataclass(frozen=True)
class SaleOutcome:
    picks: list[Pick]
    flags: list[Flag]


@dataclass(frozen=True)
class Quarantine:
    """A lot's stock at this location now held back for a recall (the new total)."""

    recall_id: str
    lot_code: str | None
    quantity: int


@dataclass(frozen=True)
class Variance:
    """What a count found of one lot against the books (`counted - booked`)."""

    lot_code: str | None
    booked: int
    counted: int

    @property
    def difference(self) -> int:
        return self.counted - self.booked


@dataclass(frozen=True)
class BookedReceipt:
    """A receipt of serial units this level booked, remembered for a refusal to find."""

    lot_code: str | None
    at: datetime


@dataclass(frozen=True)
class Refusal:
    """Units of a receipt the serial registry refused; `pending` until the receipt is booked."""

    receipt_id: str
    lot_code: str | None
    quantity: int
    reason: RejectReason
    pending: bool = False


@dataclass(frozen=True)
class ClaimBooking:
    """A warranty claim as this level applied it: the lot its replacement unit left, the lot
    the faulty unit came back into (held as damaged), or `refused` by the serial registry,
    in which case nothing of it stays here (a refusal before its claim keeps it out)."""

    claim_id: str
    at: datetime
    replacement_lot: str | None = None
    replaced: bool = False
    returned_lot: str | None = None
    returned: bool = False
    refused: bool = False

    def to_document(self) -> dict[str, Any]:
        return {
            "claim_id": self.claim_id,
            "at": self.at.isoformat(),
            "replacement_lot": self.replacement_lot,
            "replaced": self.replaced,
            "returned_lot": self.returned_lot,
            "returned": self.returned,
            "refused": self.refused,
        }

    @classmethod
    def from_document(cls, raw: dict[str, Any]) -> ClaimBooking:
        return cls(
            claim_id=raw["claim_id"],
            at=datetime.fromisoformat(raw["at"]),
            replacement_lot=raw.get("replacement_lot"),
            replaced=raw.get("replaced", False),
            returned_lot=raw.get("returned_lot"),
            returned=raw.get("returned", False),
            refused=raw.get("refused", False),
        )


@dataclass
class Level:
    sku: str
    location: str
    lots: dict[str | None, LotStock] = field(default_factory=dict)
    # Serial receipts booked lately, by receipt id (`forget_receipts` keeps it bounded).
    serial_receipts: dict[str, BookedReceipt] = field(default_factory=dict)
    # Every refusal of a receipt here, by receipt id: one per receipt, so a re-sent
    # rejection (even under a new id) changes nothing.
    refusals: dict[str, Refusal] = field(default_factory=dict)
    # The on-hand below which the store reorders (None: not watched), and whether on-hand
    # is below it now: a crossing is reported when `low` turns true, not at every sale.
    reorder_point: int | None = None
    low: bool = False
    # Warranty claims taken here lately, by claim id: what each did, or that the serial
    # registry refused it (`forget_claims` keeps it bounded, like `serial_receipts`).
    claims: dict[str, ClaimBooking] = field(default_factory=dict)

    def lot(self, code: str | None, expires_on: date | None = None) -> LotStock:
        stock = self.lots.get(code)
        if stock is None:
            stock = self.lots[code] = LotStock(code=code, expires_on=expires_on)
        elif expires_on is not None and stock.expires_on is None:
            stock.expires_on = expires_on
        return stock

    @property
    def on_hand(self) -> int:
        return sum(lot.on_hand for lot in self.lots.values())

    @property
    def quarantined(self) -> int:
        return sum(lot.quarantined for lot in self.lots.values())

    @property
    def refused(self) -> int:
        return sum(lot.refused for lot in self.lots.values())

    @property
    def in_transit(self) -> int:
        return sum(lot.in_transit for lot in self.lots.values())

    def receive(
        self,
        quantity: int,
        lot_code: str | None,
        expires_on: date | None,
        recall: Recall | None,
        serial_receipt: tuple[str, datetime] | None = None,
    ) -> Quarantine | None:
        """Book a receipt; a lot already under recall goes straight to quarantine.

        `serial_receipt` (receipt id, time) names a receipt of serial units: it is
        remembered, and a refusal that arrived before it is applied now."""
        stock = self.lot(lot_code, expires_on)
        stock.received += quantity
        if recall is not None:
            stock.recall_id = recall.recall_id
            stock.quarantined += quantity
        else:
            stock.on_hand += quantity
        if serial_receipt is not None:
            receipt_id, at = serial_receipt
            self.serial_receipts[receipt_id] = BookedReceipt(lot_code, at)
            waiting = self.refusals.get(receipt_id)
            if waiting is not None and waiting.pending:
                # The receipt's own lot, whatever the rejection said: this is where it went.
                self.refusals[receipt_id] = Refusal(
                    receipt_id, lot_code, waiting.quantity, waiting.reason
                )
                self._take_out(stock, waiting.quantity)
        if recall is not None:
            return Quarantine(recall.recall_id, lot_code, stock.quarantined)
        if lot_code is not None:
            self._settle_unattributed(stock)
        return None

    def refuse_receipt(
        self,
        receipt_id: str,
        lot_code: str | None,
        quantity: int,
        reason: RejectReason,
        *,
        receipt_forgotten: bool = False,
    ) -> Quarantine | None:
        """The serial registry refused `quantity` units of a receipt: take them out of what
        the receipt booked (on hand, or quarantine for a recalled lot) into `refused`.

        A receipt not booked here yet keeps the refusal pending until it arrives, unless it
        is older than the level's memory of receipts (`receipt_forgotten`): then it was
        booked long ago. Returns the lot's new quarantine total if the lot is under recall."""
        if receipt_id in self.refusals:
            return None  # this receipt was refused here already
        booked = self.serial_receipts.get(receipt_id)
        if booked is None and not receipt_forgotten:
            self.refusals[receipt_id] = Refusal(receipt_id, lot_code, quantity, reason, True)
            return None
        code = booked.lot_code if booked is not None else lot_code
        self.refusals[receipt_id] = Refusal(receipt_id, code, quantity, reason)
        stock = self.lot(code)
        self._take_out(stock, quantity)
        if stock.recall_id is not None:
            # Reported even when none left quarantine: the recall expects fewer units.
            return Quarantine(stock.recall_id, code, stock.quarantined)
        return None

    def _take_out(self, stock: LotStock, quantity: int) -> int:
        """Move refused units out of the lot; returns how many left its quarantine."""
        from_quarantine = min(stock.quarantined, quantity) if stock.recall_id else 0
        stock.quarantined -= from_quarantine
        stock.on_hand -= quantity - from_quarantine
        stock.refused += quantity
        return from_quarantine

    def forget_receipts(self, before: datetime) -> None:
        """Drop the serial receipts booked before `before`: a rejection comes within seconds
        of its receipt, and one of a forgotten receipt is applied as booked."""
        self.serial_receipts = {
            receipt_id: booked
            for receipt_id, booked in self.serial_receipts.items()
            if booked.at >= before
        }

    def _settle_unattributed(self, stock: LotStock) -> None:
        """Units sold before any lot could cover them came from a lot after all: this one."""
        unattributed = self.lots.get(NO_LOT)
        if unattributed is None or unattributed.on_hand >= 0 or stock.on_hand <= 0:
            return
        settled = min(-unattributed.on_hand, stock.on_hand)
        unattributed.on_hand += settled
        unattributed.sold -= settled
        stock.on_hand -= settled
        stock.sold += settled

    def sell(
        self,
        quantity: int,
        lot_code: str | None,
        tracking: Tracking,
        sold_at: datetime,
        recalls: dict[str, Recall],
    ) -> SaleOutcome:
        """Apply a sale that already happened; flag whatever about it is wrong."""
        today = sold_at.date()
        if lot_code is not None:
            picks = [Pick(lot_code, quantity)]
        elif tracking is Tracking.QUANTITY:
            picks = [Pick(NO_LOT, quantity)]
        else:
            picks = self.pick_fefo(quantity, today)
        flags: list[Flag] = []
        for pick in picks:
            flags.extend(self._take(pick, sold_at, today, recalls, scanned=lot_code is not None))
        return SaleOutcome(picks, flags)

    def pick_fefo(self, quantity: int, today: date) -> list[Pick]:
        """First expiry, first out among sellable lots; what is left is unattributed."""
        picks: list[Pick] = []
        remaining = quantity
        sellable = sorted(
            (lot for lot in self.lots.values() if lot.code is not None and lot.is_sellable(today)),
            key=LotStock.fefo_order,
        )
        for lot in sellable:
            if remaining == 0:
                break
            taken = min(lot.on_hand, remaining)
            picks.append(Pick(lot.code, taken))
            remaining -= taken
        if remaining:
            picks.append(Pick(NO_LOT, remaining))
        return picks

    def _take(
        self,
        pick: Pick,
        sold_at: datetime,
        today: date,
        recalls: dict[str, Recall],
        *,
        scanned: bool,
    ) -> list[Flag]:
        known = pick.lot_code in self.lots
        stock = self.lot(pick.lot_code)
        stock.sold += pick.quantity
        recall = recalls.get(pick.lot_code) if pick.lot_code is not None else None
        flags: list[Flag] = []
        if recall is not None:
            # Sold before the recall was issued: a customer to contact, not a till's mistake.
            if sold_at < recall.issued_at:
                stock.sold_before_recall += pick.quantity
            else:
                flags.append(
                    Flag(
                        FlagReason.RECALLED,
                        f"lot {pick.lot_code} is under recall {recall.recall_id}",
                        pick.quantity,
                        pick.lot_code,
                        recall.recall_id,
                    )
                )
        elif stock.recall_id is not None:
            flags.append(
                Flag(
                    FlagReason.QUARANTINED,
                    f"lot {pick.lot_code} is quarantined at {self.location}",
                    pick.quantity,
                    pick.lot_code,
                    stock.recall_id,
                )
            )
        elif stock.is_expired(today):
            flags.append(
                Flag(
                    FlagReason.EXPIRED,
                    f"lot {pick.lot_code} expired on {stock.expires_on}",
                    pick.quantity,
                    pick.lot_code,
                )
            )
        # Units of a recalled lot were counted as quarantined: the sold ones leave from there.
        from_quarantine = min(stock.quarantined, pick.quantity) if stock.recall_id else 0
        stock.quarantined -= from_quarantine
        shortfall = pick.quantity - from_quarantine - max(stock.on_hand, 0)
        stock.on_hand -= pick.quantity - from_quarantine
        if shortfall > 0 and not flags:
            where = f"lot {pick.lot_code}" if pick.lot_code is not None else "stock"
            if scanned and not known:
                reason, detail = FlagReason.UNKNOWN_LOT, f"lot {pick.lot_code} was never received"
            else:
                reason = FlagReason.INSUFFICIENT_STOCK
                detail = f"sold {shortfall} more than {where} on hand at {self.location}"
            flags.append(Flag(reason, detail, shortfall, pick.lot_code))
        return flags

    def return_item(
        self,
        quantity: int,
        lot_code: str | None,
        reason: ReturnReason,
        recall: Recall | None,
    ) -> Quarantine | None:
        """Stock comes back: sellable, damaged, or quarantined for a recall."""
        stock = self.lot(lot_code)
        stock.returned += quantity
        if reason is ReturnReason.DAMAGED:
            stock.damaged += quantity
            return None
        if recall is not None or reason is ReturnReason.RECALL:
            stock.quarantined += quantity
            recall_id = recall.recall_id if recall else stock.recall_id
            if recall_id is None:
                return None
            stock.recall_id = recall_id
            return Quarantine(recall_id, lot_code, stock.quarantined)
        stock.on_hand += quantity
        return None

    def quarantine_lot(self, lot_code: str, recall_id: str) -> Quarantine | None:
        """Move a recalled lot's stock here out of sale; None if this location never had it."""
        stock = self.lots.get(lot_code)
        if stock is None:
            return None
        moved = max(stock.on_hand, 0)
        stock.on_hand -= moved
        stock.quarantined += moved
        if stock.recall_id is None:
            # Everything sold here so far went before the recall (later sales are flagged).
            stock.sold_before_recall = stock.sold
        stock.recall_id = recall_id
        return Quarantine(recall_id, lot_code, stock.quarantined)

    # --- the store's own operations ---------------------------------------------------

    def count(self, counted: dict[str | None, int]) -> list[Variance]:
        """A physical count of the whole SKU here: every lot's on-hand becomes what was
        found, and a lot the count does not name was not found.

        Units counted without a lot (`NO_LOT`: a quantity item, or serials whose lot was not
        read) fill the lots the count does not name, first expiry first, up to what each
        holds on the books; what is left stays without a lot. Quarantined and damaged units
        are held apart and not part of a shelf count."""
        named = {code: n for code, n in counted.items() if code is not NO_LOT}
        unread = counted.get(NO_LOT, 0)
        targets: dict[str | None, int] = dict(named)
        others = sorted(
            (lot for lot in self.lots.values() if lot.code is not None and lot.code not in named),
            key=LotStock.fefo_order,
        )
        for lot in others:
            share = min(max(lot.on_hand, 0), unread)
            targets[lot.code] = share
            unread -= share
        if unread or NO_LOT in self.lots:
            targets[NO_LOT] = unread
        variances = []
        for code, found in targets.items():
            stock = self.lot(code)
            variances.append(Variance(code, stock.on_hand, found))
            stock.variance += found - stock.on_hand
            stock.on_hand = found
        return variances

    def adjust(
        self, quantity: int, direction: AdjustmentDirection, lot_code: str | None
    ) -> list[Pick]:
        """Units written off (out) or found (in). Out of no named lot, they leave the lots
        holding stock first expiry first (an expired lot first of all); what no lot holds
        goes below zero without a lot, as a sale would, until a count sets it right."""
        if direction is AdjustmentDirection.IN:
            stock = self.lot(lot_code)
            stock.on_hand += quantity
            stock.adjusted_in += quantity
            return [Pick(lot_code, quantity)]
        if lot_code is not None:
            picks = [Pick(lot_code, quantity)]
        else:
            picks, remaining = [], quantity
            holding = sorted(
                (lot for lot in self.lots.values() if lot.code is not None and lot.on_hand > 0),
                key=LotStock.fefo_order,
            )
            for lot in holding:
                if remaining == 0:
                    break
                taken = min(lot.on_hand, remaining)
                picks.append(Pick(lot.code, taken))
                remaining -= taken
            if remaining:
                picks.append(Pick(NO_LOT, remaining))
        for pick in picks:
            stock = self.lot(pick.lot_code)
            stock.on_hand -= pick.quantity
            stock.adjusted_out += pick.quantity
        return picks

    def dispose(self, quantity: int, lot_code: str | None) -> Quarantine | None:
        """Held units (quarantined, then damaged) left for good: destroyed or sent back.

        A disposal is a physical fact: units beyond what the books hold apart were on the
        shelf, so they come off on-hand. Returns the recall's new quarantine total when
        the disposal took units out of a recalled lot's quarantine."""
        stock = self.lot(lot_code)
        from_quarantine = min(max(stock.quarantined, 0), quantity)
        stock.quarantined -= from_quarantine
        rest = quantity - from_quarantine
        from_damaged = min(max(stock.damaged, 0), rest)
        stock.damaged -= from_damaged
        stock.on_hand -= rest - from_damaged
        stock.disposed += quantity
        if stock.recall_id is not None:
            return Quarantine(stock.recall_id, lot_code, stock.quarantined)
        return None

    # --- transfers --------------------------------------------------------------------

    def ship(
        self, lots: dict[str | None, int], today: date
    ) -> tuple[list[Pick], Quarantine | None]:
        """Units leave for another location. A named lot gives them as named; units of no
        named lot are picked first expiry first among the sellable lots, and what no lot
        holds leaves without a lot, as a sale would. Units of a recalled lot leave its
        quarantine first (sent on to be destroyed or returned). Returns the picks, and the
        recall's new total here if a recalled lot shipped."""
        picks: list[Pick] = []
        for code, quantity in lots.items():
            picks.extend(
                [Pick(code, quantity)] if code is not NO_LOT else self.pick_fefo(quantity, today)
            )
        merged: dict[str | None, int] = {}
        for pick in picks:
            merged[pick.lot_code] = merged.get(pick.lot_code, 0) + pick.quantity
        quarantine = None
        for code, quantity in merged.items():
            stock = self.lot(code)
            from_quarantine = min(max(stock.quarantined, 0), quantity) if stock.recall_id else 0
            stock.quarantined -= from_quarantine
            stock.on_hand -= quantity - from_quarantine
            stock.transferred_out += quantity
            if stock.recall_id is not None:
                quarantine = Quarantine(stock.recall_id, code, stock.quarantined)
        return [Pick(code, quantity) for code, quantity in merged.items()], quarantine

    def expect(
        self,
        shipped: dict[str | None, int],
        expiry: dict[str | None, date | None],
        recalls: dict[str, Recall],
        received: dict[str | None, int] | None,
    ) -> list[Quarantine]:
        """A transfer to here was shipped: its units are in transit, unless its receipt came
        first (`received`), in which case what was shipped and did not arrive is missing.
        A recalled lot's units are the recall's here from now on (its account moved)."""
        quarantines: list[Quarantine] = []
        for code, quantity in shipped.items():
            stock = self.lot(code, expiry.get(code))
            if received is None:
                stock.in_transit += quantity
            else:
                stock.missing_in_transit += max(quantity - received.get(code, 0), 0)
            recall = recalls.get(code) if code is not None else None
            if recall is not None and stock.recall_id is None:
                stock.recall_id = recall.recall_id
                stock.sold_before_recall = stock.sold
            if stock.recall_id is not None:
                quarantines.append(Quarantine(stock.recall_id, code, stock.quarantined))
        return quarantines

    def arrive(
        self,
        received: dict[str | None, int],
        shipped: dict[str | None, int] | None,
        recalls: dict[str, Recall],
    ) -> list[Quarantine]:
        """A transfer's goods arrived here (`received`, per lot as attributed by
        `attribute_receipt`): they are on hand, or quarantined for a recalled lot; what was
        shipped (if known yet) leaves transit, and what of it did not arrive is missing."""
        quarantines: dict[str | None, Quarantine] = {}
        for code, quantity in (shipped or {}).items():
            stock = self.lot(code)
            stock.in_transit -= quantity
            stock.missing_in_transit += max(quantity - received.get(code, 0), 0)
        for code, quantity in received.items():
            stock = self.lot(code)
            stock.transferred_in += quantity
            recall = recalls.get(code) if code is not None else None
            if recall is not None and stock.recall_id is None:
                stock.recall_id = recall.recall_id
                stock.sold_before_recall = stock.sold
            if stock.recall_id is not None:
                stock.quarantined += quantity
            else:
                stock.on_hand += quantity
        for code in {*(shipped or {}), *received}:
            stock = self.lots[code]
            if stock.recall_id is not None:
                quarantines[code] = Quarantine(stock.recall_id, code, stock.quarantined)
        return list(quarantines.values())

    # --- warranty claims ----------------------------------------------------------------

    def take_claim(self, claim_id: str, kind: ClaimKind, at: datetime) -> ClaimBooking | None:
        """A warranty claim taken here, as the serial registry applies it: a replacement's
        unit leaves on-hand (first expiry first among sellable lots: the registry refuses a
        recalled one), and for a replacement or a refund the faulty unit comes back, held
        apart as damaged (the registry has it returned, damaged, here). A repair moves no
        stock. Which lot the faulty unit is of is the registry's to know: it is held without
        one. None if the claim was taken or refused here before."""
        if claim_id in self.claims:
            return None
        if kind is ClaimKind.REPAIR:
            return None
        replacement_lot: str | None = None
        replaced = kind is ClaimKind.REPLACEMENT
        if replaced:
            [pick, *_] = self.pick_fefo(1, at.date())
            replacement_lot = pick.lot_code
            stock = self.lot(replacement_lot)
            stock.on_hand -= 1
            stock.replaced += 1
        back = self.lot(NO_LOT)
        back.returned += 1
        back.damaged += 1
        booking = ClaimBooking(claim_id, at, replacement_lot, replaced, NO_LOT, True)
        self.claims[claim_id] = booking
        return booking

    def refuse_claim(self, claim_id: str, at: datetime) -> bool:
        """The serial registry refused a claim: what it did here is undone (the replacement
        back on hand, the faulty unit no longer held). A refusal of a claim not taken here
        yet is kept, so the claim, when it comes, changes nothing. True if stock moved."""
        booking = self.claims.get(claim_id)
        if booking is not None and booking.refused:
            return False
        self.claims[claim_id] = ClaimBooking(claim_id, booking.at if booking else at, refused=True)
        if booking is None:
            return False
        if booking.replaced:
            stock = self.lot(booking.replacement_lot)
            stock.on_hand += 1
            stock.replaced -= 1
        if booking.returned:
            back = self.lot(booking.returned_lot)
            back.returned -= 1
            back.damaged -= 1
        return booking.replaced or booking.returned

    def forget_claims(self, before: datetime) -> None:
        """Drop the claims taken before `before`: a refusal comes within seconds of its claim."""
        self.claims = {
            claim_id: booking for claim_id, booking in self.claims.items() if booking.at >= before
        }

    def set_reorder_point(self, reorder_point: int | None) -> None:
        self.reorder_point = reorder_point

    def crossed_below_reorder_point(self) -> bool:
        """Whether on-hand has just gone below the reorder point (true once per crossing:
        it is armed again once on-hand is back at or above the point)."""
        below = self.reorder_point is not None and self.on_hand < self.reorder_point
        crossed = below and not self.low
        self.low = below
        return crossed

    def to_document(self) -> dict[str, Any]:
        next_expiry = self.next_expiry
        return {
            "sku": self.sku,
            "location": self.location,
            "lots": [_lot_document(lot) for lot in self.lots.values()],
            "on_hand": self.on_hand,
            "quarantined": self.quarantined,
            "refused": self.refused,
            "in_transit": self.in_transit,
            "next_expiry": next_expiry.isoformat() if next_expiry else None,
            "reorder_point": self.reorder_point,
            "low": self.low,
            # Lists, not maps: a receipt id may hold a '.' or start with '$'.
            "serial_receipts": [
                {"receipt_id": receipt_id, "lot_code": booked.lot_code, "at": booked.at.isoformat()}
                for receipt_id, booked in self.serial_receipts.items()
            ],
            "refusals": [
                {
                    "receipt_id": r.receipt_id,
                    "lot_code": r.lot_code,
                    "quantity": r.quantity,
                    "reason": r.reason.value,
                    "pending": r.pending,
                }
                for r in self.refusals.values()
            ],
            "claims": [booking.to_document() for booking in self.claims.values()],
        }

    @property
    def next_expiry(self) -> date | None:
        """When the first lot with stock on hand expires."""
        dates = [lot.expires_on for lot in self.lots.values() if lot.expires_on and lot.on_hand > 0]
        return min(dates, default=None)

    @classmethod
    def from_document(cls, doc: dict[str, Any]) -> Level:
        level = cls(
            sku=doc["sku"],
            location=doc["location"],
            reorder_point=doc.get("reorder_point"),
            low=doc.get("low", False),
        )
        for raw in doc.get("lots", []):
            expires = raw.get("expires_on")
            lot = LotStock(
                code=raw.get("code"),
                expires_on=date.fromisoformat(expires) if expires else None,
                on_hand=raw.get("on_hand", 0),
                quarantined=raw.get("quarantined", 0),
                damaged=raw.get("damaged", 0),
                recall_id=raw.get("recall_id"),
                received=raw.get("received", 0),
                sold=raw.get("sold", 0),
                returned=raw.get("returned", 0),
                refused=raw.get("refused", 0),
                variance=raw.get("variance", 0),
                adjusted_out=raw.get("adjusted_out", 0),
                adjusted_in=raw.get("adjusted_in", 0),
                disposed=raw.get("disposed", 0),
                sold_before_recall=raw.get("sold_before_recall", 0),
                transferred_out=raw.get("transferred_out", 0),
                in_transit=raw.get("in_transit", 0),
                transferred_in=raw.get("transferred_in", 0),
                missing_in_transit=raw.get("missing_in_transit", 0),
                replaced=raw.get("replaced", 0),
            )
            level.lots[lot.code] = lot
        for raw in doc.get("serial_receipts", []):
            level.serial_receipts[raw["receipt_id"]] = BookedReceipt(
                raw["lot_code"], datetime.fromisoformat(raw["at"])
            )
        for raw in doc.get("refusals", []):
            level.refusals[raw["receipt_id"]] = Refusal(
                raw["receipt_id"],
                raw["lot_code"],
                raw["quantity"],
                RejectReason(raw["reason"]),
                raw["pending"],
            )
        for raw in doc.get("claims", []):
            booking = ClaimBooking.from_document(raw)
            level.claims[booking.claim_id] = booking
        return level


def _lot_document(lot: LotStock) -> dict[str, Any]:
    return {
        "code": lot.code,
        "expires_on": lot.expires_on.isoformat() if lot.expires_on else None,
        "on_hand": lot.on_hand,
        "quarantined": lot.quarantined,
        "damaged": lot.damaged,
        "recall_id": lot.recall_id,
        "received": lot.received,
        "sold": lot.sold,
        "returned": lot.returned,
        "refused": lot.refused,
        "variance": lot.variance,
        "adjusted_out": lot.adjusted_out,
        "adjusted_in": lot.adjusted_in,
        "disposed": lot.disposed,
        "sold_before_recall": lot.sold_before_recall,
        "transferred_out": lot.transferred_out,
        "in_transit": lot.in_transit,
        "transferred_in": lot.transferred_in,
        "missing_in_transit": lot.missing_in_transit,
        "replaced": lot.replaced,
    }


def attribute_receipt(
    received: dict[str | None, int], shipped: dict[str | None, int] | None
) -> dict[str | None, int]:
    """The lots of a transfer's receipt: units whose lot was not read fill the shipped lots
    the receipt does not name, in the order they were shipped, up to what each carried;
    what is left (or all of them, before the shipment is known) stays without a lot."""
    attributed = {code: n for code, n in received.items() if code is not NO_LOT}
    unread = received.get(NO_LOT, 0)
    for code, quantity in (shipped or {}).items():
        if unread == 0:
            break
        if code is NO_LOT or code in attributed:
            continue
        share = min(quantity, unread)
        attributed[code] = share
        unread -= share
    if unread:
        attributed[NO_LOT] = unread
    return attributed


@dataclass
class Transfer:
    """One SKU's part of a transfer between two locations, as stock booked it: the lots it
    shipped (its own FEFO picks where none was named) and the lots that arrived. Either side
    may come first (two topics); the difference shows once both have."""

    transfer_id: str
    sku: str
    from_location: str | None = None
    to_location: str | None = None
    shipped: dict[str | None, int] | None = None
    received: dict[str | None, int] | None = None
    # Where the goods arrived (a receipt elsewhere than `to_location` is a discrepancy).
    received_location: str | None = None
    shipped_at: datetime | None = None
    received_at: datetime | None = None
    shipped_serials: list[str] | None = None
    received_serials: list[str] | None = None

    @property
    def status(self) -> str:
        if self.received is None:
            return "in_transit"
        if self.shipped is None:
            return "received_not_shipped"
        missing, unexpected = self.serial_difference()
        if self.difference() or missing or unexpected:
            return "discrepancy"
        return "received"

    def difference(self) -> dict[str | None, int]:
        """Per lot, units received minus units shipped, where they differ (both known; all
        of it missing when the goods arrived somewhere else)."""
        if self.shipped is None or self.received is None:
            return {}
        if self.received_location != self.to_location:
            return {code: -n for code, n in self.shipped.items()}
        lots = [*self.shipped, *(c for c in self.received if c not in self.shipped)]
        diff = {c: self.received.get(c, 0) - self.shipped.get(c, 0) for c in lots}
        return {c: n for c, n in diff.items() if n}

    def serial_difference(self) -> tuple[list[str], list[str]]:
        """Serials shipped and not received, and received and not shipped."""
        if self.shipped_serials is None or self.received_serials is None:
            return [], []
        shipped, received = set(self.shipped_serials), set(self.received_serials)
        return (
            [s for s in self.shipped_serials if s not in received],
            [s for s in self.received_serials if s not in shipped],
        )

    def to_document(self) -> dict[str, Any]:
        missing, unexpected = self.serial_difference()
        return {
            "transfer_id": self.transfer_id,
            "sku": self.sku,
            "from_location": self.from_location,
            "to_location": self.to_location,
            "status": self.status,
            "shipped": _lot_lines(self.shipped),
            "received": _lot_lines(self.received),
            "received_location": self.received_location,
            "difference": _lot_lines(self.difference()),
            "shipped_at": self.shipped_at.isoformat() if self.shipped_at else None,
            "received_at": self.received_at.isoformat() if self.received_at else None,
            "shipped_serials": self.shipped_serials,
            "received_serials": self.received_serials,
            "serials_missing": missing,
            "serials_unexpected": unexpected,
        }

    @classmethod
    def from_document(cls, doc: dict[str, Any]) -> Transfer:
        def lines(raw: list[dict[str, Any]] | None) -> dict[str | None, int] | None:
            return None if raw is None else {r["lot_code"]: r["quantity"] for r in raw}

        def when(raw: str | None) -> datetime | None:
            return datetime.fromisoformat(raw) if raw else None

        return cls(
            transfer_id=doc["transfer_id"],
            sku=doc["sku"],
            from_location=doc.get("from_location"),
            to_location=doc.get("to_location"),
            shipped=lines(doc.get("shipped")),
            received=lines(doc.get("received")),
            received_location=doc.get("received_location"),
            shipped_at=when(doc.get("shipped_at")),
            received_at=when(doc.get("received_at")),
            shipped_serials=doc.get("shipped_serials"),
            received_serials=doc.get("received_serials"),
        )


def _lot_lines(lots: dict[str | None, int] | None) -> list[dict[str, Any]] | None:
    # A list, not a map: a lot code may hold a '.' or start with '$', and None is a lot too.
    if lots is None:
        return None
    return [{"lot_code": code, "quantity": quantity} for code, quantity in lots.items()]
