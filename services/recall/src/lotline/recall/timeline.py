"""A trace as one timeline: the shape the services' parts of a lot or unit are assembled into.

Pure: the parts come in as the owning services serve them (catalog product, stock's lot
trace, the serial registry's units and history, this service's recalls), and the result is
what the trace API, the EPCIS export and the CSV export are built from.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from datetime import datetime
from enum import StrEnum
from typing import Any

from pydantic import BaseModel, Field

from lotline.recall import gs1
from lotline.recall.domain import Recall


class TraceKind(StrEnum):
    RECEIVED = "received"
    # Units of a receipt the serial registry refused (serials already registered): stock
    # took them off its on-hand, so both agree.
    REFUSED = "refused"
    SOLD = "sold"
    # Units sold before any lot covered them, attributed to this lot by a later receipt.
    SALE_ATTRIBUTED = "sale_attributed"
    RETURNED = "returned"
    # A transfer between two locations (stock's ledger): shipped from one, received at the
    # other (before the quarantine a recalled lot's arrival goes to).
    SHIPPED = "shipped"
    TRANSFER_RECEIVED = "transfer_received"
    # In this order at the same instant: a recall, then the quarantines it caused.
    RECALLED = "recalled"
    QUARANTINED = "quarantined"
    # A store's own operations (stock's ledger): a count, an adjustment, a disposal.
    COUNTED = "counted"
    ADJUSTED = "adjusted"
    DISPOSED = "disposed"
    # Warranty claims (stock's ledger): a unit given to replace a faulty one, and a claim the
    # serial registry refused, undone.
    REPLACED = "replaced"
    CLAIM_REFUSED = "claim_refused"


class ProductInfo(BaseModel):
    sku: str
    name: str | None = None
    gtin: str | None = Field(None, description="14-digit GTIN, when the product has one")
    tracking: str | None = None


class TraceEvent(BaseModel):
    """One thing that happened to the lot or unit, with its reference document."""

    id: str = Field(description="Stable id of this trace event")
    kind: TraceKind
    at: datetime
    location: str | None = Field(None, description="The store; none for a recall")
    lot_code: str | None = None
    quantity: int
    serials: list[str] = Field(default_factory=list, description="The units, when known")
    document_type: str = Field(description="receipt, sale, return or recall")
    document_id: str
    line: int | None = None
    customer_ref: str | None = None
    supplier: str | None = None
    sale_id: str | None = None
    return_reason: str | None = None
    recall_id: str | None = None
    variance: int | None = Field(None, description="A count: found minus the books")
    adjust_reason: str | None = None
    direction: str | None = Field(None, description="An adjustment: out or in")
    disposal_method: str | None = None
    reference: str | None = Field(None, description="A disposal's certificate or return number")
    from_location: str | None = Field(None, description="A transfer: where it left from")
    to_location: str | None = Field(None, description="A transfer: where it was going")
    expires_on: str | None = None
    source_event: str | None = Field(None, description="CloudEvents source#id it came from")
    detail: str | None = None


class StoreStock(BaseModel):
    location: str
    received: int
    sold: int
    returned: int
    on_hand: int
    quarantined: int
    damaged: int
    recall_id: str | None = None
    in_transit: int = 0


class UnitState(BaseModel):
    serial: str
    status: str
    recalled: bool
    location: str
    sale_id: str | None = None
    customer_ref: str | None = None
    sold_at: datetime | None = None
    return_id: str | None = None


class RecallRef(BaseModel):
    recall_id: str
    state: str
    classification: str
    reason: str
    issued_by: str
    issued_at: datetime
    lot_codes: list[str]
    serials: list[str]

    @classmethod
    def of(cls, recall: Recall) -> RecallRef:
        return cls(
            recall_id=recall.recall_id,
            state=recall.state.value,
            classification=recall.classification.value,
            reason=recall.reason,
            issued_by=recall.issued_by,
            issued_at=recall.issued_at,
            lot_codes=list(recall.lot_codes),
            serials=list(recall.serials),
        )


class LotTotals(BaseModel):
    received: int = 0
    sold: int = 0
    returned: int = 0
    on_hand: int = 0
    quarantined: int = 0
    damaged: int = 0


class LotTrace(BaseModel):
    sku: str
    lot_code: str
    product: ProductInfo
    expires_on: str | None
    totals: LotTotals
    stores: list[StoreStock]
    unit_counts: dict[str, int] | None = Field(None, description="Serial units by status")
    units: list[UnitState] | None = Field(None, description="Serial units of the lot")
    recalls: list[RecallRef]
    events: list[TraceEvent]


class UnitTrace(BaseModel):
    sku: str
    serial: str
    product: ProductInfo
    status: str
    location: str
    lot_code: str | None
    recalled: bool
    recall_ids: list[str]
    digital_link: str | None
    customer_ref: str | None
    warranty_status: str = Field(
        "none", description="in_warranty, expired or none, as the serial registry says today"
    )
    warranty_ends_on: str | None = Field(None, description="The last day of its warranty")
    replaced_by: str | None = Field(None, description="The unit a warranty claim gave instead")
    replaces: str | None = Field(None, description="The unit it replaced under warranty")
    recalls: list[RecallRef]
    events: list[TraceEvent]


def recalls_of_lot(
    recalls: Iterable[Recall], lot_code: str, serials: Iterable[str] = ()
) -> list[RecallRef]:
    """The recalls that name the lot, or any of its units by serial."""
    units = set(serials)
    return [
        RecallRef.of(r)
        for r in sorted(recalls, key=lambda r: r.issued_at)
        if lot_code in r.lot_codes or units.intersection(r.serials)
    ]


def assemble_lot(
    sku: str,
    lot_code: str,
    product: ProductInfo,
    stock: dict[str, Any] | None,
    units: list[dict[str, Any]] | None,
    recalls: list[RecallRef],
) -> LotTrace:
    """One lot's whole picture from stock's lot trace, the registry's units and the recalls."""
    stores = [StoreStock.model_validate(loc) for loc in (stock or {}).get("locations", [])]
    totals = LotTotals(
        **{name: sum(getattr(s, name) for s in stores) for name in LotTotals.model_fields}
    )
    expiries = [loc.get("expires_on") for loc in (stock or {}).get("locations", [])]
    expires_on = next((e for e in expiries if e), None)
    events = [_movement_event(m, lot_code, units) for m in (stock or {}).get("movements", [])]
    for recall in recalls:
        named = [s for s in recall.serials if any(u["serial"] == s for u in units or ())]
        whole_lot = lot_code in recall.lot_codes
        events.append(
            TraceEvent(
                id=f"recall/{recall.recall_id}",
                kind=TraceKind.RECALLED,
                at=recall.issued_at,
                lot_code=lot_code,
                # A lot recall covers every unit of the lot ever received.
                quantity=totals.received if whole_lot else len(named),
                serials=[] if whole_lot else named,
                document_type="recall",
                document_id=recall.recall_id,
                recall_id=recall.recall_id,
                detail=f"class {recall.classification}: {recall.reason} (by {recall.issued_by})",
            )
        )
    unit_states = None
    counts: dict[str, int] | None = None
    if units is not None:
        unit_states = [UnitState.model_validate(u) for u in units]
        counts = dict(Counter(unit.status for unit in unit_states))
    return LotTrace(
        sku=sku,
        lot_code=lot_code,
        product=product,
        expires_on=expires_on,
        totals=totals,
        stores=stores,
        unit_counts=counts,
        units=unit_states,
        recalls=recalls,
        events=sorted(events, key=_order),
    )


