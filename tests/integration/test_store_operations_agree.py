"""Stock and the serial registry agree on a serial product's units per location after a
store's own operations and the after-sales desk's claims (issue 12): a count that misses
units, a write-off and a unit found, a warranty replacement, a claim the registry refused,
a disposal; and a recall of a lot whose units the registry all refused expects none of them.
Stock, the registry and the recall service run as their own processes against the real Kafka
and FerretDB; only their HTTP APIs and the topics are read."""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from conftest import EventBus, ServiceProcess
from pymongo import AsyncMongoClient

from lotline.events import (
    AdjustmentDirection,
    AdjustmentReason,
    ClaimKind,
    CountedLot,
    DisposalMethod,
    ItemReceived,
    ItemSold,
    Lot,
    ProductRegistered,
    StockAdjusted,
    StockCounted,
    StockDisposed,
    Tracking,
    WarrantyClaimed,
)

from support import AS_OPERATOR, AS_STAFF, eventually, unique_gtin

pytestmark = pytest.mark.infra

LOT = "P1"
STORE = "STORE-1"
SOLD_AT = datetime(2026, 11, 20, 10, 0, tzinfo=UTC)
AT = SOLD_AT + timedelta(days=10)


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
        httpx.AsyncClient(base_url=registry.url, timeout=30, headers=AS_STAFF) as registry_http,
    ):
        yield stock_http, registry_http
    registry.stop()
    ours = {"$regex": f"-{run_id}$"}
    db = mongo["serials"]
    await db["units"].delete_many({"sku": ours})
    await db["lot_units"].delete_many({"key": {"$regex": f"-{run_id} "}})
    await db["products"].delete_many({"_id": ours})
    await db["receipts"].delete_many({"_id": {"$regex": f"-{run_id} "}})


async def registry_units(http: httpx.AsyncClient, sku: str) -> list[dict[str, Any]]:
    response = await http.get(f"/lots/{sku}/{LOT}/units", params={"limit": 1000})
    assert response.status_code == 200, response.text
    page = response.json()
    assert page["matched"] == len(page["units"])
    units: list[dict[str, Any]] = page["units"]
    return units


def registry_view(units: list[dict[str, Any]]) -> dict[str, dict[str, int]]:
    """Per location: units on hand (in stock, not recalled) and held damaged (a returned
    unit the customer brought back faulty), as stock books them."""
    on_hand = Counter(
        u["location"] for u in units if u["status"] == "in_stock" and not u["recalled"]
    )
    damaged = Counter(
        u["location"]
        for u in units
        if u["status"] == "returned" and u["return_reason"] == "damaged"
    )
    return {"on_hand": dict(on_hand), "damaged": dict(damaged)}


async def stock_view(http: httpx.AsyncClient, sku: str) -> dict[str, dict[str, int]]:
    response = await http.get(f"/stock/{sku}")
    assert response.status_code == 200, response.text
    on_hand: Counter[str] = Counter()
    damaged: Counter[str] = Counter()
    for lot in response.json()["lots"]:
        on_hand[lot["location"]] += lot["on_hand"]
        damaged[lot["location"]] += lot["damaged"]
    return {
        "on_hand": {loc: n for loc, n in on_hand.items() if n},
        "damaged": {loc: n for loc, n in damaged.items() if n},
    }


async def unit(http: httpx.AsyncClient, sku: str, serial: str) -> dict[str, Any]:
    response = await http.get(f"/units/{sku}/{serial}")
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


async def claim_movements(http: httpx.AsyncClient, sku: str) -> list[tuple[str, str, int]]:
    response = await http.get(f"/lots/{sku}/{LOT}/trace")
    assert response.status_code == 200, response.text
    return sorted(
        (m["kind"], m["document_id"], m["quantity"])
        for m in response.json()["movements"]
        if m["document_type"] == "warranty_claim"
    )


