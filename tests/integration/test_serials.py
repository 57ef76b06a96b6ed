"""The serial registry against the real stack: events in through Kafka, answers out through its
HTTP API and the events it publishes."""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import quote

import httpx
import pytest
from biip.gs1_digital_link_uris import GS1DigitalLinkURI
from conftest import EventBus, ServiceProcess
from pymongo import AsyncMongoClient

from lotline.events import (
    BatchRecalled,
    Classification,
    CloudEvent,
    ItemReceived,
    ItemReturned,
    ItemSold,
    Lot,
    ProductRegistered,
    decode,
    encode,
)

from support import AS_STAFF, eventually

pytestmark = pytest.mark.infra

SOURCE = "lotline/serial-registry"
GTIN = "04006381333931"
NOW = datetime(2026, 11, 22, 9, 0, tzinfo=UTC)


@pytest.fixture
async def registry(
    start_service: Callable[..., ServiceProcess],
    mongo: AsyncMongoClient[dict[str, Any]],
    run_id: str,
) -> AsyncIterator[httpx.AsyncClient]:
    """The registry as its own process; afterwards, this run's units are removed again: the
    stack is shared and lasting, and what runs leave behind grows every later one's files."""
    service = start_service("serial-registry")
    # As staff: units carry their customer only for a reader who may see it.
    async with httpx.AsyncClient(base_url=service.url, timeout=30, headers=AS_STAFF) as http:
        yield http
    service.stop()
    ours = {"$regex": f"-{run_id}$"}
    db = mongo["serials"]
    await db["units"].delete_many({"sku": ours})
    await db["lot_units"].delete_many({"key": {"$regex": f"-{run_id} "}})
    await db["products"].delete_many({"_id": ours})
    await db["recalls"].delete_many({"_id": ours})
    await db["receipts"].delete_many({"_id": {"$regex": f"-{run_id} "}})


def product(
    sku: str, tracking: str = "serial", revision: int = 1, **extra: Any
) -> ProductRegistered:
    return ProductRegistered(
        sku=sku, name=f"Product {sku}", tracking=tracking, revision=revision, **extra
    )


def receipt(
    sku: str, receipt_id: str, serials: list[str] | None, lot: str | None = None, qty: int = 0
) -> ItemReceived:
    return ItemReceived(
        sku=sku,
        receipt_id=receipt_id,
        location="DC-1",
        quantity=len(serials) if serials else qty,
        serials=serials,
        lot=Lot(code=lot, expires_on=datetime(2028, 1, 31).date()) if lot else None,
        received_at=NOW,
    )


def sale(
    sku: str, sale_id: str, serial: str | None, customer: str | None = None, minutes: int = 0
) -> ItemSold:
    return ItemSold(
        sku=sku,
        sale_id=sale_id,
        line=1,
        location="STORE-7",
        quantity=1,
        serial=serial,
        customer_ref=customer,
        sold_at=NOW + timedelta(hours=1, minutes=minutes),
    )


def recall(
    sku: str, recall_id: str, lots: list[str], serials: tuple[str, ...] = ()
) -> BatchRecalled:
    return BatchRecalled(
        sku=sku,
        recall_id=recall_id,
        lot_codes=lots,
        serials=list(serials),
        reason="battery may overheat",
        classification=Classification.I,
        issued_by="qa@lotline",
        issued_at=NOW + timedelta(hours=2),
    )


async def published(bus: EventBus, topic: str, sku: str) -> list[CloudEvent[Any]]:
    """What the registry published about one SKU (other services share these topics)."""
    events = []
    for record in await bus.read_all(topic):
        if record.key == sku.encode():
            event = decode(record.value)
            if event.source == SOURCE:
                events.append(event)
    return events


async def unit(http: httpx.AsyncClient, sku: str, serial: str) -> dict[str, Any]:
    response = await http.get(f"/units/{sku}/{serial}")
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


async def lot(http: httpx.AsyncClient, sku: str, lot_code: str, **query: Any) -> dict[str, Any]:
    response = await http.get(f"/lots/{sku}/{lot_code}/units", params=query)
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


def statuses(page: dict[str, Any]) -> dict[str, str]:
    return {u["serial"]: u["status"] for u in page["units"]}


