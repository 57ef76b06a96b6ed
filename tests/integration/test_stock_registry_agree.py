"""Stock and the serial registry agree for serialized products: a unit the registry refused is
not on hand in stock (issue 12, item 6). Both services run as their own processes against the
real Kafka and FerretDB; only their HTTP APIs are read."""

from __future__ import annotations

import json
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Callable
from typing import Any

import httpx
import pytest
from conftest import EventBus, ServiceProcess
from pymongo import AsyncMongoClient

from lotline.events import (
    ItemReceived,
    Lot,
    ProductRegistered,
    ReceiptRejected,
    RejectReason,
    Tracking,
    encode,
)

from support import eventually, unique_gtin

pytestmark = pytest.mark.infra

REGISTRY = "lotline/serial-registry"
LOT = "P1"


@pytest.fixture
async def services(
    start_service: Callable[..., ServiceProcess],
    mongo: AsyncMongoClient[dict[str, Any]],
    run_id: str,
) -> AsyncIterator[tuple[httpx.AsyncClient, httpx.AsyncClient]]:
    """Stock and the registry; afterwards this run's units leave the shared, lasting stack."""
    stock = start_service("stock")
    registry = start_service("serial-registry")
    async with (
        httpx.AsyncClient(base_url=stock.url, timeout=30) as stock_http,
        httpx.AsyncClient(base_url=registry.url, timeout=30) as registry_http,
    ):
        yield stock_http, registry_http
    registry.stop()
    ours = {"$regex": f"-{run_id}$"}
    db = mongo["serials"]
    await db["units"].delete_many({"sku": ours})
    await db["lot_units"].delete_many({"key": {"$regex": f"-{run_id} "}})
    await db["products"].delete_many({"_id": ours})
    await db["receipts"].delete_many({"_id": {"$regex": f"-{run_id} "}})


async def registry_in_stock(http: httpx.AsyncClient, sku: str) -> dict[str, int]:
    """The registry's units of the lot in stock, per location."""
    response = await http.get(f"/lots/{sku}/{LOT}/units", params={"limit": 1000})
    assert response.status_code == 200, response.text
    page = response.json()
    assert page["matched"] == len(page["units"])
    return dict(Counter(u["location"] for u in page["units"] if u["status"] == "in_stock"))


async def stock_levels(http: httpx.AsyncClient, sku: str) -> dict[str, Any]:
    response = await http.get(f"/stock/{sku}")
    assert response.status_code == 200, response.text
    return dict(response.json())


def on_hand(stock: dict[str, Any]) -> dict[str, int]:
    """Stock's on-hand of the lot per location (locations with none left out, as above)."""
    return {
        lot["location"]: lot["on_hand"]
        for lot in stock["lots"]
        if lot["lot_code"] == LOT and lot["on_hand"]
    }


def refused(stock: dict[str, Any]) -> dict[str, int]:
    return {
        lot["location"]: lot["refused"]
        for lot in stock["lots"]
        if lot["lot_code"] == LOT and lot["refused"]
    }


async def refused_movements(http: httpx.AsyncClient, sku: str) -> list[tuple[str, int, str]]:
    response = await http.get(f"/lots/{sku}/{LOT}/trace")
    assert response.status_code == 200, response.text
    return sorted(
        (m["location"], m["quantity"], m["document_id"])
        for m in response.json()["movements"]
        if m["kind"] == "refused"
    )


def receipt(sku: str, receipt_id: str, location: str, serials: list[str]) -> ItemReceived:
    return ItemReceived(
        receipt_id=receipt_id,
        location=location,
        sku=sku,
        quantity=len(serials),
        lot=Lot(code=LOT),
        serials=serials,
    )


