"""CloudEvents 1.0 and its Kafka binding, checked against the official SDK in both content
modes and both directions: what the SDK writes, Lotline reads; what Lotline writes, the SDK
reads. And the attributes the spec requires are required: no id is ever made up."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import jsonschema
import pytest
from cloudevents.core.bindings import kafka
from cloudevents.core.formats.json import JSONFormat
from cloudevents.core.v1.event import CloudEvent as SdkEvent
from cloudevents.v1 import kafka as kafka_v1
from cloudevents.v1.http import CloudEvent as SdkEventV1

from lotline.events import EventDecodeError, EventType, ItemSold, decode, encode

SCHEMAS = Path(__file__).resolve().parents[2] / "shared" / "schemas"
NOW = datetime(2026, 11, 22, 9, 30, tzinfo=UTC)
SALE = ItemSold(sale_id="S-1", line=1, location="STORE-1", sku="MILK-1L", quantity=2, sold_at=NOW)
# Any non-empty string is an id: a till's own scheme, not a UUID.
TILL_ID = "till-7/2026-11-22/S-1/1"


def attributes(**changes: Any) -> dict[str, Any]:
    found: dict[str, Any] = {
        "specversion": "1.0",
        "id": TILL_ID,
        "source": "pos/till-7",
        "type": "item-sold",
        "subject": "MILK-1L",
        "time": NOW,
        "datacontenttype": "application/json; charset=utf-8",
        "partitionkey": "MILK-1L",
    }
    found.update(changes)
    return {name: value for name, value in found.items() if value is not None}


def sdk_event(**changes: Any) -> SdkEvent:
    return SdkEvent(attributes(**changes), SALE.model_dump(mode="json"))


def sdk_message(mode: str, **changes: Any) -> kafka.KafkaMessage:
    to = kafka.to_binary if mode == "binary" else kafka.to_structured
    return to(sdk_event(**changes), JSONFormat())


def lotline(message: kafka.KafkaMessage) -> Any:
    return decode(message.value, EventType.ITEM_SOLD, headers=message.headers)


def refusal(value: bytes | None, headers: Any = None) -> tuple[str, str]:
    with pytest.raises(EventDecodeError) as refused:
        decode(value, EventType.ITEM_SOLD, headers=headers)
    return refused.value.field, refused.value.problem


def without(headers: dict[str, bytes], name: str) -> dict[str, bytes]:
    return {key: value for key, value in headers.items() if key != name}


# ------------------------------------------------------------------ the SDK writes, Lotline reads


@pytest.mark.parametrize("mode", ["structured", "binary"])
def test_an_sdk_event_is_read_in_either_mode(mode: str) -> None:
    message = sdk_message(mode)
    assert message.key == "MILK-1L"  # the partitioning key is the Kafka key, the SKU
    if mode == "binary":
        assert message.headers["ce_id"] == TILL_ID.encode()
        assert json.loads(message.value) == SALE.model_dump(mode="json")
    event = lotline(message)
    assert event.id == TILL_ID
    assert event.dedupe_key == f"pos/till-7#{TILL_ID}"
    assert event.specversion == "1.0"
    assert event.type is EventType.ITEM_SOLD
    assert event.subject == "MILK-1L"
    assert event.time == NOW
    assert event.datacontenttype == "application/json; charset=utf-8"
    assert event.data == SALE


@pytest.mark.parametrize("mode", ["structured", "binary"])
def test_an_event_of_the_sdks_older_api_is_read_in_either_mode(mode: str) -> None:
    # cloudevents 1.x's `cloudevents.kafka`, kept in 2.x as `cloudevents.v1.kafka`.
    event = SdkEventV1(
        attributes(time=NOW.isoformat(), datacontenttype="application/json"),
        SALE.model_dump(mode="json"),
    )
    to = kafka_v1.to_binary if mode == "binary" else kafka_v1.to_structured
    message = to(event)
    decoded = decode(message.value, EventType.ITEM_SOLD, headers=message.headers)
    assert (decoded.id, decoded.source, decoded.data) == (TILL_ID, "pos/till-7", SALE)


def test_an_sdk_event_with_bytes_data_is_read_from_data_base64() -> None:
    event = SdkEvent(attributes(), SALE.model_dump_json().encode())
    message = kafka.to_structured(event, JSONFormat())
    assert "data_base64" in json.loads(message.value)
    assert lotline(message).data == SALE


def test_headers_may_come_as_pairs_as_aiokafka_gives_them() -> None:
    message = sdk_message("binary")
    event = decode(message.value, EventType.ITEM_SOLD, headers=list(message.headers.items()))
    assert event.id == TILL_ID


def test_a_record_without_headers_is_read_as_a_structured_event() -> None:
    # kcat or a plain producer sending the JSON envelope, with no content-type header.
    assert decode(sdk_message("structured").value, EventType.ITEM_SOLD).id == TILL_ID


# ------------------------------------------------------------------ Lotline writes, the SDK reads


def as_sdk_message(value: bytes, headers: list[tuple[str, bytes]], key: bytes) -> Any:
    return kafka.KafkaMessage(headers=dict(headers), key=key, value=value)


def test_a_lotline_event_is_read_by_the_sdk() -> None:
    message = encode(SALE, source="pos/till-7", id=TILL_ID, time=NOW)
    sdk_message_ = as_sdk_message(message.value, message.headers, message.key)
    for read in (kafka.from_structured_event, kafka.from_kafka_event):
        event = read(sdk_message_)
        assert event.get_id() == TILL_ID
        assert event.get_source() == "pos/till-7"
        assert event.get_type() == "item-sold"
        assert event.get_subject() == "MILK-1L"
        assert event.get_specversion() == "1.0"
        assert event.get_time() == NOW
        assert event.get_datacontenttype() == "application/json"
        assert ItemSold.model_validate(event.get_data()) == SALE
    older = kafka_v1.from_structured(
        kafka_v1.KafkaMessage(dict(message.headers), message.key, message.value)
    )
    assert (older["id"], older["subject"]) == (TILL_ID, "MILK-1L")
    assert ItemSold.model_validate(older.get_data()) == SALE


def test_a_lotline_event_resent_by_the_sdk_in_binary_mode_is_the_same_event() -> None:
    message = encode(SALE, source="pos/till-7", time=NOW)
    read = kafka.from_structured_event(as_sdk_message(message.value, message.headers, message.key))
    again = kafka.to_binary_event(read)
    event = decode(again.value, EventType.ITEM_SOLD, headers=again.headers)
    # The SDK keeps the Kafka key as the `partitionkey` extension: the SKU.
    assert event.model_extra == {"partitionkey": "MILK-1L"}
    assert event.model_dump(exclude={"partitionkey"}) == message.event.model_dump()


# ------------------------------------------------------------------ what the spec requires


@pytest.mark.parametrize(("name", "header"), [("id", "ce_id"), ("specversion", "ce_specversion")])
def test_an_event_without_a_required_attribute_is_refused(name: str, header: str) -> None:
    structured = json.loads(sdk_message("structured").value)
    del structured[name]
    value = json.dumps(structured).encode()
    for headers in (None, {"content-type": b"application/cloudevents+json"}):
        assert refusal(value, headers) == (name, "required field is missing")
    binary = sdk_message("binary")
    assert refusal(binary.value, without(binary.headers, header)) == (
        header,
        "required header is missing",
    )


def test_an_id_is_never_invented() -> None:
    # Before, each decode of an event with no id gave it a new random one: a resend was new.
    structured = json.loads(sdk_message("structured").value)
    del structured["id"]
    for _ in range(2):
        assert refusal(json.dumps(structured).encode())[0] == "id"


@pytest.mark.parametrize("event_id", ["1234-1234-1234", "A", "42", "till 7 / sale 9", "ÅÄÖ-1"])
def test_any_non_empty_string_is_an_id(event_id: str) -> None:
    for mode in ("structured", "binary"):
        assert lotline(sdk_message(mode, id=event_id)).id == event_id


@pytest.mark.parametrize(("event_id", "problem"), [("", "at least 1 character"), (42, "string")])
def test_an_id_that_is_not_a_non_empty_string_is_refused(event_id: object, problem: str) -> None:
    structured = json.loads(sdk_message("structured").value)
    structured["id"] = event_id
    field, refused = refusal(json.dumps(structured).encode())
    assert field == "id"
    assert problem in refused


def test_an_old_or_unknown_specversion_is_refused() -> None:
    binary = sdk_message("binary")
    headers = dict(binary.headers, ce_specversion=b"0.3")
    field, problem = refusal(binary.value, headers)
    assert field == "ce_specversion"
    assert "'1.0'" in problem


@pytest.mark.parametrize(
    "content_type",
    [
        "application/json",
        "application/json; charset=utf-8",
        "application/json;charset=UTF-8",
        "application/vnd.lotline.sale+json",
        "text/json",
        None,
    ],
)
def test_the_data_content_type_is_json_with_any_parameters_or_absent(
    content_type: str | None,
) -> None:
    for mode in ("structured", "binary"):
        message = sdk_message(mode, datacontenttype=content_type)
        event = lotline(message)
        # Absent, JSON is implied (and said when the event is sent on).
        assert event.datacontenttype == (content_type or "application/json")
        assert event.data == SALE


def test_a_media_type_is_matched_in_any_case() -> None:
    # (The SDK itself writes such data as a string, so the envelope is made by hand.)
    structured = json.loads(sdk_message("structured").value)
    structured["datacontenttype"] = "Application/JSON; Charset=UTF-8"
    assert decode(json.dumps(structured).encode(), EventType.ITEM_SOLD).data == SALE


def test_data_that_is_not_json_is_refused_naming_its_content_type() -> None:
    structured = json.loads(sdk_message("structured").value)
    structured["datacontenttype"] = "application/xml"
    assert refusal(json.dumps(structured).encode())[0] == "datacontenttype"
    binary = sdk_message("binary")
    avro = dict(binary.headers, **{"content-type": b"application/avro"})
    assert refusal(binary.value, avro)[0] == "content-type"


def test_binary_data_in_a_declared_charset_is_read() -> None:
    binary = sdk_message("binary")
    headers = dict(binary.headers, **{"content-type": b"application/json; charset=utf-16"})
    assert decode(binary.value.decode().encode("utf-16"), headers=headers).data == SALE


@pytest.mark.parametrize(
    "content_type", ["application/cloudevents+json; charset=UTF-8", "APPLICATION/CLOUDEVENTS+JSON"]
)
def test_the_structured_content_type_may_carry_parameters(content_type: str) -> None:
    value = sdk_message("structured").value
    event = decode(value, EventType.ITEM_SOLD, headers={"content-type": content_type.encode()})
    assert event.id == TILL_ID


def test_an_event_format_other_than_json_is_refused() -> None:
    field, problem = refusal(b"\x00avro", {"content-type": b"application/cloudevents+avro"})
    assert field == "content-type"
    assert "application/cloudevents+json" in problem


# ------------------------------------------------------------------ binary mode names the header


@pytest.mark.parametrize(
    ("header", "value", "words"),
    [
        ("ce_type", b"item-exploded", "unknown event type 'item-exploded'"),
        ("ce_type", b"item-received", "does not belong on topic"),
        ("ce_time", b"yesterday", "RFC 3339 date-time"),
        ("ce_source", b"", "at least 1 character"),
        ("ce_id", b"\xff\xfe", "not UTF-8"),
    ],
)
def test_a_bad_binary_header_is_named(header: str, value: bytes, words: str) -> None:
    binary = sdk_message("binary")
    field, problem = refusal(binary.value, dict(binary.headers, **{header: value}))
    assert field == header
    assert words in problem


def test_binary_data_problems_name_the_data_field() -> None:
    binary = sdk_message("binary")
    data = dict(SALE.model_dump(mode="json"), quantity=-1)
    assert refusal(json.dumps(data).encode(), binary.headers) == (
        "data.quantity",
        "Input should be greater than 0",
    )
    assert refusal(b"", binary.headers)[0] == "data"
    assert refusal(b"{not json", binary.headers)[0] == "data"


def test_a_structured_event_is_read_from_its_value_whatever_its_ce_headers_say() -> None:
    # The binding lets a structured event carry the binary mode's headers too; the SDK reads
    # the value alone, and so does Lotline.
    structured = sdk_message("structured")
    headers = [*structured.headers.items(), ("ce_id", b"\xff"), ("ce_id", b"other")]
    assert decode(structured.value, EventType.ITEM_SOLD, headers=headers).id == TILL_ID


def test_a_header_given_twice_with_two_values_is_refused() -> None:
    binary = sdk_message("binary")
    pairs = [*binary.headers.items(), ("ce_id", b"another")]
    assert refusal(binary.value, pairs)[0] == "ce_id"


# ------------------------------------------------------------------ the published schemas agree


@pytest.mark.parametrize("path", sorted(SCHEMAS.glob("*.schema.json")), ids=lambda p: p.name)
def test_the_schemas_require_specversion_and_id_and_take_any_string_id(path: Path) -> None:
    schema = json.loads(path.read_text())
    assert {"specversion", "id"} <= set(schema["required"])
    assert schema["properties"]["id"]["type"] == "string"
    assert schema["properties"]["id"]["minLength"] == 1
    assert "format" not in schema["properties"]["id"]
    assert "datacontenttype" not in schema["required"]


def test_the_sdks_structured_event_is_valid_by_the_published_schema() -> None:
    schema = json.loads((SCHEMAS / "item-sold.schema.json").read_text())
    validator = jsonschema.Draft202012Validator(schema)
    event = json.loads(sdk_message("structured").value)
    validator.validate(event)
    for content_type in ("application/json; charset=utf-8", "Application/JSON", "text/json"):
        validator.validate(dict(event, datacontenttype=content_type))
    for missing in ("id", "specversion"):
        assert not validator.is_valid({k: v for k, v in event.items() if k != missing})
    assert not validator.is_valid(dict(event, datacontenttype="application/xml"))
    assert not validator.is_valid(dict(event, id=""))
