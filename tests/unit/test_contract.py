"""The shared contract's business rules, and the codec's errors naming the field."""

from __future__ import annotations

import json
from datetime import UTC, date, datetime
from uuid import UUID

import pytest
from pydantic import ValidationError

from lotline.events import (
    BatchRecalled,
    Classification,
    EventDecodeError,
    EventType,
    ItemReceived,
    ItemSold,
    Lot,
    ProductRegistered,
    Tracking,
    decode,
    encode,
)

NOW = datetime(2026, 11, 22, 9, 30, tzinfo=UTC)


def sale(**overrides: object) -> ItemSold:
    fields: dict[str, object] = {
        "sale_id": "S-1",
        "line": 1,
        "location": "STORE-1",
        "sku": "MILK-1L",
        "quantity": 2,
        "sold_at": NOW,
    }
    fields.update(overrides)
    return ItemSold.model_validate(fields)


def problems(exc: ValidationError) -> list[tuple[str, str]]:
    return [(".".join(map(str, e["loc"])), e["msg"]) for e in exc.errors()]


def test_quantity_must_be_positive() -> None:
    with pytest.raises(ValidationError) as exc:
        sale(quantity=0)
    assert problems(exc.value) == [("quantity", "Input should be greater than 0")]


def test_serial_receipt_lists_exactly_quantity_serials() -> None:
    with pytest.raises(ValidationError) as exc:
        ItemReceived(receipt_id="R-1", location="DC", sku="PHONE", quantity=3, serials=["A", "B"])
    assert "serials lists 2 serials but quantity is 3" in str(exc.value)


def test_serial_receipt_serials_are_distinct() -> None:
    with pytest.raises(ValidationError) as exc:
        ItemReceived(
            receipt_id="R-1", location="DC", sku="PHONE", quantity=3, serials=["A", "B", "A"]
        )
    assert "serials are not distinct: A repeated" in str(exc.value)


def test_batch_item_receipt_needs_a_lot_code() -> None:
    receipt = ItemReceived(receipt_id="R-1", location="DC", sku="MILK", quantity=5)
    assert receipt.check_tracking(Tracking.BATCH) == "a batch item's receipt must carry a lot code"
    assert receipt.check_tracking(Tracking.QUANTITY) is None
    assert (
        receipt.check_tracking(Tracking.SERIAL) == "a serial item's receipt must list its serials"
    )


def test_lot_cannot_be_produced_after_it_expires() -> None:
    with pytest.raises(ValidationError) as exc:
        Lot(code="L1", produced_on=date(2026, 12, 1), expires_on=date(2026, 11, 1))
    assert "produced_on 2026-12-01 is after expires_on 2026-11-01" in str(exc.value)


def test_recall_names_at_least_one_lot_or_serial() -> None:
    with pytest.raises(ValidationError) as exc:
        BatchRecalled(
            recall_id="RC-1",
            sku="MILK",
            reason="Listeria",
            classification=Classification.I,
            issued_by="qa@shop",
            issued_at=NOW,
        )
    assert "a recall must name at least one lot code or serial" in str(exc.value)


@pytest.mark.parametrize("gtin", ["09521234543213", "9521234543213", "4006381333931", "73513537"])
def test_valid_gtins_are_kept_as_gtin14(gtin: str) -> None:
    product = ProductRegistered(sku="X", name="X", tracking=Tracking.QUANTITY, gtin=gtin)
    assert product.gtin == gtin.zfill(14)


def test_gtin_with_a_wrong_check_digit_is_refused() -> None:
    with pytest.raises(ValidationError) as exc:
        ProductRegistered(sku="X", name="X", tracking=Tracking.QUANTITY, gtin="09521234543214")
    ((field, message),) = problems(exc.value)
    assert field == "gtin"
    assert "'09521234543214' is not a valid GTIN" in message
    assert "checksum" in message.lower()


def test_a_serial_sale_line_sells_one_unit() -> None:
    with pytest.raises(ValidationError) as exc:
        sale(serial="IMEI-1", quantity=2)
    assert "a line with a serial sells one unit, not quantity 2" in str(exc.value)


def test_sold_at_must_carry_a_timezone() -> None:
    with pytest.raises(ValidationError) as exc:
        sale(sold_at=datetime(2026, 11, 22, 9, 30))
    assert problems(exc.value)[0][0] == "sold_at"


