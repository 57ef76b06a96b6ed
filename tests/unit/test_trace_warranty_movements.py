"""A lot trace that holds stock's warranty movements (a replacement given, a refused claim
undone) assembles, and exports as valid EPCIS and as FSMA rows (issue 12)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from test_trace_exports import assert_valid_epcis, movement

from lotline.recall import epcis, fsma
from lotline.recall.timeline import ProductInfo, TraceKind, assemble_lot

GTIN = "09521234543213"


def stock_part() -> dict[str, Any]:
    claim = {"document_type": "warranty_claim"}
    return {
        "locations": [
            {"location": "A", "expires_on": None, "received": 3, "sold": 1, "returned": 0,
             "on_hand": 1, "quarantined": 0, "damaged": 0, "recall_id": None, "replaced": 1},
        ],
        "movements": [
            movement("received", "A", 3, 8, "R-1"),
            {**movement("replaced", "A", 1, 9, "W-1"), **claim},
            {**movement("replaced", "A", 1, 10, "W-2"), **claim},
            {**movement("claim_refused", "A", 1, 11, "W-2"), **claim},
        ],
    }  # fmt: skip


def test_warranty_movements_are_traced_and_exported() -> None:
    product = ProductInfo(sku="PHONE", name="Phone", gtin=GTIN, tracking="serial")
    trace = assemble_lot("PHONE", "L1", product, stock_part(), None, [])
    assert [(e.kind, e.document_id) for e in trace.events] == [
        (TraceKind.RECEIVED, "R-1"),
        (TraceKind.REPLACED, "W-1"),
        (TraceKind.REPLACED, "W-2"),
        (TraceKind.CLAIM_REFUSED, "W-2"),
    ]
    document = epcis.lot_document(trace, datetime(2026, 12, 1, tzinfo=UTC))
    assert_valid_epcis(document)
    steps = [(e.get("bizStep"), e["disposition"]) for e in document["epcisBody"]["eventList"]]
    assert steps[1:] == [
        ("retail_selling", "retail_sold"),
        ("retail_selling", "retail_sold"),
        ("other", "sellable_accessible"),
    ]
    kinds = [row["event_type"] for row in fsma.rows(product, trace.events)]
    assert kinds[1:] == ["warranty replacement"] * 2 + ["warranty claim refused"]
