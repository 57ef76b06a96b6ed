"""What the committed JSON Schemas accept is exactly what the codec accepts (issue 13, item 1).

Schema-valid events, generated from each committed schema, are never refused by `decode`
(the DLQ is for what the schema refuses), and what a schema forbids (strings or booleans for
integers, unix seconds for times, padded identifiers, blank text, the rules it states with
`if`/`then` and `anyOf`) the codec refuses too, naming the field. The rules a schema cannot
state are decoded and answered as business by the consumers (`rule_broken`)."""

from __future__ import annotations

import json
from datetime import UTC, date, datetime
from functools import cache
from types import SimpleNamespace
from typing import Any

import hypothesis_jsonschema._from_schema as jsonschema_strategies
import jsonschema_rs
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.internal.conjecture import utils as conjecture
from hypothesis_jsonschema import from_schema

from lotline.events import (
    BatchRecalled,
    ClaimKind,
    ClaimRefusal,
    Classification,
    EventDecodeError,
    EventType,
    ItemReceived,
    ItemSold,
    Lot,
    ProductRegistered,
    RejectReason,
    Tracking,
    WarrantyClaimed,
    decode,
    encode,
)
from lotline.events.schemas import DEFAULT_DIR

NOW = datetime(2026, 11, 22, 9, 30, tzinfo=UTC)


class _Many:
    """hypothesis-jsonschema 0.23.1 (the lockfile's) draws an object's properties with
    `many(...).more()`, which the lockfile's Hypothesis 6.170 replaced by a context manager
    iterated with `for`: this gives it the old interface over the new one."""

    def __init__(self, data: Any, **sizes: Any) -> None:
        self._many = conjecture.many(data, **sizes)
        self._many.__enter__()
        self._elements = iter(self._many)

    def more(self) -> bool:
        if next(self._elements, self) is self:
            self._many.__exit__(None)
            return False
        return True

    def reject(self, why: str | None = None) -> None:
        self._many.reject(why)


if not hasattr(conjecture.many, "more"):
    jsonschema_strategies.cu = SimpleNamespace(many=_Many)  # type: ignore[attr-defined]


@cache
def committed_schema(event_type: EventType) -> dict[str, Any]:
    schema: dict[str, Any] = json.loads(
        (DEFAULT_DIR / f"{event_type.value}.schema.json").read_text()
    )
    return schema


@cache
def validator(event_type: EventType) -> Any:
    """JSON Schema's own semantics: patterns as ECMA-262 reads them (`$` is the end of the
    text, where Python's `re`, and so the `jsonschema` package, also allows a final newline)
    and formats asserted (the schemas mean `date` and `date-time` as RFC 3339 says)."""
    return jsonschema_rs.validator_for(committed_schema(event_type), validate_formats=True)


@pytest.mark.parametrize("event_type", list(EventType), ids=lambda t: t.value)
def test_every_schema_valid_event_is_decoded(event_type: EventType) -> None:
    check = validator(event_type)

    @settings(
        max_examples=10,
        deadline=None,
        database=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
    )
    @given(from_schema(committed_schema(event_type)))
    def decoded(instance: dict[str, Any]) -> None:
        assert check.is_valid(instance)
        event = decode(json.dumps(instance).encode(), event_type)
        assert event.type is event_type
        # The data's SKU wins over a subject that differs from it.
        assert event.subject == event.data.sku == instance["data"]["sku"]

    decoded()


def sale_body() -> dict[str, Any]:
    sale = ItemSold(
        sku="MILK-1L", sale_id="S-1", line=1, location="STORE-1", quantity=2, sold_at=NOW
    )
    body: dict[str, Any] = json.loads(encode(sale, source="pos/till-7", time=NOW).value)
    return body


def receipt_body() -> dict[str, Any]:
    receipt = ItemReceived(
        sku="PHONE-1",
        receipt_id="R-1",
        location="STORE-1",
        quantity=2,
        serials=["IMEI-1", "IMEI-2"],
        lot=Lot(code="L1", expires_on=date(2027, 2, 28)),
    )
    body: dict[str, Any] = json.loads(encode(receipt, source="dock", time=NOW).value)
    return body


def product_body() -> dict[str, Any]:
    product = ProductRegistered(sku="P-1", name="Pasta", tracking=Tracking.BATCH, gtin="73513537")
    body: dict[str, Any] = json.loads(encode(product, source="catalog", time=NOW).value)
    return body