async def test_receipts_sales_returns_and_a_recall(
    bus: EventBus, registry: httpx.AsyncClient, run_id: str
) -> None:
    http = registry
    sku, milk, ghost = f"PHONE-{run_id}", f"MILK-{run_id}", f"GHOST-{run_id}"
    lot1 = [f"A{i}" for i in range(10)]
    lot2 = [f"B{i}" for i in range(5)]
    # Revision 2 carries the GTIN; a replayed revision 1 must not take it away.
    await bus.publish(
        product(sku, revision=2, gtin=GTIN), product(sku, revision=1), product(milk, "batch")
    )
    await bus.publish(
        receipt(sku, "R-1", lot1, "L1"),
        receipt(sku, "R-2", lot2, "L2"),
        receipt(sku, "R-3", ["A0", "C0"], "L2"),  # A0 is R-1's
        receipt(sku, "R-4", None, "L2", qty=2),
        receipt(milk, "R-5", ["M1", "M2"], "LM"),
        receipt(ghost, "R-6", ["G1"]),  # never registered: waited for, then rejected
    )
    # Each topic is consumed on its own: the sales wait until the receipts are in.
    await eventually(lambda: unit(http, sku, "C0"))
    await bus.publish(
        sale(sku, "S-1", "A0", "CUST-1"),
        sale(sku, "S-2", "A1", "CUST-2"),
        sale(sku, "S-3", "B0", "CUST-3"),
        sale(sku, "S-4", "Z9", "CUST-4"),  # never received
        sale(sku, "S-5", "A0", "CUST-5", minutes=5),  # sold twice
        sale(sku, "S-6", None, "CUST-6"),  # serial item without serial
    )

    async def sales_applied() -> None:
        assert (await unit(http, sku, "A0"))["sale_id"] == "S-5"
        assert (await unit(http, sku, "B0"))["status"] == "sold"
        assert (await unit(http, sku, "Z9"))["status"] == "sold"

    await eventually(sales_applied, timeout=30)
    await bus.publish(
        ItemReturned(
            sku=sku,
            return_id="RT-1",
            sale_id="S-2",
            location="STORE-2",
            quantity=1,
            serial="A1",
            reason="customer",
            returned_at=NOW + timedelta(hours=1, minutes=30),
        )
    )

    async def returned() -> None:
        assert (await unit(http, sku, "A1"))["status"] == "returned"

    await eventually(returned)
    await bus.publish(recall(sku, "RC-1", ["L1"], ("B0", "NOPE")))

    async def answered() -> list[CloudEvent[Any]]:
        answers = await published(bus, "units-recalled", sku)
        assert len(answers) == 1
        return answers

    (answer,) = await eventually(answered)
    data = answer.data
    assert (data.recall_id, data.chunk, data.chunks) == ("RC-1", 1, 1)
    # L1: A0 sold (twice), A1 returned, A2..A9 in stock; B0 named by serial, sold.
    assert {k.value: v for k, v in data.counts.items()} == {
        "in_stock": 8,
        "sold": 2,
        "returned": 1,
    }
    assert data.unknown_serials == ["NOPE"]
    assert [
        (u.serial, u.sale_id, u.customer_ref, u.location, u.lot_code) for u in data.sold_units
    ] == [
        ("A0", "S-5", "CUST-5", "STORE-7", "L1"),
        ("B0", "S-3", "CUST-3", "STORE-7", "L2"),
    ]
    assert data.sold_units[0].sold_at == NOW + timedelta(hours=1, minutes=5)

    # Recall wins: a recalled unit sold afterwards is flagged, and a unit of the recalled lot
    # received afterwards arrives flagged.
    await bus.publish(
        sale(sku, "S-7", "A2", "CUST-7", minutes=90), receipt(sku, "R-7", ["D0"], "L1")
    )

    async def flags_settled() -> dict[str, list[tuple[str, str | None, str | None]]]:
        flags = await published(bus, "sale-flagged", sku)
        by_sale: dict[str, list[tuple[str, str | None, str | None]]] = {}
        for event in flags:
            flag = event.data
            by_sale.setdefault(flag.sale_id, []).append(
                (flag.reason.value, flag.recall_id, flag.customer_ref)
            )
        assert "S-7" in by_sale
        return by_sale

    by_sale = await eventually(flags_settled)
    assert by_sale == {
        "S-4": [("unknown_serial", None, "CUST-4")],
        "S-5": [("serial_not_in_stock", None, "CUST-5")],
        "S-6": [("unknown_serial", None, "CUST-6")],
        "S-7": [("recalled", "RC-1", "CUST-7")],
    }

    async def late_unit_flagged() -> dict[str, Any]:
        late = await unit(http, sku, "D0")
        assert late["recalled"]
        return late

    late = await eventually(late_unit_flagged)
    assert (late["status"], late["recall_ids"], late["lot_code"]) == ("in_stock", ["RC-1"], "L1")

    a2 = await unit(http, sku, "A2")
    assert (a2["status"], a2["recalled"], a2["recall_ids"]) == ("sold", True, ["RC-1"])
    assert (a2["sale_id"], a2["customer_ref"], a2["location"]) == ("S-7", "CUST-7", "STORE-7")
    assert a2["digital_link"] == f"https://id.gs1.org/01/{GTIN}/21/A2"
    assert [(h["type"], h["ref"], [f["reason"] for f in h["flags"]]) for h in a2["history"]] == [
        ("item-received", "R-1", []),
        ("batch-recalled", "RC-1", []),
        ("item-sold", "S-7#1", ["recalled"]),
    ]
    a1 = await unit(http, sku, "A1")
    assert (a1["status"], a1["location"], a1["return_reason"], a1["recalled"]) == (
        "returned",
        "STORE-2",
        "customer",
        True,
    )
    a0 = await unit(http, sku, "A0")
    assert [h["ref"] for h in a0["history"]] == ["R-1", "S-1#1", "S-5#1", "RC-1"]
    c0 = await unit(http, sku, "C0")
    assert (c0["receipt_id"], c0["lot_code"]) == ("R-3", "L2")

    page = await lot(http, sku, "L1", status="sold", recalled="true")
    assert statuses(page) == {"A0": "sold", "A2": "sold"}
    assert page["counts"] == {"in_stock": 8, "sold": 2, "returned": 1}  # A2 sold, D0 arrived
    assert (page["recalled"], page["total"], page["matched"]) == (11, 11, 2)
    second = await lot(http, sku, "L1", limit=3, after="A2")
    assert [u["serial"] for u in second["units"]] == ["A3", "A4", "A5"]
    assert second["next_after"] == "A5"
    # Page by page, in serial order, each unit once.
    serials, after = [], None
    while True:
        page = await lot(http, sku, "L1", limit=4, **({"after": after} if after else {}))
        serials += [u["serial"] for u in page["units"]]
        if (after := page["next_after"]) is None:
            break
    assert serials == [*(f"A{n}" for n in range(10)), "D0"]
    # The deprecated skip still pages (the recall service's traces use it).
    assert [u["serial"] for u in (await lot(http, sku, "L1", limit=3, skip=3))["units"]] == [
        "A3",
        "A4",
        "A5",
    ]
    both = await http.get(f"/lots/{sku}/L1/units", params={"after": "A2", "skip": 3})
    assert both.status_code == 422
    assert both.json()["message"] == "skip: give after or skip, not both (skip is deprecated)"

    async def rejections() -> dict[str, tuple[str, list[str]]]:
        events = await published(bus, "receipt-rejected", sku)
        events += await published(bus, "receipt-rejected", milk)
        events += await published(bus, "receipt-rejected", ghost)
        found = {e.data.receipt_id: (e.data.reason.value, e.data.serials) for e in events}
        assert "R-6" in found
        return found

    assert await eventually(rejections, timeout=30) == {
        "R-3": ("duplicate_serial", ["A0"]),
        "R-4": ("missing_serials", []),
        "R-5": ("tracking_mismatch", ["M1", "M2"]),
        "R-6": ("unknown_sku", ["G1"]),
    }

    # Clear errors at the HTTP edge.
    missing = await http.get(f"/units/{sku}/NOPE")
    assert missing.status_code == 404
    assert missing.json()["detail"] == f"no unit with serial 'NOPE' of sku '{sku}' is registered"
    no_lot = await http.get(f"/lots/{sku}/L9/units")
    assert no_lot.status_code == 404
    assert no_lot.json()["detail"] == f"no units of lot 'L9' of sku '{sku}' are registered"
    bad = await http.get(f"/lots/{sku}/L1/units", params={"status": "lost", "limit": 0})
    assert bad.status_code == 422
    assert bad.json()["message"] == (
        "status: Input should be 'in_stock', 'sold', 'returned', 'missing', 'written_off', "
        "'destroyed' or 'returned_to_supplier'; limit: Input should be greater than or equal to 1"
    )


