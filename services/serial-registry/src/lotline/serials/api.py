"""The serial registry's read side: one unit with its history, and the units of a lot.

A unit's customer reference is personal data: only a caller whose Bearer token may read it
(staff or operator, `lotline.runtime.auth`) gets it; anyone else gets the unit without it.
"""

from __future__ import annotations

import bisect
from datetime import UTC, date, datetime
from typing import Annotated

from fastapi import APIRouter, Depends, HTTPException, Query, Request, Response
from pydantic import BaseModel, Field

from lotline.events import ClaimKind, EventType, FlagReason, ReturnReason, UnitStatus
from lotline.runtime.auth import NO_STORE, Caller, may_read_personal_data
from lotline.runtime.http import AFTER, NEXT_AFTER, errors, field_error
from lotline.serials.domain import (
    ANSWERED_ALWAYS,
    HistoryEntry,
    Unit,
    WarrantyClaim,
    WarrantyStatus,
    as_recalled,
    digital_link,
    unit_id,
    warranty_of,
)
from lotline.serials.store import SerialStore

# MongoDB takes a skip as a 64-bit integer: a larger one is a 422 here, not a 500 there.
MAX_SKIP = 1_000_000_000

router = APIRouter(tags=["units"])


def get_store(request: Request) -> SerialStore:
    store: SerialStore = request.app.state.serial_store
    return store


Store = Annotated[SerialStore, Depends(get_store)]


class FlagView(BaseModel):
    reason: FlagReason
    detail: str
    recall_id: str | None = None


class HistoryView(BaseModel):
    type: EventType
    event_id: str = Field(description="CloudEvents source#id of the event")
    at: datetime
    what: str
    ref: str | None = Field(None, description="Business key: sale#line, return#line, receipt…")
    location: str | None = Field(None, description="Where it happened (none for a recall)")
    flags: list[FlagView] = Field(default_factory=list)

    @classmethod
    def of(cls, entry: HistoryEntry) -> HistoryView:
        return cls(
            type=entry.type,
            event_id=entry.event_id,
            at=entry.at,
            what=entry.what,
            ref=entry.ref,
            location=entry.location,
            flags=[
                FlagView(reason=f.reason, detail=f.detail, recall_id=f.recall_id)
                for f in entry.flags
            ],
        )


class UnitSummary(BaseModel):
    sku: str
    serial: str
    status: UnitStatus = Field(description="Where the unit physically is")
    recalled: bool = Field(description="Under at least one recall (apart from status)")
    recall_ids: list[str]
    recalled_at: datetime | None
    location: str
    lot_code: str | None
    lot_expires_on: date | None
    registered: bool = Field(description="Known from a receipt (not only from a sale/return)")
    receipt_id: str | None
    received_at: datetime | None
    sale_id: str | None
    line: int | None
    customer_ref: str | None
    sold_at: datetime | None
    return_id: str | None
    return_reason: ReturnReason | None
    returned_at: datetime | None
    transfer_id: str | None = Field(None, description="The last transfer the unit moved in")
    in_transit_to: str | None = Field(
        None, description="Shipped there in `transfer_id`, not received yet: in transit"
    )

    @classmethod
    def fields_of(cls, unit: Unit, customers: bool = True) -> dict[str, object]:
        return {
            "sku": unit.sku,
            "serial": unit.serial,
            "status": unit.status,
            "recalled": unit.recalled,
            "recall_ids": list(unit.recall_ids),
            "recalled_at": unit.recalled_at,
            "location": unit.location,
            "lot_code": unit.lot_code,
            "lot_expires_on": unit.lot_expires_on,
            "registered": unit.registered,
            "receipt_id": unit.receipt_id,
            "received_at": unit.received_at,
            "sale_id": unit.sale_id,
            "line": unit.line,
            "customer_ref": unit.customer_ref if customers else None,
            "sold_at": unit.sold_at,
            "return_id": unit.return_id,
            "return_reason": unit.return_reason,
            "returned_at": unit.returned_at,
            "transfer_id": unit.transfer_id,
            "in_transit_to": unit.in_transit_to,
        }


