"""Stock moves serial stock as the serial registry moves its units (issue 12): a warranty
claim's replacement leaves on-hand and its faulty unit is held as damaged, a claim the
registry refused is undone whichever arrives first, and units the registry refused are not
expected by a recall's account of their lot. The handlers run on the in-memory database."""

from __future__ import annotations

from datetime import UTC, date, datetime
from typing import Any

import pytest
from memory_db import memory_consumers
from test_stock_handlers import Stock, product, recall, receipt, rejection

from lotline.events import (
    ClaimKind,
    ClaimRefusal,
    EventType,
    RejectReason,
    Tracking,
    WarrantyClaimed,
    WarrantyClaimRefused,
)
from lotline.stock.handlers import REGISTRY_SOURCE, StockHandlers

CLAIMED_AT = datetime(2026, 12, 1, 10, 0, tzinfo=UTC)
DESK = "after-sales"


class Shop(Stock):
    """Stock with the warranty consumers `lotline.stock.app` registers."""

    def __init__(self) -> None:
        super().__init__()
        handlers = StockHandlers(self.store, self.settings)
        any_consumer = next(iter(self.consumers.values()))
        self.consumers.update(
            memory_consumers(
                "stock",
                {
                    EventType.WARRANTY_CLAIMED: (handlers.on_warranty_claims, None),
                    EventType.WARRANTY_CLAIM_REFUSED: (
                        handlers.on_warranty_claims_refused,
                        None,
                    ),
                },
                db=self.db,
                publisher=self.publisher,
                settings=self.settings,
                owned=any_consumer.owned,
                wal=self.wal,
            )
        )


@pytest.fixture
async def shop() -> Shop:
    stock = Shop()
    await stock.send(
        product("PHONE", Tracking.SERIAL),
        product("SALT", Tracking.QUANTITY),
        source="lotline/catalog",
    )
    await stock.send(
        receipt("PHONE", 2, "L1", date(2030, 1, 1), serials=["IMEI-1", "IMEI-2"]),
        receipt("PHONE", 1, "L2", date(2029, 1, 1), receipt_id="R-2", serials=["IMEI-3"]),
    )
    return stock


def claim(kind: ClaimKind, claim_id: str = "W-1") -> WarrantyClaimed:
    return WarrantyClaimed(
        sku="PHONE",
        claim_id=claim_id,
        serial="IMEI-0",
        location="S1",
        kind=kind,
        replacement_serial="IMEI-3" if kind is ClaimKind.REPLACEMENT else None,
        claimed_at=CLAIMED_AT,
    )


def refused(claim_id: str = "W-1") -> WarrantyClaimRefused:
    return WarrantyClaimRefused(
        sku="PHONE",
        claim_id=claim_id,
        serial="IMEI-0",
        location="S1",
        kind=ClaimKind.REPLACEMENT,
        reason=ClaimRefusal.OUTSIDE_WARRANTY,
        detail="the warranty ended",
    )


def held(lots: dict[str | None, dict[str, object]]) -> dict[str | None, tuple[object, ...]]:
    return {
        code: (lot["on_hand"], lot["damaged"], lot["returned"], lot.get("replaced", 0))
        for code, lot in lots.items()
    }


async def claim_movements(shop: Shop) -> list[dict[str, Any]]:
    """The movements warranty claims made in L2 and outside any lot."""
    found = []
    for code in ("L2", None):
        for movement in await shop.store.lot_movements("PHONE", code):  # type: ignore[arg-type]
            if movement["document_type"] == "warranty_claim":
                found.append(movement)
    return found


async def test_a_replacement_takes_a_unit_off_hand_and_holds_the_faulty_one(shop: Shop) -> None:
    await shop.send(claim(ClaimKind.REPLACEMENT), source=DESK)
    await shop.send(claim(ClaimKind.REPLACEMENT), source=DESK)  # resent under a new id
    lots = await shop.lots("PHONE", "S1")
    # First expiry first: L2's unit is given; the faulty unit is held, damaged, without a lot.
    assert held(lots) == {"L1": (2, 0, 0, 0), "L2": (0, 0, 0, 1), None: (0, 1, 1, 0)}
    level = await shop.level("PHONE", "S1")
    assert level["on_hand"] == 2
    kinds = sorted(
        (m["kind"], m["lot_code"], m["quantity"], m["document_type"], m["document_id"])
        for m in await claim_movements(shop)
    )
    assert kinds == [
        ("replaced", "L2", 1, "warranty_claim", "W-1"),
        ("returned", None, 1, "warranty_claim", "W-1"),
    ]


async def test_a_refund_holds_the_faulty_unit_and_a_repair_moves_nothing(shop: Shop) -> None:
    await shop.send(claim(ClaimKind.REFUND), claim(ClaimKind.REPAIR, "W-2"), source=DESK)
    assert held(await shop.lots("PHONE", "S1")) == {
        "L1": (2, 0, 0, 0),
        "L2": (1, 0, 0, 0),
        None: (0, 1, 1, 0),
    }


async def test_a_claim_the_registry_refused_is_undone_whichever_comes_first(shop: Shop) -> None:
    await shop.send(claim(ClaimKind.REPLACEMENT), source=DESK)
    await shop.send(refused(), source=REGISTRY_SOURCE)
    await shop.send(refused(), source=REGISTRY_SOURCE)  # re-derived under a new id
    await shop.send(refused("W-2"), source=REGISTRY_SOURCE)  # before its claim
    await shop.send(claim(ClaimKind.REPLACEMENT, "W-2"), source=DESK)
    # Not the registry's: a refusal from anyone else moves nothing.
    await shop.send(claim(ClaimKind.REPLACEMENT, "W-3"), source=DESK)
    await shop.send(refused("W-3"), source="someone-else")
    lots = await shop.lots("PHONE", "S1")
    assert held(lots) == {"L1": (2, 0, 0, 0), "L2": (0, 0, 0, 1), None: (0, 1, 1, 0)}
    level = await shop.level("PHONE", "S1")
    assert [(c["claim_id"], c["refused"]) for c in level["claims"]] == [
        ("W-1", True),
        ("W-2", True),
        ("W-3", False),
    ]
    undone = [
        (m["kind"], m["quantity"], m["document_id"])
        for m in await claim_movements(shop)
        if m["kind"] == "claim_refused"
    ]
    assert sorted(undone) == [("claim_refused", 1, "W-1"), ("claim_refused", 1, "W-1")]


async def test_units_the_registry_refused_are_not_expected_by_the_recall(shop: Shop) -> None:
    await shop.send(recall("PHONE", "L1"))
    shop.publisher.clear()
    # One of L1's two units was a duplicate: the refusal reports the lot again, and its
    # account no longer expects that unit (received 2, refused 1).
    await shop.send(
        rejection(RejectReason.DUPLICATE_SERIAL, 1, serials=["IMEI-2"]), source=REGISTRY_SOURCE
    )
    [report] = shop.sent(EventType.STOCK_QUARANTINED)
    assert (report.lot_code, report.quantity, report.received) == ("L1", 1, 1)
