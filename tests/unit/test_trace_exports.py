"""Trace assembly and its exports without I/O: EPCIS 2.0 (valid against GS1's schema) and CSV."""

from __future__ import annotations

import copy
import csv
import functools
import io
import json
from datetime import UTC, datetime
from importlib import resources
from typing import Any

import jsonschema
import pytest
from biip.gs1_digital_link_uris import GS1DigitalLinkURI

from lotline.events import Classification
from lotline.recall import epcis, fsma
from lotline.recall.domain import Recall
from lotline.recall.timeline import (
    ProductInfo,
    TraceKind,
    assemble_lot,
    assemble_unit,
    recalls_of_lot,
)

T0 = datetime(2026, 11, 20, 8, 0, tzinfo=UTC)
GTIN = "09521234543213"


def at(hour: int) -> str:
    return T0.replace(hour=hour).isoformat()


@functools.cache
def schema_validator() -> jsonschema.Draft7Validator:
    text = (
        resources.files("lotline.recall")
        .joinpath("standards/epcis-json-schema.json")
        .read_text("utf-8")
    )
    return jsonschema.Draft7Validator(
        json.loads(text), format_checker=jsonschema.Draft7Validator.FORMAT_CHECKER
    )


def assert_valid_epcis(document: dict[str, Any]) -> None:
    errors = sorted(schema_validator().iter_errors(document), key=str)
    assert not errors, "\n".join(f"{list(e.absolute_path)}: {e.message}" for e in errors[:5])
    # Every GS1 Digital Link in it is one biip reads back unchanged.
    for event in document["epcisBody"]["eventList"]:
        ids = event.get("epcList", []) + [q["epcClass"] for q in event.get("quantityList", [])]
        for link in (i for i in ids if i.startswith("https://id.gs1.org/")):
            assert GS1DigitalLinkURI.parse(link).as_canonical_uri() == link


def movement(kind: str, location: str, quantity: int, hour: int, doc: str, **extra: Any) -> dict:
    document_type = {"received": "receipt", "sold": "sale", "returned": "return"}.get(
        kind, "recall"
    )
    return {
        "id": f"tests#{doc}#{location}#L1#{kind}",
        "kind": kind,
        "location": location,
        "quantity": quantity,
        "at": at(hour),
        "event_id": f"tests#{doc}",
        "document_type": document_type,
        "document_id": doc,
        **extra,
    }


def stock_part() -> dict[str, Any]:
    """Stock's lot trace: 10 in at A, 6 at B; sales of 3 (C-1) and 2 at A, 1 at B (C-2);
    1 of C-1's back at A; then the recall quarantined what was left: 6 at A, 5 at B."""
    return {
        "locations": [
            {"location": "A", "expires_on": "2026-12-05", "received": 10, "sold": 5,
             "returned": 1, "on_hand": 0, "quarantined": 6, "damaged": 0, "recall_id": "RC-1"},
            {"location": "B", "expires_on": "2026-12-05", "received": 6, "sold": 1,
             "returned": 0, "on_hand": 0, "quarantined": 5, "damaged": 0, "recall_id": "RC-1"},
        ],
        "movements": [
            movement("received", "A", 10, 8, "R-1", supplier="Dairy Co",
                     expires_on="2026-12-05"),
            movement("received", "B", 6, 8, "R-2", supplier="Dairy Co",
                     expires_on="2026-12-05"),
            movement("sold", "A", 3, 9, "S-1", line=1, sale_id="S-1", customer_ref="C-1"),
            movement("sold", "A", 2, 10, "S-2", line=1, sale_id="S-2"),
            movement("sold", "B", 1, 10, "S-3", line=1, sale_id="S-3", customer_ref="C-2"),
            movement("returned", "A", 1, 11, "RT-1", line=1, sale_id="S-1",
                     return_reason="customer"),
            movement("quarantined", "A", 6, 12, "RC-1", recall_id="RC-1"),
            movement("quarantined", "B", 5, 12, "RC-1", recall_id="RC-1"),
        ],
    }  # fmt: skip


def recall(lot_codes: tuple[str, ...] = ("L1",), serials: tuple[str, ...] = ()) -> Recall:
    return Recall(
        recall_id="RC-1",
        sku="MILK",
        lot_codes=lot_codes,
        serials=serials,
        reason="Listeria",
        classification=Classification.I,
        issued_by="qa",
        issued_at=T0.replace(hour=12),
    )


