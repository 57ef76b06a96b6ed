"""Two serial-registry instances in one group: whichever instance a reader asks, it shows
every committed change of a unit, including what the other instance applied and logged (the
write-ahead log's pending entries) and recalls saved after it first answered."""

from __future__ import annotations

import asyncio

import httpx
import pytest
from test_serials import product, recall, receipt, sale

from support import AS_STAFF, eventually

pytestmark = pytest.mark.infra


@pytest.mark.timeout(300)
async def test_either_instance_shows_what_the_other_applied(  # type: ignore[no-untyped-def]
    bus, start_service, run_id
) -> None:
    first = start_service("serial-registry")
    second = start_service("serial-registry")
    skus = [f"TWO-{run_id}-{n}" for n in range(6)]  # spread over partitions and instances
    await bus.publish(*(product(sku) for sku in skus))
    await bus.publish(*(receipt(sku, f"R-{sku}", ["U1", "U2"], lot="L1") for sku in skus))

    async def both_show(path_of, check) -> None:  # type: ignore[no-untyped-def]
        for instance in (first, second):
            async with httpx.AsyncClient(base_url=instance.url, headers=AS_STAFF) as http:
                for sku in skus:
                    response = await http.get(path_of(sku))
                    assert response.status_code == 200, response.text
                    check(sku, response.json())

    def in_stock(sku: str, unit: dict) -> None:  # type: ignore[type-arg]
        assert (unit["status"], unit["recalled"]) == ("in_stock", False), (sku, unit)

    await eventually(lambda: both_show(lambda sku: f"/units/{sku}/U2", in_stock), timeout=60)
    # Once the group has settled on the two (a rebalance drops what each instance holds),
    # each answers for every SKU before the recall: a reader's memory of the (no) recall of
    # a SKU it does not own must not outlive the recall.
    await asyncio.sleep(12)
    await both_show(lambda sku: f"/units/{sku}/U2", in_stock)

    await bus.publish(*(sale(sku, f"S-{sku}", "U1", "CUST-1") for sku in skus))
    await bus.publish(*(recall(sku, f"RC-{sku}", ["L1"]) for sku in skus))

    def sold_and_recalled(sku: str, unit: dict) -> None:  # type: ignore[type-arg]
        assert (unit["status"], unit["sale_id"], unit["recalled"]) == (
            "sold",
            f"S-{sku}",
            True,
        ), (sku, unit)

    await eventually(
        lambda: both_show(lambda sku: f"/units/{sku}/U1", sold_and_recalled), timeout=60
    )

    def recalled_in_stock(sku: str, unit: dict) -> None:  # type: ignore[type-arg]
        assert (unit["status"], unit["recalled"]) == ("in_stock", True), (sku, unit)

    await eventually(
        lambda: both_show(lambda sku: f"/units/{sku}/U2", recalled_in_stock), timeout=30
    )

    def lot_recalled(sku: str, page: dict) -> None:  # type: ignore[type-arg]
        assert page["recalled"] == 2, (sku, page)

    await eventually(
        lambda: both_show(lambda sku: f"/lots/{sku}/L1/units", lot_recalled), timeout=60
    )
