"""`lotline transfer`: bad input refused in one red line before anything is sent, what is
sent is the contract's event (published as store-ops), and `show` prints the difference."""

from __future__ import annotations

from typing import Any

import pytest
from typer.testing import CliRunner

from lotline.cli import transfers
from lotline.cli.app import app
from lotline.cli.clients import publisher_of
from lotline.events import EventData, TransferReceived, TransferShipped

runner = CliRunner()
ENV = {"COLUMNS": "200"}
GS1 = "(01)09521234543213(10)L7(21)IMEI-1"


@pytest.mark.parametrize(
    ("args", "says"),
    [
        (["transfer", "ship", "M1", "--from", "S1"], "Missing option '--to'"),
        (["transfer", "ship", "M1", "--from", "S1", "--to", "S2"], "say what is shipped"),
        (["transfer", "ship", "--from", "S1", "--to", "S2", "-q", "1"], "give the product's SKU"),
        (
            ["transfer", "ship", "M1", "--from", "S1", "--to", "S1", "-q", "1"],
            "to_location S1 is the location shipped from",
        ),
        (["transfer", "ship", "M1", "--from", "S1", "--to", "S2", "--lot", "L1"], "LOT=UNITS"),
        (
            ["transfer", "ship", "M1", "--from", "S1", "--to", "S2", "--lot", "L1=0"],
            "--lot",
        ),
        (
            ["transfer", "ship", "P1", "--from", "S1", "--to", "S2", "--serials", "A,A"],
            "given twice: A",
        ),
        (["transfer", "receive", "M1", "--at", "S2", "-q", "1"], "Missing option '--transfer-id'"),
        (["transfer", "receive", "M1", "--at", "S2", "-t", "TR-1"], "say what arrived"),
        (
            ["transfer", "receive", "M1", "--at", "S2", "-t", "TR 1", "-q", "1"],
            "--transfer-id: String should match pattern",
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
    events: list[EventData] = []
    monkeypatch.setattr(transfers, "_send", lambda event, event_id: events.append(event))
    return events


def run(*args: str) -> str:
    result = runner.invoke(app, list(args), env=ENV)
    assert result.exit_code == 0, result.output
    return result.stdout


def test_a_shipment_per_lot_and_of_any_lot(sent: list[Any]) -> None:
    said = run(
        "transfer", "ship", "M1", "--from", "S1", "--to", "S2", "--lot", "L1=4", "-q", "2",
        "-t", "TR-1", "--by", "ana",
    )  # fmt: skip
    [event] = sent
    assert isinstance(event, TransferShipped)
    assert [(lot.lot_code, lot.quantity) for lot in event.lots] == [("L1", 4), (None, 2)]
    assert (event.location, event.to_location, event.shipped_by) == ("S1", "S2", "ana")
    assert "Shipped 6 unit(s) of M1 from S1 to S2 (transfer TR-1)" in said


def test_a_shipment_of_serials_and_a_receipt_of_nothing(sent: list[Any]) -> None:
    run("transfer", "ship", "P1", "--from", "S1", "--to", "S2", "--serials", "A,B")
    run("transfer", "receive", "P1", "--at", "S2", "-t", "TR-1", "-q", "0")
    shipped, received = sent
    assert (shipped.serials, [lot.quantity for lot in shipped.lots]) == (["A", "B"], [2])
    assert shipped.transfer_id.startswith("TRF-")
    assert isinstance(received, TransferReceived)
    assert (received.lots, received.quantity) == ([], 0)


def test_a_receipt_by_scanning_each_item(sent: list[Any], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(transfers.Services, "sku_of_gtin", lambda self, gtin, sku=None: "PHONE")
    run("transfer", "receive", "--at", "S2", "-t", "TR-1", "--scan", GS1)
    [event] = sent
    assert (event.sku, event.serials) == ("PHONE", ["IMEI-1"])
    assert [(lot.lot_code, lot.quantity) for lot in event.lots] == [("L7", 1)]


def test_transfers_are_published_as_store_ops() -> None:
    assert publisher_of({"transfer-shipped", "transfer-received"}) == "store-ops"


def test_a_transfer_shows_shipped_against_received() -> None:
    view = {
        "transfer_id": "TR-1",
        "in_transit": 0,
        "skus": [
            {
                "sku": "M1",
                "status": "discrepancy",
                "from_location": "S1",
                "to_location": "S2",
                "shipped": [{"lot_code": "L2", "quantity": 5}, {"lot_code": "L1", "quantity": 2}],
                "received": [{"lot_code": "L2", "quantity": 5}, {"lot_code": "L1", "quantity": 1}],
                "serials_missing": ["B"],
            }
        ],
    }
    with transfers.views.console.capture() as captured:
        transfers.transfer_view(view)
    shown = captured.get()
    assert "Transfer TR-1, M1: S1 -> S2, discrepancy" in shown
    assert "│ L1  │       2 │        1 │         -1 │" in shown
    assert "Serials shipped, not received: B" in shown
