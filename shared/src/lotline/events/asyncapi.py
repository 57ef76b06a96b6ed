"""AsyncAPI 3.0 documents of every Kafka principal's side of the contract, built from it alone.

One document per principal in `lotline.events.topics`: each service (what it consumes, in
its consumer group, what it publishes, and the `.dlq` it writes what it cannot use to) and
each outside producer, `pos` (the tills) and `receiving`, whose documents are what a vendor
builds against. Each says how to log in (SASL/SCRAM-SHA-512), what the Kafka key is (the
SKU) and which partitioner a producer must use, both CloudEvents content modes with their
headers, and the dead letters' `lotline-dlq-*` headers. `make schemas` writes them to
shared/asyncapi/; a test fails when the committed documents drift from the contract, and
another validates them with the AsyncAPI CLI.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from lotline.events import generated
from lotline.events.envelope import CONTENT_TYPE, JSON_MEDIA_TYPE, envelope_class
from lotline.events.models import EVENT_MODELS
from lotline.events.topics import (
    CONSUMED_BY,
    PUBLISHED_BY,
    EventType,
    consumer_group,
    dlq_topic,
    router_of,
    topic_specs,
)

VERSION = "1.0.0"
ASYNCAPI_VERSION = "3.0.0"
KAFKA_BINDING_VERSION = "0.5.0"
DEFAULT_DIR = Path(__file__).resolve().parents[3] / "asyncapi"
SERVICES = tuple(CONSUMED_BY)
# Who publishes but consumes nothing: the systems outside Lotline that feed it.
PRODUCERS = tuple(name for name in PUBLISHED_BY if name not in CONSUMED_BY)
PRINCIPALS = SERVICES + PRODUCERS
SCHEME = "scramSha512"
SCHEMAS = "#/components/schemas/"
MESSAGES = "#/components/messages/"

# What the runtime's consumer (lotline.runtime.consumer) adds to every dead letter; a test
# holds this list to the names the consumer sets.
DLQ_HEADERS: dict[str, str] = {
    "lotline-dlq-reason": "Why the record could not be used, at most 1,000 characters "
    "(`required field is missing`, `unknown event type 'item-lost' ...`)",
    "lotline-dlq-field": "What was at fault: an envelope field or a path into the data "
    "(`id`, `data.quantity`), a binary-mode header (`ce_id`, `content-type`), or `(message)` "
    "for the record as a whole; `data` when the event decoded but its service could not "
    "apply or record it",
    "lotline-dlq-topic": "The topic the record was read from",
    "lotline-dlq-partition": "Its partition, in decimal",
    "lotline-dlq-offset": "Its offset in that partition, in decimal",
    "lotline-dlq-service": "The service that refused it (each consuming service writes its "
    "own dead letters, so one record may be dead-lettered once per service)",
    "lotline-dlq-at": "When it was dead-lettered, ISO 8601 with the UTC offset",
}

PARTITIONER = (
    "**Partitioner: murmur2.** Lotline's own producers put each SKU on the partition that the "
    "murmur2 hash of its key picks, the Java client's default partitioner (aiokafka's too); "
    "send yours there as well, so that a SKU's events stay on one partition, in order, with "
    "the service instance that owns the SKU. librdkafka clients (confluent-kafka for "
    "Python, .NET and Go, kcat, node-rdkafka) hash with CRC32 by default "
    "(`consistent_random`), which puts a SKU on another partition: set "
    "`partitioner=murmur2_random` (kcat `-X partitioner=murmur2_random`, confluent-kafka "
    "`{'partitioner': 'murmur2_random'}`). Never choose the partition yourself. An event "
    "that arrives on another partition (or with no key) is not lost: it is never applied "
    "there, and Lotline moves it to its SKU's partition (header `lotline-moved-from`), but it "
    "is applied later than it could be, and out of order with the SKU's other events."
)

KEY = (
    "**Key: the SKU.** Send every record with the SKU as its Kafka key, as UTF-8 bytes with "
    "nothing around them (no schema-registry framing): the same string as the event's "
    "`subject` and `data.sku`."
)

MODES = (
    "**Content modes.** Lotline reads both modes of the CloudEvents Kafka protocol binding "
    "and sends the structured one. Structured: header `content-type: "
    f"{CONTENT_TYPE}` (parameters allowed), the whole envelope as JSON in the value (a "
    "record with neither that header nor any `ce_` header is read so too). Binary: each "
    "attribute a `ce_<name>` header (`ce_specversion`, `ce_id`, `ce_source`, `ce_type`, "
    "`ce_subject`, `ce_time`; any other `ce_` header becomes an extension attribute), "
    "`content-type` the data's JSON media type, the value `data` alone. With the official "
    "SDK, set the `partitionkey` extension to the SKU and its key mapper makes it the key."
)


def specification(principal: str) -> dict[str, Any]:
    """The AsyncAPI document of one principal: a service or an outside producer."""
    if principal not in PRINCIPALS:
        raise ValueError(f"principal: {principal!r} is not in the contract ({PRINCIPALS})")
    consumed = CONSUMED_BY.get(principal, ())
    published = PUBLISHED_BY.get(principal, ())
    schemas: dict[str, Any] = {}
    messages: dict[str, Any] = {}
    channels: dict[str, Any] = {}
    operations: dict[str, Any] = {}

    def channel(event: EventType, modes: tuple[str, ...]) -> None:
        entry = channels.setdefault(event.value, _topic_channel(event))
        for mode in modes:
            name = f"{event.value}.{mode}"
            if name not in messages:
                messages[name] = _message(event, mode, schemas)
            entry["messages"][mode] = {"$ref": f"{MESSAGES}{name}"}

    for event in consumed:
        channel(event, ("structured", "binary"))
        operations[f"{event.value}.receive"] = _operation(
            "receive",
            event.value,
            ("structured", "binary"),
            f"{principal} consumes `{event.value}` in consumer group "
            f"`{consumer_group(principal)}`, in either content mode; a record it cannot use "
            f"goes to `{event.dlq_topic}`.",
            bindings={"groupId": {"type": "string", "const": consumer_group(principal)}},
        )
        channels[event.dlq_topic] = _dlq_channel(event, messages)
        operations[f"{event.dlq_topic}.send"] = _operation(
            "send",
            event.dlq_topic,
            ("deadLetter",),
            f"{principal} writes each `{event.value}` record it cannot use to "
            f"`{event.dlq_topic}`, as it arrived, with the `lotline-dlq-*` headers.",
        )
    outside = principal in PRODUCERS
    for event in published:
        # An outside producer may send either mode; Lotline's services send structured.
        modes = ("structured", "binary") if outside else ("structured",)
        channel(event, modes)
        readers = ", ".join(s for s, events in CONSUMED_BY.items() if event in events)
        operations[f"{event.value}.send"] = _operation(
            "send",
            event.value,
            modes,
            f"{principal} publishes `{event.value}`"
            + (" in either content mode" if outside else " in structured mode")
            + (f", read by {readers}." if readers else "; no Lotline service reads it."),
        )
        if outside and readers:
            # Not the producer's to read (its ACLs allow no READ), but where its refused
            # events end up, and what the operators see about them.
            channels.setdefault(event.dlq_topic, _dlq_channel(event, messages))
    return {
        "asyncapi": ASYNCAPI_VERSION,
        "info": {
            "title": f"Lotline {principal}",
            "version": VERSION,
            "description": _about(principal),
        },
        "defaultContentType": CONTENT_TYPE,
        "servers": {
            "development": {
                "host": "127.0.0.1:9092",
                "protocol": "kafka",
                "description": "The local stack's Kafka (elsewhere: KAFKA_BOOTSTRAP_SERVERS), "
                "SASL_PLAINTEXT; where TLS is set up, SASL_SSL with the same login.",
                "security": [{"$ref": f"#/components/securitySchemes/{SCHEME}"}],
            }
        },
        "channels": dict(sorted(channels.items())),
        "operations": dict(sorted(operations.items())),
        "components": {
            "messages": dict(sorted(messages.items())),
            "schemas": dict(sorted(schemas.items())),
            "securitySchemes": {SCHEME: {"type": "scramSha512", "description": _acls(principal)}},
        },
    }


def _about(principal: str) -> str:
    if principal in PRODUCERS:
        events = ", ".join(f"`{event.value}`" for event in PUBLISHED_BY[principal])
        who = (
            f"What `{principal}` (a system outside Lotline) publishes to Lotline's Kafka: "
            f"{events}. Build a producer against this document."
        )
    else:
        who = (
            f"The Kafka side of Lotline's `{principal}` service: what it consumes (consumer "
            f"group `{consumer_group(principal)}`), what it publishes, and its dead letters."
        )
    return "\n\n".join(
        (
            who,
            f"**Login.** SASL/SCRAM-SHA-512 as the principal `{principal}` (the security "
            "scheme below says what its ACLs allow).",
            KEY,
            PARTITIONER,
            MODES,
            "**Dead letters.** A record a service cannot use is written, key, value and "
            "headers as it arrived, to `<topic>.dlq` with `lotline-dlq-*` headers saying why "
            "(the `deadLetter` message below), and the service goes on with the next one; "
            "once fixed, it can be sent to its topic again. Each event's JSON Schema is also "
            "in shared/schemas.",
        )
    )


def _acls(principal: str) -> str:
    """What the broker lets this principal do, as the stack's ACLs grant it from the contract."""
    writes = [event.topic for event in PUBLISHED_BY.get(principal, ())]
    writes += [event.dlq_topic for event in CONSUMED_BY.get(principal, ())]
    # A topic's router moves misrouted events to their SKU's partition.
    writes += [e.topic for e in CONSUMED_BY.get(principal, ()) if router_of(e) == principal]
    reads = [event.topic for event in CONSUMED_BY.get(principal, ())]
    allowed = [f"WRITE on {', '.join(f'`{topic}`' for topic in writes)}"] if writes else []
    if reads:
        allowed.append(
            f"READ on {', '.join(f'`{topic}`' for topic in reads)} in group "
            f"`{consumer_group(principal)}`"
        )
    return (
        f"SASL/SCRAM-SHA-512 as the principal `{principal}` (KAFKA_USERNAME and "
        f"KAFKA_PASSWORD for a Lotline process). Its ACLs allow {' and '.join(allowed)}; "
        "nothing else."
    )