def recall_body() -> dict[str, Any]:
    recall = BatchRecalled(
        sku="MILK-1L",
        recall_id="RC-1",
        lot_codes=["L1"],
        reason="Listeria",
        classification=Classification.I,
        issued_by="qa",
        issued_at=NOW,
    )
    body: dict[str, Any] = json.loads(encode(recall, source="recall", time=NOW).value)
    return body


def claim_body() -> dict[str, Any]:
    claim = WarrantyClaimed(
        sku="PHONE-1",
        claim_id="W-1",
        serial="IMEI-1",
        location="STORE-1",
        kind=ClaimKind.REPLACEMENT,
        replacement_serial="IMEI-2",
        claimed_at=NOW,
    )
    body: dict[str, Any] = json.loads(encode(claim, source="desk", time=NOW).value)
    return body


FORBIDDEN: list[tuple[str, Any, str, Any, str]] = [
    # (example, where, field, value, the field the refusal names)
    ("sale", "data", "quantity", "2", "data.quantity"),
    ("sale", "data", "quantity", True, "data.quantity"),
    ("sale", "data", "quantity", 2.5, "data.quantity"),
    ("sale", "data", "line", "1", "data.line"),
    ("sale", "data", "line", False, "data.line"),
    ("sale", "data", "sold_at", 1764000000, "data.sold_at"),
    ("sale", "data", "sold_at", "1764000000", "data.sold_at"),
    ("sale", "data", "sold_at", "2026-11-22T09:30Z", "data.sold_at"),
    ("sale", "data", "sold_at", "2026-11-22", "data.sold_at"),
    ("sale", "data", "sold_at", "2026-11-22 09:30:00Z", "data.sold_at"),
    ("sale", "envelope", "time", 1764000000, "time"),
    ("sale", "data", "sku", " MILK-1L", "data.sku"),
    ("sale", "data", "sku", "MILK-1L ", "data.sku"),
    ("sale", "data", "location", "STORE-1\n", "data.location"),
    ("sale", "data", "sale_id", "\tS-1", "data.sale_id"),
    ("sale", "data", "customer_ref", "   ", "data.customer_ref"),
    ("sale", "data", "customer_ref", "\u00a0\u3000", "data.customer_ref"),
    ("sale", "data", "serial", "IMEI-1", "data"),  # a serial line sells one unit, not 2
    ("receipt", "data", "serials", ["IMEI-1", "IMEI-1"], "data.serials"),
    ("receipt", "data", "quantity", "2", "data.quantity"),
    ("receipt", "lot", "expires_on", 1795000000, "data.lot.expires_on"),
    ("receipt", "lot", "expires_on", "2027-02-28T00:00:00Z", "data.lot.expires_on"),
    ("receipt", "lot", "code", " L1", "data.lot.code"),
    ("product", "data", "gtin", "7351353", "data.gtin"),
    ("product", "data", "gtin", "7351353X", "data.gtin"),
    ("product", "data", "gtin", 73513537, "data.gtin"),
    ("product", "data", "name", " \n", "data.name"),
    ("product", "data", "shelf_life_days", True, "data.shelf_life_days"),
    ("product", "data", "revision", "2", "data.revision"),
    ("recall", "data", "lot_codes", [], "data"),  # names no lot and no serial
    ("claim", "data", "replacement_serial", None, "data"),  # a replacement names its unit
]
EXAMPLES = {
    "sale": sale_body,
    "receipt": receipt_body,
    "product": product_body,
    "recall": recall_body,
    "claim": claim_body,
}


@pytest.mark.parametrize(("example", "where", "name", "value", "field"), FORBIDDEN)
def test_what_the_schema_forbids_is_refused_naming_the_field(
    example: str, where: str, name: str, value: Any, field: str
) -> None:
    body = EXAMPLES[example]()
    event_type = EventType(body["type"])
    assert validator(event_type).is_valid(body), "the example itself must be schema-valid"
    target = {"envelope": body, "data": body["data"]}.get(where) or body["data"][where]
    target[name] = value
    assert not validator(event_type).is_valid(body), f"the schema accepts {name}={value!r}"
    with pytest.raises(EventDecodeError) as refused:
        decode(json.dumps(body).encode(), event_type)
    assert refused.value.field == field


