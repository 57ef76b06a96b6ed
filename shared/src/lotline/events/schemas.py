"""Exports each event's JSON Schema (envelope and data) for POS vendors and other integrators."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from lotline.events.envelope import envelope_class
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
        f"CloudEvents 1.0 structured-JSON envelope of a Lotline `{event_type.value}` event, "
        f"published on topic `{event_type.topic}` keyed by the SKU."
    )
    return {"$schema": SCHEMA_DIALECT, "$id": f"{event_type.value}.schema.json", **schema}


def rendered_schemas() -> dict[str, str]:
    """File name -> exact file content, for every event."""
    return {
        f"{event_type.value}.schema.json": json.dumps(event_schema(event_type), indent=2) + "\n"
        for event_type in EventType
    }


def export(directory: Path) -> list[Path]:
    directory.mkdir(parents=True, exist_ok=True)
    written = []
    for name, content in rendered_schemas().items():
        path = directory / name
        path.write_text(content, encoding="utf-8")
        written.append(path)
    return written


def drift(directory: Path) -> list[str]:
    """Schema files that differ from the models (missing, changed, or left over)."""
    expected = rendered_schemas()
    problems = []
    for name, content in expected.items():
        path = directory / name
        if not path.exists():
            problems.append(f"{name}: missing")
        elif path.read_text(encoding="utf-8") != content:
            problems.append(f"{name}: differs from the model")
    problems.extend(
        f"{path.name}: no such event any more"
        for path in sorted(directory.glob("*.schema.json"))
        if path.name not in expected
    )
    return problems


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("command", choices=["export", "check"])
    parser.add_argument("directory", nargs="?", type=Path, default=DEFAULT_DIR)
    args = parser.parse_args(argv)
    if args.command == "export":
        for path in export(args.directory):
            print(path)
        return 0
    problems = drift(args.directory)
    for problem in problems:
        print(problem, file=sys.stderr)
    if problems:
        print("run `make schemas` and commit the result", file=sys.stderr)
    return 1 if problems else 0


if __name__ == "__main__":
    raise SystemExit(main())