class WarrantyView(BaseModel):
    status: WarrantyStatus = Field(
        description="in_warranty, expired, or none (not sold, or no warranty terms)"
    )
    months: int | None = Field(None, description="The product's terms, from the sale")
    starts_on: date | None = Field(None, description="The sale (a replacement's original)")
    ends_on: date | None = Field(None, description="The last day covered")


class ClaimView(BaseModel):
    claim_id: str
    kind: ClaimKind
    at: datetime
    location: str
    in_warranty: bool = Field(description="False: granted outside warranty by an override")
    warranty_ends_on: date | None
    replacement_serial: str | None
    override_reason: str | None
    problem: str | None
    claimed_by: str | None

    @classmethod
    def of(cls, claim: WarrantyClaim) -> ClaimView:
        return cls(
            claim_id=claim.claim_id,
            kind=claim.kind,
            at=claim.at,
            location=claim.location,
            in_warranty=claim.in_warranty,
            warranty_ends_on=claim.warranty_ends_on,
            replacement_serial=claim.replacement_serial,
            override_reason=claim.override_reason,
            problem=claim.problem,
            claimed_by=claim.claimed_by,
        )


class UnitClaimsView(BaseModel):
    sku: str
    serial: str
    replaced_by: str | None = Field(description="The unit a replacement claim gave instead")
    replaces: str | None = Field(description="The unit this one replaced under warranty")
    claims: list[ClaimView] = Field(description="Warranty claims taken on it, oldest first")


class UnitView(UnitSummary):
    warranty: WarrantyView
    replaced_by: str | None = Field(None, description="The unit that replaced it under warranty")
    replaces: str | None = Field(None, description="The unit it replaced under warranty")
    claims: list[ClaimView] = Field(default_factory=list, description="Its warranty claims")
    gtin: str | None = None
    digital_link: str | None = Field(
        None,
        description="GS1 Digital Link, when the GTIN is known and GS1 can encode the serial "
        "(AI 21: character set 82, at most 20)",
    )
    history: list[HistoryView]


class LotUnitsView(BaseModel):
    sku: str
    lot_code: str
    counts: dict[UnitStatus, int] = Field(
        description="All units of the lot by status (missing, written_off, destroyed and "
        "returned_to_supplier only when a unit has it)"
    )
    recalled: int = Field(description="Units of the lot under recall")
    total: int
    matched: int = Field(description="Units matching the filters, on every page")
    limit: int
    units: list[UnitSummary] = Field(description="A page of them, in serial order")
    next_after: str | None = Field(None, description=NEXT_AFTER)


@router.get(
    "/units/{sku}/{serial}/claims",
    response_model=UnitClaimsView,
    operation_id="listUnitClaims",
    responses=errors(404, why={404: "No unit of the SKU has this serial"}),
)
async def get_unit_claims(sku: str, serial: str, store: Store) -> UnitClaimsView:
    """The warranty claims taken on one unit and the units it replaced or was replaced by
    (refused claims are `warranty-claim-refused` events, not here). Before the unit route:
    a serial never holds a "/", so ".../claims" is never a serial."""
    unit = await store.unit(sku, serial)
    if unit is None:
        raise HTTPException(404, f"no unit with serial {serial!r} of sku {sku!r} is registered")
    return UnitClaimsView(
        sku=sku,
        serial=unit.serial,
        replaced_by=unit.replaced_by,
        replaces=unit.replaces,
        claims=[ClaimView.of(claim) for claim in unit.claims],
    )