async def test_redelivered_and_resent_events_change_nothing(
    bus: EventBus,
    registry: httpx.AsyncClient,
    mongo: AsyncMongoClient[dict[str, Any]],
    run_id: str,
) -> None:
    http = registry
    sku = f"TAB-{run_id}"
    # Each topic is consumed on its own, so every step waits for the one before it.
    first = await bus.publish(
        product(sku),
        receipt(sku, "R-1", ["T0", "T1", "T2"], "L1"),
        receipt(sku, "R-2", ["T2", "T3"], "L1"),  # T2 is R-1's
    )
    await eventually(lambda: unit(http, sku, "T3"))
    first += await bus.publish(sale(sku, "S-1", "T0", "CUST-1"), sale(sku, "S-2", "T0", "CUST-2"))

    async def sold_twice() -> None:
        assert (await unit(http, sku, "T0"))["sale_id"] == "S-2"

    await eventually(sold_twice)
    first += await bus.publish(recall(sku, "RC-1", ["L1"]))
    await eventually(lambda: answers(bus, sku, 1))
    first += await bus.publish(sale(sku, "S-3", "T1", "CUST-3", minutes=90))  # recalled unit

    async def outputs(flags: int, rejections: int, recalled: int) -> dict[str, list[str]]:
        # Distinct ids: a resend carries its original id (derived from its cause), which
        # consumers drop as a copy; what must not happen is an event under a new id.
        found = {
            topic: sorted({str(e.id) for e in await published(bus, topic, sku)})
            for topic in ("sale-flagged", "receipt-rejected", "units-recalled")
        }
        assert {topic: len(ids) for topic, ids in found.items()} == {
            "sale-flagged": flags,  # S-2 not in stock, S-3 recalled (, S-9 recalled)
            "receipt-rejected": rejections,  # R-2's T2
            "units-recalled": recalled,
        }
        return found

    expected = await eventually(lambda: outputs(2, 1, 1))
    before = {serial: await unit(http, sku, serial) for serial in ("T0", "T1", "T2", "T3")}
    assert [h["ref"] for h in before["T0"]["history"]] == ["R-1", "S-1#1", "S-2#1", "RC-1"]

    # The same records again (a producer retry: same ids), then the same facts under new ids
    # (a till or scanner re-sending), then one new event per topic: when those are applied,
    # everything before them on their partitions was too. The receipts' ledger is dropped
    # first, as by a crash before it was written: the units themselves must tell a receipt's
    # own serials from duplicates.
    await mongo["serials"]["receipts"].delete_many({"_id": {"$regex": f"^{sku} "}})
    await bus.send(first)
    await bus.send([encode(m.event.data, source="tests") for m in first])
    await bus.publish(
        receipt(sku, "R-9", ["T9"], "L9"),
        sale(sku, "S-9", "T3", "CUST-9"),  # T3 is of the recalled lot: one more flag
        recall(sku, "RC-9", ["L8"]),
    )

    async def markers_applied() -> None:
        assert (await unit(http, sku, "T3"))["sale_id"] == "S-9"
        assert (await unit(http, sku, "T9"))["receipt_id"] == "R-9"

    await eventually(markers_applied)
    await eventually(lambda: answers(bus, sku, 2))
    for serial in ("T0", "T1", "T2"):
        assert await unit(http, sku, serial) == before[serial]
    after = await outputs(3, 1, 2)
    assert set(expected["sale-flagged"]) < set(after["sale-flagged"])
    assert after["receipt-rejected"] == expected["receipt-rejected"]
    assert set(expected["units-recalled"]) < set(after["units-recalled"])


