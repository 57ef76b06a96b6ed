"""The one codec: CloudEvents on Kafka in and out (both content modes), errors naming the field.

Lotline sends the structured mode: `content-type: application/cloudevents+json` and the whole
envelope as JSON in the value. It reads both modes of the CloudEvents Kafka protocol binding:
structured, and binary, where each attribute is a `ce_<name>` header, `content-type` is the
data's media type and the value is the data alone. A record with neither a CloudEvents
content type nor any `ce_` header is read as structured (a plain producer sending the JSON
envelope).
"""

from __future__ import annotations

import base64
import binascii
import json
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from enum import Enum
from typing import Any
from uuid import UUID

from pydantic import ValidationError

from lotline.events.envelope import (
    CONTENT_TYPE,
    JSON_MEDIA_TYPE,
    SPEC_VERSION,
    CloudEvent,
    envelope_class,
    envelope_of,
)
from lotline.events.models import DECODING, EventData
from lotline.events.topics import EventType, message_key

KNOWN_TYPES = tuple(t.value for t in EventType)
CONTENT_TYPE_HEADER = "content-type"
ATTRIBUTE_PREFIX = "ce_"
_JSON_MEDIA_TYPE = re.compile(JSON_MEDIA_TYPE)

# Sources of extra headers for an event being encoded: the runtime adds the trace context
# (`lotline.runtime.telemetry`) when it is loaded; a producer with the contract alone sends
# none, and the event's bytes are the same either way.
HeaderSource = Callable[[CloudEvent[Any]], list[tuple[str, bytes]]]
HEADER_SOURCES: list[HeaderSource] = []

# A record's headers as Kafka clients give them: (name, value) pairs from aiokafka and
# confluent-kafka, a mapping from the CloudEvents SDK's KafkaMessage.
Headers = Iterable[tuple[str, bytes | str | None]] | Mapping[str, bytes | str | None]


class EventDecodeError(ValueError):
    """An event that cannot be used: the field at fault and the problem with it."""

    def __init__(self, field: str, problem: str) -> None:
        super().__init__(f"{field}: {problem}")
        self.field = field
        self.problem = problem


class ContentMode(Enum):
    STRUCTURED = "structured"
    BINARY = "binary"

    def attribute(self, name: str) -> str:
        """Where an attribute sits in this mode: the field the errors name."""
        if self is ContentMode.STRUCTURED or name == "data" or name.startswith("data."):
            return name
        if name == "datacontenttype":
            return CONTENT_TYPE_HEADER
        return f"{ATTRIBUTE_PREFIX}{name}"


@dataclass(frozen=True)
class OutgoingMessage:
    """Everything a producer needs to send one event."""

    topic: str
    key: bytes
    value: bytes
    headers: list[tuple[str, bytes]]
    event: CloudEvent[Any]


def encode(
    data: EventData,
    *,
    source: str,
    id: UUID | str | None = None,
    time: datetime | None = None,
) -> OutgoingMessage:
    return encode_event(envelope_of(data, source=source, id=id, time=time))


def encode_event(event: CloudEvent[Any]) -> OutgoingMessage:
    return OutgoingMessage(
        topic=event.type.topic,
        key=message_key(event.subject),
        value=event.model_dump_json(exclude_none=True).encode(),
        # Made inside a trace, the event carries its `traceparent` to its consumers.
        headers=[
            (CONTENT_TYPE_HEADER, CONTENT_TYPE.encode()),
            *(header for source in HEADER_SOURCES for header in source(event)),
        ],
        event=event,
    )


def decode(
    value: bytes | None,
    expected: EventType | None = None,
    *,
    headers: Headers | None = None,
) -> CloudEvent[Any]:
    """Parse and validate one Kafka record's event; `expected` is the type its topic carries."""
    pairs = list(headers.items() if isinstance(headers, Mapping) else headers or ())
    content_type = _texts(pairs, binary=False).get(CONTENT_TYPE_HEADER)
    if content_type is not None and _media_type(content_type).startswith("application/cloudevents"):
        if _media_type(content_type) != CONTENT_TYPE:
            raise EventDecodeError(
                CONTENT_TYPE_HEADER,
                f"event format {content_type!r} is not read here: a structured event is "
                f"{CONTENT_TYPE!r}",
            )
        mode, raw = ContentMode.STRUCTURED, _structured(value)
    elif any(name.lower().startswith(ATTRIBUTE_PREFIX) for name, _ in pairs):
        mode, raw = ContentMode.BINARY, _binary(value, _texts(pairs, binary=True))
    else:
        mode, raw = ContentMode.STRUCTURED, _structured(value)
    return _validated(raw, expected, mode)


def _texts(pairs: list[tuple[str, bytes | str | None]], *, binary: bool) -> dict[str, str]:
    """The binding's headers, by lower-case name (it matches them so), as text: `content-type`,
    and in binary mode the `ce_` attributes (a structured event's are not read, as the SDK
    does not). Others (tracing, the DLQ's own) are not the event's."""
    named: dict[str, str] = {}
    for name, value in pairs:
        key = name.lower()
        if key != CONTENT_TYPE_HEADER and not (binary and key.startswith(ATTRIBUTE_PREFIX)):
            continue
        try:
            text = value.decode() if isinstance(value, bytes) else (value or "")
        except UnicodeDecodeError:
            raise EventDecodeError(name, "header value is not UTF-8") from None
        if named.setdefault(key, text) != text:
            raise EventDecodeError(name, f"header given twice: {named[key]!r} and {text!r}")
    return named


