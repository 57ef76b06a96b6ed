"""The catalog's HTTP side: register, update, get and list products.

Anyone may read products; registering or changing one takes a Bearer token whose role may
change products (`operator` or `catalog`, from LOTLINE_TOKENS), and a GTIN names one product.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, Depends, FastAPI, HTTPException, Path, Query, Request, Response
from pydantic import BaseModel, ConfigDict, Field

from lotline.catalog.domain import (
    Change,
    Product,
    ProductAlreadyRegistered,
    ProductDetails,
    TrackingChangeRefused,
    register,
    revise,
)
from lotline.catalog.store import ProductRecord, ProductStore
from lotline.events.models import Gtin, ProductRegistered, Sku, Text, Tracking
from lotline.runtime.auth import Caller, Credential, access_of
from lotline.runtime.http import AFTER, CHANGE_ERRORS, NEXT_AFTER, errors, field_error
from lotline.runtime.outbox import Relay

router = APIRouter(tags=["products"])

# The contract's own bounds on shelf life (0..36500 days), not a copy of them.
ShelfLifeDays = Annotated[int, *ProductRegistered.model_fields["shelf_life_days"].metadata]
WarrantyMonths = Annotated[int, *ProductRegistered.model_fields["warranty_months"].metadata]

Decision = Callable[[str, Product | None, ProductDetails, str | None], Change | None]

# Two writers of one SKU: the loser re-reads and decides again, a few times at most.
SAVE_ATTEMPTS = 5


class ProductFields(BaseModel):
    """A product as an operator describes it; the types are the event contract's own."""

    model_config = ConfigDict(extra="forbid")

    name: Text
    tracking: Tracking
    gtin: Gtin | None = None
    shelf_life_days: ShelfLifeDays | None = None
    warranty_months: WarrantyMonths | None = Field(
        None, description="Warranty from the sale, in months (serial items' units show it)"
    )

    def details(self) -> ProductDetails:
        return ProductDetails(
            self.name, self.tracking, self.gtin, self.shelf_life_days, self.warranty_months
        )


class NewProduct(ProductFields):
    sku: Sku


class ProductUpdate(ProductFields):
    sku: Sku | None = Field(None, description="Optional; must equal the SKU in the path")


class ProductView(BaseModel):
    sku: str
    name: str
    tracking: Tracking
    gtin: str | None
    shelf_life_days: int | None
    warranty_months: int | None = None
    revision: int
    has_receipts: bool = Field(description="Stock of it has been received somewhere")
    first_receipt_id: str | None
    published: bool = Field(description="This revision is on the product-registered topic")
    created_at: datetime | None
    updated_at: datetime | None

    @classmethod
    def of(cls, record: ProductRecord) -> ProductView:
        product = record.product
        return cls(
            sku=product.sku,
            name=product.details.name,
            tracking=product.details.tracking,
            gtin=product.details.gtin,
            shelf_life_days=product.details.shelf_life_days,
            warranty_months=product.details.warranty_months,
            revision=product.revision,
            has_receipts=record.has_receipts,
            first_receipt_id=record.first_receipt_id,
            published=record.unpublished_revision is None,
            created_at=record.created_at,
            updated_at=record.updated_at,
        )


class ProductPage(BaseModel):
    items: list[ProductView]
    next_after: str | None = Field(description=NEXT_AFTER)


def product_store(request: Request) -> ProductStore:
    store: ProductStore = request.app.state.product_store
    return store


def product_outbox(request: Request) -> Relay:
    outbox: Relay = request.app.state.product_outbox
    return outbox


def product_editor(request: Request, caller: Caller) -> Credential:
    """The authenticated person changing a product: 401 anonymous, 403 a read-only role,
    503 when the catalog has no tokens configured."""
    return access_of(request).allowed(
        caller,
        lambda c: c.may_change_products,
        "change products",
        "an operator or catalog token",
        "send Authorization: Bearer <token>",
    )


Store = Annotated[ProductStore, Depends(product_store)]
Outbox = Annotated[Relay, Depends(product_outbox)]
Editor = Annotated[Credential, Depends(product_editor)]
SkuPath = Annotated[Sku, Path(description="The product's SKU")]