async def answers(bus: EventBus, sku: str, count: int) -> list[CloudEvent[Any]]:
    found = list({e.id: e for e in await published(bus, "units-recalled", sku)}.values())
    assert len(found) == count
    return found


async def test_bad_sale_events_go_to_the_dead_letter_topic_and_the_next_is_applied(
    bus: EventBus, registry: httpx.AsyncClient, run_id: str
) -> None:
    http = registry
    sku = f"CAM-{run_id}"
    await bus.publish(product(sku), receipt(sku, "R-1", ["K0"], "L1"))
    await bus.send_raw("item-sold", b"\xff\x00 not an event", key=sku.encode())
    event = json.loads(encode(sale(sku, "S-0", "K0"), source="tests").value)
    del event["data"]["sale_id"]
    await bus.send_raw("item-sold", json.dumps(event).encode(), key=sku.encode())
    await bus.publish(sale(sku, "S-1", "K0", "CUST-1"))

    async def sold() -> None:
        assert (await unit(http, sku, "K0"))["sale_id"] == "S-1"

    await eventually(sold)

    async def dead_letters() -> list[dict[str, str]]:
        records = [r for r in await bus.read_all("item-sold.dlq") if r.key == sku.encode()]
        assert len(records) == 2
        return [{k: v.decode() for k, v in r.headers} for r in records]

    garbage, missing = await eventually(dead_letters)
    assert garbage["lotline-dlq-reason"].startswith("not valid JSON")
    assert garbage["lotline-dlq-field"] == "(message)"
    assert missing["lotline-dlq-reason"] == "required field is missing"
    assert missing["lotline-dlq-field"] == "data.sale_id"
    assert missing["lotline-dlq-service"] == "serial-registry"


