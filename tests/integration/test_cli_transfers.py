"""A transfer between two stores from the command line, against the running services: shipped
first expiry first, in transit in `lotline stock`, received short (the difference shown by
`lotline transfer show`), a recall issued while the goods were on the way that quarantines
them on arrival and counts them, and the lot's EPCIS export valid against GS1's schema."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from importlib import resources
from pathlib import Path

import jsonschema
import pytest
from test_cli import Lotline, gtin_for, lotline, ok  # noqa: F401 - a fixture

from support import eventually

pytestmark = pytest.mark.infra


async def test_a_transfer_received_short_while_its_lot_is_recalled(
    lotline: Lotline,  # noqa: F811 - the fixture imported above
    run_id: str,
    tmp_path: Path,
) -> None:
    milk, gtin = f"CLI-TMILK-{run_id}", gtin_for("24", run_id)
    source, destination, transfer = f"A-{run_id}", f"B-{run_id}", f"TR-{run_id}"
    today = datetime.now(UTC).date()
    ok(await lotline("products", "add", milk, "--name", "Milk", "--tracking", "batch",
                     "--gtin", gtin))  # fmt: skip
    ok(await lotline("receive", milk, "-l", source, "--lot", "LA", "-q", "10",
                     "--expires", str(today + timedelta(days=20))))  # fmt: skip
    ok(await lotline("receive", milk, "-l", source, "--lot", "LB", "-q", "6",
                     "--expires", str(today + timedelta(days=5))))  # fmt: skip

    async def stocked() -> None:
        assert f"Stock of {milk}: 16 on hand" in ok(await lotline("stock", milk))

    await eventually(stocked, timeout=60)

    # Eight of any lot: stock takes LB (first to expire) and two of LA.
    shipped = ok(await lotline("transfer", "ship", milk, "--from", source, "--to", destination,
                               "-q", "8", "-t", transfer, "--by", "ana"))  # fmt: skip
    assert f"Shipped 8 unit(s) of {milk} from {source} to {destination}" in shipped

    async def in_transit() -> str:
        shown = ok(await lotline("stock", milk))
        assert f"Stock of {milk}: 8 on hand, 0 quarantined, 2 location(s), 8 in transit" in shown
        return ok(await lotline("transfer", "show", transfer))

    shown = await eventually(in_transit, timeout=60)
    assert "in_transit" in shown
    assert "│ LB  │       6 │        - │" in shown, shown
    assert "│ LA  │       2 │        - │" in shown, shown

    # LA is recalled while two of its units are on the road.
    issued = ok(await lotline("recall", "issue", milk, "--lot", "LA", "--reason", "mould",
                              "--class", "II"))  # fmt: skip
    recall_id = issued.split("Recall ", 1)[1].split()[0]

    async def accounted(figure: str) -> None:
        shown = ok(await lotline("recall", "show", recall_id))
        assert f"Accounted for: {figure}" in shown, shown

    # The eight left at A are held; the two in transit are expected, not yet held.
    await eventually(lambda: accounted("8 of 10"), timeout=60)

    # One carton of LA fell off the truck: the receipt finds six LB and one LA.
    received = ok(await lotline("transfer", "receive", milk, "--at", destination,
                                "-t", transfer, "--lot", "LB=6", "--lot", "LA=1"))  # fmt: skip
    assert f"Received 7 unit(s) of {milk} at {destination}" in received

    async def arrived() -> str:
        shown = ok(await lotline("transfer", "show", transfer))
        assert "discrepancy" in shown, shown
        return shown

    shown = await eventually(arrived, timeout=60)
    assert "│ LA  │       2 │        1 │         -1 │" in shown, shown
    # The arrived LA unit went straight to quarantine, and the recall counts it.
    await eventually(lambda: accounted("9 of 10"), timeout=60)
    stock = ok(await lotline("stock", milk))
    assert f"Stock of {milk}: 6 on hand, 9 quarantined, 2 location(s)" in stock, stock

    target = tmp_path / "la.epcis.json"
    ok(await lotline("trace", "lot", milk, "LA", "--epcis", str(target)))
    document = json.loads(target.read_text())
    schema = resources.files("lotline.recall").joinpath("standards/epcis-json-schema.json")
    validator = jsonschema.Draft7Validator(json.loads(schema.read_text("utf-8")))
    assert not [error.message for error in validator.iter_errors(document)]
    steps = [
        (e.get("bizStep"), e["disposition"], e["quantityList"][0]["quantity"])
        for e in document["epcisBody"]["eventList"]
        if e.get("lotline:documentType") == "transfer"
    ]
    # The arrival, then the quarantine it went to (both under the transfer).
    assert steps == [
        ("shipping", "in_transit", 2),
        ("receiving", "in_progress", 1),
        ("holding", "non_sellable_other", 1),
    ]


async def test_phones_transferred_with_a_serial_mixed_up(
    lotline: Lotline,  # noqa: F811 - the fixture imported above
    run_id: str,
) -> None:
    phone, gtin = f"CLI-TPHONE-{run_id}", gtin_for("25", run_id)
    source, destination, transfer = f"A-{run_id}", f"B-{run_id}", f"TRP-{run_id}"
    ok(await lotline("products", "add", phone, "--name", "Phone", "--tracking", "serial",
                     "--gtin", gtin))  # fmt: skip
    ok(await lotline("receive", phone, "-l", source, "--serials", "S-1..S-3"))

    async def registered() -> None:
        assert f"{phone} / S-2: in_stock at {source}" in ok(await lotline("unit", phone, "S-2"))

    await eventually(registered, timeout=60)
    ok(await lotline("transfer", "ship", phone, "--from", source, "--to", destination,
                     "--serials", "S-1,S-2", "-t", transfer))  # fmt: skip

    async def on_the_way() -> None:
        shown = ok(await lotline("unit", phone, "S-2"))
        assert f"in transit to {destination} (transfer {transfer})" in shown, shown

    await eventually(on_the_way, timeout=60)
    # The box held S-1 and S-3 (scanned), not S-2.
    ok(await lotline("transfer", "receive", "--at", destination, "-t", transfer,
                     "--scan", f"(01)0{gtin}(21)S-1", "--scan", f"(01)0{gtin}(21)S-3"))  # fmt: skip

    async def arrived() -> str:
        shown = ok(await lotline("transfer", "show", transfer))
        assert "Serials shipped, not received: S-2" in shown, shown
        return shown

    shown = await eventually(arrived, timeout=60)
    assert "Serials received, not shipped: S-3" in shown

    async def units_moved() -> None:
        s3 = ok(await lotline("unit", phone, "S-3"))
        assert f"{phone} / S-3: in_stock at {destination}" in s3, s3
        assert "it was not shipped in this transfer" in s3
        assert f"in transit to {destination}" in ok(await lotline("unit", phone, "S-2"))

    await eventually(units_moved, timeout=60)
