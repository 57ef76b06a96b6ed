"""The stack's first proof: shared codec -> real broker -> a service -> FerretDB."""

from __future__ import annotations

from datetime import date
from typing import Any

import bson
import pytest
from pymongo import AsyncMongoClient

from lotline.events import ItemReceived, Lot, ProductRegistered, Tracking
from lotline.runtime.dedupe import digest

from support import eventually

pytestmark = pytest.mark.infra


async def test_item_received_reaches_the_stock_database(  # type: ignore[no-untyped-def]
    bus, mongo: AsyncMongoClient[dict[str, Any]], start_service, run_id
) -> None:
    # The level written out within a second (the default waits 30 s for changes to coalesce).
    start_service("stock", WAL_FLUSH_AFTER_S="1")
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
    # Which events were applied is not the level's business: the write-ahead log recorded
    # the receipt (by its business key) in the insert that changed the level, and kept it
    # in a page of its partition when it wrote the level out.
    assert "streams" not in doc
    assert "recent" not in doc
    receipt = ItemReceived(
        receipt_id=f"R-{run_id}",
        location="DOCK-1",
        sku=sku,
        quantity=24,
        lot=Lot(code="T-2027", expires_on=date(2027, 3, 1)),
    )
    fingerprint = digest(receipt.fact_key)

    async def kept() -> None:
        # A page holds its fingerprints as one BSON value: the pages are read, not queried.
        pages = mongo["stock"]["wal_keys"].find({})
        held = [bson.decode(page["keys"]) async for page in pages]
        assert any(fingerprint in keys for keys in held), "no page of the log holds the receipt"

    await eventually(kept)