@router.get(
    "/units/{sku}/{serial:path}",
    response_model=UnitView,
    operation_id="getUnit",
    responses=errors(404, why={404: "No unit of the SKU has this serial"}),
)
async def get_unit(
    sku: str, serial: str, store: Store, caller: Caller, response: Response
) -> UnitView:
    """One unit: its status, recall flag, sale and full history; its customer only with a
    staff or operator token."""
    response.headers.update(NO_STORE)
    unit = await store.unit(sku, serial)
    if unit is None:
        raise HTTPException(404, f"no unit with serial {serial!r} of sku {sku!r} is registered")
    # Read afresh: this instance may not own the SKU, and then its memory would go stale.
    unit = as_recalled(unit, (await store.recall_scopes([sku], stored=True))[sku])
    product = await store.product(sku)
    gtin = product.gtin if product else None
    months = product.warranty_months if product else None
    warranty = warranty_of(unit, months, datetime.now(UTC).date())
    return UnitView(
        **UnitSummary.fields_of(unit, may_read_personal_data(caller)),
        warranty=WarrantyView(
            status=warranty.status,
            months=warranty.months,
            starts_on=warranty.starts_on,
            ends_on=warranty.ends_on,
        ),
        replaced_by=unit.replaced_by,
        replaces=unit.replaces,
        claims=[ClaimView.of(claim) for claim in unit.claims],
        gtin=gtin,
        digital_link=digital_link(gtin, unit.serial),
        # A timeline, in the order things happened (events may be applied in another order).
        history=[HistoryView.of(e) for e in sorted(unit.history, key=lambda e: e.at)],
    )


@router.get(
    "/lots/{sku}/{lot_code:path}/units",
    response_model=LotUnitsView,
    operation_id="listLotUnits",
    responses=errors(404, why={404: "No unit of the lot is registered"}),
)
async def get_lot_units(
    sku: str,
    lot_code: str,
    store: Store,
    caller: Caller,
    response: Response,
    status: Annotated[UnitStatus | None, Query(description="Only units in this status")] = None,
    recalled: Annotated[bool | None, Query(description="Only (not) recalled units")] = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    after: Annotated[str | None, Query(min_length=1, description=AFTER + " (a serial)")] = None,
    skip: Annotated[
        int,
        Query(
            ge=0,
            le=MAX_SKIP,
            deprecated=True,
            description="Units to pass over; use `after`, which a unit registered while you "
            "page cannot shift",
        ),
    ] = 0,
) -> LotUnitsView:
    """The units of one lot, filtered by status and recall flag, with counts by status; their
    customers only with a staff or operator token."""
    response.headers.update(NO_STORE)
    customers = may_read_personal_data(caller)
    scopes = (await store.recall_scopes([sku], stored=True))[sku]
    lot_recalled = any(lot_code in scope.lot_codes for scope in scopes)
    if after is not None and skip:
        raise field_error(("query", "skip"), "give after or skip, not both (skip is deprecated)")
    counts = dict.fromkeys(ANSWERED_ALWAYS, 0)
    recalled_count = 0
    matching: list[str] = []
    # In serial order, so `after` is found by bisection.
    for doc in (await store.lot_states(sku, lot_code)).values():
        unit_status = UnitStatus(doc["status"])
        unit_recalled = lot_recalled or bool(doc.get("recalled"))
        counts[unit_status] = counts.get(unit_status, 0) + 1
        recalled_count += unit_recalled
        if (status is None or unit_status is status) and (
            recalled is None or unit_recalled is recalled
        ):
            matching.append(doc["serial"])
    total = sum(counts.values())
    if total == 0:
        raise HTTPException(404, f"no units of lot {lot_code!r} of sku {sku!r} are registered")
    start = skip if after is None else bisect.bisect_right(matching, after)
    chosen = matching[start : start + limit]
    units = await store.read_units(unit_id(sku, serial) for serial in chosen)
    return LotUnitsView(
        sku=sku,
        lot_code=lot_code,
        counts=counts,
        recalled=recalled_count,
        total=total,
        matched=len(matching),
        limit=limit,
        units=[
            UnitSummary(**UnitSummary.fields_of(as_recalled(unit, scopes), customers))
            for unit in sorted(units.values(), key=lambda unit: unit.serial)
        ],
        next_after=chosen[-1] if chosen and start + limit < len(matching) else None,
    )
