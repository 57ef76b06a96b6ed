"""`lotline demo` plays a store day against the real services and follows its recall."""

from __future__ import annotations

import asyncio
import os
import re
import subprocess
import sys
from pathlib import Path
from urllib.parse import quote

import httpx
import pytest

pytestmark = pytest.mark.infra

ROOT = Path(__file__).resolve().parents[2]


async def test_the_demo_plays_a_store_day_and_a_recall(infra, start_service) -> None:  # type: ignore[no-untyped-def]
    token = "demo-token-" + "3" * 16
    # One operator every service knows, as `make run` sets them up: the demo registers its
    # products and issues its recalls as qa-demo.
    people = {"LOTLINE_TOKENS": f"qa-demo:operator:{token}"}
    catalog = start_service("catalog", **people)
    stock = start_service("stock", **people)
    serials = start_service("serial-registry", **people)
    recall = start_service("recall", **people)
    env = {
        **os.environ,
        "LOTLINE_OPERATOR_TOKEN": token,
        "KAFKA_BOOTSTRAP_SERVERS": infra.kafka_bootstrap,
        "LOTLINE_CATALOG_URL": catalog.url,
        "LOTLINE_STOCK_URL": stock.url,
        "LOTLINE_SERIALS_URL": serials.url,
        "LOTLINE_RECALL_URL": recall.url,
        "COLUMNS": "200",
    }
    args = ["demo", "--sales", "300", "--serials-per-product", "50", "--seed", "1"]
    args += ["--timeout", "60"]
    result = await asyncio.to_thread(
        subprocess.run,
        [sys.executable, "-m", "lotline.cli", *args],
        env=env,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=150,
    )
    out = result.stdout
    assert result.returncode == 0, result.stderr + out
    assert "Traceback" not in result.stderr + out

    found = re.search(
        r"Recall (\S+) \(DEMO-PHONE-\w+\): quarantined units: (\d+), customers to contact: (\d+)",
        out,
    )
    assert found, out
    recall_id, quarantined, contacts = found[1], int(found[2]), int(found[3])
    assert quarantined > 0, out
    assert contacts > 0, out
    assert f"lotline recall show {recall_id}" in out
    assert f"{recall.url}/recalls/{recall_id}" in out
    assert f"recall console: {recall.url}/console/recalls/{recall_id}" in out
    assert "3. Sales: 300 sale lines over 3 stores" in out
    # The evening: a transfer, a count, a write-off, a disposal and a warranty claim.
    assert "5. The stock room and the after-sales desk" in out
    for what in ("Transfer", "Count", "Write-off", "Disposal", "Warranty claim"):
        assert f"│ {what} " in out, out
    assert "variance -2" in out
    assert "lotline transfer show DEMO-TRF-" in out

    async with httpx.AsyncClient(base_url=recall.url, timeout=10) as client:
        response = await client.get(
            f"/recalls/{quote(recall_id, safe='')}", headers={"Authorization": f"Bearer {token}"}
        )
    assert response.status_code == 200, response.text
    shown = response.json()
    assert shown["issued_by"] == "qa-demo"
    assert "4. Recalls issued by 'qa-demo'" in out
    assert shown["state"] == "open"
    assert shown["progress"]["quarantined_units"] == quarantined > 0
    assert shown["progress"]["units_to_contact"] == contacts > 0
    assert len(shown["contacts"]) == contacts
    assert all(c["customer_ref"].startswith("CUST-") for c in shown["contacts"])
    # The recalled lot was quarantined in every store that still had some of it.
    assert {q["location"] for q in shown["quarantine"]} <= {"STORE-1", "STORE-2", "STORE-3"}
    assert sum(q["quantity"] for q in shown["quarantine"]) == quarantined
