"""Any bytes or JSON on any topic is either a valid event or refused naming the field at fault.

The codec is the edge every consumer shares: whatever a POS vendor or a broken producer sends,
it must never raise anything but EventDecodeError, and that error must say where."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from lotline.events import (
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

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda children: (
        st.lists(children, max_size=5) | st.dictionaries(st.text(max_size=10), children, max_size=5)
    ),
    max_leaves=20,
)

VALID = [
    encode(ProductRegistered(sku="P-1", name="Pasta", tracking=Tracking.BATCH), source="t"),
    encode(
        ItemReceived(sku="P-1", receipt_id="R-1", location="S1", quantity=2, lot=Lot(code="L1")),
        source="t",
    ),
    encode(
        ItemSold(
            sku="P-1",
            sale_id="T-1",
            line=1,
            location="S1",
            quantity=1,
            sold_at=datetime(2026, 11, 22, tzinfo=UTC),
        ),
        source="t",
    ),
]


def decode_or_refuse(value: bytes, expected: EventType | None) -> None:
    refusal: EventDecodeError | None = None
    try:
        decode(value, expected)
    except EventDecodeError as exc:
        refusal = exc
    if refusal is not None:
        assert refusal.field, "the error must name a field"
        assert refusal.problem, "the error must say what is wrong"
        assert str(refusal).startswith(f"{refusal.field}: ")


@given(st.binary(max_size=200), st.sampled_from([None, *EventType]))
def test_any_bytes_are_decoded_or_refused_clearly(value: bytes, expected: EventType | None) -> None:
    decode_or_refuse(value, expected)


@given(json_values, st.sampled_from(list(EventType)))
def test_any_json_is_decoded_or_refused_clearly(value: Any, expected: EventType) -> None:
    decode_or_refuse(json.dumps(value).encode(), expected)


@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.sampled_from(VALID),
    st.lists(
        st.tuples(st.sampled_from(["envelope", "data"]), st.text(max_size=12), json_values),
        min_size=1,
        max_size=4,
    ),
)
def test_valid_events_with_any_field_replaced_are_decoded_or_refused_clearly(
    message: Any, replacements: list[tuple[str, str, Any]]
) -> None:
    body = json.loads(message.value)
    for where, name, value in replacements:
        target = body if where == "envelope" else body.get("data")
        if not isinstance(target, dict):
            continue  # an earlier replacement made `data` something else than an object
        key = name if name else next(iter(target), "x")
        target[key] = value
    decode_or_refuse(json.dumps(body).encode(), EventType(json.loads(message.value)["type"]))
