"""`lotline warranty` refuses a bad claim in one line, and `lotline unit` shows the warranty."""

from __future__ import annotations

import pytest
from typer.testing import CliRunner

from lotline.cli import views
from lotline.cli.app import app

runner = CliRunner()


@pytest.mark.parametrize(
    ("args", "says"),
    [
        (["warranty", "claim", "P1", "-l", "S1", "--kind", "replacement", "--serial", "A"],
         "must name its replacement_serial"),
        (["warranty", "claim", "P1", "-l", "S1", "--kind", "repair"], "give the unit's --serial"),
        (["warranty", "claim", "P1", "-l", "S1", "--kind", "swap", "--serial", "A"],
         "'swap' is not one"),
        (["warranty", "claim", "P1", "-l", "S1", "--kind", "refund", "--serial", "A",
          "--replacement", "B"], "replacement_serial given for a refund claim"),
    ],
)  # fmt: skip
def test_a_bad_claim_is_one_line_and_a_non_zero_exit(args: list[str], says: str) -> None:
    result = runner.invoke(app, args, env={"COLUMNS": "200"})
    assert result.exit_code != 0
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert says in lines[0]


def test_a_unit_shows_its_warranty_and_its_replacement(capsys: pytest.CaptureFixture[str]) -> None:
    views.unit(
        {
            "sku": "P1",
            "serial": "NEW",
            "status": "sold",
            "location": "S1",
            "warranty": {
                "status": "in_warranty",
                "months": 12,
                "starts_on": "2026-11-22",
                "ends_on": "2027-11-22",
            },
            "replaces": "OLD",
            "history": [],
        }
    )
    out = capsys.readouterr().out
    assert "Warranty: in warranty, ends 2027-11-22 (12 months from 2026-11-22)" in out
    assert "Replaces serial OLD under warranty" in out
