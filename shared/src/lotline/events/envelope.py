"""The CloudEvents 1.0 envelope (structured JSON mode) that carries every Lotline event."""

from __future__ import annotations

from datetime import UTC, datetime
from functools import cache
from typing import Any, Generic, Literal, TypeVar
from uuid import UUID, uuid4

from pydantic import BaseModel, ConfigDict, Field, model_validator

from lotline.events.models import EVENT_MODELS, EventData, Time
from lotline.events.topics import EventType

DataT = TypeVar("DataT", bound=EventData)

CONTENT_TYPE = "application/cloudevents+json"


class CloudEvent(BaseModel, Generic[DataT]):
    """One event as it travels: `id` with `source` is the idempotency key of its effect."""

    model_config = ConfigDict(extra="allow", frozen=True)

    specversion: Literal["1.0"] = "1.0"
    id: UUID = Field(default_factory=uuid4)
    source: str = Field(min_length=1, description="URI-reference of the producer")
    type: EventType
    subject: str = Field(min_length=1, description="The SKU; also the Kafka message key")
    time: Time = Field(default_factory=lambda: datetime.now(UTC))
    datacontenttype: Literal["application/json"] = "application/json"
    data: DataT

    @model_validator(mode="after")
    def _consistent(self) -> CloudEvent[DataT]:
        if self.type is not self.data.event_type:
            raise ValueError(
                f"type is {self.type.value!r} but data is a {self.data.event_type.value!r}"
            )
        if self.subject != self.data.key:
            raise ValueError(f"subject {self.subject!r} differs from data.sku {self.data.key!r}")
        return self

    @property
    def dedupe_key(self) -> str:
        return f"{self.source}#{self.id}"


def envelope_of(
    data: DataT, *, source: str, id: UUID | None = None, time: datetime | None = None
) -> CloudEvent[DataT]:
    """Wrap event data in its envelope: type and subject follow from the data."""
    fields: dict[str, Any] = {
        "source": source,
        "type": data.event_type,
        "subject": data.key,
        "data": data,
    }
    if id is not None:
        fields["id"] = id
    if time is not None:
        fields["time"] = time
    return envelope_class(data.event_type)(**fields)


@cache
def envelope_class(event_type: EventType) -> type[CloudEvent[Any]]:
    """The concrete envelope model of one event type (built once)."""
    # Parametrised at run time from the registry, which a static checker cannot follow.
    return CloudEvent[EVENT_MODELS[event_type]]  # type: ignore[valid-type]
