"""The committed JSON Schemas are what POS vendors integrate against: they must match the models."""

from __future__ import annotations

import shutil
from pathlib import Path

from lotline.events import asyncapi
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
        "item-lost.schema.json: no longer generated",
        "item-returned.schema.json: missing",
        "item-sold.schema.json: differs from the model",
    ]
    export(schemas)
    (schemas / "item-lost.schema.json").unlink()
    assert drift(schemas) == []


def test_committed_asyncapi_documents_match_the_contract() -> None:
    assert asyncapi.drift(asyncapi.DEFAULT_DIR) == [], "run `make schemas` and commit"


def test_each_service_documents_what_it_consumes_and_publishes() -> None:
    stock = asyncapi.specification("stock").to_specification().to_jsonable()
    operations = {
        op["channel"]["$ref"].split("/")[-1]: op["action"] for op in stock["operations"].values()
    }
    assert operations == {
        "stock:product-registered": "receive",
        "stock:item-received": "receive",
        "stock:item-returned": "receive",
        "stock:batch-recalled": "receive",
        "stock:item-sold": "receive",
        "stock:receipt-rejected": "receive",
        "stock:sale-flagged:publish": "send",
        "stock:stock-quarantined:publish": "send",
        "stock:lot-expiring:publish": "send",
    }
    schemas = stock["components"]["schemas"]
    assert "CloudEvent[ItemSold]" in schemas
    assert schemas["ItemSold"]["properties"]["quantity"]["exclusiveMinimum"] == 0
