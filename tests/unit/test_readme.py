"""The README's settings table and event catalogue are generated from the code; this test
fails when they drift. `uv run python tests/unit/test_readme.py` rewrites them."""

from __future__ import annotations

import re
import sys
from pathlib import Path
from typing import Any

from pydantic import SecretStr

from lotline.events import EVENT_MODELS, EventType
from lotline.events.topics import CONSUMED_BY, PUBLISHED_BY
from lotline.runtime.settings import Settings

README = Path(__file__).resolve().parents[2] / "README.md"


def _default(value: Any) -> str:
    if value is None:
        return "unset"
    if isinstance(value, SecretStr):
        value = value.get_secret_value()
    if isinstance(value, tuple):
        value = ",".join(map(str, value))
    if isinstance(value, bool):
        value = str(value).lower()
    return f"`{value}`"


def settings_table() -> str:
    rows = ["| variable | default | what |", "|---|---|---|"]
    for name, field in Settings.model_fields.items():
        rows.append(f"| `{name.upper()}` | {_default(field.default)} | {field.description} |")
    return "\n".join(rows)


def _services(owners: dict[str, tuple[EventType, ...]], event: EventType) -> str:
    return ", ".join(owner for owner, events in owners.items() if event in events) or "—"


def event_catalogue() -> str:
    rows = [
        "| event (= topic) | what happened | published by | consumed by | key | schema |",
        "|---|---|---|---|---|---|",
    ]
    for event in EventType:
        doc = (EVENT_MODELS[event].__doc__ or "").strip().split("\n\n")[0]
        what = " ".join(doc.split())
        schema = f"[JSON Schema](shared/schemas/{event.value}.schema.json)"
        rows.append(
            f"| `{event.value}` | {what} | {_services(PUBLISHED_BY, event)} "
            f"| {_services(CONSUMED_BY, event)} | SKU | {schema} |"
        )
    return "\n".join(rows)


BLOCKS = {"settings-table": settings_table, "event-catalogue": event_catalogue}


def _block(name: str) -> re.Pattern[str]:
    return re.compile(
        rf"(<!-- generated:{name} [^\n]*-->\n)(.*?)\n?(<!-- end generated:{name} -->)", re.DOTALL
    )


def test_the_readme_tables_match_the_code() -> None:
    text = README.read_text(encoding="utf-8")
    for name, render in BLOCKS.items():
        found = _block(name).search(text)
        assert found, f"README.md has no generated {name} block"
        assert found.group(2) == render(), (
            f"README.md's {name} is out of date: run `uv run python tests/unit/test_readme.py`"
        )


def test_every_event_has_a_committed_schema_the_catalogue_links_to() -> None:
    for event in EventType:
        assert (README.parent / "shared" / "schemas" / f"{event.value}.schema.json").is_file()


def update() -> None:
    text = README.read_text(encoding="utf-8")
    for name, render in BLOCKS.items():
        text, count = _block(name).subn(
            lambda m, render=render: f"{m.group(1)}{render()}\n{m.group(3)}", text
        )
        if count != 1:
            sys.exit(f"README.md needs exactly one generated {name} block, found {count}")
    README.write_text(text, encoding="utf-8")


if __name__ == "__main__":
    update()