def test_an_integer_written_with_a_fraction_of_zero_is_the_integer() -> None:
    """JSON Schema counts 2.0 as an integer: so does the codec (strict integers refuse a
    float, and JSON has one number type)."""
    body = sale_body()
    text = json.dumps(body).replace('"quantity": 2', '"quantity": 2.0')
    assert validator(EventType.ITEM_SOLD).is_valid(json.loads(text))
    assert decode(text.encode(), EventType.ITEM_SOLD).data.quantity == 2


def test_a_subject_that_differs_from_the_sku_is_corrected_not_refused() -> None:
    body = sale_body()
    body["subject"] = "OTHER"
    event = decode(json.dumps(body).encode(), EventType.ITEM_SOLD)
    assert event.subject == event.data.sku == "MILK-1L"


def test_rules_the_schema_cannot_state_are_decoded_and_named_by_rule_broken() -> None:
    body = receipt_body()
    body["data"]["serials"] = ["IMEI-1", "IMEI-2", "IMEI-3"]
    assert validator(EventType.ITEM_RECEIVED).is_valid(body)
    receipt: ItemReceived = decode(json.dumps(body).encode(), EventType.ITEM_RECEIVED).data
    assert receipt.rule_broken() == (
        RejectReason.SERIALS_NOT_QUANTITY,
        "serials lists 3 serials but quantity is 2",
    )

    body = receipt_body()
    body["data"]["lot"]["produced_on"] = "2027-03-01"
    assert validator(EventType.ITEM_RECEIVED).is_valid(body)
    receipt = decode(json.dumps(body).encode(), EventType.ITEM_RECEIVED).data
    assert receipt.rule_broken() == (
        RejectReason.PRODUCED_AFTER_EXPIRY,
        "lot L1: produced_on 2027-03-01 is after expires_on 2027-02-28",
    )

    body = claim_body()
    body["data"]["replacement_serial"] = "IMEI-1"
    assert validator(EventType.WARRANTY_CLAIMED).is_valid(body)
    claim: WarrantyClaimed = decode(json.dumps(body).encode(), EventType.WARRANTY_CLAIMED).data
    assert claim.rule_broken() == (
        ClaimRefusal.REPLACEMENT_IS_CLAIMED_UNIT,
        "replacement_serial IMEI-1 is the claimed unit itself",
    )

    # A wrong check digit: the product is taken, its GTIN names nothing (no GS1 link).
    body = product_body()
    body["data"]["gtin"] = "73513538"
    assert validator(EventType.PRODUCT_REGISTERED).is_valid(body)
    product = decode(json.dumps(body).encode(), EventType.PRODUCT_REGISTERED).data
    assert product.gtin == "00000073513538"


def test_whoever_builds_an_event_is_still_held_to_every_rule() -> None:
    """Lotline's own producers (the services, the CLI) cannot build what a consumer would
    have to answer: the rules the schema cannot state still hold when an event is built."""
    with pytest.raises(ValueError, match="serials lists 1 serials but quantity is 2"):
        ItemReceived(sku="P", receipt_id="R", location="S", quantity=2, serials=["A"])
    with pytest.raises(ValueError, match="is not a valid GTIN"):
        ProductRegistered(sku="P", name="P", tracking=Tracking.QUANTITY, gtin="73513538")


@given(st.sampled_from(["2", "true", "1.5", '"1"', "[1]", "null"]))
@settings(max_examples=10, deadline=None)
def test_a_quantity_that_is_not_an_integer_is_refused_in_binary_mode(raw: str) -> None:
    body = sale_body()
    data = json.dumps(body["data"]).replace('"quantity": 2', f'"quantity": {raw}')
    headers = [
        ("ce_specversion", b"1.0"),
        ("ce_id", b"e-1"),
        ("ce_source", b"pos"),
        ("ce_type", b"item-sold"),
        ("ce_subject", b"MILK-1L"),
        ("content-type", b"application/json"),
    ]
    if raw == "2":
        assert decode(data.encode(), EventType.ITEM_SOLD, headers=headers).data.quantity == 2
        return
    with pytest.raises(EventDecodeError) as refused:
        decode(data.encode(), EventType.ITEM_SOLD, headers=headers)
    assert refused.value.field == "data.quantity"
