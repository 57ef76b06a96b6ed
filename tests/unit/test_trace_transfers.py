"""The EPCIS 2.0 and FSMA exports of a lot that was transferred between two stores."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from test_trace_exports import assert_valid_epcis, movement

from lotline.recall import epcis, fsma
from lotline.recall.timeline import ProductInfo, assemble_lot

GTIN = "09521234543213"


def transfer(kind: str, location: str, quantity: int, hour: int, **extra: Any) -> dict[str, Any]:
    return {
        **movement(kind, location, quantity, hour, "TR-1", **extra),
        "document_type": "transfer",
        "from_location": "A",
        "to_location": "B",
    }


def stock_part() -> dict[str, Any]:
    """10 received at A; 6 shipped to B; the recall came while they were on the way, so they
    were received at B and quarantined there."""
    return {
        "locations": [
            {"location": "A", "expires_on": "2026-12-05", "received": 10, "sold": 0,
             "returned": 0, "on_hand": 0, "quarantined": 4, "damaged": 0, "recall_id": "RC-1"},
            {"location": "B", "expires_on": "2026-12-05", "received": 0, "sold": 0,
             "returned": 0, "on_hand": 0, "quarantined": 6, "damaged": 0, "recall_id": "RC-1",
             "in_transit": 0},
        ],
        "movements": [
            movement("received", "A", 10, 8, "R-1", expires_on="2026-12-05"),
            transfer("shipped", "A", 6, 9),
            movement("quarantined", "A", 4, 10, "RC-1", recall_id="RC-1"),
            transfer("transfer_received", "B", 6, 12, recall_id="RC-1"),
            transfer("quarantined", "B", 6, 12, recall_id="RC-1"),
        ],
    }  # fmt: skip


def test_a_transferred_lot_exports_valid_epcis_shipping_in_transit_then_receiving() -> None:
    product = ProductInfo(sku="MILK", name="Milk", gtin=GTIN, tracking="batch")
    trace = assemble_lot("MILK", "L1", product, stock_part(), None, [])
    document = epcis.lot_document(trace, datetime(2026, 12, 1, tzinfo=UTC))
    assert_valid_epcis(document)
    events = document["epcisBody"]["eventList"]
    transfers = [e for e in events if e.get("lotline:documentID") == "TR-1"]
    assert [(e["bizStep"], e["disposition"]) for e in transfers] == [
        ("shipping", "in_transit"),
        # A recalled lot arriving is not for sale: the quarantine that follows holds it.
        ("receiving", "in_progress"),
        ("holding", "non_sellable_other"),
    ]
    assert "sourceList" not in transfers[2]
    transfers = transfers[:2]
    for event in transfers:
        assert event["sourceList"] == [{"type": "location", "source": "urn:lotline:location:A"}]
        assert event["destinationList"] == [
            {"type": "location", "destination": "urn:lotline:location:B"}
        ]
    assert [e["bizTransactionList"][0] for e in transfers] == [
        {"type": "desadv", "bizTransaction": "urn:lotline:transfer:TR-1"},
        {"type": "recadv", "bizTransaction": "urn:lotline:transfer:TR-1"},
    ]
    assert transfers[0]["readPoint"] == {"id": "urn:lotline:location:A"}
    assert transfers[1]["bizLocation"] == {"id": "urn:lotline:location:B"}
    rows = fsma.rows(product, trace.events)
    assert [row["event_type"] for row in rows][1:2] == ["shipping"]


def test_a_transfer_of_a_lot_not_recalled_arrives_sellable() -> None:
    part = stock_part()
    part["movements"] = [*part["movements"][:2], transfer("transfer_received", "B", 6, 12)]
    product = ProductInfo(sku="MILK", name="Milk", gtin=GTIN, tracking="batch")
    document = epcis.lot_document(
        assemble_lot("MILK", "L1", product, part, None, []), datetime(2026, 12, 1, tzinfo=UTC)
    )
    assert_valid_epcis(document)
    arrival = document["epcisBody"]["eventList"][-1]
    assert (arrival["action"], arrival["bizStep"], arrival["disposition"]) == (
        "OBSERVE",
        "receiving",
        "sellable_accessible",
    )
