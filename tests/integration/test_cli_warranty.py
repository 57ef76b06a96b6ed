"""`lotline warranty` against the running services: a product with warranty terms, a sale,
a replacement claimed by scanning the phone, and `lotline unit` / `warranty claims` showing
it; a claim on a unit never sold is refused by the registry, not by the CLI."""

from __future__ import annotations

import pytest
from conftest import EventBus
from test_cli import Lotline, gtin_for, lotline, ok  # noqa: F401 - lotline is a fixture

from lotline.events import decode

from support import eventually

pytestmark = pytest.mark.infra


async def test_a_replacement_claim_from_the_command_line(
    lotline: Lotline,  # noqa: F811 - the fixture imported above
    bus: EventBus,
    run_id: str,
) -> None:
    phone, gtin, store = f"CLI-WPHONE-{run_id}", gtin_for("22", run_id), f"STORE-{run_id}"
    added = ok(
        await lotline(
            "products", "add", phone, "--name", "Phone W", "--tracking", "serial",
            "--gtin", gtin, "--warranty-months", "24",
        )
    )  # fmt: skip
    assert phone in added
    ok(await lotline("receive", phone, "-l", store, "--serials", "W-1,W-2,W-3"))

    async def shown(serial: str, *says: str) -> str:
        result = await lotline("unit", phone, serial)
        assert result.returncode == 0, result.stderr
        for text in says:
            assert text in result.stdout, result.stdout
        return result.stdout

    await eventually(lambda: shown("W-3", "in_stock"), timeout=60)
    ok(await lotline("sell", phone, "-l", store, "--serial", "W-1", "--customer", "CUST-9"))
    await eventually(lambda: shown("W-1", "Warranty: in warranty, ends"), timeout=60)

    claimed = ok(
        await lotline(
            "warranty", "claim", "--scan", f"(01)0{gtin}(21)W-1", "-l", store,
            "--kind", "replacement", "--replacement", "W-2", "--problem", "dead screen",
            "--claim-id", f"WC-{run_id}",
        )
    )  # fmt: skip
    assert f"Warranty claim WC-{run_id} (replacement) on serial W-1" in claimed
    await eventually(lambda: shown("W-1", "Replaced by serial W-2", "warranty-claimed"), 60)
    new = await shown("W-2", "Replaces serial W-1", "Warranty: in warranty")
    assert "CUST-9" in new or "customer" not in new  # the customer is staff-only
    claims = ok(await lotline("warranty", "claims", phone, "W-1"))
    assert f"WC-{run_id}" in claims
    assert "replacement" in claims

    # W-3 was never sold: the CLI sends the claim, the registry refuses it on the contract.
    ok(
        await lotline(
            "warranty", "claim", phone, "-l", store, "--kind", "repair", "--serial", "W-3"
        )
    )

    async def refused() -> str:
        reasons = [
            event.data.reason.value
            for record in await bus.read_all("warranty-claim-refused")
            if record.key == phone.encode() and (event := decode(record.value)).data.serial == "W-3"
        ]
        assert reasons
        return reasons[0]

    assert await eventually(refused, timeout=60) == "not_sold"
    assert "No warranty claims" in ok(await lotline("warranty", "claims", phone, "W-3"))
