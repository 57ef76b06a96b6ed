"""The `lotline` command against the real catalog, stock and serial registry."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path

import pytest
from stdnum import ean

from support import eventually

pytestmark = pytest.mark.infra

ROOT = Path(__file__).resolve().parents[2]

Lotline = Callable[..., Awaitable[subprocess.CompletedProcess[str]]]
OPERATOR_TOKEN, STAFF_TOKEN = "qa-anna-token-" + "5" * 16, "desk-token-" + "6" * 16


def gtin_for(prefix: str, run_id: str) -> str:
    """A GTIN-13 in the restricted-circulation range, unique to this run."""
    body = f"{prefix}{int(run_id, 16) % 10**10:010d}"
    return body + ean.calc_check_digit(body)


@pytest.fixture
def lotline(infra, start_service, tmp_path) -> Lotline:  # type: ignore[no-untyped-def]
    # The same people in every service, as `make run` gives them (LOTLINE_TOKENS_FILE).
    people = {"LOTLINE_TOKENS": f"qa-anna:operator:{OPERATOR_TOKEN},desk:staff:{STAFF_TOKEN}"}
    catalog = start_service("catalog", **people)
    stock = start_service("stock", **people)
    serials = start_service("serial-registry", **people)
    # The recall service reads the others for its traces (`lotline trace`).
    recall = start_service(
        "recall",
        CATALOG_URL=catalog.url,
        STOCK_URL=stock.url,
        SERIALS_URL=serials.url,
        **people,
    )
    # The operator's token where `make run` would put it: a file only its owner reads.
    token_file = tmp_path / "operator-token"
    token_file.write_text(OPERATOR_TOKEN + "\n")
    token_file.chmod(0o600)
    inherited = {k: v for k, v in os.environ.items() if k != "LOTLINE_OPERATOR_TOKEN"}
    env = {
        **inherited,
        "LOTLINE_OPERATOR_TOKEN_FILE": str(token_file),
        "KAFKA_BOOTSTRAP_SERVERS": infra.kafka_bootstrap,
        "LOTLINE_CATALOG_URL": catalog.url,
        "LOTLINE_STOCK_URL": stock.url,
        "LOTLINE_SERIALS_URL": serials.url,
        "LOTLINE_RECALL_URL": recall.url,
        "COLUMNS": "200",
    }

    async def run(*args: str, **env_extra: str) -> subprocess.CompletedProcess[str]:
        return await asyncio.to_thread(
            subprocess.run,
            [sys.executable, "-m", "lotline.cli", *args],
            env={**env, **env_extra},
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=120,
        )

    return run


def ok(result: subprocess.CompletedProcess[str]) -> str:
    assert result.returncode == 0, result.stderr
    assert result.stderr == "", result.stderr
    return result.stdout


def one_line_error(result: subprocess.CompletedProcess[str], says: str) -> None:
    assert result.returncode != 0
    assert "Traceback" not in result.stderr + result.stdout
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("error: ")
    assert says in lines[0]


async def test_a_store_day_from_the_command_line(lotline: Lotline, run_id: str) -> None:
    phone, milk = f"CLI-PHONE-{run_id}", f"CLI-MILK-{run_id}"
    phone_gtin, milk_gtin = gtin_for("20", run_id), gtin_for("21", run_id)
    store, lot = f"STORE-{run_id}", f"L{run_id}"

    added = ok(
        await lotline(
            "products", "add", phone, "--name", "Phone X1", "--tracking", "serial",
            "--gtin", phone_gtin,
        )
    )  # fmt: skip
    assert f"Product {phone} (Phone X1): serial tracking, GTIN 0{phone_gtin}" in added
    ok(
        await lotline(
            "products", "add", milk, "--name", "Milk 1L", "--tracking", "batch",
            "--gtin", milk_gtin, "--shelf-life-days", "10",
        )
    )  # fmt: skip
    listed = ok(await lotline("products", "list", "--tracking", "batch"))
    assert milk in listed
    assert phone not in listed

    # 1,000 phones by range, zero padding kept.
    received = ok(
        await lotline(
            "receive", phone, "--location", store, "--serials", "IMEI-000100..IMEI-001099",
            "--receipt-id", f"R-{run_id}", "--supplier", "Acme",
        )
    )  # fmt: skip
    assert f"Received 1,000 unit(s) of {phone}, serials IMEI-000100 … IMEI-001099" in received
    # 24 cartons of milk by scanning the pallet label; day 00 = end of February.
    received = ok(
        await lotline(
            "receive", "--scan", f"(01)0{milk_gtin}(10){lot}(17)270200", "--location", store,
            "--quantity", "24",
        )
    )  # fmt: skip
    assert f"Received 24 unit(s) of {milk}, lot {lot}, expires 2027-02-28" in received

    # Wait until both receipts are booked before selling from them.
    async def stocked(sku: str, on_hand: int) -> str:
        shown = ok(await lotline("stock", sku))
        assert f"Stock of {sku}: {on_hand} on hand, 0 quarantined, 1 location(s)" in shown
        return shown

    await eventually(lambda: stocked(phone, 1000), timeout=60)
    await eventually(lambda: stocked(milk, 24), timeout=60)

    # The till scans a phone's Digital Link and the milk's element string.
    sold = ok(
        await lotline(
            "sell", "--scan", f"https://id.gs1.org/01/0{phone_gtin}/21/IMEI-000500",
            "--location", store, "--customer", "CUST-7", "--sale-id", f"S-{run_id}",
        )
    )  # fmt: skip
    assert f"Sold serial IMEI-000500 of {phone} at {store} (sale S-{run_id}, line 1)" in sold
    sold = ok(
        await lotline(
            "sell", "--scan", f"(01)0{milk_gtin}(10){lot}", "--location", store,
            "--quantity", "4", "--sale-id", f"S-{run_id}", "--line", "2",
        )
    )  # fmt: skip
    assert f"Sold 4 unit(s) of {milk}, lot {lot}" in sold

    await eventually(lambda: stocked(phone, 999), timeout=60)
    milk_stock = await eventually(lambda: stocked(milk, 20), timeout=60)
    row = next(line for line in milk_stock.splitlines() if lot in line)
    cells = [cell.strip() for cell in row.strip("│ ").split("│")]
    # Location, lot, expires, on hand, quarantined, damaged, recall
    assert cells == [store, lot, "2027-02-28", "20", "0", "0", "-"]

    async def unit_shows(serial: str, *expected: str) -> None:
        shown = ok(await lotline("unit", phone, serial))
        for text in expected:
            assert text in shown, shown

    await eventually(
        lambda: unit_shows(
            "IMEI-000500",
            f"{phone} / IMEI-000500: sold at {store}",
            f"Sold in S-{run_id} line 1",
            "customer CUST-7",
            f"receipt R-{run_id}",
            "item-sold",
        ),
        timeout=60,
    )
    # Without a token the unit is shown, but not who bought it.
    anonymous = ok(await lotline("unit", phone, "IMEI-000500", LOTLINE_OPERATOR_TOKEN_FILE="/none"))
    assert f"Sold in S-{run_id} line 1" in anonymous
    assert "CUST-7" not in anonymous
    # A recall of the milk lot: the store's 20 cartons go into quarantine.
    issued = ok(
        await lotline(
            "recall", "issue", milk, "--lot", lot, "--reason", "Listeria found",
            "--class", "I",
        )
    )  # fmt: skip
    recall_id = issued.split("Recall ", 1)[1].split()[0]
    assert f"Recall {recall_id} issued for {milk}" in issued

    async def quarantined() -> str:
        shown = ok(await lotline("recall", "show", recall_id))
        assert "Quarantined units: 20" in shown, shown
        return shown

    shown = await eventually(quarantined, timeout=60)
    assert f"Recall {recall_id} — class I — open" in shown
    assert "Issued by qa-anna" in shown
    row = next(line for line in shown.splitlines() if store in line and lot in line)
    assert [c.strip() for c in row.strip("│ ").split("│")][:3] == [store, lot, "20"]
    assert "Customers to contact: none" in shown  # read with the operator's token
    hidden = ok(await lotline("recall", "show", recall_id, LOTLINE_OPERATOR_TOKEN_FILE="/none"))
    assert "shown to staff and operators only" in hidden
    assert "Quarantined units: 20" in hidden
    await eventually(lambda: _quarantined_stock(lotline, milk), timeout=60)
    assert recall_id in ok(await lotline("recall", "list", "--sku", milk))
    one_line_error(
        await lotline("recall", "close", recall_id, "--token", STAFF_TOKEN),
        "the recall service said: 'desk' may read recalls but not change them (role staff; "
        "an operator token is needed) (HTTP 403)",
    )
    closed = ok(await lotline("recall", "close", recall_id, LOTLINE_OPERATOR_TOKEN=OPERATOR_TOKEN))
    assert f"Recall {recall_id} closed by qa-anna." in closed

    await unit_shows("IMEI-001099", f"{phone} / IMEI-001099: in_stock at {store}")
    await unit_shows("IMEI-000100", f"{phone} / IMEI-000100: in_stock at {store}")
    one_line_error(
        await lotline("unit", phone, "IMEI-001100"),
        "the serial registry said: no unit with serial 'IMEI-001100'",
    )


async def _quarantined_stock(lotline: Lotline, sku: str) -> None:
    shown = ok(await lotline("stock", sku))
    assert f"Stock of {sku}: 0 on hand, 20 quarantined, 1 location(s)" in shown, shown


async def test_mistakes_are_one_clear_line(lotline: Lotline, run_id: str) -> None:
    one_line_error(
        await lotline("products", "add", f"CLI-X-{run_id}", "--name", "X", "--tracking", "weird"),
        "Invalid value for '--tracking' / '-t': 'weird' is not one of 'serial', 'batch', "
        "'quantity'",
    )
    one_line_error(
        await lotline(
            "receive", f"CLI-X-{run_id}", "-l", "S1", "--serials", "IMEI-001099..IMEI-000100"
        ),
        "--serials: the range IMEI-001099..IMEI-000100 runs backwards",
    )
    one_line_error(
        await lotline("products", "add", f"CLI-X-{run_id}", "--name", "X", "-t", "batch",
                      "--gtin", "9521234543214"),
        "the catalog service said: ",
    )  # fmt: skip
    one_line_error(
        await lotline("stock", f"CLI-NONE-{run_id}"),
        f"the stock service said: no stock recorded for sku 'CLI-NONE-{run_id}' (HTTP 404)",
    )
    one_line_error(
        await lotline("sell", f"CLI-X-{run_id}", "-l", "S1", KAFKA_BOOTSTRAP_SERVERS="127.0.0.1:9"),
        "cannot publish to Kafka at 127.0.0.1:9 (",
    )
    unknown = gtin_for("22", run_id)
    one_line_error(
        await lotline("sell", "--scan", f"(01)0{unknown}(21)1", "-l", "S1"),
        f"no product in the catalog has GTIN 0{unknown}",
    )
    recall_issue = ("recall", "issue", f"CLI-X-{run_id}", "--lot", "L1", "--reason", "x",
                    "--class", "II")  # fmt: skip
    one_line_error(
        await lotline(*recall_issue, LOTLINE_OPERATOR_TOKEN_FILE=f"/nonexistent/{run_id}"),
        "--token: changing a recall needs an operator token: pass --token, set "
        f"LOTLINE_OPERATOR_TOKEN, or run `make run`, which writes one to /nonexistent/{run_id}",
    )
    one_line_error(
        await lotline(*recall_issue, "--token", "not-" + OPERATOR_TOKEN),
        "the recall service said: the token is not valid (HTTP 401)",
    )
    one_line_error(
        await lotline(
            "products", "add", f"CLI-Y-{run_id}", "--name", "Y", "-t", "quantity",
            LOTLINE_OPERATOR_TOKEN_FILE=f"/nonexistent/{run_id}",
        ),
        "--token: adding a product needs an operator token: pass --token",
    )  # fmt: skip
    one_line_error(
        await lotline("products", "add", f"CLI-Y-{run_id}", "--name", "Y", "-t", "quantity",
                      "--token", STAFF_TOKEN),
        "the catalog service said: 'desk' may not change products (role staff; an operator "
        "or catalog token is needed) (HTTP 403)",
    )  # fmt: skip
    one_line_error(
        await lotline("recall", "list", LOTLINE_RECALL_URL="http://127.0.0.1:9"),
        "cannot reach the recall service at http://127.0.0.1:9: is `make run` running?",
    )
