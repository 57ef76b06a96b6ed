"""The command line refuses bad input in one red line, before it talks to anything."""

from __future__ import annotations

import pytest
from typer.testing import CliRunner

from lotline.cli.app import app

runner = CliRunner()


@pytest.mark.parametrize(
    ("args", "says"),
    [
        (["products", "add", "P1", "--name", "Phone", "--tracking", "weird"], "'weird' is not one"),
        (
            ["receive", "P1", "-l", "S1", "--serials", "IMEI-001099..IMEI-000100"],
            "--serials: the range IMEI-001099..IMEI-000100 runs backwards",
        ),
        (["receive", "P1", "-l", "S1", "--lot", "L1", "--expires", "31/12/2026"], "--expires"),
        (["receive", "P1", "-l", "S1"], "--quantity: say how many"),
        (["receive", "-l", "S1", "-q", "2"], "give the product's SKU or scan it"),
        (["sell", "--scan", "(01)09521234543214(10)X", "-l", "S1"], "check digit"),
        (["sell", "P1"], "Missing option '--location'"),
        (
            ["sell", "P1", "-l", "S1", "--serial", "IMEI-1", "-q", "2"],
            "sells one unit, not quantity 2",
        ),
        (["return", "P1", "-l", "S1", "--reason", "bored"], "'bored' is not one"),
        (["recall", "issue", "P1", "--reason", "r", "--class", "IV"], "'IV' is not one"),
        (["recall", "issue", "P1", "--reason", "r", "--class", "I"], "name what is recalled"),
        (["nonsense"], "No such command 'nonsense'"),
    ],
)
def test_bad_input_is_one_line_and_a_non_zero_exit(args: list[str], says: str) -> None:
    result = runner.invoke(app, args, env={"COLUMNS": "200"})
    assert result.exit_code != 0
    assert result.stdout == ""
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("error: ")
    assert says in lines[0]
    assert "Traceback" not in result.output


def test_help_speaks_to_a_store_worker() -> None:
    result = runner.invoke(app, ["receive", "--help"], env={"COLUMNS": "200"})
    assert result.exit_code == 0
    assert "Book goods that arrived" in result.stdout
    assert "IMEI-000100..IMEI-001099" in result.stdout
