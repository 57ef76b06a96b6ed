"""A store's own operations on the real broker and database: counts, adjustments, disposals
of a recall's quarantine, and low stock, through the stock service's own process."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest

from lotline.events import (
    AdjustmentDirection,
    AdjustmentReason,
    BatchRecalled,
    Classification,
    CountedLot,
    DisposalMethod,
    ItemReceived,
    ItemSold,
    Lot,
    ProductRegistered,
    ReorderPointSet,
    StockAdjusted,
    StockCounted,
    StockDisposed,
    Tracking,
    decode,
)

from support import eventually

pytestmark = pytest.mark.infra

NOW = datetime.now(UTC)


async def get(url: str, path: str, **params: Any) -> Any:
    # A query on another field than _id (low levels) scans every level on FerretDB.
    async with httpx.AsyncClient(base_url=url, timeout=60) as client:
        response = await client.get(path, params=params)
    assert response.status_code == 200, response.text
    return response.json()


def lot_on_hand(stock: dict[str, Any], location: str) -> dict[str | None, int]:
    return {lot["lot_code"]: lot["on_hand"] for lot in stock["lots"] if lot["location"] == location}


async def events_of(bus: Any, topic: str, sku: str) -> list[Any]:
    records = await bus.read_all(topic)
    # At least once on the wire: copies share their id.
    found = {decode(r.value).id: decode(r.value).data for r in records if r.key == sku.encode()}
    return list(found.values())


async def test_counts_adjustments_disposal_and_low_stock(bus, start_service, run_id) -> None:  # type: ignore[no-untyped-def]
    stock = start_service("stock")
    milk, phone = f"MILK-{run_id}", f"PHONE-{run_id}"
    soon, later = NOW.date() + timedelta(days=5), NOW.date() + timedelta(days=20)
    await bus.publish(
        ProductRegistered(sku=milk, name="Milk", tracking=Tracking.BATCH),
        ProductRegistered(sku=phone, name="Phone", tracking=Tracking.SERIAL),
    )
    # The point first (its own topic: within a batch stock would apply receipts first).
    await bus.publish(ReorderPointSet(sku=milk, location="S1", reorder_point=10, set_at=NOW))

    async def point_set() -> None:
        lines = (await get(stock.url, "/locations/S1/stock"))["skus"]
        assert [line["reorder_point"] for line in lines if line["sku"] == milk] == [10], lines

    await eventually(point_set)
    await bus.publish(
        ItemReceived(
            sku=milk,
            receipt_id=f"R1-{run_id}",
            location="S1",
            quantity=8,
            lot=Lot(code="L1", expires_on=soon),
        ),
        ItemReceived(
            sku=milk,
            receipt_id=f"R2-{run_id}",
            location="S1",
            quantity=6,
            lot=Lot(code="L2", expires_on=later),
        ),
        ItemReceived(
            sku=phone, receipt_id=f"R3-{run_id}", location="S1", quantity=3, serials=["A", "B", "C"]
        ),
    )

    async def received() -> None:
        assert lot_on_hand(await get(stock.url, f"/stock/{milk}"), "S1") == {"L1": 8, "L2": 6}

    await eventually(received)

    # The shelf holds one L1 fewer than the books; two phones of three are found.
    await bus.publish(
        StockCounted(
            sku=milk,
            count_id=f"C1-{run_id}",
            location="S1",
            lots=[CountedLot(lot_code="L1", quantity=7), CountedLot(lot_code="L2", quantity=6)],
            counted_at=NOW,
        ),
        StockCounted(
            sku=phone,
            count_id=f"C2-{run_id}",
            location="S1",
            lots=[CountedLot(quantity=2)],
            serials=["A", "C"],
            counted_at=NOW,
        ),
        StockAdjusted(
            sku=milk,
            adjustment_id=f"A1-{run_id}",
            location="S1",
            quantity=2,
            direction=AdjustmentDirection.OUT,
            reason=AdjustmentReason.DAMAGED,
            adjusted_at=NOW,
        ),
    )

    async def counted() -> None:
        assert lot_on_hand(await get(stock.url, f"/stock/{milk}"), "S1") == {"L1": 5, "L2": 6}
        assert (await get(stock.url, f"/stock/{phone}"))["on_hand"] == 2

    await eventually(counted)
    assert not [row for row in await get(stock.url, "/levels/low") if row["sku"] == milk]

    # Two sales take it below the reorder point of 10: one crossing, one stock-low.
    for n, quantity in enumerate((3, 1)):
        await bus.publish(
            ItemSold(
                sku=milk,
                sale_id=f"T{n}-{run_id}",
                line=1,
                location="S1",
                quantity=quantity,
                sold_at=NOW,
            )
        )

    async def low() -> None:
        rows = [
            row for row in await get(stock.url, "/levels/low", location="S1") if row["sku"] == milk
        ]
        assert rows == [{"sku": milk, "location": "S1", "on_hand": 7, "reorder_point": 10}]

    await eventually(low)

    # The recall of L2, then its quarantine destroyed under a certificate.
    recall_id = f"RC-{run_id}"
    await bus.publish(
        BatchRecalled(
            sku=milk,
            recall_id=recall_id,
            lot_codes=["L2"],
            reason="Listeria",
            classification=Classification.I,
            issued_by="qa",
            issued_at=datetime.now(UTC),
        )
    )

    async def quarantined() -> None:
        lots = {lot["lot_code"]: lot for lot in (await get(stock.url, f"/stock/{milk}"))["lots"]}
        assert lots["L2"]["quarantined"] == 6

    await eventually(quarantined)
    await bus.publish(
        StockDisposed(
            sku=milk,
            disposal_id=f"D1-{run_id}",
            location="S1",
            lot_code="L2",
            quantity=6,
            method=DisposalMethod.DESTROYED,
            reference=f"CERT-{run_id}",
            recall_id=recall_id,
            disposed_at=datetime.now(UTC),
        )
    )

    async def disposed() -> list[Any]:
        reports = [q for q in await events_of(bus, "stock-quarantined", milk) if q.lot_code == "L2"]
        assert sorted((q.quantity, q.disposed) for q in reports) == [(0, 6), (6, 0)]
        return reports

    reports = await eventually(disposed)
    assert {q.received for q in reports} == {6}

    # Set before any stock arrived, the point found the level below it at once; the
    # receipts took it above (armed again), the first sale below: two crossings, two events.
    lows = await events_of(bus, "stock-low", milk)
    assert sorted((e.location, e.on_hand, e.reorder_point, e.cause) for e in lows) == [
        ("S1", 0, 10, "reorder-point-set"),
        ("S1", 8, 10, "item-sold"),
    ]

    # The lot traces hold the count with its variance, the write-off and the disposal.
    l1 = await get(stock.url, f"/lots/{milk}/L1/trace")
    kinds = [
        (m["kind"], m["quantity"], m.get("variance"), m.get("adjust_reason"))
        for m in l1["movements"]
    ]
    assert ("counted", 7, -1, None) in kinds
    assert ("adjusted", 2, None, "damaged") in kinds
    l2 = await get(stock.url, f"/lots/{milk}/L2/trace")
    (disposal,) = [m for m in l2["movements"] if m["kind"] == "disposed"]
    assert (disposal["quantity"], disposal["reference"], disposal["disposal_method"]) == (
        6,
        f"CERT-{run_id}",
        "destroyed",
    )
    assert l2["disposed"] == 6
    assert l2["quarantined"] == 0
