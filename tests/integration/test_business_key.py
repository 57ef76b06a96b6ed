"""A fact is applied once by its business key, whatever its envelope id (issue 13, item 3):
tills regenerate event ids when they retry, and receiving systems resend receipts. Stock and
the serial registry run as their own processes on the real Kafka and FerretDB; `bus.publish`
gives every event it sends a fresh CloudEvents id, so each resend below is a new envelope."""

from __future__ import annotations

from datetime import UTC, datetime

import httpx
import pytest

from lotline.events import (
    ItemReceived,
    ItemReturned,
    ItemSold,
    ProductRegistered,
    ReturnReason,
    Tracking,
)

from support import eventually

pytestmark = pytest.mark.infra


async def test_a_sale_a_return_and_a_receipt_resent_under_new_ids_count_once(  # type: ignore[no-untyped-def]
    start_service, bus, run_id
) -> None:
    stock = start_service("stock")
    registry = start_service("serial-registry")
    flour, phone = f"FLOUR-{run_id}", f"PHONE-{run_id}"
    serials = [f"SN-{run_id}-{n}" for n in range(3)]
    now = datetime.now(UTC)
    receipt = ItemReceived(sku=flour, receipt_id=f"R-{run_id}", location="S1", quantity=10)
    phones = ItemReceived(
        sku=phone, receipt_id=f"RP-{run_id}", location="S1", quantity=3, serials=serials
    )
    sale = ItemSold(sku=flour, sale_id=f"T-{run_id}", line=1, location="S1", quantity=3,
                    sold_at=now)  # fmt: skip
    phone_sale = ItemSold(sku=phone, sale_id=f"T-{run_id}", line=2, location="S1", quantity=1,
                          serial=serials[0], customer_ref="C-1", sold_at=now)  # fmt: skip
    back = ItemReturned(sku=flour, return_id=f"RT-{run_id}", location="S1", quantity=1,
                        reason=ReturnReason.CUSTOMER, returned_at=now)  # fmt: skip
    await bus.publish(
        ProductRegistered(sku=flour, name="Flour", tracking=Tracking.QUANTITY),
        ProductRegistered(sku=phone, name="Phone", tracking=Tracking.SERIAL),
    )
    await bus.publish(receipt, phones)
    await bus.publish(receipt, phones)  # the dock scanner resends both
    await bus.publish(sale, phone_sale, back)
    await bus.publish(sale, phone_sale, back)  # the till retries with new event ids
    # Another line of the same sale is another fact: it counts.
    await bus.publish(sale.model_copy(update={"line": 3, "quantity": 2}))

    async with httpx.AsyncClient(timeout=30) as http:

        async def applied() -> None:
            level = (await http.get(f"{stock.url}/stock/{flour}")).json()
            assert level.get("on_hand") == 10 - 3 + 1 - 2, level
            phones_level = (await http.get(f"{stock.url}/stock/{phone}")).json()
            assert phones_level.get("on_hand") == 2, phones_level
            unit = await http.get(f"{registry.url}/units/{phone}/{serials[0]}")
            assert unit.status_code == 200, unit.text
            assert unit.json()["status"] == "sold"

        await eventually(applied, timeout=60)
        # Every resend was read by now (each came before the last line on its partition);
        # the state holds, and the sold unit's history has one sale.
        await applied()
        unit = (await http.get(f"{registry.url}/units/{phone}/{serials[0]}")).json()
        sales = [entry for entry in unit["history"] if entry["type"] == "item-sold"]
        assert len(sales) == 1, unit["history"]
