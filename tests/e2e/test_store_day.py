"""A store day through all four services, each its own process, over the real Kafka and FerretDB.

Products are registered at the catalog; receipts and sales are published as the dock and the
tills would; a recall is issued at the recall service; in the evening the stores' own
operations (a transfer, a count, a write-off, the disposal of the recall's quarantine) and a
warranty claim are published as the stock room and the after-sales desk would. Everything
is then asserted through the services' HTTP APIs only.
"""

from __future__ import annotations

import json
from collections import Counter
from datetime import UTC, datetime, timedelta
from importlib import resources
from typing import Any

import httpx
import jsonschema
import pytest

from lotline.events import (
    AdjustmentDirection,
    AdjustmentReason,
    ClaimKind,
    CountedLot,
    DisposalMethod,
    ItemReceived,
    ItemSold,
    Lot,
    StockAdjusted,
    StockCounted,
    StockDisposed,
    TransferReceived,
    TransferredLot,
    TransferShipped,
    WarrantyClaimed,
)

from support import AS_OPERATOR, eventually, unique_gtin

pytestmark = pytest.mark.infra

TODAY = datetime.now(UTC).date()
PHONE_GTIN = unique_gtin()  # new every run: a GTIN belongs to one product


def receipt(sku: str, receipt_id: str, location: str, quantity: int, **extra: Any) -> ItemReceived:
    return ItemReceived(
        sku=sku, receipt_id=receipt_id, location=location, quantity=quantity, **extra
    )


def sale(sku: str, sale_id: str, location: str, **extra: Any) -> ItemSold:
    return ItemSold(
        sku=sku,
        sale_id=sale_id,
        line=extra.pop("line", 1),
        location=location,
        quantity=extra.pop("quantity", 1),
        sold_at=extra.pop("sold_at", datetime.now(UTC)),
        **extra,
    )


async def get(client: httpx.AsyncClient, url: str, **params: Any) -> Any:
    response = await client.get(url, params=params)
    assert response.status_code == 200, f"{url}: {response.status_code} {response.text}"
    return response.json()