def _media_type(content_type: str) -> str:
    return content_type.split(";", 1)[0].strip().lower()


def _charset(content_type: str) -> str:
    for parameter in content_type.split(";")[1:]:
        name, _, given = parameter.partition("=")
        if name.strip().lower() == "charset":
            return given.strip().strip('"')
    return "utf-8"


def _json(value: bytes, field: str, charset: str = "utf-8") -> Any:
    try:
        text = value.decode(charset)
    except LookupError:
        raise EventDecodeError(CONTENT_TYPE_HEADER, f"unknown charset {charset!r}") from None
    except UnicodeDecodeError as exc:
        raise EventDecodeError(field, f"not valid JSON: not {charset} text ({exc})") from None
    try:
        return json.loads(text, parse_float=_number)
    except json.JSONDecodeError as exc:
        raise EventDecodeError(field, f"not valid JSON: {exc}") from None
    except RecursionError:
        raise EventDecodeError(field, "JSON nested too deeply to be an event") from None


def _number(text: str) -> float | int:
    """A JSON number: 2.0 and 2e0 are the integer 2, as JSON Schema's `integer` counts them
    (the contract has no fractional fields, and strict integers refuse a float)."""
    number = float(text)
    return int(number) if number.is_integer() else number


def _structured(value: bytes | None) -> dict[str, Any]:
    if not value:
        raise EventDecodeError("(message)", "empty message")
    raw = _json(value, "(message)")
    if not isinstance(raw, dict):
        raise EventDecodeError("(message)", f"expected a JSON object, got {type(raw).__name__}")
    if "data_base64" in raw:
        # The JSON event format's way to carry data as bytes (the SDK writes it for bytes data).
        if "data" in raw:
            raise EventDecodeError("data_base64", "an event carries data or data_base64, not both")
        encoded = raw.pop("data_base64")
        try:
            data = base64.b64decode(encoded, validate=True) if isinstance(encoded, str) else None
        except binascii.Error:
            data = None
        if data is None:
            raise EventDecodeError("data_base64", "not a base64 string")
        declared = raw.get("datacontenttype")
        charset = _charset(declared) if isinstance(declared, str) else "utf-8"
        raw["data"] = _json(data, "data_base64", charset)
    return raw


def _binary(value: bytes | None, named: dict[str, str]) -> dict[str, Any]:
    raw: dict[str, Any] = {
        name.removeprefix(ATTRIBUTE_PREFIX): text
        for name, text in named.items()
        if name.startswith(ATTRIBUTE_PREFIX)
    }
    content_type = named.get(CONTENT_TYPE_HEADER)
    if content_type is not None:
        if not _JSON_MEDIA_TYPE.match(content_type):
            raise EventDecodeError(
                CONTENT_TYPE_HEADER,
                f"{content_type!r} is not JSON: Lotline's event data is application/json",
            )
        raw["datacontenttype"] = content_type
    if not value:
        raise EventDecodeError("data", "required field is missing: the record has no value")
    raw["data"] = _json(value, "data", _charset(content_type or ""))
    return raw


def _validated(
    raw: dict[str, Any], expected: EventType | None, mode: ContentMode
) -> CloudEvent[Any]:
    if "specversion" not in raw:
        raise EventDecodeError(mode.attribute("specversion"), _missing(mode, "specversion"))
    if raw["specversion"] != SPEC_VERSION:
        raise EventDecodeError(
            mode.attribute("specversion"),
            f"CloudEvents version {raw['specversion']!r} is not read here: "
            f"Lotline reads specversion {SPEC_VERSION!r}",
        )
    declared = raw.get("type")
    if declared not in KNOWN_TYPES:
        known = ", ".join(KNOWN_TYPES)
        raise EventDecodeError(
            mode.attribute("type"), f"unknown event type {declared!r} (known: {known})"
        )
    event_type = EventType(declared)
    if expected is not None and event_type is not expected:
        raise EventDecodeError(
            mode.attribute("type"),
            f"{event_type.value!r} does not belong on topic {expected.topic!r}",
        )
    try:
        # Held to what the schemas say, and no more (DECODING: the rules they cannot state
        # are answered by the consumers, as business).
        return envelope_class(event_type).model_validate(raw, context=DECODING)
    except ValidationError as exc:
        raise _first_problem(exc, mode) from None


def _missing(mode: ContentMode, name: str) -> str:
    if mode is ContentMode.BINARY and not name.startswith("data"):
        return "required header is missing"
    return "required field is missing"


def _first_problem(exc: ValidationError, mode: ContentMode) -> EventDecodeError:
    errors = exc.errors(include_url=False)
    first = errors[0]
    name = ".".join(str(part) for part in first["loc"])
    field = mode.attribute(name) if name else "(message)"
    problem = first["msg"].removeprefix("Value error, ")
    if first["type"] == "missing":
        problem = _missing(mode, name)
    more = f" (and {len(errors) - 1} more problems)" if len(errors) > 1 else ""
    return EventDecodeError(field, f"{problem}{more}")
