"""The catalog's rules: revisions, and no tracking change once stock exists."""

from __future__ import annotations

import pytest

from lotline.catalog.domain import (
    Product,
    ProductAlreadyRegistered,
    ProductDetails,
    TrackingChangeRefused,
    register,
    registration_event_id,
    revise,
)
from lotline.events import Tracking

MILK = ProductDetails("Milk 1L", Tracking.BATCH, gtin="04006381333931", shelf_life_days=10)


def test_a_new_product_is_revision_1() -> None:
    change = register("MILK-1L", None, MILK, None)
    assert change.product == Product("MILK-1L", MILK, 1)
    assert change.previous_revision is None


def test_registering_an_existing_sku_is_refused_naming_it() -> None:
    current = Product("MILK-1L", MILK, 3)
    with pytest.raises(ProductAlreadyRegistered) as exc:
        register("MILK-1L", current, MILK, None)
    assert str(exc.value) == (
        "sku MILK-1L is already registered (revision 3); use PUT /products/MILK-1L to change it"
    )


def test_an_unchanged_product_makes_no_revision() -> None:
    assert revise("MILK-1L", Product("MILK-1L", MILK, 4), MILK, "R-1") is None


def test_each_change_is_the_next_revision() -> None:
    renamed = ProductDetails("Whole milk 1L", Tracking.BATCH, MILK.gtin, 10)
    change = revise("MILK-1L", Product("MILK-1L", MILK, 4), renamed, "R-1")
    assert change is not None
    assert change.product.revision == 5
    assert change.previous_revision == 4
    assert change.product.registered().revision == 5


def test_put_of_an_unknown_sku_creates_revision_1() -> None:
    change = revise("NEW", None, MILK, None)
    assert change is not None
    assert (change.product.revision, change.previous_revision) == (1, None)


def test_tracking_may_change_while_no_stock_exists() -> None:
    serial = ProductDetails("Milk 1L", Tracking.SERIAL, MILK.gtin, 10)
    change = revise("MILK-1L", Product("MILK-1L", MILK, 2), serial, None)
    assert change is not None
    assert change.previous_revision == 2
    assert change.product.details.tracking is Tracking.SERIAL


def test_tracking_change_is_refused_once_stock_exists() -> None:
    serial = ProductDetails("Milk 1L", Tracking.SERIAL, MILK.gtin, 10)
    with pytest.raises(TrackingChangeRefused) as exc:
        revise("MILK-1L", Product("MILK-1L", MILK, 2), serial, "R-778")
    assert str(exc.value) == (
        "sku MILK-1L has stock received (receipt R-778), its tracking mode cannot change "
        "from batch to serial"
    )


def test_other_changes_are_allowed_once_stock_exists() -> None:
    longer = ProductDetails("Milk 1L", Tracking.BATCH, MILK.gtin, 14)
    change = revise("MILK-1L", Product("MILK-1L", MILK, 2), longer, "R-778")
    assert change is not None
    assert change.product.details.shelf_life_days == 14


def test_stock_received_before_registration_does_not_block_the_first_registration() -> None:
    change = revise("MILK-1L", None, MILK, "R-1")
    assert change is not None
    assert change.product.revision == 1


def test_the_event_of_a_revision_has_one_id_and_carries_the_product() -> None:
    product = Product("MILK-1L", MILK, 2)
    event = product.registered()
    assert (event.sku, event.name, event.tracking, event.gtin) == (
        "MILK-1L",
        "Milk 1L",
        Tracking.BATCH,
        "04006381333931",
    )
    assert (event.shelf_life_days, event.revision) == (10, 2)
    assert product.event_id == registration_event_id("MILK-1L", 2)
    assert product.event_id != registration_event_id("MILK-1L", 3)
    assert product.event_id != registration_event_id("MILK-2L", 2)
