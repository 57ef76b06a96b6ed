"""The EPCIS 2.0 and FSMA exports of a lot that was counted, written off and disposed of."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from test_trace_exports import assert_valid_epcis, at, movement

from lotline.recall import epcis, fsma
from lotline.recall.timeline import ProductInfo, TraceKind, assemble_lot

GTIN = "09521234543213"


def stock_part() -> dict[str, Any]:
    """10 received; a count found 9; 2 written off as damaged, 1 found, 1 stolen; the rest
    quarantined for a recall, 5 destroyed and 2 returned to the supplier."""
    doc = {"document_type": "count"}
    return {
        "locations": [
            {"location": "A", "expires_on": "2026-12-05", "received": 10, "sold": 0,
             "returned": 0, "on_hand": 0, "quarantined": 0, "damaged": 0, "recall_id": "RC-1",
             "disposed": 7},
        ],
        "movements": [
            movement("received", "A", 10, 8, "R-1", expires_on="2026-12-05"),
            {**movement("counted", "A", 9, 9, "C-1", variance=-1), **doc},
            {**movement("adjusted", "A", 2, 10, "A-1", adjust_reason="damaged",
                        direction="out"), "document_type": "adjustment"},
            {**movement("adjusted", "A", 1, 10, "A-2", adjust_reason="found",
                        direction="in"), "document_type": "adjustment"},
            {**movement("adjusted", "A", 1, 10, "A-3", adjust_reason="theft",
                        direction="out"), "document_type": "adjustment"},
            movement("quarantined", "A", 7, 11, "RC-1", recall_id="RC-1"),
            {**movement("disposed", "A", 5, 12, "D-1", disposal_method="destroyed",
                        reference="CERT-1", recall_id="RC-1"), "document_type": "disposal"},
            {**movement("disposed", "A", 2, 13, "D-2", disposal_method="returned_to_supplier",
                        reference="RMA-7", recall_id="RC-1"), "document_type": "disposal"},
        ],
    }  # fmt: skip


def test_a_counted_written_off_and_disposed_lot_exports_valid_epcis_with_cbv_steps() -> None:
    product = ProductInfo(sku="MILK", name="Milk", gtin=GTIN, tracking="batch")
    trace = assemble_lot("MILK", "L1", product, stock_part(), None, [])
    document = epcis.lot_document(trace, datetime(2026, 12, 1, tzinfo=UTC))
    assert_valid_epcis(document)
    events = document["epcisBody"]["eventList"]
    steps = [
        (e["action"], e.get("bizStep"), e["disposition"], e["quantityList"][0]["quantity"])
        for e in events
    ]
    assert steps == [
        ("ADD", "receiving", "sellable_accessible", 10),
        ("OBSERVE", "cycle_counting", "sellable_accessible", 9),
        ("OBSERVE", "inspecting", "damaged", 2),
        ("OBSERVE", "cycle_counting", "sellable_accessible", 1),
        ("OBSERVE", None, "stolen", 1),
        ("OBSERVE", "holding", "non_sellable_other", 7),
        ("DELETE", "destroying", "destroyed", 5),
        ("OBSERVE", "shipping", "returned", 2),
    ]
    assert events[1]["lotline:variance"] == -1
    assert events[6]["lotline:reference"] == "CERT-1"
    assert events[7]["bizTransactionList"] == [
        {"type": "rma", "bizTransaction": "urn:lotline:disposal:D-2"}
    ]
    assert [e.kind for e in trace.events][-2:] == [TraceKind.DISPOSED, TraceKind.DISPOSED]
    rows = fsma.rows(product, trace.events)
    assert [row["event_type"] for row in rows][1:3] == ["count", "adjustment"]
    assert at(8) < at(13)