def milk(gtin: str | None = GTIN) -> ProductInfo:
    return ProductInfo(sku="MILK", name="Milk 1L", gtin=gtin, tracking="batch")


def test_a_lot_trace_adds_up_its_stores_and_orders_its_events() -> None:
    trace = assemble_lot("MILK", "L1", milk(), stock_part(), None, recalls_of_lot([recall()], "L1"))
    assert trace.totals.model_dump() == {
        "received": 16, "sold": 6, "returned": 1, "on_hand": 0, "quarantined": 11, "damaged": 0,
    }  # fmt: skip
    assert [e.kind for e in trace.events] == [
        TraceKind.RECEIVED, TraceKind.RECEIVED, TraceKind.SOLD, TraceKind.SOLD, TraceKind.SOLD,
        TraceKind.RETURNED, TraceKind.RECALLED, TraceKind.QUARANTINED, TraceKind.QUARANTINED,
    ]  # fmt: skip
    recalled = trace.events[6]
    assert (recalled.quantity, recalled.document_id, recalled.location) == (16, "RC-1", None)
    assert trace.expires_on == "2026-12-05"


def test_recalls_of_a_lot_are_those_naming_it_or_one_of_its_serials() -> None:
    assert recalls_of_lot([recall(("L2",))], "L1") == []
    assert [r.recall_id for r in recalls_of_lot([recall((), ("X-1",))], "L1", ["X-1"])] == ["RC-1"]


def test_the_lot_epcis_document_is_valid_against_gs1s_schema_with_the_cbv_vocabulary() -> None:
    trace = assemble_lot("MILK", "L1", milk(), stock_part(), None, recalls_of_lot([recall()], "L1"))
    document = epcis.lot_document(trace, T0.replace(hour=13))
    assert_valid_epcis(document)
    events = document["epcisBody"]["eventList"]
    assert len(events) == 9
    steps = [(e["action"], e.get("bizStep"), e["disposition"]) for e in events]
    assert steps == [
        ("ADD", "receiving", "sellable_accessible"),
        ("ADD", "receiving", "sellable_accessible"),
        ("OBSERVE", "retail_selling", "retail_sold"),
        ("OBSERVE", "retail_selling", "retail_sold"),
        ("OBSERVE", "retail_selling", "retail_sold"),
        ("OBSERVE", "receiving", "returned"),
        ("OBSERVE", None, "recalled"),
        ("OBSERVE", "holding", "non_sellable_other"),
        ("OBSERVE", "holding", "non_sellable_other"),
    ]
    receipt = events[0]
    assert receipt["quantityList"] == [
        {"epcClass": f"https://id.gs1.org/01/{GTIN}/10/L1", "quantity": 10, "uom": "EA"}
    ]
    assert receipt["bizLocation"] == {"id": "urn:lotline:location:A"}
    assert receipt["ilmd"] == {
        "cbvmda:lotNumber": "L1",
        "cbvmda:itemExpirationDate": "2026-12-05",
    }
    assert receipt["bizTransactionList"] == [
        {"type": "recadv", "bizTransaction": "urn:lotline:receipt:R-1"}
    ]
    assert receipt["lotline:supplier"] == "Dairy Co"
    assert events[2]["lotline:customerRef"] == "C-1"
    assert "bizLocation" not in events[2]  # sold: gone from the store
    assert len({e["eventID"] for e in events}) == 9


def test_without_a_gtin_the_identifiers_are_lotline_urns() -> None:
    trace = assemble_lot("MILK", "L 1/x", milk(None), stock_part(), None, [])
    document = epcis.lot_document(trace, T0)
    assert_valid_epcis(document)
    [element] = document["epcisBody"]["eventList"][0]["quantityList"]
    assert element["epcClass"] == "urn:lotline:class:MILK:lot:L%201%2Fx"


