"""Transfers through the stock service's own process on the real broker and database: a
shipment in transit in the level views, a receipt of serials that differ from those shipped
(GET /transfers/{id}), a receipt that reached stock before its shipment, and redelivery."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import httpx
import pytest

from lotline.events import (
    ItemReceived,
    Lot,
    ProductRegistered,
    Tracking,
    TransferReceived,
    TransferredLot,
    TransferShipped,
)

from support import eventually

pytestmark = pytest.mark.infra

NOW = datetime.now(UTC)


async def get(url: str, path: str, status: int = 200) -> Any:
    async with httpx.AsyncClient(base_url=url, timeout=60) as client:
        response = await client.get(path)
    assert response.status_code == status, response.text
    return response.json()


async def test_transfers_in_transit_received_with_other_serials_or_before_shipping(  # type: ignore[no-untyped-def]
    bus, start_service, run_id
) -> None:
    stock = start_service("stock")
    milk, phone = f"TMILK-{run_id}", f"TPHONE-{run_id}"
    a, b = f"A-{run_id}", f"B-{run_id}"
    await bus.publish(
        ProductRegistered(sku=milk, name="Milk", tracking=Tracking.BATCH),
        ProductRegistered(sku=phone, name="Phone", tracking=Tracking.SERIAL),
    )
    await bus.publish(
        ItemReceived(sku=milk, receipt_id=f"R1-{run_id}", location=a, quantity=5,
                     lot=Lot(code="L1")),
        ItemReceived(sku=phone, receipt_id=f"R2-{run_id}", location=a, quantity=3,
                     serials=["P1", "P2", "P3"]),
    )  # fmt: skip
    await get(stock.url, f"/transfers/TR-NONE-{run_id}", status=404)
    phones = TransferShipped(
        sku=phone,
        transfer_id=f"TR1-{run_id}",
        location=a,
        to_location=b,
        lots=[TransferredLot(quantity=2)],
        serials=["P1", "P2"],
        shipped_at=NOW,
    )
    await bus.publish(phones, phones)  # at least once: the copy changes nothing

    async def in_transit() -> None:
        (line,) = (await get(stock.url, f"/locations/{b}/stock"))["skus"]
        assert (line["sku"], line["on_hand"], line["in_transit"]) == (phone, 0, 2)
        assert (await get(stock.url, f"/stock/{phone}"))["in_transit"] == 2

    await eventually(in_transit, timeout=60)
    await bus.publish(
        TransferReceived(
            sku=phone,
            transfer_id=f"TR1-{run_id}",
            location=b,
            lots=[TransferredLot(quantity=2)],
            serials=["P1", "P3"],
            received_at=NOW,
        )
    )

    async def received() -> dict[str, Any]:
        view = await get(stock.url, f"/transfers/TR1-{run_id}")
        assert view["skus"][0]["status"] == "discrepancy", view
        return view

    view = await eventually(received, timeout=60)
    (part,) = view["skus"]
    assert (part["serials_missing"], part["serials_unexpected"]) == (["P2"], ["P3"])
    assert view["in_transit"] == 0

    # The receipt of milk reached stock before its shipment (two topics): matched later.
    await bus.publish(
        TransferReceived(
            sku=milk,
            transfer_id=f"TR2-{run_id}",
            location=b,
            lots=[TransferredLot(lot_code="L1", quantity=3)],
            received_at=NOW,
        )
    )

    async def booked_first() -> None:
        view = await get(stock.url, f"/transfers/TR2-{run_id}")
        assert view["skus"][0]["status"] == "received_not_shipped", view

    await eventually(booked_first, timeout=60)
    await bus.publish(
        TransferShipped(
            sku=milk,
            transfer_id=f"TR2-{run_id}",
            location=a,
            to_location=b,
            lots=[TransferredLot(lot_code="L1", quantity=3)],
            shipped_at=NOW,
        )
    )

    async def matched() -> None:
        view = await get(stock.url, f"/transfers/TR2-{run_id}")
        assert (view["skus"][0]["status"], view["skus"][0]["difference"]) == ("received", [])
        lots = {
            (lot["location"], lot["lot_code"]): (lot["on_hand"], lot["in_transit"])
            for lot in (await get(stock.url, f"/stock/{milk}"))["lots"]
        }
        assert lots == {(a, "L1"): (2, 0), (b, "L1"): (3, 0)}

    await eventually(matched, timeout=60)