def _topic_channel(event: EventType) -> dict[str, Any]:
    readers = [s for s, events in CONSUMED_BY.items() if event in events]
    writers = [p for p, events in PUBLISHED_BY.items() if event in events]
    binding: dict[str, Any] = {"topic": event.topic, "bindingVersion": KAFKA_BINDING_VERSION}
    (spec,) = (spec for spec in topic_specs() if spec.name == event.topic)
    if "cleanup.policy" in spec.config:
        binding["topicConfiguration"] = {"cleanup.policy": spec.config["cleanup.policy"].split(",")}
    return {
        "address": event.topic,
        "title": event.value,
        "description": f"`{event.value}` events, keyed by SKU. Published by "
        f"{', '.join(writers) or 'no one yet'}; consumed by "
        f"{', '.join(readers) or 'no Lotline service'}.",
        "messages": {},
        "bindings": {"kafka": binding},
    }


def _dlq_channel(event: EventType, messages: dict[str, Any]) -> dict[str, Any]:
    messages.setdefault("deadLetter", _dead_letter())
    writers = ", ".join(s for s, events in CONSUMED_BY.items() if event in events)
    return {
        "address": event.dlq_topic,
        "title": event.dlq_topic,
        "description": f"The `{event.value}` records that a consuming service ({writers}) "
        "could not use. Written only by those services; read by operators (the outside "
        "producers' ACLs allow no READ).",
        "messages": {"deadLetter": {"$ref": f"{MESSAGES}deadLetter"}},
        "bindings": {
            "kafka": {"topic": dlq_topic(event.topic), "bindingVersion": KAFKA_BINDING_VERSION}
        },
    }