async def test_counts_write_offs_claims_and_disposals_leave_both_with_the_same_units(
    bus: EventBus,
    services: tuple[httpx.AsyncClient, httpx.AsyncClient],
    run_id: str,
) -> None:
    stock, registry = services
    sku = f"PHONE-{run_id}"
    imei = [f"IMEI-{run_id}-{n}" for n in range(6)]
    await bus.publish(
        ProductRegistered(
            sku=sku,
            name="Phone X1",
            tracking=Tracking.SERIAL,
            gtin=unique_gtin(),
            warranty_months=12,
        )
    )
    await bus.publish(
        ItemReceived(
            receipt_id=f"R1-{run_id}",
            location=STORE,
            sku=sku,
            quantity=6,
            lot=Lot(code=LOT),
            serials=imei,
        )
    )
    await bus.publish(
        ItemSold(
            sale_id=f"T1-{run_id}",
            line=1,
            location=STORE,
            sku=sku,
            quantity=1,
            serial=imei[0],
            customer_ref="C-7",
            sold_at=SOLD_AT,
        )
    )

    async def agree(expected: dict[str, dict[str, int]]) -> None:
        async def check() -> None:
            assert registry_view(await registry_units(registry, sku)) == expected
            assert await stock_view(stock, sku) == expected

        await eventually(check, timeout=60)

    await agree({"on_hand": {STORE: 5}, "damaged": {}})

    # A count finds four of the five: the fifth is missing in the registry, off hand in stock.
    await bus.publish(
        StockCounted(
            sku=sku,
            count_id=f"C1-{run_id}",
            location=STORE,
            lots=[CountedLot(lot_code=LOT, quantity=4)],
            serials=imei[1:5],
            counted_at=AT,
        )
    )
    await agree({"on_hand": {STORE: 4}, "damaged": {}})
    missing = await unit(registry, sku, imei[5])
    assert (missing["status"], missing["location"]) == ("missing", STORE)
    assert sorted((e["type"], e["location"]) for e in missing["history"]) == [
        ("item-received", STORE),
        ("stock-counted", STORE),
    ]

    # One stolen, and the missing one found again.
    await bus.publish(
        StockAdjusted(
            sku=sku,
            adjustment_id=f"A1-{run_id}",
            location=STORE,
            quantity=1,
            direction=AdjustmentDirection.OUT,
            reason=AdjustmentReason.THEFT,
            lot_code=LOT,
            serials=[imei[4]],
            adjusted_at=AT,
        ),
        StockAdjusted(
            sku=sku,
            adjustment_id=f"A2-{run_id}",
            location=STORE,
            quantity=1,
            direction=AdjustmentDirection.IN,
            reason=AdjustmentReason.FOUND,
            lot_code=LOT,
            serials=[imei[5]],
            adjusted_at=AT,
        ),
    )

    # Four on hand before and after (one out, one back): the units say when it is applied.
    async def adjusted() -> dict[str, Any]:
        stolen = await unit(registry, sku, imei[4])
        assert stolen["status"] == "written_off"
        assert (await unit(registry, sku, imei[5]))["status"] == "in_stock"
        return stolen

    stolen = await eventually(adjusted, timeout=60)
    assert any("(theft)" in e["what"] for e in stolen["history"])
    await agree({"on_hand": {STORE: 4}, "damaged": {}})

    # The sold phone is replaced under warranty by one from the shelf: one fewer on hand,
    # the faulty one held as damaged, in both.
    replaced = f"W1-{run_id}"
    await bus.publish(
        WarrantyClaimed(
            sku=sku,
            claim_id=replaced,
            serial=imei[0],
            location=STORE,
            kind=ClaimKind.REPLACEMENT,
            replacement_serial=imei[1],
            claimed_at=AT,
        )
    )
    await agree({"on_hand": {STORE: 3}, "damaged": {STORE: 1}})
    assert (await unit(registry, sku, imei[1]))["status"] == "sold"

    # A claim on a phone never sold: the registry refuses it, so stock undoes it.
    wrong = f"W2-{run_id}"
    await bus.publish(
        WarrantyClaimed(
            sku=sku,
            claim_id=wrong,
            serial=imei[2],
            location=STORE,
            kind=ClaimKind.REPLACEMENT,
            replacement_serial=imei[3],
            claimed_at=AT,
        )
    )

    async def undone() -> None:
        kinds = await claim_movements(stock, sku)
        assert ("claim_refused", wrong, 1) in kinds

    await eventually(undone, timeout=60)
    refusals = [
        json.loads(r.value)["data"]["claim_id"]
        for r in await bus.read_all("warranty-claim-refused")
        if r.key == sku.encode()
    ]
    assert refusals == [wrong]
    await agree({"on_hand": {STORE: 3}, "damaged": {STORE: 1}})
    assert (await unit(registry, sku, imei[3]))["status"] == "in_stock"

    # The faulty phone is sent back to the supplier: held no more, in both.
    await bus.publish(
        StockDisposed(
            sku=sku,
            disposal_id=f"D1-{run_id}",
            location=STORE,
            quantity=1,
            serials=[imei[0]],
            method=DisposalMethod.RETURNED_TO_SUPPLIER,
            reference=f"RMA-{run_id}",
            disposed_at=AT,
        )
    )
    await agree({"on_hand": {STORE: 3}, "damaged": {}})
    gone = await unit(registry, sku, imei[0])
    assert gone["status"] == "returned_to_supplier"
    assert any(f"RMA-{run_id}" in e["what"] for e in gone["history"])
    # The lot's journal counts what the registry answers a recall from.
    page = (await registry.get(f"/lots/{sku}/{LOT}/units", params={"limit": 1})).json()
    assert {s: n for s, n in page["counts"].items() if n} == {
        "in_stock": 3,
        "sold": 1,
        "written_off": 1,
        "returned_to_supplier": 1,
    }
    assert sorted(await claim_movements(stock, sku)) == sorted(
        [
            ("replaced", replaced, 1),
            ("replaced", wrong, 1),
            ("claim_refused", wrong, 1),
        ]
    )


