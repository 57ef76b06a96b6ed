"""A trace as a GS1 EPCIS 2.0 document (JSON-LD). Pure: a trace in, a document out.

Every trace event becomes one `ObjectEvent`, with the CBV 2.0 vocabulary:

| trace event     | action | bizStep          | disposition          |
|-----------------|--------|------------------|----------------------|
| received        | ADD    | receiving        | sellable_accessible  |
| sold            | OBSERVE| retail_selling   | retail_sold          |
| sale_attributed | OBSERVE| retail_selling   | retail_sold          |
| returned        | OBSERVE| receiving        | returned             |
| quarantined     | OBSERVE| holding          | non_sellable_other   |
| recalled        | OBSERVE| (none)           | recalled             |
| counted         | OBSERVE| cycle_counting   | sellable_accessible  |
| adjusted        | OBSERVE| by its reason    | by its reason        |
| disposed        | DELETE | destroying       | destroyed            |
|  (to supplier)  | OBSERVE| shipping         | returned             |
| shipped         | OBSERVE| shipping         | in_transit           |
| transfer_recvd  | OBSERVE| receiving        | sellable_accessible  |
|  (recalled lot) | OBSERVE| receiving        | in_progress          |

An adjustment's disposition is its reason's (damaged, expired, stolen, dispensed for a
sample, sellable_accessible for units found); a count carries its `lotline:variance`.

A transfer is the lot moving between two of the retailer's locations: the departure is a
`shipping` event `in_transit`, the arrival a `receiving` one (`in_progress` for a recalled
lot, which the quarantine that follows holds), both with the CBV `location` source and
destination and the transfer as a despatch advice (`desadv`) or receiving advice (`recadv`).

A receipt is the lot's first appearance in the retailer's records, so it is an ADD and
carries the lot's master data (ILMD: lot number, expiry). CBV has no "returning" step: a
return is received back (`receiving`) with disposition `returned`.

Identifiers, when the product has a GTIN, are GS1 Digital Link URIs: a serial unit in
`epcList` as `https://id.gs1.org/01/{gtin14}/21/{serial}`, a lot in `quantityList` as the
class `https://id.gs1.org/01/{gtin14}/10/{lot}`, built by the contract (`lotline.events.gs1`)
and checked by biip (`lotline.recall.gs1`). Without a GTIN, or for a serial or lot GS1 cannot
encode (outside its character set 82, or longer than 20), they are Lotline URNs:
`urn:lotline:unit:{sku}:{serial}` and `urn:lotline:class:{sku}:lot:{lot}`. Stores have no
GLN, so a store's readPoint and bizLocation is `urn:lotline:location:{store}`. Each part is
percent-encoded. Lotline's own fields (reference document, customer, supplier) are
extensions in the `lotline:` namespace (`urn:lotline:epcis:`), declared in the context.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote
from uuid import NAMESPACE_URL, uuid5

from lotline.recall import gs1
from lotline.recall.timeline import LotTrace, ProductInfo, TraceEvent, TraceKind, UnitTrace

EPCIS_CONTEXT = "https://ref.gs1.org/standards/epcis/epcis-context.jsonld"
LOTLINE_NAMESPACE = "urn:lotline:epcis:"
MEDIA_TYPE = "application/ld+json"
# UN/ECE Recommendation 20 "each": quantities are counts of units.
UOM_EACH = "EA"

# (action, bizStep, disposition) per trace event.
_VOCABULARY: dict[TraceKind, tuple[str, str | None, str]] = {
    TraceKind.RECEIVED: ("ADD", "receiving", "sellable_accessible"),
    TraceKind.REFUSED: ("OBSERVE", "receiving", "non_conformant"),
    TraceKind.SOLD: ("OBSERVE", "retail_selling", "retail_sold"),
    TraceKind.SALE_ATTRIBUTED: ("OBSERVE", "retail_selling", "retail_sold"),
    TraceKind.RETURNED: ("OBSERVE", "receiving", "returned"),
    TraceKind.QUARANTINED: ("OBSERVE", "holding", "non_sellable_other"),
    TraceKind.RECALLED: ("OBSERVE", None, "recalled"),
    TraceKind.COUNTED: ("OBSERVE", "cycle_counting", "sellable_accessible"),
    TraceKind.ADJUSTED: ("OBSERVE", "other", "non_sellable_other"),
    TraceKind.DISPOSED: ("DELETE", "destroying", "destroyed"),
    TraceKind.SHIPPED: ("OBSERVE", "shipping", "in_transit"),
    TraceKind.TRANSFER_RECEIVED: ("OBSERVE", "receiving", "sellable_accessible"),
    TraceKind.REPLACED: ("OBSERVE", "retail_selling", "retail_sold"),
    TraceKind.CLAIM_REFUSED: ("OBSERVE", "other", "sellable_accessible"),
}
_RECALLED_ARRIVAL = ("OBSERVE", "receiving", "in_progress")
# A transfer's document, by its side: the despatch advice, the receiving advice.
_TRANSFER_TYPES = {TraceKind.SHIPPED: "desadv", TraceKind.TRANSFER_RECEIVED: "recadv"}
# An adjustment by its reason (units found are back on the shelf), a disposal by its method.
_ADJUSTMENTS: dict[str, tuple[str, str | None, str]] = {
    "damaged": ("OBSERVE", "inspecting", "damaged"),
    "expired": ("OBSERVE", "inspecting", "expired"),
    "theft": ("OBSERVE", None, "stolen"),
    "sample": ("OBSERVE", "sampling", "dispensed"),
    "found": ("OBSERVE", "cycle_counting", "sellable_accessible"),
}
_RETURNED_TO_SUPPLIER = ("OBSERVE", "shipping", "returned")
# CBV business transaction types for the documents that have one.
_TRANSACTION_TYPES = {"receipt": "recadv", "return": "rma", "disposal": "rma"}


def _part(value: str) -> str:
    return quote(value, safe="")


def unit_uri(product: ProductInfo, serial: str) -> str:
    return gs1.unit_id(product.sku, product.gtin, serial)


def lot_class_uri(product: ProductInfo, lot_code: str | None) -> str:
    return gs1.class_id(product.sku, product.gtin, lot_code)


def location_uri(location: str) -> str:
    return f"urn:lotline:location:{_part(location)}"


def _document_uri(kind: str, document_id: str) -> str:
    return f"urn:lotline:{kind}:{_part(document_id)}"


def _time(at: datetime) -> str:
    return at.astimezone(UTC).isoformat().replace("+00:00", "Z")


def object_event(product: ProductInfo, event: TraceEvent) -> dict[str, Any]:
    """One trace event as an EPCIS ObjectEvent."""
    action, biz_step, disposition = _VOCABULARY[event.kind]
    if event.kind is TraceKind.ADJUSTED:
        fallback = (
            "OBSERVE",
            "other",
            "sellable_accessible" if event.direction == "in" else "non_sellable_other",
        )
        action, biz_step, disposition = _ADJUSTMENTS.get(event.adjust_reason or "", fallback)
    elif event.kind is TraceKind.DISPOSED and event.disposal_method == "returned_to_supplier":
        action, biz_step, disposition = _RETURNED_TO_SUPPLIER
    elif event.kind is TraceKind.TRANSFER_RECEIVED and event.recall_id is not None:
        action, biz_step, disposition = _RECALLED_ARRIVAL
    doc: dict[str, Any] = {
        "type": "ObjectEvent",
        "eventTime": _time(event.at),
        "eventTimeZoneOffset": "+00:00",
        "eventID": f"urn:uuid:{uuid5(NAMESPACE_URL, f'lotline-trace/{event.id}')}",
        "action": action,
    }
    if event.serials:
        doc["epcList"] = [unit_uri(product, serial) for serial in event.serials]
    else:
        doc["quantityList"] = [
            {
                "epcClass": lot_class_uri(product, event.lot_code),
                "quantity": event.quantity,
                "uom": UOM_EACH,
            }
        ]
    if biz_step is not None:
        doc["bizStep"] = biz_step
    doc["disposition"] = disposition
    if event.location is not None:
        doc["readPoint"] = {"id": location_uri(event.location)}
        # A sold unit has left the store: it is no longer at that business location.
        if event.kind not in (TraceKind.SOLD, TraceKind.SALE_ATTRIBUTED):
            doc["bizLocation"] = {"id": location_uri(event.location)}
    transfer = event.kind in _TRANSFER_TYPES
    if transfer and event.from_location is not None and event.to_location is not None:
        doc["sourceList"] = [{"type": "location", "source": location_uri(event.from_location)}]
        doc["destinationList"] = [
            {"type": "location", "destination": location_uri(event.to_location)}
        ]
    transaction_type = _TRANSFER_TYPES.get(event.kind) or _TRANSACTION_TYPES.get(
        event.document_type
    )
    if transaction_type is not None:
        doc["bizTransactionList"] = [
            {
                "type": transaction_type,
                "bizTransaction": _document_uri(event.document_type, event.document_id),
            }
        ]
    if event.kind is TraceKind.RECEIVED:
        ilmd: dict[str, Any] = {}
        if event.lot_code is not None:
            ilmd["cbvmda:lotNumber"] = event.lot_code
        if event.expires_on is not None:
            ilmd["cbvmda:itemExpirationDate"] = event.expires_on
        if ilmd:
            doc["ilmd"] = ilmd
    extensions = {
        "lotline:sku": product.sku,
        "lotline:documentType": event.document_type,
        "lotline:documentID": event.document_id,
        "lotline:line": event.line,
        "lotline:customerRef": event.customer_ref,
        "lotline:supplier": event.supplier,
        "lotline:saleID": event.sale_id if event.document_type != "sale" else None,
        "lotline:returnReason": event.return_reason,
        "lotline:recallID": event.recall_id if event.document_type != "recall" else None,
        "lotline:sourceEvent": event.source_event,
        "lotline:variance": event.variance,
        "lotline:adjustReason": event.adjust_reason,
        "lotline:direction": event.direction,
        "lotline:disposalMethod": event.disposal_method,
        "lotline:reference": event.reference,
    }
    doc.update({name: value for name, value in extensions.items() if value is not None})
    return doc


def document(
    product: ProductInfo, events: list[TraceEvent], created_at: datetime
) -> dict[str, Any]:
    """An EPCISDocument holding these events, in their order."""
    return {
        "@context": [EPCIS_CONTEXT, {"lotline": LOTLINE_NAMESPACE}],
        "type": "EPCISDocument",
        "schemaVersion": "2.0",
        "creationDate": _time(created_at),
        "epcisBody": {"eventList": [object_event(product, event) for event in events]},
    }


def lot_document(trace: LotTrace, created_at: datetime) -> dict[str, Any]:
    return document(trace.product, trace.events, created_at)


def unit_document(trace: UnitTrace, created_at: datetime) -> dict[str, Any]:
    return document(trace.product, trace.events, created_at)
