"""Catalog rules: what a product is, when a change is a new revision, when tracking may change.

Plain Python, no I/O. The store keeps, next to each product, whether stock of it has been
received (learned from `item-received`); these rules decide what a register or update does.
"""

from __future__ import annotations

from dataclasses import dataclass
from uuid import UUID, uuid5

from lotline.events import ProductRegistered, Tracking

SOURCE = "lotline/catalog"
# Event ids are derived from (sku, revision): a republish of a revision is the same event,
# which consumers drop as a duplicate.
EVENT_NAMESPACE = uuid5(UUID("6ba7b811-9dad-11d1-80b4-00c04fd430c8"), "https://lotline/catalog")


@dataclass(frozen=True)
class ProductDetails:
    """What an operator says about a product; the GTIN is already in its 14-digit form."""

    name: str
    tracking: Tracking
    gtin: str | None = None
    shelf_life_days: int | None = None
    warranty_months: int | None = None


@dataclass(frozen=True)
class Product:
    sku: str
    details: ProductDetails
    revision: int

    def registered(self) -> ProductRegistered:
        return ProductRegistered(
            sku=self.sku,
            name=self.details.name,
            tracking=self.details.tracking,
            gtin=self.details.gtin,
            shelf_life_days=self.details.shelf_life_days,
            warranty_months=self.details.warranty_months,
            revision=self.revision,
        )

    @property
    def event_id(self) -> UUID:
        return registration_event_id(self.sku, self.revision)


def registration_event_id(sku: str, revision: int) -> UUID:
    return uuid5(EVENT_NAMESPACE, f"product-registered/{sku}/{revision}")


class CatalogError(Exception):
    """A command the catalog refuses; the message says why, naming the product."""


class ProductAlreadyRegistered(CatalogError):
    def __init__(self, product: Product) -> None:
        super().__init__(
            f"sku {product.sku} is already registered (revision {product.revision}); "
            f"use PUT /products/{product.sku} to change it"
        )
        self.product = product


class TrackingChangeRefused(CatalogError):
    def __init__(self, sku: str, receipt_id: str, current: Tracking, requested: Tracking) -> None:
        super().__init__(
            f"sku {sku} has stock received (receipt {receipt_id}), its tracking mode cannot "
            f"change from {current.value} to {requested.value}"
        )
        self.sku = sku
        self.receipt_id = receipt_id


@dataclass(frozen=True)
class Change:
    """A new revision to save over the revision the decision was based on."""

    product: Product
    previous_revision: int | None


def register(
    sku: str, current: Product | None, requested: ProductDetails, first_receipt_id: str | None
) -> Change:
    """POST: a new product only; one that exists is refused, even if it is identical."""
    if current is not None:
        raise ProductAlreadyRegistered(current)
    change = revise(sku, None, requested, first_receipt_id)
    assert change is not None
    return change


def revise(
    sku: str, current: Product | None, requested: ProductDetails, first_receipt_id: str | None
) -> Change | None:
    """PUT: create or update; None when nothing changes (no new revision, no event).

    Stock received before the product was registered does not stop its first registration:
    only a change of a tracking mode that stock was already booked under is refused.
    """
    if current is None:
        return Change(Product(sku, requested, 1), None)
    if current.details == requested:
        return None
    if current.details.tracking is not requested.tracking and first_receipt_id is not None:
        raise TrackingChangeRefused(
            sku, first_receipt_id, current.details.tracking, requested.tracking
        )
    return Change(Product(sku, requested, current.revision + 1), current.revision)