def test_round_trip_through_the_codec() -> None:
    event_id = UUID("12345678-1234-5678-1234-567812345678")
    message = encode(sale(), source="pos/till-7", id=event_id, time=NOW)
    assert message.topic == "item-sold"
    assert message.key == b"MILK-1L"
    decoded = decode(message.value, EventType.ITEM_SOLD, headers=message.headers)
    # The id travels as the string CloudEvents makes it; a derived UUID, in its usual form.
    assert decoded.id == str(event_id)
    assert decoded.subject == "MILK-1L"
    assert decoded.data == sale()
    assert decoded.specversion == "1.0"


@pytest.mark.parametrize(
    ("value", "field", "problem"),
    [
        (b"", "(message)", "empty message"),
        (b"not json", "(message)", "not valid JSON"),
        (b"[1, 2]", "(message)", "expected a JSON object, got list"),
        (b'{"type": "item-sold"}', "specversion", "required field is missing"),
        (
            b'{"specversion": "1.0", "type": "item-exploded"}',
            "type",
            "unknown event type 'item-exploded'",
        ),
        (
            b'{"specversion": "1.0", "type": "item-received"}',
            "type",
            "'item-received' does not belong on topic",
        ),
    ],
)
def test_codec_names_what_is_wrong(value: bytes, field: str, problem: str) -> None:
    with pytest.raises(EventDecodeError) as exc:
        decode(value, EventType.ITEM_SOLD)
    assert exc.value.field == field
    assert problem in exc.value.problem


def _sale_json(**data_overrides: object) -> dict[str, object]:
    body = json.loads(encode(sale(), source="pos/1").value)
    body["data"].update(data_overrides)
    return body


def test_codec_names_a_missing_field() -> None:
    body = _sale_json()
    del body["data"]["sale_id"]  # type: ignore[attr-defined]
    with pytest.raises(EventDecodeError) as exc:
        decode(json.dumps(body).encode(), EventType.ITEM_SOLD)
    assert (exc.value.field, exc.value.problem) == ("data.sale_id", "required field is missing")


def test_codec_names_a_negative_quantity() -> None:
    body = _sale_json(quantity=-3)
    with pytest.raises(EventDecodeError) as exc:
        decode(json.dumps(body).encode(), EventType.ITEM_SOLD)
    assert (exc.value.field, exc.value.problem) == (
        "data.quantity",
        "Input should be greater than 0",
    )


def test_codec_refuses_an_unknown_tracking_mode() -> None:
    product = ProductRegistered(sku="X", name="X", tracking=Tracking.BATCH)
    body = json.loads(encode(product, source="catalog").value)
    body["data"]["tracking"] = "by-weight"
    with pytest.raises(EventDecodeError) as exc:
        decode(json.dumps(body).encode(), EventType.PRODUCT_REGISTERED)
    assert exc.value.field == "data.tracking"
    assert "'serial', 'batch' or 'quantity'" in exc.value.problem


def test_codec_corrects_a_subject_that_is_not_the_sku() -> None:
    """`subject` repeats data.sku: the data wins, and a usable event stays usable."""
    body = _sale_json()
    body["subject"] = "OTHER"
    event = decode(json.dumps(body).encode(), EventType.ITEM_SOLD)
    assert event.subject == event.data.sku == "MILK-1L"
    assert encode(event.data, source="tests").key == b"MILK-1L"


def test_codec_refuses_a_wrong_envelope_version() -> None:
    body = _sale_json()
    body["specversion"] = "0.3"
    with pytest.raises(EventDecodeError) as exc:
        decode(json.dumps(body).encode(), EventType.ITEM_SOLD)
    assert exc.value.field == "specversion"


@pytest.mark.parametrize("field", ["sku", "sale_id", "location", "lot_code", "serial"])
def test_an_identifier_with_a_slash_is_refused_by_the_contract(field: str) -> None:
    """One rule for '/': an identifier travels as a URL path segment, which cannot carry
    it, so the contract refuses it everywhere rather than some reads answering 404."""
    with pytest.raises(ValidationError) as refused:
        sale(**{field: "A/B"})
    assert refused.value.errors()[0]["loc"] == (field,)
    good = json.loads(encode(sale(), source="tests").value)
    with pytest.raises(EventDecodeError) as undecodable:
        decode(json.dumps({**good, "data": {**good["data"], field: "A/B"}}).encode())
    assert undecodable.value.field == f"data.{field}"