_KIND_ORDER = {kind: n for n, kind in enumerate(TraceKind)}


def _order(event: TraceEvent) -> tuple[datetime, int, str]:
    return (event.at, _KIND_ORDER[event.kind], event.id)


def _movement_event(
    movement: dict[str, Any], lot_code: str, units: list[dict[str, Any]] | None
) -> TraceEvent:
    kind = TraceKind(movement["kind"])
    event = TraceEvent(
        id=movement["id"],
        kind=kind,
        at=movement["at"],
        location=movement["location"],
        lot_code=lot_code,
        quantity=movement["quantity"],
        document_type=movement["document_type"],
        document_id=movement["document_id"],
        line=movement.get("line"),
        customer_ref=movement.get("customer_ref"),
        supplier=movement.get("supplier"),
        sale_id=movement.get("sale_id"),
        return_reason=movement.get("return_reason"),
        recall_id=movement.get("recall_id"),
        expires_on=movement.get("expires_on"),
        source_event=movement.get("event_id"),
        variance=movement.get("variance"),
        adjust_reason=movement.get("adjust_reason"),
        direction=movement.get("direction"),
        disposal_method=movement.get("disposal_method"),
        reference=movement.get("reference"),
        from_location=movement.get("from_location"),
        to_location=movement.get("to_location"),
    )
    serials = _serials_of(event, units or [])
    # Only when the registry accounts for every unit of the movement: a partial list would
    # claim the other units are not there.
    if serials and len(serials) == event.quantity:
        event.serials = serials
    return event