def _operation(
    action: str,
    channel: str,
    messages: tuple[str, ...],
    description: str,
    bindings: dict[str, Any] | None = None,
) -> dict[str, Any]:
    operation: dict[str, Any] = {
        "action": action,
        "channel": {"$ref": f"#/channels/{_escaped(channel)}"},
        "messages": [
            {"$ref": f"#/channels/{_escaped(channel)}/messages/{name}"} for name in messages
        ],
        "description": description,
    }
    if bindings:
        operation["bindings"] = {"kafka": {**bindings, "bindingVersion": KAFKA_BINDING_VERSION}}
    return operation


def _escaped(token: str) -> str:
    """A JSON Pointer token (RFC 6901): `~` and `/` escaped."""
    return token.replace("~", "~0").replace("/", "~1")


def _message(event: EventType, mode: str, schemas: dict[str, Any]) -> dict[str, Any]:
    """One event in one content mode; adds its schemas to `schemas`."""
    envelope = envelope_class(event)
    data_name = EVENT_MODELS[event].__name__
    schema = envelope.model_json_schema(mode="validation", ref_template=SCHEMAS + "{model}")
    for name, definition in schema.pop("$defs", {}).items():
        if name != "EventType":  # pinned below: each envelope names its own type
            schemas.setdefault(name, definition)
    # The generic envelope allows any type; each event's pins its own.
    schema["properties"]["type"] = {"const": event.value, "title": "Type"}
    envelope_name = f"CloudEvent.{data_name}"
    schemas[envelope_name] = schema
    key = {
        **{k: v for k, v in schemas[data_name]["properties"]["sku"].items() if k != "title"},
        "description": "The SKU, as UTF-8 bytes: the event's `subject` and `data.sku`. "
        "Partition it with murmur2 (librdkafka: `partitioner=murmur2_random`).",
    }
    common = {
        "name": event.value,
        "bindings": {"kafka": {"key": key, "bindingVersion": KAFKA_BINDING_VERSION}},
    }
    if mode == "structured":
        return {
            **common,
            "title": f"{event.value} (structured)",
            "summary": f"`{event.value}` in CloudEvents structured mode: the envelope as the "
            "value.",
            "contentType": CONTENT_TYPE,
            "headers": {
                "type": "object",
                "properties": {
                    "content-type": {
                        "type": "string",
                        "description": f"`{CONTENT_TYPE}`, parameters allowed; a record "
                        "with neither this nor any `ce_` header is read as structured too",
                        "examples": [CONTENT_TYPE],
                    },
                    **_TRACEPARENT,
                },
            },
            "payload": {"$ref": f"{SCHEMAS}{envelope_name}"},
        }
    properties: dict[str, Any] = {}
    for name, attribute in schema["properties"].items():
        if name in ("data", "datacontenttype"):
            continue
        properties[f"ce_{name}"] = {
            "type": "string",
            **{k: v for k, v in attribute.items() if k not in ("title", "default", "type")},
        }
    properties["content-type"] = {
        "type": "string",
        "pattern": JSON_MEDIA_TYPE,
        "description": "The data's media type (`datacontenttype`): JSON, parameters allowed; "
        "JSON when absent",
        "examples": ["application/json"],
    }
    properties.update(_TRACEPARENT)
    return {
        **common,
        "title": f"{event.value} (binary)",
        "summary": f"`{event.value}` in CloudEvents binary mode: attributes as `ce_` headers, "
        "the data as the value.",
        "contentType": "application/json",
        "headers": {
            "type": "object",
            "required": [f"ce_{name}" for name in schema["required"] if name != "data"],
            "properties": properties,
            "additionalProperties": {
                "type": "string",
                "description": "Any other `ce_` header is an extension attribute",
            },
        },
        "payload": {"$ref": f"{SCHEMAS}{data_name}"},
    }