async def test_serials_received_at_two_stores_are_on_hand_only_where_the_registry_has_them(
    bus: EventBus,
    services: tuple[httpx.AsyncClient, httpx.AsyncClient],
    run_id: str,
) -> None:
    stock, registry = services
    sku = f"PHONE-{run_id}"
    await bus.publish(
        ProductRegistered(sku=sku, name="Phone X1", tracking=Tracking.SERIAL, gtin=unique_gtin())
    )
    imei = [f"IMEI-{run_id}-{n}" for n in range(4)]
    r1, r2 = f"R1-{run_id}", f"R2-{run_id}"
    # The same two phones, IMEI 0 and 1, received again at a second store (with one new
    # phone): the registry keeps them where they arrived first and refuses them here.
    await bus.publish(
        receipt(sku, r1, "STORE-1", imei[:3]),
        receipt(sku, r2, "STORE-2", [imei[0], imei[1], imei[3]]),
    )

    async def agreed() -> dict[str, Any]:
        units = await registry_in_stock(registry, sku)
        assert units == {"STORE-1": 3, "STORE-2": 1}
        levels = await stock_levels(stock, sku)
        assert on_hand(levels) == units
        return levels

    levels = await eventually(agreed, timeout=60)
    # The refused units stay visible, for a person at the receiving desk.
    assert refused(levels) == {"STORE-2": 2}
    assert (levels["on_hand"], levels["refused"]) == (4, 2)
    assert [
        (r["location"], r["receipt_id"], r["quantity"], r["reason"], r["pending"])
        for r in levels["refusals"]
    ] == [("STORE-2", r2, 2, "duplicate_serial", False)]
    assert await refused_movements(stock, sku) == [("STORE-2", 2, r2)]

    # The registry's rejection again: as its producer would re-send it (same id), and as a
    # copy under a new id. Neither takes anything more off STORE-2.
    [rejection] = [
        record for record in await bus.read_all("receipt-rejected") if record.key == sku.encode()
    ]
    assert json.loads(rejection.value)["data"]["quantity"] == 2
    renamed = dict(json.loads(rejection.value), id=str(uuid.uuid4()))
    await bus.send_raw("receipt-rejected", rejection.value, key=rejection.key)
    await bus.send_raw("receipt-rejected", json.dumps(renamed).encode(), key=rejection.key)

    # A rejection that reaches stock before its receipt (two topics, no order between
    # them) waits for it. It follows both copies on the SKU's partition, so once stock shows
    # it waiting, the copies were applied: they changed nothing.
    r3 = f"R3-{run_id}"
    await bus.send([encode(rejected(sku, r3, "STORE-3", imei[2]), source=REGISTRY)])

    async def waiting() -> None:
        found = await stock_levels(stock, sku)
        assert [(r["location"], r["pending"]) for r in found["refusals"]] == [
            ("STORE-2", False),
            ("STORE-3", True),
        ]
        assert on_hand(found) == {"STORE-1": 3, "STORE-2": 1}
        assert refused(found) == {"STORE-2": 2}

    await eventually(waiting, timeout=60)
    assert await refused_movements(stock, sku) == [("STORE-2", 2, r2)]

    # The receipt arrives; the registry refuses it too, under its own id: taken off once.
    await bus.publish(receipt(sku, r3, "STORE-3", [imei[2]]))

    async def answered() -> None:
        answers = [
            json.loads(record.value)["data"]["receipt_id"]
            for record in await bus.read_all("receipt-rejected")
            if record.key == sku.encode()
        ]
        assert answers.count(r3) == 2  # the early one above, and the registry's own

    await eventually(answered, timeout=60)
    # Published after the registry's answer: once it waits at STORE-9, that answer was applied.
    await bus.send([encode(rejected(sku, f"R9-{run_id}", "STORE-9", imei[3]), source=REGISTRY)])

    async def settled() -> dict[str, Any]:
        found = await stock_levels(stock, sku)
        assert ("STORE-9", True) in [(r["location"], r["pending"]) for r in found["refusals"]]
        return found

    found = await eventually(settled, timeout=60)
    assert refused(found) == {"STORE-2": 2, "STORE-3": 1}
    assert [r["pending"] for r in found["refusals"] if r["location"] != "STORE-9"] == [False] * 2
    assert await refused_movements(stock, sku) == [("STORE-2", 2, r2), ("STORE-3", 1, r3)]
    units = await registry_in_stock(registry, sku)
    assert units == {"STORE-1": 3, "STORE-2": 1}
    assert on_hand(found) == units
    assert (found["on_hand"], found["refused"]) == (4, 3)


def rejected(sku: str, receipt_id: str, location: str, serial: str) -> ReceiptRejected:
    """A rejection of one unit of a receipt, as the registry words it."""
    return ReceiptRejected(
        sku=sku,
        receipt_id=receipt_id,
        location=location,
        reason=RejectReason.DUPLICATE_SERIAL,
        detail=f"{serial} is already registered",
        serials=[serial],
        quantity=1,
        lot_code=LOT,
    )