async def test_a_ten_thousand_serial_receipt_then_a_recall(
    bus: EventBus, registry: httpx.AsyncClient, run_id: str
) -> None:
    http = registry
    sku = f"BULK-{run_id}"
    serials = [f"N{i:06d}" for i in range(10_000)]
    # A small receipt first: once its unit shows, the product is known and the timing below
    # measures the big receipt alone.
    await bus.publish(product(sku), receipt(sku, "R-PROBE", ["P0"], "LP"))
    await eventually(lambda: unit(http, sku, "P0"))
    started = time.monotonic()
    await bus.publish(receipt(sku, "R-BIG", serials, "LB"))

    # Polled by _id: a lot page reads the whole collection on FerretDB, and would slow the
    # very thing measured. Slices are inserted in order, so the last serial comes last.
    await eventually(lambda: unit(http, sku, serials[-1]), timeout=60, interval=0.1)
    received_in = time.monotonic() - started
    assert (await lot(http, sku, "LB", limit=1))["total"] == 10_000
    await bus.publish(*(sale(sku, f"S-{i}", serials[i], f"CUST-{i}") for i in range(1500)))

    async def sold() -> None:
        assert (await unit(http, sku, serials[1499]))["sale_id"] == "S-1499"

    await eventually(sold, timeout=60)
    assert (await lot(http, sku, "LB", limit=1))["counts"]["sold"] == 1500
    started = time.monotonic()
    await bus.publish(recall(sku, "RC-BIG", ["LB"]))

    async def answered() -> list[CloudEvent[Any]]:
        answers = await published(bus, "units-recalled", sku)
        assert len(answers) == 2
        return sorted(answers, key=lambda e: e.data.chunk)

    answers = await eventually(answered, timeout=60, interval=0.5)
    recalled_in = time.monotonic() - started
    assert [(a.data.chunk, a.data.chunks, len(a.data.sold_units)) for a in answers] == [
        (1, 2, 1000),
        (2, 2, 500),
    ]
    assert {k.value: v for k, v in answers[0].data.counts.items()} == {
        "in_stock": 8500,
        "sold": 1500,
        "returned": 0,
    }
    page = await lot(http, sku, "LB", recalled="false", limit=1)
    assert (page["recalled"], page["matched"]) == (10_000, 0)
    print(
        f"\n10,000-serial receipt registered in {received_in:.2f}s; recall answered in "
        f"{recalled_in:.2f}s"
    )


async def test_a_units_digital_link_only_where_gs1_can_encode_its_serial(
    bus: EventBus, registry: httpx.AsyncClient, run_id: str
) -> None:
    http = registry
    sku, plain = f"LINKED-{run_id}", f"UNLINKED-{run_id}"
    # '#' is outside GS1's character set 82 and AI 21 takes at most 20 characters: biip
    # refuses such links, so the registry gives none rather than an invalid one.
    serials = ["OK-1", "SN#42", "X" * 21]
    await bus.publish(product(sku, gtin=GTIN), product(plain))
    await bus.publish(receipt(sku, "R-1", serials, "L1"), receipt(plain, "R-2", ["OK-2"], "L2"))

    async def links() -> dict[str, Any]:
        found = {}
        for s, serial in [(sku, s) for s in serials] + [(plain, "OK-2")]:
            response = await http.get(f"/units/{s}/{quote(serial, safe='')}")
            assert response.status_code == 200, response.text
            found[serial] = response.json()["digital_link"]
        return found

    found = await eventually(links)
    assert found == {
        "OK-1": f"https://id.gs1.org/01/{GTIN}/21/OK-1",
        "SN#42": None,
        "X" * 21: None,
        "OK-2": None,  # no GTIN
    }
    link = GS1DigitalLinkURI.parse(found["OK-1"])
    assert [(e.ai.ai, e.value) for e in link.element_strings] == [("01", GTIN), ("21", "OK-1")]
