"""Lot and unit traces through all four services, each its own process, on real Kafka and FerretDB.

A lot is received at two stores, partly sold (with customer refs), partly returned, then
recalled; its trace, EPCIS export and CSV must hold exactly those events and numbers. A
serialized phone is received, sold and returned; its unit trace names every event.
"""

from __future__ import annotations

import asyncio
import csv
import functools
import io
import json
import os
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from importlib import resources
from pathlib import Path
from typing import Any

import httpx
import jsonschema
import pytest
from biip.gs1_digital_link_uris import GS1DigitalLinkURI

from lotline.events import ItemReceived, ItemReturned, ItemSold, Lot, ReturnReason

from support import AS_OPERATOR, OPERATOR_ENV, eventually, unique_gtin

pytestmark = pytest.mark.infra

# New every run: a GTIN belongs to one product, and earlier runs' products are still there.
MILK_GTIN = unique_gtin()
PHONE_GTIN = unique_gtin()
# Every fact happened yesterday, an hour apart, so the timeline's order is known.
BASE = datetime.now(UTC).replace(microsecond=0) - timedelta(days=1)


def hour(n: int) -> datetime:
    return BASE + timedelta(hours=n)


@functools.cache
def epcis_schema() -> jsonschema.Draft7Validator:
    text = (
        resources.files("lotline.recall")
        .joinpath("standards/epcis-json-schema.json")
        .read_text("utf-8")
    )
    return jsonschema.Draft7Validator(
        json.loads(text), format_checker=jsonschema.Draft7Validator.FORMAT_CHECKER
    )


def assert_valid_epcis(document: dict[str, Any]) -> None:
    errors = list(epcis_schema().iter_errors(document))
    assert not errors, "\n".join(f"{list(e.absolute_path)}: {e.message}" for e in errors[:5])
    # Every GS1 Digital Link in it is one biip reads back unchanged.
    for event in document["epcisBody"]["eventList"]:
        ids = event.get("epcList", []) + [q["epcClass"] for q in event.get("quantityList", [])]
        for link in (i for i in ids if i.startswith("https://id.gs1.org/")):
            assert GS1DigitalLinkURI.parse(link).as_canonical_uri() == link


async def get(client: httpx.AsyncClient, url: str, **params: Any) -> Any:
    response = await client.get(url, params=params)
    assert response.status_code == 200, f"{url}: {response.status_code} {response.text}"
    return response.json()


OPERATOR_TOKEN = "qa-lead-token-" + "7" * 16
QA_LEAD_TOKENS = f"{OPERATOR_ENV['LOTLINE_TOKENS']},qa-lead:operator:{OPERATOR_TOKEN}"


async def issue_recall(client: httpx.AsyncClient, recall_url: str, body: dict[str, Any]) -> str:
    """The one place a test issues a recall: where an operator's credentials go."""
    response = await client.post(
        f"{recall_url}/recalls",
        json=body,
        headers={"Authorization": f"Bearer {OPERATOR_TOKEN}"},
    )
    assert response.status_code == 201, response.text
    recall_id: str = response.json()["recall_id"]
    return recall_id


