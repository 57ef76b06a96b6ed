"""The committed JSON Schemas are what POS vendors integrate against: they must match the models."""

from __future__ import annotations

import shutil
from pathlib import Path

from lotline.events.schemas import DEFAULT_DIR, drift, export


def test_committed_schemas_match_the_models() -> None:
    assert drift(DEFAULT_DIR) == [], "schemas drifted from the models: run `make schemas`"


def test_drift_is_detected(tmp_path: Path) -> None:
    shutil.copytree(DEFAULT_DIR, tmp_path / "schemas")
    schemas = tmp_path / "schemas"
    changed = schemas / "item-sold.schema.json"
    changed.write_text(changed.read_text().replace('"sale_id"', '"sale_no"'))
    (schemas / "item-returned.schema.json").unlink()
    (schemas / "item-lost.schema.json").write_text("{}")
    assert sorted(drift(schemas)) == [
        "item-lost.schema.json: no such event any more",
        "item-returned.schema.json: missing",
        "item-sold.schema.json: differs from the model",
    ]
    export(schemas)
    (schemas / "item-lost.schema.json").unlink()
    assert drift(schemas) == []