def test_a_lot_gs1_cannot_encode_is_named_by_its_urn_though_the_product_has_a_gtin() -> None:
    # '#' is outside GS1's character set 82, and AI 10 takes at most 20 characters.
    for lot, urn in [
        ("LOT#7", "urn:lotline:class:MILK:lot:LOT%237"),
        ("L" * 21, "urn:lotline:class:MILK:lot:" + "L" * 21),
    ]:
        trace = assemble_lot("MILK", lot, milk(), stock_part(), None, [])
        document = epcis.lot_document(trace, T0)
        assert_valid_epcis(document)
        classes = {
            element["epcClass"]
            for event in document["epcisBody"]["eventList"]
            for element in event["quantityList"]
        }
        assert classes == {urn}


def test_the_schema_rejects_what_epcis_forbids() -> None:
    # The check above is only worth something if the schema can fail.
    trace = assemble_lot("MILK", "L1", milk(), stock_part(), None, [])
    document = epcis.lot_document(trace, T0)
    broken = copy.deepcopy(document)
    del broken["epcisBody"]["eventList"][0]["eventTimeZoneOffset"]
    assert list(schema_validator().iter_errors(broken))
    broken = copy.deepcopy(document)
    broken["epcisBody"]["eventList"][2]["ilmd"] = {"cbvmda:lotNumber": "L1"}  # OBSERVE + ILMD
    assert list(schema_validator().iter_errors(broken))
    broken = copy.deepcopy(document)
    broken["epcisBody"]["eventList"][2]["quantityList"][0]["uom"] = "each"
    assert list(schema_validator().iter_errors(broken))
    broken = copy.deepcopy(document)
    broken["epcisBody"]["eventList"][0]["readPoint"]["id"] = "store A"  # not a URI
    assert list(schema_validator().iter_errors(broken))


def test_the_schema_is_gs1s_ratified_epcis_2_0_not_the_pre_ratification_draft() -> None:
    # What changed between the February 2022 draft and the schema of the ratified standard.
    trace = assemble_lot("MILK", "L1", milk(), stock_part(), None, [])
    document = epcis.lot_document(trace, T0)
    ratified = copy.deepcopy(document)
    ratified["epcisBody"]["eventList"][0]["certificationInfo"] = "https://example.com/cert/1"
    del ratified["epcisBody"]["eventList"][1]["quantityList"][0]["quantity"]
    assert not list(schema_validator().iter_errors(ratified))
    # A CBV URI where EPCIS 2.0 JSON wants the bare word, as the exports write it.
    broken = copy.deepcopy(document)
    broken["epcisBody"]["eventList"][0]["disposition"] = "urn:epcglobal:cbv:disp:active"
    assert list(schema_validator().iter_errors(broken))
    broken = copy.deepcopy(document)
    broken["epcisBody"]["eventList"][0]["quantityList"][0]["lot"] = "L1"
    assert list(schema_validator().iter_errors(broken))


UNIT = {
    "sku": "PHONE",
    "serial": "IMEI-1",
    "status": "returned",
    "location": "A",
    "lot_code": None,
    "recalled": True,
    "recall_ids": ["RC-1"],
    "digital_link": f"https://id.gs1.org/01/{GTIN}/21/IMEI-1",
    "sale_id": "S-9",
    "customer_ref": "C-7",
    "return_reason": "customer",
    "history": [
        {"type": "item-received", "event_id": "dock#1", "at": at(8), "what": "received",
         "ref": "R-9", "location": "A"},
        {"type": "item-sold", "event_id": "pos#2", "at": at(9), "what": "sold", "ref": "S-9#1",
         "location": "B"},
        {"type": "item-returned", "event_id": "pos#3", "at": at(10), "what": "returned",
         "ref": "RT-9#1", "location": "A"},
        {"type": "batch-recalled", "event_id": "recall#4", "at": at(11), "what": "recalled",
         "ref": "RC-1"},
    ],
}  # fmt: skip


def test_a_unit_trace_names_every_event_and_exports_digital_links() -> None:
    phone = ProductInfo(sku="PHONE", name="Phone", gtin=GTIN, tracking="serial")
    trace = assemble_unit(UNIT, phone, [])
    assert [(e.kind, e.location, e.document_id, e.source_event) for e in trace.events] == [
        (TraceKind.RECEIVED, "A", "R-9", "dock#1"),
        (TraceKind.SOLD, "B", "S-9", "pos#2"),
        (TraceKind.RETURNED, "A", "RT-9", "pos#3"),
        (TraceKind.RECALLED, None, "RC-1", "recall#4"),
    ]
    assert trace.events[1].customer_ref == "C-7"
    document = epcis.unit_document(trace, T0)
    assert_valid_epcis(document)
    events = document["epcisBody"]["eventList"]
    assert {tuple(e["epcList"]) for e in events} == {(f"https://id.gs1.org/01/{GTIN}/21/IMEI-1",)}
    assert [e["disposition"] for e in events] == [
        "sellable_accessible",
        "retail_sold",
        "returned",
        "recalled",
    ]


