"""The stock room's `lotline` commands against the running services, published as store-ops:
a reorder point, a count by scanning the shelf, a write-off, `stock low`, and the disposal of
a recall's quarantine, which the recall then accounts for."""

from __future__ import annotations

import pytest
from test_cli import Lotline, gtin_for, lotline, ok, one_line_error  # noqa: F401 - a fixture

from support import eventually

pytestmark = pytest.mark.infra


async def test_the_stock_room_from_the_command_line(
    lotline: Lotline,  # noqa: F811 - the fixture imported above
    run_id: str,
) -> None:
    milk, gtin, store = f"CLI-OMILK-{run_id}", gtin_for("23", run_id), f"STORE-{run_id}"
    ok(await lotline("products", "add", milk, "--name", "Milk", "--tracking", "batch",
                     "--gtin", gtin))  # fmt: skip
    ok(await lotline("receive", milk, "-l", store, "--lot", "LA", "-q", "10"))
    ok(await lotline("receive", milk, "-l", store, "--lot", "LB", "-q", "6"))
    said = ok(await lotline("stock", "reorder-point", milk, "-l", store, "--point", "12"))
    assert f"Reorder point of {milk} at {store} set to 12 unit(s)." in said

    async def stocked(on_hand: int) -> str:
        shown = ok(await lotline("stock", milk))
        assert f"Stock of {milk}: {on_hand} on hand" in shown, shown
        return shown

    await eventually(lambda: stocked(16), timeout=60)
    assert milk not in ok(await lotline("stock", "low", "-l", store))

    # The shelf: two cartons of LA scanned one by one, and LB's six counted by hand.
    carton = f"(01)0{gtin}(10)LA"
    counted = ok(
        await lotline("count", "-l", store, "--scan", carton, "--scan", carton,
                      "--lot", "LB=6", "--count-id", f"C-{run_id}", "--by", "ana")
    )  # fmt: skip
    assert f"Counted 8 unit(s) of {milk} at {store} (6 of lot LB, 2 of lot LA" in counted
    await eventually(lambda: stocked(8), timeout=60)
    wrote_off = ok(await lotline("adjust", milk, "-l", store, "--reason", "damaged", "--lot", "LB"))
    assert f"Wrote off 1 unit(s) of {milk}, lot LB at {store} (damaged;" in wrote_off
    await eventually(lambda: stocked(7), timeout=60)

    async def low() -> None:
        shown = ok(await lotline("stock", "low", "-l", store))
        row = next(line for line in shown.splitlines() if milk in line)
        # SKU, location, on hand, reorder point, short
        assert [c.strip() for c in row.strip("│ ").split("│")] == [milk, store, "7", "12", "5"]

    await eventually(low, timeout=60)

    # LA is recalled: its two cartons go to quarantine and are destroyed, scanned.
    issued = ok(await lotline("recall", "issue", milk, "--lot", "LA", "--reason", "mould",
                              "--class", "II"))  # fmt: skip
    recall_id = issued.split("Recall ", 1)[1].split()[0]

    async def quarantined() -> None:
        shown = ok(await lotline("stock", milk))
        assert "2 quarantined" in shown, shown

    await eventually(quarantined, timeout=60)
    disposed = ok(
        await lotline("dispose", "--scan", carton, "-l", store, "-q", "2", "--method",
                      "destroyed", "--reference", f"CERT-{run_id}", "--recall", recall_id)
    )  # fmt: skip
    assert f"Disposed of 2 unit(s) of {milk}, lot LA at {store}: destroyed" in disposed

    # Ten received, two destroyed: the eight the count did not find are unaccounted for.
    async def accounted() -> None:
        shown = ok(await lotline("recall", "show", recall_id))
        assert "Accounted for: 2 of 10 (2 disposed of); closing it needs --reason" in shown

    await eventually(accounted, timeout=60)
    one_line_error(
        await lotline("recall", "close", recall_id),
        f"reason: recall {recall_id} accounts for 2 of 10 units: closing it needs a reason",
    )
    ok(await lotline("recall", "close", recall_id, "--reason", f"8 missing at count C-{run_id}"))
    shown = ok(await lotline("recall", "show", recall_id))
    assert f"Closed because: 8 missing at count C-{run_id}" in shown
