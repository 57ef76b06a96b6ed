"""The contract package installs and works on its own: a POS integrator's Python producer
gets the models, the codec and the partitioner, and none of the server (issue 13, item 6).

It is installed from `shared/` into a fresh virtual environment, from the package index as
an integrator would, and used there in a process of its own."""

from __future__ import annotations

import json
import subprocess
import venv
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SERVER_PACKAGES = {
    "faststream",
    "aiokafka",
    "pymongo",
    "fastapi",
    "starlette",
    "uvicorn",
    "structlog",
    "prometheus-client",
    "opentelemetry-sdk",
    "opentelemetry-api",
    "pydantic-settings",
    "lotline-runtime",
}

PRODUCER = """
import json, sys
from datetime import UTC, datetime
from importlib import metadata

from lotline.events import EventType, ItemSold, decode, encode
from lotline.events.topics import key_partition

sale = ItemSold(sale_id="S-1", line=1, location="STORE-1", sku="PHONE-X", quantity=1,
                serial="IMEI-1", sold_at=datetime(2026, 12, 2, 9, 30, tzinfo=UTC))
message = encode(sale, source="till-17", id="till-17/S-1/1")
event = decode(message.value, EventType.ITEM_SOLD, headers=message.headers)
try:
    decode(message.value.replace(b'"quantity":1', b'"quantity":2'), EventType.ITEM_SOLD)
    refusal = None
except ValueError as exc:
    refusal = str(exc)
print(json.dumps({
    "topic": message.topic,
    "key": message.key.decode(),
    "partition": key_partition(sale.sku, 12),
    "headers": [name for name, _ in message.headers],
    "round_trip": event.data == sale,
    "refusal": refusal,
    "runtime_loaded": any(m.startswith("lotline.runtime") for m in sys.modules),
    "installed": sorted(d.metadata["Name"].lower() for d in metadata.distributions()),
}))
"""


@pytest.fixture(scope="module")
def contract_only(tmp_path_factory: pytest.TempPathFactory) -> Path:
    env = tmp_path_factory.mktemp("contract-only") / "venv"
    venv.create(env, with_pip=True)
    python = env / "bin" / "python"
    subprocess.run(
        [
            str(python),
            "-m",
            "pip",
            "install",
            "--quiet",
            "--disable-pip-version-check",
            str(ROOT / "shared"),
        ],
        check=True,
        timeout=240,
    )
    return python


def test_the_contract_installs_without_the_server(contract_only: Path) -> None:
    result = subprocess.run(
        [str(contract_only), "-c", PRODUCER],
        check=True,
        capture_output=True,
        text=True,
        timeout=60,
        cwd=contract_only.parent,
    )
    found = json.loads(result.stdout)
    assert "lotline-events" in found["installed"]
    assert not SERVER_PACKAGES & set(found["installed"]), found["installed"]
    assert found["runtime_loaded"] is False
    assert found["topic"] == "item-sold"
    assert found["key"] == "PHONE-X"
    assert found["round_trip"] is True
    # No trace context without the runtime, and the content type as before.
    assert found["headers"] == ["content-type"]
    assert "quantity" in found["refusal"]


def test_the_partition_is_the_services(contract_only: Path) -> None:
    """The contract alone picks the partition the services' Kafka client (aiokafka's
    default murmur2 partitioner) picks for the same key."""
    from aiokafka.partitioner import DefaultPartitioner

    result = subprocess.run(
        [str(contract_only), "-c", PRODUCER],
        check=True,
        capture_output=True,
        text=True,
        timeout=60,
        cwd=contract_only.parent,
    )
    partitions = list(range(12))
    expected = DefaultPartitioner()(b"PHONE-X", partitions, partitions)
    assert json.loads(result.stdout)["partition"] == expected
