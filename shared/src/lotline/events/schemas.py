"""Exports each event's JSON Schema (envelope and data) for POS vendors and other integrators."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from lotline.events import generated
from lotline.events.envelope import CONTENT_TYPE, envelope_class
from lotline.events.topics import EventType

SCHEMA_DIALECT = "https://json-schema.org/draft/2020-12/schema"
DEFAULT_DIR = Path(__file__).resolve().parents[3] / "schemas"


def event_schema(event_type: EventType) -> dict[str, Any]:
    schema = envelope_class(event_type).model_json_schema(mode="validation")
    schema["title"] = event_type.value
    # The generic envelope allows any type; each file pins its own.
    schema["properties"]["type"] = {"const": event_type.value, "title": "Type"}
    schema.get("$defs", {}).pop("EventType", None)
    schema["description"] = (
        f"CloudEvents 1.0 envelope of a Lotline `{event_type.value}` event, published on topic "
        f"`{event_type.topic}` keyed by the SKU. In structured mode (Kafka header "
        f"`content-type: {CONTENT_TYPE}`) this object is the record's value; in binary mode "
        "each attribute is a `ce_<attribute>` header (`ce_specversion`, `ce_id`, `ce_source`, "
        "`ce_type`, `ce_subject`, `ce_time`), `content-type` is `datacontenttype`, and the "
        "value is `data` alone."
    )
    return {"$schema": SCHEMA_DIALECT, "$id": f"{event_type.value}.schema.json", **schema}


def rendered_schemas() -> dict[str, str]:
    """File name -> exact file content, for every event."""
    return {
        f"{event_type.value}.schema.json": json.dumps(event_schema(event_type), indent=2) + "\n"
        for event_type in EventType
    }


def export(directory: Path) -> list[Path]:
    return generated.export(directory, rendered_schemas)


def drift(directory: Path) -> list[str]:
    return generated.drift(directory, rendered_schemas, "*.schema.json")


def main(argv: list[str] | None = None) -> int:
    return generated.main(
        argv,
        description=__doc__ or "",
        default_dir=DEFAULT_DIR,
        render=rendered_schemas,
        pattern="*.schema.json",
    )


if __name__ == "__main__":
    raise SystemExit(main())
