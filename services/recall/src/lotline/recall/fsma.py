"""A trace as an FSMA-style sortable spreadsheet: one CSV row per event, key data elements.

The US food traceability rule (FSMA 204) asks for the critical tracking events of a lot
with their key data elements, as an electronic sortable spreadsheet. The columns are those
elements as a retailer holds them; times are UTC in ISO 8601, so the file sorts by text.
"""

from __future__ import annotations

import csv
import io
from datetime import UTC

from lotline.recall.spreadsheet import safe_cell
from lotline.recall.timeline import ProductInfo, TraceEvent, TraceKind

MEDIA_TYPE = "text/csv; charset=utf-8"
UNIT_OF_MEASURE = "each"

COLUMNS = [
    "event_time",
    "event_type",
    "traceability_lot_code",
    "quantity",
    "unit_of_measure",
    "sku",
    "gtin",
    "product_description",
    "location",
    "reference_document_type",
    "reference_document_number",
    "line",
    "customer_ref",
    "supplier",
    "sale_id",
    "recall_id",
    "return_reason",
    "serials",
    "source_event",
]

EVENT_TYPES = {
    TraceKind.RECEIVED: "receiving",
    TraceKind.REFUSED: "receipt refused",
    TraceKind.SOLD: "sale",
    TraceKind.SALE_ATTRIBUTED: "sale attributed to lot",
    TraceKind.RETURNED: "return",
    TraceKind.QUARANTINED: "quarantine",
    TraceKind.RECALLED: "recall",
    TraceKind.COUNTED: "count",
    TraceKind.ADJUSTED: "adjustment",
    TraceKind.DISPOSED: "disposal",
    TraceKind.SHIPPED: "shipping",
    TraceKind.TRANSFER_RECEIVED: "receiving (transfer)",
    TraceKind.REPLACED: "warranty replacement",
    TraceKind.CLAIM_REFUSED: "warranty claim refused",
}


def rows(product: ProductInfo, events: list[TraceEvent]) -> list[dict[str, str]]:
    """Every cell of every column through `safe_cell`: lots, locations and ids come from tills
    and docks as much as free text does."""
    return [
        {column: safe_cell(value) for column, value in _row(product, event).items()}
        for event in events
    ]


def _row(product: ProductInfo, event: TraceEvent) -> dict[str, str]:
    return {
        "event_time": event.at.astimezone(UTC).isoformat().replace("+00:00", "Z"),
        "event_type": EVENT_TYPES[event.kind],
        "traceability_lot_code": event.lot_code or "",
        "quantity": str(event.quantity),
        "unit_of_measure": UNIT_OF_MEASURE,
        "sku": product.sku,
        "gtin": product.gtin or "",
        "product_description": product.name or "",
        "location": event.location or "",
        "reference_document_type": event.document_type,
        "reference_document_number": event.document_id,
        "line": str(event.line) if event.line is not None else "",
        "customer_ref": event.customer_ref or "",
        "supplier": event.supplier or "",
        "sale_id": event.sale_id or "",
        "recall_id": event.recall_id or "",
        "return_reason": event.return_reason or "",
        "serials": " ".join(event.serials),
        "source_event": event.source_event or "",
    }


def spreadsheet(product: ProductInfo, events: list[TraceEvent]) -> str:
    """The CSV text: a header row, then one row per event in time order."""
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=COLUMNS, lineterminator="\r\n")
    writer.writeheader()
    writer.writerows(rows(product, events))
    return out.getvalue()