async def test_a_recall_expects_none_of_the_units_the_registry_refused(
    bus: EventBus,
    services: tuple[httpx.AsyncClient, httpx.AsyncClient],
    start_service: Callable[..., ServiceProcess],
    run_id: str,
) -> None:
    stock, registry = services
    recall = start_service("recall")
    sku = f"PHONE-{run_id}"
    await bus.publish(
        ProductRegistered(sku=sku, name="Phone X1", tracking=Tracking.SERIAL, gtin=unique_gtin())
    )
    # A serial product received without its serials: the registry registers none of the
    # three, and stock takes them off its on-hand.
    await bus.publish(
        ItemReceived(
            receipt_id=f"R1-{run_id}", location=STORE, sku=sku, quantity=3, lot=Lot(code=LOT)
        )
    )

    async def refused() -> None:
        response = await stock.get(f"/stock/{sku}")
        assert response.status_code == 200, response.text
        levels = response.json()
        assert (levels["on_hand"], levels["refused"]) == (0, 3)

    await eventually(refused, timeout=60)
    async with httpx.AsyncClient(base_url=recall.url, timeout=30, headers=AS_OPERATOR) as http:
        issued = await http.post(
            "/recalls",
            json={"sku": sku, "lot_codes": [LOT], "reason": "battery", "classification": "II"},
        )
        assert issued.status_code == 201, issued.text
        recall_id = issued.json()["recall_id"]

        async def reported() -> dict[str, Any]:
            body = (await http.get(f"/recalls/{recall_id}")).json()
            assert body["progress"]["units_answer"]["chunks_received"], body
            assert body["quarantine"], body
            accounting: dict[str, Any] = body["accounting"]
            return accounting

        accounting = await eventually(reported, timeout=60)
    # Without the refused units nothing is expected: not "accounted for 0 of 3".
    assert (accounting["basis"], accounting["expected"], accounting["accounted"]) == (
        "lots",
        0,
        0,
    )
    # And the registry has none of them, as stock has none on hand.
    assert (await registry.get(f"/lots/{sku}/{LOT}/units")).status_code == 404