# A GTIN names one product, and two writers of a SKU may collide: each is a 409.
CONFLICT = {409: "The SKU exists, or another product has the GTIN"}


@router.post(
    "/products",
    status_code=201,
    response_model=ProductView,
    operation_id="registerProduct",
    responses=errors(*CHANGE_ERRORS, 409, why=CONFLICT),
)
async def register_product(
    body: NewProduct, store: Store, outbox: Outbox, editor: Editor
) -> ProductView:
    """Register a new product; 409 if the SKU exists or another product has the GTIN."""
    record, _ = await _apply(store, body.sku, body.details(), register)
    return await _published(store, outbox, record)


@router.put(
    "/products/{sku:path}",
    response_model=ProductView,
    operation_id="putProduct",
    responses={
        201: {"model": ProductView, "description": "Created: there was no product of the SKU"},
        **errors(
            *CHANGE_ERRORS,
            409,
            why={409: "Another product has the GTIN, or its tracking cannot change now"},
        ),
    },
)
async def put_product(
    sku: SkuPath,
    body: ProductUpdate,
    response: Response,
    store: Store,
    outbox: Outbox,
    editor: Editor,
) -> ProductView:
    """Create or replace a product. An unchanged product keeps its revision and emits nothing;
    409 if another product has the GTIN."""
    if body.sku is not None and body.sku != sku:
        raise field_error(("body", "sku"), f"sku {body.sku!r} differs from the path's {sku!r}")
    record, created = await _apply(store, sku, body.details(), revise)
    if created:
        response.status_code = 201
    return await _published(store, outbox, record)


@router.get(
    "/products/{sku:path}",
    response_model=ProductView,
    operation_id="getProduct",
    responses=errors(404, why={404: "No product has this SKU"}),
)
async def get_product(sku: SkuPath, store: Store) -> ProductView:
    record = await store.load(sku)
    if record is None:
        raise HTTPException(404, f"no product with sku {sku!r}")
    return ProductView.of(record)


@router.get("/products", response_model=ProductPage, operation_id="listProducts")
async def list_products(
    store: Store,
    tracking: Tracking | None = None,
    after: Annotated[str | None, Query(description=AFTER)] = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 100,
) -> ProductPage:
    """Products in SKU order, a page at a time."""
    records = await store.list(tracking=tracking, after=after, limit=limit + 1)
    more = len(records) > limit
    items = [ProductView.of(record) for record in records[:limit]]
    return ProductPage(items=items, next_after=items[-1].sku if more and items else None)


async def _apply(
    store: ProductStore, sku: str, details: ProductDetails, decide: Decision
) -> tuple[ProductRecord, bool]:
    """Decide on the latest state and save, guarded by the revision the decision saw.

    Returns the product and whether this call created it.
    """
    async with store.writing(sku):
        for _ in range(SAVE_ATTEMPTS):
            record = await store.load(sku)
            current = record.product if record else None
            receipt = record.first_receipt_id if record else await store.first_receipt(sku)
            try:
                change = decide(sku, current, details, receipt)
            except (ProductAlreadyRegistered, TrackingChangeRefused) as exc:
                raise HTTPException(409, str(exc)) from None
            if change is None:
                assert record is not None
                return record, False
            gtin = change.product.details.gtin
            before = current.details.gtin if current else None
            if gtin is not None and gtin != before:
                holder = await store.claim_gtin(gtin, sku)
                if holder is not None:
                    raise HTTPException(
                        409,
                        f"gtin {gtin} belongs to product {holder}: a GTIN names one product "
                        f"(change or remove {holder}'s GTIN first)",
                    )
            saved = await store.save(change)
            if saved is not None:
                if before is not None and before != gtin:
                    await store.release_gtin(before, sku)
                return saved, record is None
    raise HTTPException(409, f"sku {sku} is being changed by someone else; try again")


async def _published(store: ProductStore, outbox: Relay, record: ProductRecord) -> ProductView:
    if record.unpublished_revision is not None:
        await outbox.try_publish(record.sku)
        record = await store.load(record.sku) or record
    return ProductView.of(record)


def install(app: FastAPI) -> None:
    app.include_router(router)