_TRACEPARENT = {
    "traceparent": {
        "type": "string",
        "description": "Optional W3C trace context of the event's creation (the CloudEvents "
        "distributed-tracing extension): the consumer's spans join that trace",
    }
}


def _dead_letter() -> dict[str, Any]:
    return {
        "name": "dead-letter",
        "title": "Dead letter",
        "summary": "A record a service could not use, as it arrived, with why.",
        "description": "Key, value and headers are the refused record's own (so a "
        "binary-mode event keeps its `ce_` headers and can be resent once fixed); the "
        "`lotline-dlq-*` headers are added. An event that decoded but that its service "
        "could not apply (`lotline-dlq-field: data`) is written as Lotline encodes it: "
        "structured mode, keyed by its SKU.",
        "headers": {
            "type": "object",
            "required": list(DLQ_HEADERS),
            "properties": {
                name: {"type": "string", "description": meaning}
                for name, meaning in DLQ_HEADERS.items()
            },
            "additionalProperties": {
                "type": "string",
                "description": "The refused record's own headers, kept (as UTF-8 text)",
            },
        },
        "payload": {
            "description": "The refused record's value, byte for byte; it may not be JSON "
            "at all, or be empty"
        },
        "bindings": {
            "kafka": {
                "key": {
                    "type": "string",
                    "description": "The refused record's key, as it arrived (the SKU, when "
                    "the producer keyed it right; absent when it had none)",
                },
                "bindingVersion": KAFKA_BINDING_VERSION,
            }
        },
    }


def rendered() -> dict[str, str]:
    return {
        f"{principal}.asyncapi.json": json.dumps(specification(principal), indent=2) + "\n"
        for principal in PRINCIPALS
    }


def export(directory: Path) -> list[Path]:
    return generated.export(directory, rendered)


def drift(directory: Path) -> list[str]:
    return generated.drift(directory, rendered, "*.asyncapi.json")


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
