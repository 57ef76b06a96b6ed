"""The stock service's read side: stock per SKU, per location, lots about to expire, and
transfers (what was shipped and what arrived)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Annotated, Any

from fastapi import APIRouter, HTTPException, Query, Request
from pydantic import BaseModel, Field

from lotline.runtime.http import errors
from lotline.stock.store import StockStore

router = APIRouter(tags=["stock"])


class LotLevel(BaseModel):
    location: str
    lot_code: str | None
    expires_on: str | None
    on_hand: int
    quarantined: int
    damaged: int
    refused: int = Field(
        0, description="Units its receipts booked that the serial registry refused: not here"
    )
    recall_id: str | None
    variance: int = Field(0, description="What counts found minus what the books said, summed")
    adjusted_out: int = Field(0, description="Units written off (damaged, expired, theft, ...)")
    adjusted_in: int = Field(0, description="Units found outside a receipt or a count")
    disposed: int = Field(0, description="Held units destroyed or returned to the supplier")
    in_transit: int = Field(0, description="Units shipped here by a transfer, not arrived yet")
    transferred_out: int = Field(0, description="Units shipped from here to other locations")
    transferred_in: int = Field(0, description="Units transfers brought here")
    missing_in_transit: int = Field(
        0, description="Units shipped here that the transfer's receipt did not find"
    )
    replaced: int = Field(0, description="Units given to replace faulty ones (warranty)")


class ReceiptRefusal(BaseModel):
    location: str
    receipt_id: str
    lot_code: str | None
    quantity: int
    reason: str = Field(description="The registry's reason: duplicate_serial, missing_serials")
    pending: bool = Field(
        description="The receipt has not reached stock yet; its units come off when it does"
    )


class SkuStock(BaseModel):
    sku: str
    on_hand: int
    quarantined: int
    refused: int = Field(0, description="Serial units the registry refused, every location")
    in_transit: int = Field(0, description="Units on their way between locations")
    locations: int
    lots: list[LotLevel]
    refusals: list[ReceiptRefusal] = Field(
        default_factory=list, description="Each receipt the serial registry refused units of"
    )


class LocationLine(BaseModel):
    sku: str
    on_hand: int
    quarantined: int
    refused: int = 0
    in_transit: int = Field(0, description="Units on their way here (transfers shipped)")
    reorder_point: int | None = Field(None, description="Reordered below this on-hand")
    low: bool = Field(False, description="On-hand is below the reorder point")
    lots: list[LotLevel]


class LocationStock(BaseModel):
    location: str
    skus: list[LocationLine]


class ExpiringLot(BaseModel):
    sku: str
    location: str
    lot_code: str
    expires_on: str
    on_hand: int


def _store(request: Request) -> StockStore:
    store: StockStore = request.app.state.stock_store
    return store


def _lots(doc: dict[str, Any]) -> list[LotLevel]:
    return [
        LotLevel(
            location=doc["location"],
            lot_code=lot.get("code"),
            expires_on=lot.get("expires_on"),
            on_hand=lot.get("on_hand", 0),
            quarantined=lot.get("quarantined", 0),
            damaged=lot.get("damaged", 0),
            refused=lot.get("refused", 0),
            recall_id=lot.get("recall_id"),
            variance=lot.get("variance", 0),
            adjusted_out=lot.get("adjusted_out", 0),
            adjusted_in=lot.get("adjusted_in", 0),
            disposed=lot.get("disposed", 0),
            in_transit=lot.get("in_transit", 0),
            transferred_out=lot.get("transferred_out", 0),
            transferred_in=lot.get("transferred_in", 0),
            missing_in_transit=lot.get("missing_in_transit", 0),
            replaced=lot.get("replaced", 0),
        )
        for lot in doc.get("lots", [])
    ]


def _refusals(doc: dict[str, Any]) -> list[ReceiptRefusal]:
    return [
        ReceiptRefusal(location=doc["location"], **refusal) for refusal in doc.get("refusals", [])
    ]


@router.get(
    "/stock/{sku}",
    response_model=SkuStock,
    summary="Stock of a SKU by location and lot",
    operation_id="getStock",
    responses=errors(404, why={404: "No stock of the SKU is recorded anywhere"}),
)
async def stock_of_sku(sku: str, request: Request) -> SkuStock:
    docs = await _store(request).levels_of_sku(sku)
    if not docs:
        raise HTTPException(404, f"no stock recorded for sku {sku!r}")
    lots = [lot for doc in docs for lot in _lots(doc)]
    return SkuStock(
        sku=sku,
        on_hand=sum(lot.on_hand for lot in lots),
        quarantined=sum(lot.quarantined for lot in lots),
        refused=sum(lot.refused for lot in lots),
        in_transit=sum(lot.in_transit for lot in lots),
        locations=len(docs),
        lots=lots,
        refusals=[refusal for doc in docs for refusal in _refusals(doc)],
    )


@router.get(
    "/locations/{location}/stock",
    response_model=LocationStock,
    summary="Everything one location holds",
    operation_id="listLocationStock",
    responses=errors(404, why={404: "No stock is recorded at the location"}),
)
async def stock_at_location(location: str, request: Request) -> LocationStock:
    docs = await _store(request).levels_at(location)
    if not docs:
        raise HTTPException(404, f"no stock recorded at location {location!r}")
    return LocationStock(
        location=location,
        skus=[
            LocationLine(
                sku=doc["sku"],
                on_hand=doc.get("on_hand", 0),
                quarantined=doc.get("quarantined", 0),
                refused=doc.get("refused", 0),
                in_transit=doc.get("in_transit", 0),
                reorder_point=doc.get("reorder_point"),
                low=doc.get("low", False),
                lots=_lots(doc),
            )
            for doc in docs
        ],
    )


@router.get(
    "/lots/expiring",
    response_model=list[ExpiringLot],
    summary="Lots expiring soon",
    operation_id="listExpiringLots",
)
async def expiring_lots(
    request: Request,
    days: Annotated[int, Query(ge=0, le=3650, description="Expiring within this many days")] = 7,
    location: Annotated[str | None, Query(min_length=1)] = None,
) -> list[ExpiringLot]:
    until = datetime.now(UTC).date() + timedelta(days=days)
    docs = await _store(request).expiring_lots(until, location)
    return [ExpiringLot.model_validate(doc) for doc in docs]


class LowStock(BaseModel):
    sku: str
    location: str
    on_hand: int = Field(description="Sellable units on hand now")
    reorder_point: int = Field(description="The store's reorder point: on-hand is below it")


@router.get(
    "/levels/low",
    response_model=list[LowStock],
    summary="Products below their reorder point, per location",
    operation_id="listLowStock",
)
async def low_stock(
    request: Request, location: Annotated[str | None, Query(min_length=1)] = None
) -> list[LowStock]:
    """Every product and location whose on-hand is below the reorder point the store set
    (`reorder-point-set`); each crossing was also published once as `stock-low`."""
    docs = await _store(request).low_levels(location)
    return [
        LowStock(
            sku=doc["sku"],
            location=doc["location"],
            on_hand=doc.get("on_hand", 0),
            reorder_point=doc.get("reorder_point") or 0,
        )
        for doc in docs
    ]


class TransferLine(BaseModel):
    lot_code: str | None = Field(
        description="None: units without a lot (or whose lot was not read)"
    )
    quantity: int = Field(description="Units; in a difference, received minus shipped")


class TransferPart(BaseModel):
    """One SKU's part of a transfer: what stock shipped (its picks) and what arrived."""

    sku: str
    status: str = Field(
        description="in_transit, received, discrepancy (a difference of lots, serials or "
        "place), or received_not_shipped (the receipt came before the shipment)"
    )
    from_location: str | None
    to_location: str | None
    received_location: str | None = Field(None, description="Where the goods arrived")
    shipped: list[TransferLine] | None = Field(description="Per lot, as stock picked them")
    received: list[TransferLine] | None
    difference: list[TransferLine] = Field(description="Per lot, received minus shipped")
    shipped_at: str | None
    received_at: str | None
    shipped_serials: list[str] | None = None
    received_serials: list[str] | None = None
    serials_missing: list[str] = Field(default_factory=list, description="Shipped, not received")
    serials_unexpected: list[str] = Field(default_factory=list, description="Received, not shipped")


class TransferView(BaseModel):
    transfer_id: str
    in_transit: int = Field(description="Units shipped and not received yet, every SKU")
    skus: list[TransferPart]


@router.get(
    "/transfers/{transfer_id}",
    response_model=TransferView,
    summary="A transfer: shipped against received, per SKU, lot and serial",
    operation_id="getTransfer",
    responses=errors(404, why={404: "Stock has no record of the transfer"}),
)
async def transfer(transfer_id: str, request: Request) -> TransferView:
    docs = await _store(request).transfer(transfer_id)
    if not docs:
        raise HTTPException(404, f"no transfer recorded with transfer_id {transfer_id!r}")
    parts = [TransferPart.model_validate(doc) for doc in docs]
    return TransferView(
        transfer_id=transfer_id,
        in_transit=sum(
            line.quantity
            for part in parts
            if part.status == "in_transit"
            for line in part.shipped or []
        ),
        skus=parts,
    )
