"""Recall wins, whatever the order: a recall issued before stock and the serial registry know
the product is kept, and takes effect the moment the product is registered and its lot
arrives (quarantined on arrival, a sale from it flagged)."""

from __future__ import annotations

import asyncio
from datetime import UTC, date, datetime, timedelta
from typing import Any

import httpx
import pytest

from lotline.events import (
    BatchRecalled,
    Classification,
    ItemReceived,
    ItemSold,
    Lot,
    ProductRegistered,
    Tracking,
    decode,
)

from support import AS_OPERATOR, eventually

pytestmark = pytest.mark.infra


async def _get(url: str, path: str) -> dict[str, Any]:
    async with httpx.AsyncClient(base_url=url, timeout=30) as client:
        response = await client.get(path)
    assert response.status_code == 200, response.text
    return dict(response.json())


async def _flags_of(bus: Any, sku: str) -> dict[tuple[str, str], set[str]]:
    """(sale id, reason) -> the services that flagged it, for one SKU."""
    found: dict[tuple[str, str], set[str]] = {}
    for record in await bus.read_all("sale-flagged"):
        if record.key != sku.encode():
            continue
        event = decode(record.value)
        found.setdefault((event.data.sale_id, event.data.reason.value), set()).add(event.source)
    return found


@pytest.mark.timeout(300)
async def test_a_recall_before_the_product_is_registered_quarantines_its_lot_on_arrival(  # type: ignore[no-untyped-def]
    bus, start_service, run_id
) -> None:
    stock = start_service("stock", CONSUMER_DEFER_MAX_S="2")
    registry = start_service("serial-registry", CONSUMER_DEFER_MAX_S="2")
    recall = start_service("recall")
    milk, phone = f"FIRST-MILK-{run_id}", f"FIRST-PHONE-{run_id}"
    # The milk's recall as an operator issues it, through the recall service.
    async with httpx.AsyncClient(base_url=recall.url, timeout=30) as client:
        issued = await client.post(
            "/recalls",
            json={
                "recall_id": f"RC-{milk}",
                "sku": milk,
                "lot_codes": ["L1"],
                "reason": "Found before the product was",
                "classification": "I",
            },
            headers=AS_OPERATOR,
        )
    assert issued.status_code == 201, issued.text
    await bus.publish(
        BatchRecalled(
            sku=phone,
            recall_id=f"RC-{phone}",
            lot_codes=["L1"],
            reason="Found before the product was",
            classification=Classification.I,
            issued_by="qa",
            issued_at=datetime.now(UTC) - timedelta(minutes=5),
        )
    )
    # Longer than the services let an event of an unknown product wait (2 s here): a recall
    # deferred and then dead-lettered instead of kept would be in the DLQ by now.
    await asyncio.sleep(5)
    dead = [
        r
        for r in await bus.read_all("batch-recalled.dlq", timeout=2)
        if r.key in (milk.encode(), phone.encode())
    ]
    assert not dead, "a recall of a product not registered yet was dead-lettered"
    # The operator sees that the recall matched nothing yet.
    shown = await _get(recall.url, f"/recalls/RC-{milk}")
    assert shown["unmatched_lots"] == ["L1"], shown

    serials = [f"FIRST-{run_id}-{n}" for n in range(3)]
    await bus.publish(
        ProductRegistered(sku=milk, name="Milk", tracking=Tracking.BATCH),
        ProductRegistered(sku=phone, name="Phone", tracking=Tracking.SERIAL),
    )
    await bus.publish(
        ItemReceived(
            sku=milk,
            receipt_id=f"RM-{run_id}",
            location="S1",
            quantity=9,
            lot=Lot(code="L1", expires_on=date.today() + timedelta(days=30)),
        ),
        ItemReceived(
            sku=milk,
            receipt_id=f"RM2-{run_id}",
            location="S1",
            quantity=4,
            lot=Lot(code="L2", expires_on=date.today() + timedelta(days=30)),
        ),
        ItemReceived(
            sku=phone,
            receipt_id=f"RP-{run_id}",
            location="S1",
            quantity=3,
            serials=serials,
            lot=Lot(code="L1"),
        ),
    )

    async def quarantined_on_arrival() -> None:
        milk_stock = await _get(stock.url, f"/stock/{milk}")
        assert (milk_stock["on_hand"], milk_stock["quarantined"]) == (4, 9), milk_stock
        phone_stock = await _get(stock.url, f"/stock/{phone}")
        assert (phone_stock["on_hand"], phone_stock["quarantined"]) == (0, 3), phone_stock
        unit = await _get(registry.url, f"/units/{phone}/{serials[0]}")
        assert unit["recalled"], unit

    await eventually(quarantined_on_arrival, timeout=60)

    async def matched() -> None:
        shown = await _get(recall.url, f"/recalls/RC-{milk}")
        assert shown["unmatched_lots"] == [], shown
        assert shown["progress"]["quarantined_units"] == 9, shown

    await eventually(matched, timeout=60)

    now = datetime.now(UTC)
    await bus.publish(
        ItemSold(
            sku=milk,
            sale_id=f"TM-{run_id}",
            line=1,
            location="S1",
            quantity=1,
            lot_code="L1",
            sold_at=now,
        ),
        ItemSold(
            sku=phone,
            sale_id=f"TP-{run_id}",
            line=1,
            location="S1",
            quantity=1,
            serial=serials[1],
            sold_at=now,
        ),
    )

    async def sales_flagged() -> None:
        flags = await _flags_of(bus, milk)
        assert flags.get((f"TM-{run_id}", "recalled")) == {"lotline/stock"}, flags
        flags = await _flags_of(bus, phone)
        assert "lotline/serial-registry" in flags.get((f"TP-{run_id}", "recalled"), set()), flags

    await eventually(sales_flagged, timeout=60)
