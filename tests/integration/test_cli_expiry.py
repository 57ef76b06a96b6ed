"""`lotline stock expiring` against the real stock service."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from lotline.events import ItemReceived, Lot, ProductRegistered, Tracking

from support import eventually

pytestmark = pytest.mark.infra

ROOT = Path(__file__).resolve().parents[2]


async def test_stock_expiring_lists_lots_near_expiry_in_every_store(  # type: ignore[no-untyped-def]
    bus, start_service, run_id
) -> None:
    stock = start_service("stock")
    env = {**os.environ, "LOTLINE_STOCK_URL": stock.url, "COLUMNS": "200"}

    async def lotline(*args: str) -> subprocess.CompletedProcess[str]:
        return await asyncio.to_thread(
            subprocess.run,
            [sys.executable, "-m", "lotline.cli", *args],
            env=env,
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=120,
        )

    milk = f"CLI-EXP-{run_id}"
    today = datetime.now(UTC).date()
    await bus.publish(ProductRegistered(sku=milk, name="Milk 1L", tracking=Tracking.BATCH))
    lots = [("S-NORTH", "L-GONE", -1, 3), ("S-NORTH", "L-WEEK", 5, 12), ("S-SOUTH", "L-SOON", 2, 7)]
    lots.append(("S-SOUTH", "L-LATER", 20, 40))
    await bus.publish(
        *(
            ItemReceived(
                receipt_id=f"R-{run_id}-{code}",
                sku=milk,
                location=store,
                quantity=quantity,
                lot=Lot(code=code, expires_on=today + timedelta(days=days)),
            )
            for store, code, days, quantity in lots
        )
    )

    async def listed() -> list[list[str]]:
        result = await lotline("stock", "expiring", "--days", "7")
        assert result.returncode == 0, result.stderr
        assert "Lots expiring within 7 day(s)" in result.stdout
        rows = [
            [cell.strip() for cell in line.strip("│ ").split("│")]
            for line in result.stdout.splitlines()
            if milk in line
        ]
        assert len(rows) == 3, result.stdout
        return rows

    rows = await eventually(listed, timeout=60)
    # Expires, days left, SKU, location, lot, on hand: soonest first, across both stores.
    assert rows == [
        [str(today - timedelta(days=1)), "expired", milk, "S-NORTH", "L-GONE", "3"],
        [str(today + timedelta(days=2)), "2", milk, "S-SOUTH", "L-SOON", "7"],
        [str(today + timedelta(days=5)), "5", milk, "S-NORTH", "L-WEEK", "12"],
    ]
    south = await lotline("stock", "expiring", "--days", "30", "--location", "S-SOUTH")
    assert [line.split("│")[5].strip() for line in south.stdout.splitlines() if milk in line] == [
        "L-SOON",
        "L-LATER",
    ]

    # `lotline stock SKU` still shows one product.
    shown = await lotline("stock", milk)
    assert shown.returncode == 0, shown.stderr
    assert f"Stock of {milk}: 62 on hand" in shown.stdout

    bad = await lotline("stock", "expiring", "--days", "-3")
    assert bad.returncode != 0
    (line,) = bad.stderr.strip().splitlines()
    assert line.startswith("error: Invalid value for '--days'")
