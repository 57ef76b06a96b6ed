"""AsyncAPI 3.0 documents of each service's event side, built from the one contract.

`faststream docs gen lotline.events.asyncapi:stock` (or `make schemas`, which writes all of
them to shared/asyncapi/) gives POS vendors and integrators a machine-readable contract:
every channel a service consumes or publishes, with the CloudEvents envelope and data schema
of its messages. A test fails when the committed documents drift from the models.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any

from faststream import FastStream
from faststream.kafka import KafkaBroker
from faststream.specification import AsyncAPI

from lotline.events import generated
from lotline.events.envelope import envelope_class
from lotline.events.topics import CONSUMED_BY, PUBLISHED_BY, consumer_group

VERSION = "1.0.0"
DEFAULT_DIR = Path(__file__).resolve().parents[3] / "asyncapi"
SERVICES = ("catalog", "stock", "serial-registry", "recall")


def _documented(model: Any) -> Callable[[Any], Coroutine[Any, Any, None]]:
    async def receive(event: Any) -> None:  # documentation only: never subscribed for real
        return None

    receive.__annotations__ = {"event": model, "return": None}
    return receive


def specification(service: str) -> AsyncAPI:
    """The service's channels; a broker object that is described, never started."""
    broker = KafkaBroker("127.0.0.1:9092", description="Kafka (KAFKA_BOOTSTRAP_SERVERS)")
    for event in CONSUMED_BY[service]:
        broker.subscriber(
            event.topic,
            group_id=consumer_group(service),
            title=f"{service}:{event.value}",
            description=f"{service} consumes `{event.value}`, keyed by SKU, in either "
            "CloudEvents content mode: structured (`content-type: application/cloudevents+json`, "
            "the envelope below as the value) or binary (`ce_specversion`, `ce_id`, `ce_source`, "
            "`ce_type`, `ce_subject`, `ce_time` headers, `content-type` of the data, the value "
            f"is `data` alone); events it cannot use go to `{event.dlq_topic}`.",
        )(_documented(envelope_class(event)))
    for event in PUBLISHED_BY[service]:
        broker.publisher(
            event.topic,
            schema=envelope_class(event),
            title=f"{service}:{event.value}:publish",
            description=f"{service} publishes `{event.value}`, keyed by SKU, in CloudEvents "
            "structured mode (`content-type: application/cloudevents+json`).",
        )
    return AsyncAPI(broker, title=f"Lotline {service}", version=VERSION)


def rendered() -> dict[str, str]:
    return {
        f"{service}.asyncapi.json": json.dumps(
            specification(service).to_specification().to_jsonable(), indent=2, sort_keys=True
        )
        + "\n"
        for service in SERVICES
    }


def export(directory: Path) -> list[Path]:
    return generated.export(directory, rendered)


def drift(directory: Path) -> list[str]:
    return generated.drift(directory, rendered, "*.asyncapi.json")


# Targets for `faststream docs gen|serve lotline.events.asyncapi:<service>`.
catalog, stock, serial_registry, recall = (
    FastStream(spec.brokers[0], specification=spec) for spec in map(specification, SERVICES)
)


def main(argv: list[str] | None = None) -> int:
    return generated.main(
        argv,
        description=__doc__ or "",
        default_dir=DEFAULT_DIR,
        render=rendered,
        pattern="*.asyncapi.json",
    )


if __name__ == "__main__":
    raise SystemExit(main())