def test_a_serial_gs1_cannot_encode_has_no_digital_link_and_a_urn_in_epcis() -> None:
    phone = ProductInfo(sku="PHONE", name="Phone", gtin=GTIN, tracking="serial")
    # The registry's own link is not taken on trust: the trace builds and checks its own.
    unit = {**UNIT, "serial": "SN#42", "digital_link": f"https://id.gs1.org/01/{GTIN}/21/SN%2342"}
    trace = assemble_unit(unit, phone, [])
    assert trace.digital_link is None
    document = epcis.unit_document(trace, T0)
    assert_valid_epcis(document)
    events = document["epcisBody"]["eventList"]
    assert {tuple(e["epcList"]) for e in events} == {("urn:lotline:unit:PHONE:SN%2342",)}


def test_the_csv_has_one_sortable_row_per_event_with_the_key_data_elements() -> None:
    trace = assemble_lot("MILK", "L1", milk(), stock_part(), None, recalls_of_lot([recall()], "L1"))
    text = fsma.spreadsheet(trace.product, trace.events)
    rows = list(csv.DictReader(io.StringIO(text)))
    assert list(rows[0]) == fsma.COLUMNS
    assert len(rows) == 9
    assert [r["event_time"] for r in rows] == sorted(r["event_time"] for r in rows)
    first = rows[0]
    assert first["event_time"] == "2026-11-20T08:00:00Z"
    assert (first["event_type"], first["traceability_lot_code"], first["quantity"]) == (
        "receiving",
        "L1",
        "10",
    )
    assert (first["unit_of_measure"], first["gtin"], first["product_description"]) == (
        "each",
        GTIN,
        "Milk 1L",
    )
    assert (first["reference_document_type"], first["reference_document_number"]) == (
        "receipt",
        "R-1",
    )
    sales = [r for r in rows if r["event_type"] == "sale"]
    assert [(r["location"], r["quantity"], r["customer_ref"]) for r in sales] == [
        ("A", "3", "C-1"),
        ("A", "2", ""),
        ("B", "1", "C-2"),
    ]
    assert [r["event_type"] for r in rows[6:]] == ["recall", "quarantine", "quarantine"]
    assert {r["reference_document_number"] for r in rows[6:]} == {"RC-1"}


@pytest.mark.parametrize("text", ["=HYPERLINK(1)", "+1", "-2", "@x"])
def test_csv_cells_never_start_a_formula(text: str) -> None:
    trace = assemble_lot("MILK", "L1", milk(), stock_part(), None, [])
    trace.events[2].customer_ref = text
    rows = list(csv.DictReader(io.StringIO(fsma.spreadsheet(trace.product, trace.events))))
    assert rows[2]["customer_ref"] == "'" + text


def test_units_a_receipt_booked_but_the_registry_refused_are_in_every_export() -> None:
    part = stock_part()
    part["movements"].insert(
        1, movement("refused", "A", 2, 8, "R-1", return_reason="duplicate_serial")
    )
    trace = assemble_lot("MILK", "L1", milk(), part, None, recalls_of_lot([recall()], "L1"))
    # At the same instant, each store's receipt comes before the refusal that corrects it.
    kinds = [e.kind for e in trace.events][:3]
    assert kinds == [TraceKind.RECEIVED, TraceKind.RECEIVED, TraceKind.REFUSED]
    document = epcis.lot_document(trace, T0.replace(hour=13))
    assert_valid_epcis(document)
    refused = document["epcisBody"]["eventList"][2]
    assert (refused["action"], refused["bizStep"], refused["disposition"]) == (
        "OBSERVE",
        "receiving",
        "non_conformant",
    )
    rows = fsma.rows(milk(), trace.events)
    assert [r["event_type"] for r in rows][:3] == ["receiving", "receiving", "receipt refused"]
