"""The CloudEvents 1.0 envelope that carries every Lotline event, in either Kafka content mode."""

from __future__ import annotations

from datetime import UTC, datetime
from functools import cache
from typing import Any, Generic, Literal, TypeVar
from uuid import UUID, uuid4

from pydantic import BaseModel, ConfigDict, Field, ModelWrapValidatorHandler, model_validator

from lotline.events.models import EVENT_MODELS, EventData, Time
from lotline.events.topics import EventType

DataT = TypeVar("DataT", bound=EventData)

SPEC_VERSION = "1.0"
# The structured mode's event format: the whole envelope, as JSON, in the record's value.
CONTENT_TYPE = "application/cloudevents+json"
DATA_CONTENT_TYPE = "application/json"


def _any_case(word: str) -> str:
    # Media types are case-insensitive, and a JSON Schema pattern has no flag to say so.
    return "".join(f"[{c.upper()}{c.lower()}]" if c.isalpha() else c for c in word)


# application/json, text/json or a +json type, with any parameters (`; charset=utf-8`): what
# the data's content type may be, in the schema and in the codec alike.
JSON_MEDIA_TYPE = (
    rf"^(?:{_any_case('application')}|{_any_case('text')})/"
    rf"(?:[A-Za-z0-9!#$&^_.+-]+\+)?{_any_case('json')}[ \t]*(?:;.*)?$"
)


class CloudEvent(BaseModel, Generic[DataT]):
    """One event as it travels: `id` with `source` is the idempotency key of its effect.

    `specversion` and `id` are required: a consumer that made an id up for an event that
    came without one would give each redelivery a new one, and apply it again."""

    model_config = ConfigDict(extra="allow", frozen=True)

    specversion: Literal["1.0"]
    id: str = Field(
        min_length=1,
        description="Any non-empty string, unique within `source`: a producer resends an "
        "event with the same id, and the copy is dropped",
    )
    source: str = Field(min_length=1, description="URI-reference of the producer")
    type: EventType
    subject: str = Field(
        min_length=1,
        description="The SKU; also the Kafka message key. It repeats data.sku, which wins: "
        "a differing subject is corrected to it, never a reason to refuse the event",
    )
    time: Time = Field(default_factory=lambda: datetime.now(UTC))
    datacontenttype: str = Field(
        DATA_CONTENT_TYPE,
        pattern=JSON_MEDIA_TYPE,
        description="The data's media type: JSON (application/json, optionally with "
        "parameters such as `; charset=utf-8`); JSON when absent",
    )
    data: DataT

    @model_validator(mode="wrap")
    @classmethod
    def _consistent(cls, value: Any, handler: ModelWrapValidatorHandler[Any]) -> Any:
        event = handler(value)
        if event.type is not event.data.event_type:
            raise ValueError(
                f"type is {event.type.value!r} but data is a {event.data.event_type.value!r}"
            )
        # An attribute that repeats the data never makes a usable event unusable: a till
        # that filled `subject` wrongly still sold what data.sku says.
        if event.subject != event.data.key:
            return event.model_copy(update={"subject": event.data.key})
        return event

    @property
    def dedupe_key(self) -> str:
        return f"{self.source}#{self.id}"

    @property
    def idempotency_key(self) -> str:
        """What makes two deliveries the same fact: the data's business key where it has
        one (a sale line, a return line, a receipt), so a producer's retry under a new
        envelope id is still recognised; otherwise the envelope's source and id."""
        return self.data.fact_key or self.dedupe_key


def envelope_of(
    data: DataT,
    *,
    source: str,
    id: UUID | str | None = None,
    time: datetime | None = None,
) -> CloudEvent[DataT]:
    """Wrap event data in its envelope: type and subject follow from the data. An event
    Lotline creates gets a fresh id unless the caller derives one (to make a resend a copy)."""
    fields: dict[str, Any] = {
        "specversion": SPEC_VERSION,
        "id": str(id if id is not None else uuid4()),
        "source": source,
        "type": data.event_type,
        "subject": data.key,
        "data": data,
    }
    if time is not None:
        fields["time"] = time
    return envelope_class(data.event_type)(**fields)


@cache
def envelope_class(event_type: EventType) -> type[CloudEvent[Any]]:
    """The concrete envelope model of one event type (built once)."""
    # Parametrised at run time from the registry, which a static checker cannot follow.
    return CloudEvent[EVENT_MODELS[event_type]]  # type: ignore[valid-type]
