"""The one codec: CloudEvents JSON bytes in and out, with errors that name the field."""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from uuid import UUID

from pydantic import ValidationError

from lotline.events.envelope import CONTENT_TYPE, CloudEvent, envelope_class, envelope_of
from lotline.events.models import EventData
from lotline.events.topics import EventType, message_key

KNOWN_TYPES = tuple(t.value for t in EventType)


class EventDecodeError(ValueError):
    """An event that cannot be used: the field at fault and the problem with it."""

    def __init__(self, field: str, problem: str) -> None:
        super().__init__(f"{field}: {problem}")
        self.field = field
        self.problem = problem


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
    id: UUID | None = None,
    time: datetime | None = None,
) -> OutgoingMessage:
    return encode_event(envelope_of(data, source=source, id=id, time=time))


def encode_event(event: CloudEvent[Any]) -> OutgoingMessage:
    return OutgoingMessage(
        topic=event.type.topic,
        key=message_key(event.subject),
        value=event.model_dump_json(exclude_none=True).encode(),
        headers=[("content-type", CONTENT_TYPE.encode())],
        event=event,
    )


def decode(value: bytes | None, expected: EventType | None = None) -> CloudEvent[Any]:
    """Parse and validate one event; `expected` is the type its topic carries."""
    if not value:
        raise EventDecodeError("(message)", "empty message")
    try:
        raw = json.loads(value)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise EventDecodeError("(message)", f"not valid JSON: {exc}") from None
    except RecursionError:
        raise EventDecodeError("(message)", "JSON nested too deeply to be an event") from None
    if not isinstance(raw, dict):
        raise EventDecodeError("(message)", f"expected a JSON object, got {type(raw).__name__}")
    declared = raw.get("type")
    if declared not in KNOWN_TYPES:
        known = ", ".join(KNOWN_TYPES)
        raise EventDecodeError("type", f"unknown event type {declared!r} (known: {known})")
    event_type = EventType(declared)
    if expected is not None and event_type is not expected:
        raise EventDecodeError(
            "type", f"{event_type.value!r} does not belong on topic {expected.topic!r}"
        )
    try:
        return envelope_class(event_type).model_validate(raw)
    except ValidationError as exc:
        raise _first_problem(exc) from None


def _first_problem(exc: ValidationError) -> EventDecodeError:
    errors = exc.errors(include_url=False)
    first = errors[0]
    field = ".".join(str(part) for part in first["loc"]) or "(message)"
    problem = first["msg"].removeprefix("Value error, ")
    if first["type"] == "missing":
        problem = "required field is missing"
    more = f" (and {len(errors) - 1} more problems)" if len(errors) > 1 else ""
    return EventDecodeError(field, f"{problem}{more}")
