"""`make bench --quick` as CI runs it: every scenario against the test stack, verified exact.

Only correctness is asserted; the figures of a shared CI machine are not a pass or fail."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

pytestmark = pytest.mark.infra

ROOT = Path(__file__).resolve().parents[2]
SCENARIOS = {"sales", "latency", "receipt", "recall", "scale-out"}


@pytest.mark.timeout(1800)
def test_quick_bench_verifies_every_scenario(infra: Any, tmp_path: Path) -> None:
    out = tmp_path / "bench"
    result = subprocess.run(
        [sys.executable, "-m", "lotline.bench", "--quick", "--infra", "env", "--out", str(out)],
        env={**os.environ, **infra.env(), "COLUMNS": "160"},
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=1700,
        check=False,
    )
    report = result.stdout[-6000:] + result.stderr[-3000:]
    assert result.returncode == 0, report
    figures = json.loads((out / "results.json").read_text())
    assert set(figures["scenarios"]) == SCENARIOS, report
    for name, scenario in figures["scenarios"].items():
        assert scenario["verified"], f"{name}: {scenario}"
        assert scenario["checked"] > 0, name
    assert {"kafka", "database"} <= set(figures["ceilings"])
    assert (out / "chart.png").stat().st_size > 0