async def test_a_store_day_with_a_recall(bus, start_service, run_id) -> None:  # type: ignore[no-untyped-def]
    catalog = start_service("catalog")
    stock = start_service("stock")
    serials = start_service("serial-registry")
    token = "qa-lead-token-" + "4" * 16
    recall = start_service(
        "recall",
        RECALL_OPERATOR_TOKENS=f"qa-lead:operator:{token}",
        # The lot traces ask the other services.
        CATALOG_URL=catalog.url,
        STOCK_URL=stock.url,
        SERIALS_URL=serials.url,
    )
    # The operator of the tests' services: registers products, reads customer references.
    http = httpx.AsyncClient(timeout=10, headers=AS_OPERATOR)
    milk, phone = f"MILK-{run_id}", f"PHONE-{run_id}"
    imei = [f"IMEI-{run_id}-{n:04d}" for n in range(1000)]

    # Morning: the catalog learns the products; everyone else hears of them over Kafka.
    for body in (
        {"sku": milk, "name": "Whole milk 1L", "tracking": "batch", "shelf_life_days": 14},
        {
            "sku": phone,
            "name": "Phone X",
            "tracking": "serial",
            "gtin": PHONE_GTIN,
            "warranty_months": 24,
        },
    ):
        created = await http.post(f"{catalog.url}/products", json=body)
        assert created.status_code == 201, created.text

    # The dock receives three lots of milk at two stores, and 1,000 phones.
    l1, l2, l3 = (TODAY + timedelta(days=d) for d in (5, 10, 20))
    await bus.publish(
        receipt(milk, f"RM1-{run_id}", "S1", 20, lot=Lot(code="L1", expires_on=l1)),
        receipt(milk, f"RM2-{run_id}", "S1", 30, lot=Lot(code="L2", expires_on=l2)),
        receipt(milk, f"RM3-{run_id}", "S2", 15, lot=Lot(code="L2", expires_on=l2)),
        receipt(milk, f"RM4-{run_id}", "S2", 25, lot=Lot(code="L3", expires_on=l3)),
        receipt(phone, f"RP1-{run_id}", "S1", 500, lot=Lot(code="PA"), serials=imei[:500]),
        receipt(phone, f"RP2-{run_id}", "S2", 500, lot=Lot(code="PB"), serials=imei[500:]),
    )

    async def received() -> None:
        assert (await get(http, f"{stock.url}/stock/{milk}"))["on_hand"] == 90
        assert (await get(http, f"{stock.url}/stock/{phone}"))["on_hand"] == 1000
        for lot in ("PA", "PB"):
            units = await get(http, f"{serials.url}/lots/{phone}/{lot}/units", limit=1)
            assert units["counts"].get("in_stock") == 500

    await eventually(received, timeout=60)

    # The tills: milk without a scanned lot (FEFO), phones by serial with a customer.
    await bus.publish(
        sale(milk, f"TM1-{run_id}", "S1", quantity=25),
        sale(milk, f"TM2-{run_id}", "S2", quantity=10),
        *[
            sale(
                phone,
                f"TP-{run_id}-{n}",
                "S1" if n < 500 else "S2",
                serial=imei[n],
                customer_ref=f"CUST-{n}",
            )
            for n in [*range(30), *range(500, 520)]
        ],
    )

    async def sold() -> None:
        milk_stock = await get(http, f"{stock.url}/stock/{milk}")
        by_lot = {(x["location"], x["lot_code"]): x["on_hand"] for x in milk_stock["lots"]}
        assert by_lot == {("S1", "L1"): 0, ("S1", "L2"): 25, ("S2", "L2"): 5, ("S2", "L3"): 25}
        assert (await get(http, f"{stock.url}/stock/{phone}"))["on_hand"] == 950
        pa = await get(http, f"{serials.url}/lots/{phone}/PA/units", status="sold", limit=100)
        assert pa["counts"] == {"in_stock": 470, "sold": 30, "returned": 0}
        assert {u["serial"]: u["customer_ref"] for u in pa["units"]} == {
            imei[n]: f"CUST-{n}" for n in range(30)
        }

    await eventually(sold, timeout=60)

    # Noon: lot L2 of the milk and ten phones (five sold, five on the shelf) are recalled.
    recalled_phones = imei[0:5] + imei[40:45]
    issued = []
    for body in (
        {"sku": milk, "lot_codes": ["L2"], "reason": "Listeria", "classification": "I"},
        {"sku": phone, "serials": recalled_phones, "reason": "Battery", "classification": "II"},
    ):
        response = await http.post(
            f"{recall.url}/recalls", json=body, headers={"Authorization": f"Bearer {token}"}
        )
        assert response.status_code == 201, response.text
        assert response.json()["issued_by"] == "qa-lead"
        issued.append(response.json()["recall_id"])
    milk_recall, phone_recall = issued

    async def quarantined() -> None:
        milk_stock = await get(http, f"{stock.url}/stock/{milk}")
        levels = {
            (x["location"], x["lot_code"]): (x["on_hand"], x["quarantined"])
            for x in milk_stock["lots"]
        }
        assert levels == {
            ("S1", "L1"): (0, 0),
            ("S1", "L2"): (0, 25),
            ("S2", "L2"): (0, 5),
            ("S2", "L3"): (25, 0),
        }
        detail = await get(http, f"{recall.url}/recalls/{milk_recall}")
        assert detail["progress"]["quarantined_units"] == 30
        assert {(q["location"], q["lot_code"], q["quantity"]) for q in detail["quarantine"]} == {
            ("S1", "L2", 25),
            ("S2", "L2", 5),
        }

    await eventually(quarantined, timeout=60)

    async def contacts_listed() -> None:
        detail = await get(http, f"{recall.url}/recalls/{phone_recall}")
        assert detail["progress"]["units_answer"]["complete"] is True
        assert detail["progress"]["units_answer"]["counts"] == {
            "in_stock": 5,
            "sold": 5,
            "returned": 0,
        }
        assert detail["progress"]["units_to_contact"] == 5
        assert sorted(
            (c["serial"], c["customer_ref"], c["sale_id"], c["location"])
            for c in detail["contacts"]
        ) == [(imei[n], f"CUST-{n}", f"TP-{run_id}-{n}", "S1") for n in range(5)]

    await eventually(contacts_listed, timeout=60)

    for n in (0, 40, 44, 100, 510):
        unit = await get(http, f"{serials.url}/units/{phone}/{imei[n]}")
        expected_status = "sold" if n < 30 or 500 <= n < 520 else "in_stock"
        assert (unit["status"], unit["recalled"]) == (expected_status, imei[n] in recalled_phones)
        assert unit["digital_link"] == f"https://id.gs1.org/01/{PHONE_GTIN}/21/{imei[n]}"

    # Afternoon: a till sells a recalled phone off the shelf, another a carton of lot L2.
    await bus.publish(
        sale(phone, f"TX-{run_id}", "S1", serial=imei[42], customer_ref="CUST-LATE"),
        sale(milk, f"TY-{run_id}", "S2", lot_code="L2", quantity=2),
    )

    async def flagged() -> None:
        phone_detail = await get(http, f"{recall.url}/recalls/{phone_recall}")
        assert [
            (s["sale_id"], s["serial"], s["customer_ref"]) for s in phone_detail["flagged_sales"]
        ] == [(f"TX-{run_id}", imei[42], "CUST-LATE")]
        milk_detail = await get(http, f"{recall.url}/recalls/{milk_recall}")
        assert [
            (s["sale_id"], s["lot_code"], s["quantity"]) for s in milk_detail["flagged_sales"]
        ] == [(f"TY-{run_id}", "L2", 2)]
        assert milk_detail["progress"]["sales_after_recall"] == 1
        unit = await get(http, f"{serials.url}/units/{phone}/{imei[42]}")
        assert (unit["status"], unit["recalled"], unit["customer_ref"]) == (
            "sold",
            True,
            "CUST-LATE",
        )

    await eventually(flagged, timeout=60)

    # Evening: S2 sends ten cartons of milk to S1 (no lot named: stock picks by FEFO, and L2
    # is quarantined there, so L3); S1 receives them.
    now = datetime.now(UTC)
    await bus.publish(
        TransferShipped(
            sku=milk,
            transfer_id=f"TR-{run_id}",
            location="S2",
            to_location="S1",
            lots=[TransferredLot(quantity=10)],
            shipped_at=now,
        )
    )

    async def in_transit() -> None:
        transfer = await get(http, f"{stock.url}/transfers/TR-{run_id}")
        assert transfer["in_transit"] == 10
        assert transfer["skus"][0]["shipped"] == [{"lot_code": "L3", "quantity": 10}]

    await eventually(in_transit, timeout=60)
    await bus.publish(
        TransferReceived(
            sku=milk,
            transfer_id=f"TR-{run_id}",
            location="S1",
            lots=[TransferredLot(lot_code="L3", quantity=10)],
            received_at=now,
        )
    )

    async def transferred() -> None:
        transfer = await get(http, f"{stock.url}/transfers/TR-{run_id}")
        assert (transfer["skus"][0]["status"], transfer["in_transit"]) == ("received", 0)
        by_lot = {
            (x["location"], x["lot_code"]): x["on_hand"]
            for x in (await get(http, f"{stock.url}/stock/{milk}"))["lots"]
        }
        assert (by_lot[("S1", "L3")], by_lot[("S2", "L3")]) == (10, 15)

    await eventually(transferred, timeout=60)

    # The stock room: S1's count finds 9 of L3 (one short), S2 writes 2 of L3 off as
    # damaged, and S1's quarantined L2 is destroyed for the recall.
    await bus.publish(
        StockCounted(
            sku=milk,
            count_id=f"C-{run_id}",
            location="S1",
            lots=[CountedLot(lot_code="L3", quantity=9)],
            counted_at=now,
        ),
        StockAdjusted(
            sku=milk,
            adjustment_id=f"A-{run_id}",
            location="S2",
            quantity=2,
            direction=AdjustmentDirection.OUT,
            reason=AdjustmentReason.DAMAGED,
            lot_code="L3",
            adjusted_at=now,
        ),
        StockDisposed(
            sku=milk,
            disposal_id=f"D-{run_id}",
            location="S1",
            lot_code="L2",
            quantity=25,
            method=DisposalMethod.DESTROYED,
            reference=f"CERT-{run_id}",
            recall_id=milk_recall,
            disposed_at=now,
        ),
    )

    async def operated() -> None:
        lots = {
            (x["location"], x["lot_code"]): x
            for x in (await get(http, f"{stock.url}/stock/{milk}"))["lots"]
        }
        s1_l3, s2_l3, s1_l2 = lots[("S1", "L3")], lots[("S2", "L3")], lots[("S1", "L2")]
        assert (s1_l3["on_hand"], s1_l3["variance"]) == (9, -1)
        assert (s2_l3["on_hand"], s2_l3["adjusted_out"]) == (13, 2)
        assert (s1_l2["quarantined"], s1_l2["disposed"]) == (0, 25)
        detail = await get(http, f"{recall.url}/recalls/{milk_recall}")
        assert detail["accounting"]["disposed"] == 25, detail["accounting"]

    await eventually(operated, timeout=60)

    # Lot L3 was received, transferred, counted and written off; lot L2 recalled, quarantined
    # and destroyed. Each lot's EPCIS document is valid against GS1's EPCIS 2.0 schema and
    # holds exactly those events, in order.
    schema = resources.files("lotline.recall").joinpath("standards/epcis-json-schema.json")
    validator = jsonschema.Draft7Validator(json.loads(schema.read_text("utf-8")))

    async def epcis_steps(lot: str) -> list[tuple[Any, ...]]:
        document = await get(http, f"{recall.url}/trace/lots/{milk}/{lot}/epcis")
        assert not [error.message for error in validator.iter_errors(document)]
        return [
            (
                e.get("action"),
                e.get("bizStep"),
                e.get("disposition"),
                e["bizLocation"]["id"].rsplit(":", 1)[-1] if "bizLocation" in e else None,
                sum(q["quantity"] for q in e.get("quantityList", [])),
            )
            for e in document["epcisBody"]["eventList"]
        ]

    # (action, bizStep, disposition, store, quantity); several events share a time, so the
    # lists are compared as multisets.
    assert Counter(await epcis_steps("L3")) == Counter(
        [
            ("ADD", "receiving", "sellable_accessible", "S2", 25),
            ("OBSERVE", "shipping", "in_transit", "S2", 10),  # the FEFO transfer to S1
            ("OBSERVE", "receiving", "sellable_accessible", "S1", 10),
            ("OBSERVE", "cycle_counting", "sellable_accessible", "S1", 9),  # one short
            ("OBSERVE", "inspecting", "damaged", "S2", 2),  # the write-off
        ]
    )
    assert Counter(await epcis_steps("L2")) == Counter(
        [
            ("ADD", "receiving", "sellable_accessible", "S1", 30),
            ("ADD", "receiving", "sellable_accessible", "S2", 15),
            ("OBSERVE", "retail_selling", "retail_sold", None, 5),
            ("OBSERVE", "retail_selling", "retail_sold", None, 10),
            ("OBSERVE", None, "recalled", None, 45),
            ("OBSERVE", "holding", "non_sellable_other", "S1", 25),
            ("OBSERVE", "holding", "non_sellable_other", "S2", 5),
            ("OBSERVE", "retail_selling", "retail_sold", None, 2),  # sold under the recall
            ("DELETE", "destroying", "destroyed", "S1", 25),  # the quarantine disposed of
        ]
    )

    # The after-sales desk repairs a phone sold this morning, in its 24-month warranty.
    await bus.publish(
        WarrantyClaimed(
            sku=phone,
            claim_id=f"W-{run_id}",
            serial=imei[10],
            location="S1",
            kind=ClaimKind.REPAIR,
            problem="Screen flickers",
            claimed_at=datetime.now(UTC),
        )
    )

    async def claimed() -> None:
        claims = await get(http, f"{serials.url}/units/{phone}/{imei[10]}/claims")
        assert [(c["claim_id"], c["kind"], c["in_warranty"]) for c in claims["claims"]] == [
            (f"W-{run_id}", "repair", True)
        ]

    await eventually(claimed, timeout=60)
    await http.aclose()
