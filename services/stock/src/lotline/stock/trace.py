"""The stock service's part of a lot trace: the lot's stock per location and its movements."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from fastapi import APIRouter, HTTPException, Request, Response
from pydantic import BaseModel, Field

from lotline.runtime.auth import NO_STORE, Caller, may_read_personal_data
from lotline.stock.ledger import MovementKind
from lotline.stock.store import StockStore

router = APIRouter(tags=["trace"])


class LotAtLocation(BaseModel):
    location: str
    expires_on: str | None
    received: int
    sold: int
    returned: int
    on_hand: int
    quarantined: int
    damaged: int
    recall_id: str | None
    variance: int = 0
    adjusted_out: int = 0
    adjusted_in: int = 0
    disposed: int = 0
    in_transit: int = Field(0, description="Units shipped here by a transfer, not arrived yet")
    transferred_out: int = 0
    transferred_in: int = 0
    missing_in_transit: int = 0
    replaced: int = Field(0, description="Units given to replace faulty ones (warranty)")


class MovementView(BaseModel):
    id: str = Field(description="<event source>#<event id>#<location>#<lot>#<kind>")
    kind: MovementKind
    location: str
    quantity: int
    at: datetime
    event_id: str = Field(description="CloudEvents source#id of the event that moved stock")
    document_type: str = Field(
        description="receipt, sale, return, recall, count, adjustment, disposal, transfer or "
        "warranty_claim"
    )
    document_id: str
    line: int | None = None
    customer_ref: str | None = None
    supplier: str | None = None
    sale_id: str | None = None
    return_reason: str | None = None
    recall_id: str | None = None
    expires_on: str | None = None
    variance: int | None = Field(None, description="A count: found minus the books (signed)")
    adjust_reason: str | None = Field(None, description="An adjustment: damaged, theft, ...")
    direction: str | None = Field(None, description="An adjustment: out (written off) or in")
    disposal_method: str | None = Field(None, description="destroyed or returned_to_supplier")
    reference: str | None = Field(None, description="A disposal's certificate or return number")
    from_location: str | None = Field(None, description="A transfer: where it was shipped from")
    to_location: str | None = Field(None, description="A transfer: where it was shipped to")


class LotStockTrace(BaseModel):
    sku: str
    lot_code: str
    received: int
    sold: int
    returned: int
    on_hand: int
    quarantined: int
    damaged: int
    disposed: int = 0
    locations: list[LotAtLocation]
    movements: list[MovementView]


def _store(request: Request) -> StockStore:
    store: StockStore = request.app.state.stock_store
    return store


def _at_location(doc: dict[str, Any]) -> LotAtLocation:
    return LotAtLocation(
        location=doc["location"],
        expires_on=doc.get("expires_on"),
        received=doc.get("received", 0),
        sold=doc.get("sold", 0),
        returned=doc.get("returned", 0),
        on_hand=doc.get("on_hand", 0),
        quarantined=doc.get("quarantined", 0),
        damaged=doc.get("damaged", 0),
        recall_id=doc.get("recall_id"),
        variance=doc.get("variance", 0),
        adjusted_out=doc.get("adjusted_out", 0),
        adjusted_in=doc.get("adjusted_in", 0),
        disposed=doc.get("disposed", 0),
        in_transit=doc.get("in_transit", 0),
        transferred_out=doc.get("transferred_out", 0),
        transferred_in=doc.get("transferred_in", 0),
        missing_in_transit=doc.get("missing_in_transit", 0),
        replaced=doc.get("replaced", 0),
    )


@router.get(
    "/lots/{sku}/{lot_code:path}/trace",
    response_model=LotStockTrace,
    summary="One lot: stock per location and every movement (receipts to disposals)",
)
async def lot_trace(
    sku: str, lot_code: str, request: Request, caller: Caller, response: Response
) -> LotStockTrace:
    """The lot's stock and movements; the customer of a sale only with a staff or operator
    token (the recall service passes its reader's on)."""
    response.headers.update(NO_STORE)
    customers = may_read_personal_data(caller)
    store = _store(request)
    locations = [_at_location(doc) for doc in await store.lot_levels(sku, lot_code)]
    movements = [
        MovementView.model_validate(
            {**doc, "id": doc["_id"], **({} if customers else {"customer_ref": None})}
        )
        for doc in await store.lot_movements(sku, lot_code)
    ]
    if not locations and not movements:
        raise HTTPException(404, f"no stock of lot {lot_code!r} of sku {sku!r} is recorded")
    return LotStockTrace(
        sku=sku,
        lot_code=lot_code,
        received=sum(loc.received for loc in locations),
        sold=sum(loc.sold for loc in locations),
        returned=sum(loc.returned for loc in locations),
        on_hand=sum(loc.on_hand for loc in locations),
        quarantined=sum(loc.quarantined for loc in locations),
        damaged=sum(loc.damaged for loc in locations),
        disposed=sum(loc.disposed for loc in locations),
        locations=locations,
        movements=movements,
    )
