"""The stock room's commands: bad input refused in one red line before anything is sent, and
what is sent is the contract's event, published as store-ops."""

from __future__ import annotations

from typing import Any

import pytest
from typer.testing import CliRunner

from lotline.cli import store_ops
from lotline.cli.app import app
from lotline.cli.clients import publisher_of
from lotline.events import (
    AdjustmentDirection,
    AdjustmentReason,
    DisposalMethod,
    EventData,
    ReorderPointSet,
    StockAdjusted,
    StockCounted,
    StockDisposed,
)

runner = CliRunner()
ENV = {"COLUMNS": "200"}


@pytest.mark.parametrize(
    ("args", "says"),
    [
        (["count", "M1", "-l", "S1"], "say what was found"),
        (["count", "-l", "S1", "-q", "3"], "give the product's SKU or scan the items"),
        (["count", "M1", "-l", "S1", "--lot", "L1"], "--lot: 'L1' is not LOT=UNITS"),
        (["count", "M1", "-l", "S1", "--lot", "L1=x"], "'x' is not a number of units"),
        (["count", "M1", "-l", "S1", "--lot", "L1=1", "--lot", "L1=2"], "counted twice"),
        (["count", "M1", "-l", "S1", "--lot", "L1=-1"], "cannot be negative"),
        (
            ["count", "P1", "-l", "S1", "--serials", "A,B", "--lot", "L1=1", "--lot", "L2=1"],
            "--serials: give them with one --lot",
        ),
        (["count", "P1", "-l", "S1", "--serials", "A,A"], "given twice: A"),
        (["adjust", "M1", "-l", "S1", "-q", "2"], "Missing option '--reason'"),
        (["adjust", "M1", "-l", "S1", "--reason", "lost"], "'lost' is not one"),
        (
            ["adjust", "P1", "-l", "S1", "--reason", "theft", "-q", "3", "--serials", "A,B"],
            "serials lists 2 serials but quantity is 3",
        ),
        (["dispose", "M1", "-l", "S1", "--method", "destroyed"], "Missing option '--reference'"),
        (
            ["dispose", "M1", "-l", "S1", "--method", "burnt", "--reference", "C1"],
            "'burnt' is not one",
        ),
        (
            [
                "dispose",
                "M1",
                "-l",
                "S1",
                "--method",
                "destroyed",
                "--reference",
                "C1",
                "--recall",
                "RC 1",
            ],
            "--recall: String should match pattern",
        ),
        (["stock", "reorder-point", "M1", "-l", "S1"], "give --point UNITS, or --clear"),
        (
            ["stock", "reorder-point", "M1", "-l", "S1", "--point", "3", "--clear"],
            "give --point UNITS, or --clear",
        ),
        (
            ["stock", "reorder-point", "M1", "-l", "S1", "--point", "-1"],
            "greater than or equal to 0",
        ),
    ],
)
def test_bad_input_is_one_line_and_a_non_zero_exit(args: list[str], says: str) -> None:
    result = runner.invoke(app, args, env=ENV)
    assert result.exit_code != 0
    assert result.stdout == ""
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("error: ")
    assert says in lines[0]


@pytest.fixture
def sent(monkeypatch: pytest.MonkeyPatch) -> list[EventData]:
    """What a command hands to the publisher (the broker is exercised in tests/integration)."""
    events: list[EventData] = []
    monkeypatch.setattr(store_ops, "_send", lambda event, event_id: events.append(event))
    return events


def run(*args: str) -> str:
    result = runner.invoke(app, list(args), env=ENV)
    assert result.exit_code == 0, result.output
    return result.stdout


def test_a_count_per_lot_and_units_without_a_lot(sent: list[Any]) -> None:
    said = run("count", "M1", "-l", "S1", "--lot", "L1=7", "--lot", "L2=0", "-q", "2")
    [event] = sent
    assert isinstance(event, StockCounted)
    assert [(lot.lot_code, lot.quantity) for lot in event.lots] == [("L1", 7), ("L2", 0), (None, 2)]
    assert event.serials is None
    assert "Counted 9 unit(s) of M1 at S1" in said


def test_a_count_of_serials_and_a_count_of_nothing(sent: list[Any]) -> None:
    run("count", "P1", "-l", "S1", "--serials", "IMEI-01..IMEI-03", "--lot", "L1=0")
    run("count", "P1", "-l", "S2", "-q", "0", "--count-id", "C-9")
    found, nothing = sent
    assert found.serials == ["IMEI-01", "IMEI-02", "IMEI-03"]
    assert [(lot.lot_code, lot.quantity) for lot in found.lots] == [("L1", 3)]
    assert (nothing.count_id, [lot.quantity for lot in nothing.lots]) == ("C-9", [0])


def test_an_adjustment_goes_in_for_found_and_out_otherwise(sent: list[Any]) -> None:
    run("adjust", "M1", "-l", "S1", "--reason", "found", "-q", "2", "--lot", "L1")
    run("adjust", "P1", "-l", "S1", "--reason", "theft", "--serials", "A,B", "--note", "shelf")
    found, stolen = sent
    assert isinstance(found, StockAdjusted)
    assert (found.direction, found.quantity, found.lot_code) == (AdjustmentDirection.IN, 2, "L1")
    assert (stolen.direction, stolen.reason) == (AdjustmentDirection.OUT, AdjustmentReason.THEFT)
    assert (stolen.quantity, stolen.serials, stolen.note) == (2, ["A", "B"], "shelf")


def test_a_disposal_names_its_reference_and_recall(sent: list[Any]) -> None:
    said = run(
        "dispose", "M1", "-l", "S1", "--method", "returned_to_supplier", "--reference",
        "RMA-7", "-q", "4", "--lot", "L1", "--recall", "RC-1",
    )  # fmt: skip
    [event] = sent
    assert isinstance(event, StockDisposed)
    assert (event.method, event.reference, event.recall_id, event.quantity) == (
        DisposalMethod.RETURNED_TO_SUPPLIER,
        "RMA-7",
        "RC-1",
        4,
    )
    assert "returned to the supplier for recall RC-1" in said


def test_a_reorder_point_is_set_and_cleared(sent: list[Any]) -> None:
    run("stock", "reorder-point", "M1", "-l", "S1", "--point", "10", "--by", "ana")
    run("stock", "reorder-point", "M1", "-l", "S1", "--clear")
    set_, cleared = sent
    assert isinstance(set_, ReorderPointSet)
    assert (set_.reorder_point, set_.set_by, cleared.reorder_point) == (10, "ana", None)


def test_the_store_operations_are_published_as_store_ops() -> None:
    topics = {"stock-counted", "stock-adjusted", "stock-disposed", "reorder-point-set"}
    assert publisher_of(topics) == "store-ops"
    for topic in topics:
        assert publisher_of({topic}) == "store-ops"


def test_low_stock_lists_what_is_short() -> None:
    with store_ops.views.console.capture() as captured:
        store_ops.low_stock([{"sku": "M1", "location": "S1", "on_hand": 3, "reorder_point": 10}])
    shown = captured.get()
    assert "Below the reorder point (1)" in shown
    assert "│ M1 " in shown
    assert "│ 7 " in shown
