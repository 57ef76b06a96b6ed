"""The movements ledger: what each applied event did to each lot at one location. No I/O.

A level keeps totals; a lot trace needs the facts behind them (which receipt, which sale and
customer, which return, which recall). A movement is derived from the counters of a level
before and after one event, so it records what the domain actually did (FEFO picks, units
sold earlier without a lot and settled by a receipt, stock going straight to quarantine),
not what the event asked for. Its id is computed from the event, so a replay inserts the
same movement again and the insert is dropped as a duplicate.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime
from enum import StrEnum
from typing import Any

from lotline.events import (
    BatchRecalled,
    CloudEvent,
    ItemReceived,
    ItemReturned,
    ItemSold,
    ReceiptRejected,
    StockAdjusted,
    StockCounted,
    StockDisposed,
    TransferReceived,
    TransferShipped,
    WarrantyClaimed,
    WarrantyClaimRefused,
)
from lotline.stock.domain import Level


class MovementKind(StrEnum):
    RECEIVED = "received"
    SOLD = "sold"
    # Units sold before any lot covered them, attributed to the lot a later receipt brought.
    SALE_ATTRIBUTED = "sale_attributed"
    RETURNED = "returned"
    QUARANTINED = "quarantined"
    # Units a receipt booked that the serial registry refused (its serials were already
    # registered, or it listed none): no longer on hand; the reference is the receipt.
    REFUSED = "refused"
    # A physical count of the lot here: `quantity` is what was found, `variance` the
    # difference from the books (a count that matched is recorded too: it is evidence).
    COUNTED = "counted"
    # Units written off (`direction` out) or found (in), with the adjustment's reason.
    ADJUSTED = "adjusted"
    # Held units destroyed or sent back to the supplier (`disposal_method`, `reference`).
    DISPOSED = "disposed"
    # Units shipped from here to another location (`to_location`), and units a transfer
    # brought here (`from_location`, when the shipment is known); the reference is the
    # transfer.
    SHIPPED = "shipped"
    TRANSFER_RECEIVED = "transfer_received"
    # A unit the after-sales desk gave a customer to replace a faulty one (warranty claim);
    # the faulty unit's return is a `returned` movement of the claim, held as damaged.
    REPLACED = "replaced"
    # A claim the serial registry refused, undone: `quantity` units of this lot moved back
    # (the replacement on hand again, the faulty unit no longer held).
    CLAIM_REFUSED = "claim_refused"


@dataclass(frozen=True)
class LotCounts:
    received: int = 0
    sold: int = 0
    returned: int = 0
    quarantined: int = 0
    refused: int = 0
    on_hand: int = 0
    adjusted_out: int = 0
    adjusted_in: int = 0
    disposed: int = 0
    transferred_out: int = 0
    transferred_in: int = 0
    replaced: int = 0


@dataclass(frozen=True)
class Movement:
    id: str
    kind: MovementKind
    sku: str
    location: str
    lot_code: str | None
    quantity: int
    at: datetime
    event_id: str
    document_type: str
    document_id: str
    line: int | None = None
    customer_ref: str | None = None
    supplier: str | None = None
    expires_on: date | None = None
    sale_id: str | None = None
    return_reason: str | None = None
    recall_id: str | None = None
    reject_reason: str | None = None
    variance: int | None = None
    adjust_reason: str | None = None
    direction: str | None = None
    disposal_method: str | None = None
    reference: str | None = None
    from_location: str | None = None
    to_location: str | None = None

    def to_document(self) -> dict[str, Any]:
        doc: dict[str, Any] = {
            "_id": self.id,
            "kind": self.kind.value,
            "sku": self.sku,
            "location": self.location,
            "lot_code": self.lot_code,
            "quantity": self.quantity,
            "at": self.at,
            "event_id": self.event_id,
            "document_type": self.document_type,
            "document_id": self.document_id,
        }
        optional = {
            "line": self.line,
            "customer_ref": self.customer_ref,
            "supplier": self.supplier,
            "expires_on": self.expires_on.isoformat() if self.expires_on else None,
            "sale_id": self.sale_id,
            "return_reason": self.return_reason,
            "recall_id": self.recall_id,
            "reject_reason": self.reject_reason,
            "variance": self.variance,
            "adjust_reason": self.adjust_reason,
            "direction": self.direction,
            "disposal_method": self.disposal_method,
            "reference": self.reference,
            "from_location": self.from_location,
            "to_location": self.to_location,
        }
        doc.update({name: value for name, value in optional.items() if value is not None})
        return doc


def counts_of(level: Level) -> dict[str | None, LotCounts]:
    """The counters a movement is derived from, per lot (taken before the event applies)."""
    return {
        code: LotCounts(
            lot.received,
            lot.sold,
            lot.returned,
            lot.quarantined,
            lot.refused,
            lot.on_hand,
            lot.adjusted_out,
            lot.adjusted_in,
            lot.disposed,
            lot.transferred_out,
            lot.transferred_in,
            replaced=lot.replaced,
        )
        for code, lot in level.lots.items()
    }


def movements(
    event: CloudEvent[Any],
    before: dict[str | None, LotCounts],
    level: Level,
    from_location: str | None = None,
) -> list[Movement]:
    """The movements one applied event made at this level, one per lot and kind
    (`from_location`: where a transfer received here came from, if known)."""
    found: list[Movement] = []
    for code, lot in level.lots.items():
        was = before.get(code, LotCounts())
        deltas = {
            "received": lot.received - was.received,
            "sold": lot.sold - was.sold,
            "returned": lot.returned - was.returned,
            "quarantined": lot.quarantined - was.quarantined,
            "refused": lot.refused - was.refused,
            "adjusted": lot.adjusted_out - was.adjusted_out + lot.adjusted_in - was.adjusted_in,
            "disposed": lot.disposed - was.disposed,
            "transferred_out": lot.transferred_out - was.transferred_out,
            "transferred_in": lot.transferred_in - was.transferred_in,
            "replaced": lot.replaced - was.replaced,
        }
        if isinstance(event.data, StockCounted):
            counted = code in {c.lot_code for c in event.data.lots}
            if not (counted or was.on_hand or lot.on_hand):
                continue
            found.append(
                _movement(
                    event,
                    level,
                    code,
                    MovementKind.COUNTED,
                    lot.on_hand,
                    None,
                    lot.expires_on,
                    variance=lot.on_hand - was.on_hand,
                )
            )
            continue
        for kind, quantity in _kinds(event.data, deltas):
            found.append(
                _movement(
                    event,
                    level,
                    code,
                    kind,
                    quantity,
                    lot.recall_id,
                    lot.expires_on,
                    from_location=from_location,
                )
            )
    return found


def _kinds(data: Any, deltas: dict[str, int]) -> list[tuple[MovementKind, int]]:
    kinds: list[tuple[MovementKind, int]] = []
    if isinstance(data, ItemReceived):
        kinds.append((MovementKind.RECEIVED, deltas["received"]))
        kinds.append((MovementKind.SALE_ATTRIBUTED, deltas["sold"]))
    elif isinstance(data, ItemSold):
        kinds.append((MovementKind.SOLD, deltas["sold"]))
    elif isinstance(data, ItemReturned):
        kinds.append((MovementKind.RETURNED, deltas["returned"]))
    elif isinstance(data, StockAdjusted):
        kinds.append((MovementKind.ADJUSTED, deltas["adjusted"]))
    elif isinstance(data, StockDisposed):
        kinds.append((MovementKind.DISPOSED, deltas["disposed"]))
    elif isinstance(data, TransferShipped):
        kinds.append((MovementKind.SHIPPED, deltas["transferred_out"]))
    elif isinstance(data, TransferReceived):
        kinds.append((MovementKind.TRANSFER_RECEIVED, deltas["transferred_in"]))
    elif isinstance(data, WarrantyClaimed):
        kinds.append((MovementKind.REPLACED, deltas["replaced"]))
        kinds.append((MovementKind.RETURNED, deltas["returned"]))
    elif isinstance(data, WarrantyClaimRefused):
        kinds.append((MovementKind.CLAIM_REFUSED, -deltas["replaced"] - deltas["returned"]))
    # A receipt applies a refusal that arrived before it; a rejection, one of a booked receipt.
    kinds.append((MovementKind.REFUSED, deltas["refused"]))
    # Stock leaving quarantine (sold or refused from it) is in that movement; only what
    # enters it is a fact of its own.
    kinds.append((MovementKind.QUARANTINED, deltas["quarantined"]))
    return [(kind, quantity) for kind, quantity in kinds if quantity > 0]


def _movement(
    event: CloudEvent[Any],
    level: Level,
    lot_code: str | None,
    kind: MovementKind,
    quantity: int,
    recall_id: str | None,
    expires_on: date | None,
    *,
    variance: int | None = None,
    from_location: str | None = None,
) -> Movement:
    data = event.data
    common: dict[str, Any] = {
        "id": f"{event.dedupe_key}#{level.location}#{lot_code or ''}#{kind.value}",
        "kind": kind,
        "sku": level.sku,
        "location": level.location,
        "lot_code": lot_code,
        "quantity": quantity,
        "event_id": event.dedupe_key,
        "expires_on": expires_on,
        "recall_id": recall_id if kind is MovementKind.QUARANTINED else None,
    }
    if isinstance(data, ItemReceived):
        refusal = level.refusals.get(data.receipt_id)
        return Movement(
            **common,
            at=data.received_at or event.time,
            document_type="receipt",
            document_id=data.receipt_id,
            supplier=data.supplier,
            reject_reason=(
                refusal.reason.value
                if refusal is not None and kind is MovementKind.REFUSED
                else None
            ),
        )
    if isinstance(data, ReceiptRejected):
        # The rejection carries its receipt's time: the refusal sits with what it undoes.
        return Movement(
            **common,
            at=event.time,
            document_type="receipt",
            document_id=data.receipt_id,
            reject_reason=data.reason.value,
        )
    if isinstance(data, ItemSold):
        return Movement(
            **common,
            at=data.sold_at,
            document_type="sale",
            document_id=data.sale_id,
            line=data.line,
            customer_ref=data.customer_ref,
            sale_id=data.sale_id,
        )
    if isinstance(data, ItemReturned):
        return Movement(
            **common,
            at=data.returned_at or event.time,
            document_type="return",
            document_id=data.return_id,
            line=data.line,
            sale_id=data.sale_id,
            return_reason=data.reason.value,
        )
    if isinstance(data, StockCounted):
        return Movement(
            **common,
            at=data.counted_at,
            document_type="count",
            document_id=data.count_id,
            variance=variance,
        )
    if isinstance(data, StockAdjusted):
        return Movement(
            **common,
            at=data.adjusted_at,
            document_type="adjustment",
            document_id=data.adjustment_id,
            adjust_reason=data.reason.value,
            direction=data.direction.value,
        )
    if isinstance(data, StockDisposed):
        return Movement(
            **{**common, "recall_id": data.recall_id or recall_id},
            at=data.disposed_at,
            document_type="disposal",
            document_id=data.disposal_id,
            disposal_method=data.method.value,
            reference=data.reference,
        )
    if isinstance(data, TransferShipped):
        return Movement(
            **common,
            at=data.shipped_at,
            document_type="transfer",
            document_id=data.transfer_id,
            from_location=data.location,
            to_location=data.to_location,
        )
    if isinstance(data, TransferReceived):
        # The lot's recall rides with the arrival: its units go on to quarantine.
        return Movement(
            **{**common, "recall_id": recall_id},
            at=data.received_at,
            document_type="transfer",
            document_id=data.transfer_id,
            from_location=from_location,
            to_location=data.location,
        )
    if isinstance(data, WarrantyClaimed | WarrantyClaimRefused):
        return Movement(
            **common,
            at=data.claimed_at if isinstance(data, WarrantyClaimed) else event.time,
            document_type="warranty_claim",
            document_id=data.claim_id,
            return_reason="damaged" if kind is MovementKind.RETURNED else None,
        )
    if isinstance(data, BatchRecalled):
        return Movement(
            **common, at=data.issued_at, document_type="recall", document_id=data.recall_id
        )
    raise TypeError(f"no movement is derived from a {type(data).__name__} event")