async def lotline(recall_url: str, *args: str) -> str:
    """Run the `lotline` command against these services; its output, having succeeded."""
    result = await asyncio.to_thread(
        subprocess.run,
        [sys.executable, "-m", "lotline.cli", *args],
        # Logged in as the tests' operator, who may see the customers in a trace.
        env={
            **os.environ,
            "LOTLINE_RECALL_URL": recall_url,
            "LOTLINE_OPERATOR_TOKEN": OPERATOR_TOKEN,
            "COLUMNS": "200",
        },
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""
    return result.stdout


def sale(
    sku: str, sale_id: str, location: str, quantity: int, at: datetime, **extra: Any
) -> ItemSold:
    return ItemSold(
        sku=sku, sale_id=sale_id, line=1, location=location, quantity=quantity, sold_at=at, **extra
    )


async def test_a_lot_received_sold_returned_and_recalled_traces_exactly(  # type: ignore[no-untyped-def]
    bus, start_service, run_id, tmp_path: Path
) -> None:
    catalog = start_service("catalog")
    stock = start_service("stock", LOTLINE_TOKENS=QA_LEAD_TOKENS)
    # The registry knows the operator too: the recall service passes the reader's token on.
    serials = start_service("serial-registry", LOTLINE_TOKENS=QA_LEAD_TOKENS)
    recall = start_service(
        "recall",
        CATALOG_URL=catalog.url,
        STOCK_URL=stock.url,
        SERIALS_URL=serials.url,
        RECALL_OPERATOR_TOKENS=f"qa-lead:operator:{OPERATOR_TOKEN}",
    )
    # The operator of the tests' services: registers products, reads customer references.
    http = httpx.AsyncClient(timeout=30, headers=AS_OPERATOR)
    milk = f"TMILK-{run_id}"
    lot = "L-TRACE-1"
    receipts = [f"TR1-{run_id}", f"TR2-{run_id}"]
    sales = [f"TS1-{run_id}", f"TS2-{run_id}", f"TS3-{run_id}"]
    return_id = f"TRT-{run_id}"

    created = await http.post(
        f"{catalog.url}/products",
        json={"sku": milk, "name": "Whole milk 1L", "tracking": "batch", "gtin": MILK_GTIN},
    )
    assert created.status_code == 201, created.text
    expires = (BASE + timedelta(days=20)).date()
    await bus.publish(
        *(
            ItemReceived(
                sku=milk,
                receipt_id=receipt_id,
                location=store,
                quantity=quantity,
                lot=Lot(code=lot, expires_on=expires),
                supplier="Dairy Co",
                received_at=hour(n),
            )
            for n, (receipt_id, store, quantity) in enumerate(
                [(receipts[0], "A", 10), (receipts[1], "B", 6)]
            )
        )
    )
    trace_url = f"{stock.url}/lots/{milk}/{lot}/trace"

    async def received() -> None:
        assert (await get(http, trace_url))["received"] == 16

    await eventually(received, timeout=90)

    await bus.publish(
        sale(milk, sales[0], "A", 3, hour(2), lot_code=lot, customer_ref="C-1"),
        sale(milk, sales[1], "A", 2, hour(3)),  # no lot scanned: FEFO finds it
        sale(milk, sales[2], "B", 1, hour(4), customer_ref="C-2"),
    )

    async def sold() -> None:
        assert (await get(http, trace_url))["sold"] == 6

    await eventually(sold, timeout=90)

    await bus.publish(
        ItemReturned(
            sku=milk,
            return_id=return_id,
            sale_id=sales[0],
            location="A",
            quantity=1,
            lot_code=lot,
            reason=ReturnReason.CUSTOMER,
            returned_at=hour(5),
        )
    )

    async def returned() -> None:
        trace = await get(http, trace_url)
        assert (trace["returned"], trace["on_hand"]) == (1, 11)

    await eventually(returned, timeout=90)

    recall_id = await issue_recall(
        http,
        recall.url,
        {"sku": milk, "lot_codes": [lot], "reason": "Listeria", "classification": "I"},
    )

    async def assembled() -> Any:
        trace = await get(http, f"{recall.url}/trace/lots/{milk}/{lot}")
        assert trace["totals"]["quarantined"] == 11
        assert len(trace["events"]) == 9
        return trace

    trace = await eventually(assembled, timeout=90)
    assert trace["product"] == {
        "sku": milk,
        "name": "Whole milk 1L",
        "gtin": MILK_GTIN,
        "tracking": "batch",
    }
    assert trace["totals"] == {
        "received": 16,
        "sold": 6,
        "returned": 1,
        "on_hand": 0,
        "quarantined": 11,
        "damaged": 0,
    }
    assert {
        s["location"]: (s["received"], s["sold"], s["returned"], s["on_hand"], s["quarantined"])
        for s in trace["stores"]
    } == {"A": (10, 5, 1, 0, 6), "B": (6, 1, 0, 0, 5)}
    assert trace["units"] is None  # a batch item has no serial units
    assert [r["recall_id"] for r in trace["recalls"]] == [recall_id]
    expected = [
        ("received", "A", 10, "receipt", receipts[0], None, "Dairy Co"),
        ("received", "B", 6, "receipt", receipts[1], None, "Dairy Co"),
        ("sold", "A", 3, "sale", sales[0], "C-1", None),
        ("sold", "A", 2, "sale", sales[1], None, None),
        ("sold", "B", 1, "sale", sales[2], "C-2", None),
        ("returned", "A", 1, "return", return_id, None, None),
        ("recalled", None, 16, "recall", recall_id, None, None),
        ("quarantined", "A", 6, "recall", recall_id, None, None),
        ("quarantined", "B", 5, "recall", recall_id, None, None),
    ]
    assert [
        (
            e["kind"],
            e["location"],
            e["quantity"],
            e["document_type"],
            e["document_id"],
            e["customer_ref"],
            e["supplier"],
        )
        for e in trace["events"]
    ] == expected
    assert [e["at"][:19] for e in trace["events"][:6]] == [
        hour(n).isoformat()[:19] for n in range(6)
    ]
    assert trace["events"][5]["sale_id"] == sales[0]

    # EPCIS 2.0: valid against GS1's schema, one ObjectEvent per trace event.
    response = await http.get(f"{recall.url}/trace/lots/{milk}/{lot}/epcis")
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("application/ld+json")
    document = response.json()
    assert_valid_epcis(document)
    events = document["epcisBody"]["eventList"]
    lot_class = f"https://id.gs1.org/01/{MILK_GTIN}/10/{lot}"
    assert [
        (
            e.get("bizStep"),
            e["disposition"],
            e["quantityList"][0]["quantity"],
        )
        for e in events
    ] == [
        ("receiving", "sellable_accessible", 10),
        ("receiving", "sellable_accessible", 6),
        ("retail_selling", "retail_sold", 3),
        ("retail_selling", "retail_sold", 2),
        ("retail_selling", "retail_sold", 1),
        ("receiving", "returned", 1),
        (None, "recalled", 16),
        ("holding", "non_sellable_other", 6),
        ("holding", "non_sellable_other", 5),
    ]
    assert {e["quantityList"][0]["epcClass"] for e in events} == {lot_class}
    assert [e.get("lotline:customerRef") for e in events[2:5]] == ["C-1", None, "C-2"]

    # The FSMA-style CSV: one row per event, sortable by time.
    response = await http.get(f"{recall.url}/trace/lots/{milk}/{lot}/csv")
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("text/csv")
    rows = list(csv.DictReader(io.StringIO(response.text)))
    assert [
        (
            r["event_type"],
            r["location"],
            r["quantity"],
            r["unit_of_measure"],
            r["traceability_lot_code"],
            r["gtin"],
            r["reference_document_type"],
            r["reference_document_number"],
            r["customer_ref"],
        )
        for r in rows
    ] == [
        (
            {"received": "receiving", "sold": "sale", "returned": "return"}.get(kind, kind)
            if kind not in ("recalled", "quarantined")
            else {"recalled": "recall", "quarantined": "quarantine"}[kind],
            location or "",
            str(quantity),
            "each",
            lot,
            MILK_GTIN,
            doc_type,
            doc_id,
            customer or "",
        )
        for kind, location, quantity, doc_type, doc_id, customer, _ in expected
    ]
    assert [r["event_time"] for r in rows] == sorted(r["event_time"] for r in rows)

    # The command line prints the same picture and writes both exports.
    epcis_file, csv_file = tmp_path / "lot.jsonld", tmp_path / "lot.csv"
    out = await lotline(
        recall.url, "trace", "lot", milk, lot, "--epcis", str(epcis_file), "--csv", str(csv_file)
    )
    assert "Received 16, sold 6, returned 1; now 0 on hand, 11 quarantined" in out
    assert f"RECALLED {recall_id}" in out
    assert "Timeline (9 events)" in out
    written = json.loads(epcis_file.read_text())
    assert_valid_epcis(written)
    assert len(written["epcisBody"]["eventList"]) == 9
    assert list(csv.DictReader(io.StringIO(csv_file.read_text()))) == rows

    # Unknown lots are a 404 naming the lot; a malformed one a 422 naming the field.
    missing = await http.get(f"{recall.url}/trace/lots/{milk}/NO-SUCH-LOT")
    assert missing.status_code == 404
    assert "NO-SUCH-LOT" in missing.text
    bad = await http.get(f"{recall.url}/trace/lots/{milk}/{'x' * 41}")
    assert bad.status_code == 422
    assert "lot_code" in bad.text
    await http.aclose()


async def test_a_serial_units_life_is_traced_with_every_event(  # type: ignore[no-untyped-def]
    bus, start_service, run_id
) -> None:
    catalog = start_service("catalog")
    stock = start_service("stock", LOTLINE_TOKENS=QA_LEAD_TOKENS)
    # The registry knows the operator too: the recall service passes the reader's token on.
    serials = start_service("serial-registry", LOTLINE_TOKENS=QA_LEAD_TOKENS)
    recall = start_service(
        "recall",
        CATALOG_URL=catalog.url,
        STOCK_URL=stock.url,
        SERIALS_URL=serials.url,
        RECALL_OPERATOR_TOKENS=f"qa-lead:operator:{OPERATOR_TOKEN}",
    )
    # The operator of the tests' services: registers products, reads customer references.
    http = httpx.AsyncClient(timeout=30, headers=AS_OPERATOR)
    phone = f"TPHONE-{run_id}"
    imei = [f"IMEI-{run_id}-{n}" for n in range(3)]
    # A serial GS1 cannot encode in AI 21 ('#' is outside its character set 82): a URN.
    odd = f"SN#{run_id}"
    created = await http.post(
        f"{catalog.url}/products",
        json={"sku": phone, "name": "Phone X", "tracking": "serial", "gtin": PHONE_GTIN},
    )
    assert created.status_code == 201, created.text
    await bus.publish(
        ItemReceived(
            sku=phone,
            receipt_id=f"TRP-{run_id}",
            location="A",
            quantity=4,
            lot=Lot(code="P1"),
            serials=[*imei, odd],
            received_at=hour(0),
        )
    )

    async def registered() -> None:
        await get(http, f"{serials.url}/units/{phone}/{imei[0]}")

    await eventually(registered, timeout=90)
    await bus.publish(
        sale(phone, f"TSP-{run_id}", "A", 1, hour(1), serial=imei[0], customer_ref="C-9")
    )

    async def unit_sold() -> None:
        assert (await get(http, f"{serials.url}/units/{phone}/{imei[0]}"))["status"] == "sold"

    await eventually(unit_sold, timeout=90)
    await bus.publish(
        ItemReturned(
            sku=phone,
            return_id=f"TRTP-{run_id}",
            sale_id=f"TSP-{run_id}",
            location="C",
            quantity=1,
            serial=imei[0],
            lot_code="P1",  # from the sale's receipt: stock books the return to the lot
            reason=ReturnReason.DAMAGED,
            returned_at=hour(2),
        )
    )

    async def traced() -> Any:
        trace = await get(http, f"{recall.url}/trace/units/{phone}/{imei[0]}")
        assert trace["status"] == "returned"
        return trace

    trace = await eventually(traced, timeout=90)
    link = f"https://id.gs1.org/01/{PHONE_GTIN}/21/{imei[0]}"
    assert trace["digital_link"] == link
    assert [
        (e["kind"], e["location"], e["document_id"], e["customer_ref"], e["return_reason"])
        for e in trace["events"]
    ] == [
        ("received", "A", f"TRP-{run_id}", None, None),
        ("sold", "A", f"TSP-{run_id}", "C-9", None),
        ("returned", "C", f"TRTP-{run_id}", None, "damaged"),
    ]
    assert all(e["source_event"] for e in trace["events"])
    assert len({e["source_event"] for e in trace["events"]}) == 3

    response = await http.get(f"{recall.url}/trace/units/{phone}/{imei[0]}/epcis")
    assert response.status_code == 200, response.text
    document = response.json()
    assert_valid_epcis(document)
    events = document["epcisBody"]["eventList"]
    assert [(e["epcList"], e["disposition"], e["readPoint"]["id"]) for e in events] == [
        ([link], "sellable_accessible", "urn:lotline:location:A"),
        ([link], "retail_sold", "urn:lotline:location:A"),
        ([link], "returned", "urn:lotline:location:C"),
    ]

    # The unit's lot: each stock movement names its units, as GS1 identifiers in EPCIS.
    async def lot_traced() -> Any:
        lot_trace = await get(http, f"{recall.url}/trace/lots/{phone}/P1")
        assert [e["kind"] for e in lot_trace["events"]] == ["received", "sold", "returned"]
        return lot_trace

    lot_trace = await eventually(lot_traced, timeout=90)
    assert [e["serials"] for e in lot_trace["events"]] == [
        sorted([*imei, odd]),
        [imei[0]],
        [imei[0]],
    ]
    assert lot_trace["unit_counts"] == {"in_stock": 3, "returned": 1}
    assert lot_trace["totals"]["damaged"] == 1
    response = await http.get(f"{recall.url}/trace/lots/{phone}/P1/epcis")
    document = response.json()
    assert_valid_epcis(document)
    received = document["epcisBody"]["eventList"][0]
    assert received["epcList"] == [
        *(f"https://id.gs1.org/01/{PHONE_GTIN}/21/{serial}" for serial in sorted(imei)),
        f"urn:lotline:unit:{phone}:SN%23{run_id}",
    ]
    odd_trace = await get(http, f"{recall.url}/trace/units/{phone}/SN%23{run_id}")
    assert (odd_trace["serial"], odd_trace["digital_link"]) == (odd, None)
    response = await http.get(f"{recall.url}/trace/units/{phone}/SN%23{run_id}/epcis")
    document = response.json()
    assert_valid_epcis(document)
    assert {tuple(e["epcList"]) for e in document["epcisBody"]["eventList"]} == {
        (f"urn:lotline:unit:{phone}:SN%23{run_id}",)
    }
    out = await lotline(recall.url, "trace", "unit", phone, imei[0])
    assert link in out
    assert "Timeline (3 events)" in out
    missing = await http.get(f"{recall.url}/trace/units/{phone}/NO-SUCH-SERIAL")
    assert missing.status_code == 404
    await http.aclose()
