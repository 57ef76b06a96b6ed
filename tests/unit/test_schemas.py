"""The committed JSON Schemas are what POS vendors integrate against: they must match the models."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import pytest

from lotline.events import asyncapi
from lotline.events.schemas import DEFAULT_DIR, drift, export
from lotline.events.topics import CONSUMED_BY, PUBLISHED_BY

ROOT = Path(__file__).resolve().parents[2]


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
    stock = asyncapi.specification("stock")
    operations = {
        name: (op["action"], op["channel"]["$ref"]) for name, op in stock["operations"].items()
    }
    consumed = [event.topic for event in CONSUMED_BY["stock"]]
    published = [event.topic for event in PUBLISHED_BY["stock"]]
    assert {"item-sold", "batch-recalled"} <= set(consumed)
    assert {"stock-quarantined", "sale-flagged"} <= set(published)
    assert operations == {
        **{f"{t}.receive": ("receive", f"#/channels/{t}") for t in consumed},
        **{f"{t}.dlq.send": ("send", f"#/channels/{t}.dlq") for t in consumed},
        **{f"{t}.send": ("send", f"#/channels/{t}") for t in published},
    }
    group = stock["operations"]["item-sold.receive"]["bindings"]["kafka"]["groupId"]
    assert group == {"type": "string", "const": "lotline-stock"}
    # Read in either content mode, sent in the structured one.
    assert list(stock["channels"]["item-sold"]["messages"]) == ["structured", "binary"]
    assert list(stock["channels"]["sale-flagged"]["messages"]) == ["structured"]
    schemas = stock["components"]["schemas"]
    assert schemas["CloudEvent.ItemSold"]["properties"]["data"] == {
        "$ref": "#/components/schemas/ItemSold"
    }
    assert schemas["ItemSold"]["properties"]["quantity"]["exclusiveMinimum"] == 0
    acls = stock["components"]["securitySchemes"]["scramSha512"]["description"]
    assert "WRITE on `stock-quarantined`" in acls
    assert "READ on `product-registered`" in acls
    assert "`item-sold.dlq`" in acls


@pytest.mark.parametrize("producer", ["pos", "receiving"])
def test_outside_producers_get_a_document_of_what_they_send(producer: str) -> None:
    document = asyncapi.specification(producer)
    sent = {e.value for e in PUBLISHED_BY[producer]}
    assert {name: op["action"] for name, op in document["operations"].items()} == {
        f"{topic}.send": "send" for topic in sent
    }
    # Where their refused events go is documented, though they may not read it.
    assert set(document["channels"]) == sent | {f"{topic}.dlq" for topic in sent}
    for topic in sent:
        assert list(document["channels"][topic]["messages"]) == ["structured", "binary"]
    acls = document["components"]["securitySchemes"]["scramSha512"]["description"]
    assert "READ" not in acls.replace("allow no READ", "")
    assert document["servers"]["development"]["security"] == [
        {"$ref": "#/components/securitySchemes/scramSha512"}
    ]
    assert "partitioner=murmur2_random" in document["info"]["description"]


def test_pos_document_says_what_an_integrator_must_send() -> None:
    pos = asyncapi.specification("pos")
    messages = pos["components"]["messages"]
    key = messages["item-sold.binary"]["bindings"]["kafka"]["key"]
    assert key["type"] == "string"
    assert "SKU" in key["description"]
    assert "murmur2" in key["description"]
    assert messages["item-sold.structured"]["bindings"]["kafka"]["key"] == key
    binary = messages["item-sold.binary"]["headers"]
    assert binary["required"] == ["ce_specversion", "ce_id", "ce_source", "ce_type", "ce_subject"]
    assert binary["properties"]["ce_type"]["const"] == "item-sold"
    assert messages["item-sold.binary"]["payload"] == {"$ref": "#/components/schemas/ItemSold"}
    structured = messages["item-sold.structured"]
    assert structured["payload"] == {"$ref": "#/components/schemas/CloudEvent.ItemSold"}
    assert structured["contentType"] == "application/cloudevents+json"
    assert pos["components"]["schemas"]["CloudEvent.ItemSold"]["properties"]["type"] == {
        "const": "item-sold",
        "title": "Type",
    }


def test_dead_letter_headers_are_the_ones_the_consumer_sets() -> None:
    """The documented `lotline-dlq-*` headers are exactly those the runtime writes."""
    source = (ROOT / "runtime/src/lotline/runtime/consumer.py").read_text()
    assert set(re.findall(r'"(lotline-dlq-[a-z-]+)"', source)) == set(asyncapi.DLQ_HEADERS)
    dead = asyncapi.specification("pos")["components"]["messages"]["deadLetter"]
    assert dead["headers"]["required"] == list(asyncapi.DLQ_HEADERS)


def test_every_principal_of_the_contract_has_a_document() -> None:
    assert set(asyncapi.PRINCIPALS) == {*CONSUMED_BY, *PUBLISHED_BY}
    assert sorted(asyncapi.rendered()) == sorted(
        f"{name}.asyncapi.json" for name in {*CONSUMED_BY, *PUBLISHED_BY}
    )
    with pytest.raises(ValueError, match="principal: 'till'"):
        asyncapi.specification("till")