def _serials_of(event: TraceEvent, units: list[dict[str, Any]]) -> list[str]:
    if event.kind is TraceKind.RECEIVED:
        match = [u for u in units if u.get("receipt_id") == event.document_id]
    elif event.kind is TraceKind.SOLD:
        match = [
            u for u in units if u.get("sale_id") == event.sale_id and u.get("line") == event.line
        ]
    elif event.kind is TraceKind.RETURNED:
        match = [u for u in units if u.get("return_id") == event.document_id]
    else:
        return []
    return sorted(u["serial"] for u in match)


_HISTORY_KINDS = {
    "item-received": TraceKind.RECEIVED,
    "item-sold": TraceKind.SOLD,
    "item-returned": TraceKind.RETURNED,
    "batch-recalled": TraceKind.RECALLED,
}
_DOCUMENTS = {
    TraceKind.RECEIVED: "receipt",
    TraceKind.SOLD: "sale",
    TraceKind.RETURNED: "return",
    TraceKind.RECALLED: "recall",
}


def assemble_unit(
    unit: dict[str, Any], product: ProductInfo, recalls: list[RecallRef]
) -> UnitTrace:
    """One serial's life from the registry's history: every event that touched it."""
    serial = unit["serial"]
    events = []
    for n, entry in enumerate(unit.get("history", [])):
        kind = _HISTORY_KINDS.get(entry["type"])
        if kind is None:
            continue
        ref = entry.get("ref") or ""
        document_id, _, line = ref.partition("#")
        sale_id = document_id if kind is TraceKind.SOLD else None
        events.append(
            TraceEvent(
                id=f"{entry['event_id']}#{serial}#{n}",
                kind=kind,
                at=entry["at"],
                location=entry.get("location"),
                lot_code=unit.get("lot_code"),
                quantity=1,
                serials=[serial],
                document_type=_DOCUMENTS[kind],
                document_id=document_id,
                line=int(line) if line.isdigit() else None,
                # The registry keeps the customer of the unit's last sale.
                customer_ref=unit.get("customer_ref")
                if sale_id is not None and sale_id == unit.get("sale_id")
                else None,
                sale_id=sale_id,
                return_reason=(unit.get("return_reason") if kind is TraceKind.RETURNED else None),
                recall_id=document_id if kind is TraceKind.RECALLED else None,
                source_event=entry["event_id"],
                detail=entry.get("what"),
            )
        )
    return UnitTrace(
        sku=unit["sku"],
        serial=serial,
        product=product,
        status=unit["status"],
        location=unit["location"],
        lot_code=unit.get("lot_code"),
        recalled=unit.get("recalled", False),
        recall_ids=unit.get("recall_ids", []),
        # From the catalog's GTIN, as the EPCIS export builds its identifiers: the two agree.
        digital_link=gs1.unit_link(product.gtin, serial),
        customer_ref=unit.get("customer_ref"),
        warranty_status=(unit.get("warranty") or {}).get("status", "none"),
        warranty_ends_on=(unit.get("warranty") or {}).get("ends_on"),
        replaced_by=unit.get("replaced_by"),
        replaces=unit.get("replaces"),
        recalls=recalls,
        events=sorted(events, key=_order),
    )
