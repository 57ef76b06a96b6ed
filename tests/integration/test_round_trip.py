"""The stack's first proof: shared codec -> real broker -> a service -> FerretDB."""

from __future__ import annotations

from datetime import date
from typing import Any

import pytest
from pymongo import AsyncMongoClient

from lotline.events import ItemReceived, Lot, ProductRegistered, Tracking

from support import eventually

pytestmark = pytest.mark.infra


async def test_item_received_reaches_the_stock_database(  # type: ignore[no-untyped-def]
    bus, mongo: AsyncMongoClient[dict[str, Any]], start_service, run_id
) -> None:
    start_service("stock")
    sku = f"TEA-{run_id}"
    await bus.publish(
        ProductRegistered(sku=sku, name="Green tea", tracking=Tracking.BATCH),
        ItemReceived(
            receipt_id=f"R-{run_id}",
            location="DOCK-1",
            sku=sku,
            quantity=24,
            lot=Lot(code="T-2027", expires_on=date(2027, 3, 1)),
        ),
    )

    async def stored() -> dict[str, Any]:
        doc = await mongo["stock"]["levels"].find_one({"sku": sku, "location": "DOCK-1"})
        assert doc is not None
        return doc

    doc = await eventually(stored)
    assert doc["on_hand"] == 24
    assert [(lot["code"], lot["on_hand"], lot["expires_on"]) for lot in doc["lots"]] == [
        ("T-2027", 24, "2027-03-01")
    ]
    # The offset that applied it is kept with the effect: a redelivery is recognised.
    ((stream, offset),) = doc["streams"].items()
    assert stream.startswith("item-received:")
    assert offset >= 0
