"""Warranty claims against the real stack: a product's terms and the claims in through Kafka,
each unit's warranty and claims out through the serial registry's HTTP API, and refusals as
`warranty-claim-refused` events."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from conftest import EventBus, ServiceProcess
from pymongo import AsyncMongoClient

from lotline.events import (
    ClaimKind,
    ItemReceived,
    ItemSold,
    ProductRegistered,
    WarrantyClaimed,
    decode,
)

from support import AS_STAFF, eventually

pytestmark = pytest.mark.infra

SOURCE = "lotline/serial-registry"
SOLD_AT = datetime(2026, 11, 22, 10, 0, tzinfo=UTC)


@pytest.fixture
async def registry(
    start_service: Callable[..., ServiceProcess],
    mongo: AsyncMongoClient[dict[str, Any]],
    run_id: str,
) -> AsyncIterator[httpx.AsyncClient]:
    service = start_service("serial-registry")
    async with httpx.AsyncClient(base_url=service.url, timeout=30, headers=AS_STAFF) as http:
        yield http
    service.stop()
    ours = {"$regex": f"-{run_id}$"}
    db = mongo["serials"]
    await db["units"].delete_many({"sku": ours})
    await db["lot_units"].delete_many({"key": {"$regex": f"-{run_id} "}})
    await db["products"].delete_many({"_id": ours})
    await db["receipts"].delete_many({"_id": {"$regex": f"-{run_id} "}})


async def unit(http: httpx.AsyncClient, sku: str, serial: str) -> dict[str, Any]:
    response = await http.get(f"/units/{sku}/{serial}")
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


def claim(sku: str, claim_id: str, serial: str, kind: ClaimKind, days: int, **extra: Any) -> Any:
    return WarrantyClaimed(
        sku=sku,
        claim_id=claim_id,
        serial=serial,
        location="STORE-7",
        kind=kind,
        claimed_at=SOLD_AT + timedelta(days=days),
        claimed_by="desk@store-7",
        **extra,
    )


async def test_claims_in_warranty_a_replacement_a_refusal_and_an_override(
    bus: EventBus, registry: httpx.AsyncClient, run_id: str
) -> None:
    http = registry
    sku = f"PHONE-{run_id}"
    await bus.publish(
        ProductRegistered(sku=sku, name="Phone", tracking="serial", warranty_months=12)
    )
    await bus.publish(
        ItemReceived(
            sku=sku,
            receipt_id="R-1",
            location="STORE-7",
            quantity=4,
            serials=["P1", "P2", "P3", "SPARE"],
            received_at=SOLD_AT - timedelta(days=1),
        )
    )
    await eventually(lambda: unit(http, sku, "SPARE"))
    await bus.publish(
        *(
            ItemSold(
                sku=sku,
                sale_id=f"S-{serial}",
                line=1,
                location="STORE-7",
                quantity=1,
                serial=serial,
                customer_ref=f"CUST-{serial}",
                sold_at=SOLD_AT,
            )
            for serial in ("P1", "P2", "P3")
        )
    )

    async def sold() -> None:
        for serial in ("P1", "P2", "P3"):
            assert (await unit(http, sku, serial))["status"] == "sold"

    await eventually(sold)
    shown = await unit(http, sku, "P1")
    assert shown["warranty"] == {
        "status": "in_warranty",
        "months": 12,
        "starts_on": "2026-11-22",
        "ends_on": "2027-11-22",
    }
    assert (await unit(http, sku, "SPARE"))["warranty"]["status"] == "none"

    await bus.publish(
        claim(sku, "W-1", "P1", ClaimKind.REPAIR, 30, problem="no sound"),
        claim(sku, "W-2", "P2", ClaimKind.REPLACEMENT, 40, replacement_serial="SPARE"),
        claim(sku, "W-3", "P3", ClaimKind.REFUND, 400),  # a year and a month on: refused
        claim(sku, "W-4", "P3", ClaimKind.REPAIR, 401, override_reason="goodwill, VIP customer"),
    )

    async def applied() -> None:
        assert (await unit(http, sku, "SPARE"))["status"] == "sold"
        assert [c["claim_id"] for c in (await unit(http, sku, "P3"))["claims"]] == ["W-4"]

    await eventually(applied, timeout=30)

    repaired = await unit(http, sku, "P1")
    assert repaired["status"] == "sold"
    assert [(c["claim_id"], c["kind"], c["in_warranty"]) for c in repaired["claims"]] == [
        ("W-1", "repair", True)
    ]
    assert repaired["history"][-1]["type"] == "warranty-claimed"
    assert repaired["history"][-1]["ref"] == "W-1"

    old, new = await unit(http, sku, "P2"), await unit(http, sku, "SPARE")
    assert (old["status"], old["replaced_by"], old["warranty"]["status"]) == (
        "returned",
        "SPARE",
        "none",
    )
    assert (new["status"], new["replaces"], new["customer_ref"], new["sale_id"]) == (
        "sold",
        "P2",
        "CUST-P2",
        "S-P2",
    )
    # The replacement's warranty is the original's: from the first sale.
    assert new["warranty"]["ends_on"] == "2027-11-22"
    assert new["history"][-1]["ref"] == "W-2"
    claims = await http.get(f"/units/{sku}/P2/claims")
    assert claims.status_code == 200, claims.text
    assert claims.json()["replaced_by"] == "SPARE"
    assert claims.json()["claims"][0]["replacement_serial"] == "SPARE"
    assert (await http.get(f"/units/{sku}/SPARE/claims")).json()["replaces"] == "P2"

    overridden = await unit(http, sku, "P3")
    assert overridden["status"] == "sold"  # the refused refund took nothing back
    (granted,) = overridden["claims"]
    assert (granted["in_warranty"], granted["override_reason"]) == (
        False,
        "goodwill, VIP customer",
    )

    async def refused() -> list[Any]:
        events = [
            event
            for record in await bus.read_all("warranty-claim-refused")
            if record.key == sku.encode() and (event := decode(record.value)).source == SOURCE
        ]
        assert events
        return events

    (refusal,) = await eventually(refused)
    assert (refusal.data.claim_id, refusal.data.reason.value) == ("W-3", "outside_warranty")
    assert str(refusal.data.warranty_ends_on) == "2027-11-22"
    assert "override_reason" in refusal.data.detail
