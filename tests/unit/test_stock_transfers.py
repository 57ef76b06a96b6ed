"""Transfers in stock against in-memory state: shipping picks first expiry first and puts the
units in transit at the destination; a receipt books what arrived and shows the difference;
a receipt may come before its shipment; a recall reaching stock in transit quarantines it on
arrival, and the lots' accounts follow the units so the recall counts each once."""

from __future__ import annotations

from dataclasses import replace
from datetime import date, timedelta
from typing import Any

import pytest
from test_stock_handlers import SOLD_AT, Stock, product, recall, receipt

from lotline.events import (
    EventType,
    Tracking,
    TransferReceived,
    TransferredLot,
    TransferShipped,
)
from lotline.stock.domain import Level, Transfer, attribute_receipt
from lotline.stock.handlers import StockHandlers

SHIPPED_AT = SOLD_AT + timedelta(hours=1)
RECEIVED_AT = SHIPPED_AT + timedelta(hours=5)


class TransferStock(Stock):
    """The stock service's consumers with the transfer topics, as lotline.stock.app wires them."""

    def __init__(self) -> None:
        super().__init__()
        handlers = StockHandlers(self.store, self.settings)
        template = self.consumers[EventType.STOCK_COUNTED]
        for event_type, handler in (
            (EventType.TRANSFER_SHIPPED, handlers.on_transfers_shipped),
            (EventType.TRANSFER_RECEIVED, handlers.on_transfers_received),
        ):
            self.consumers[event_type] = replace(template, event_type=event_type, handler=handler)

    async def transfer(self, transfer_id: str = "TR-1") -> dict[str, Any]:
        (found,) = await self.store.transfer(transfer_id)
        return found


def shipped(
    sku: str,
    lots: dict[str | None, int],
    *,
    serials: list[str] | None = None,
    source: str = "S1",
    to: str = "S2",
    transfer_id: str = "TR-1",
) -> TransferShipped:
    return TransferShipped(
        sku=sku,
        transfer_id=transfer_id,
        location=source,
        to_location=to,
        lots=[TransferredLot(lot_code=code, quantity=n) for code, n in lots.items()],
        serials=serials,
        shipped_at=SHIPPED_AT,
    )


def received(
    sku: str,
    lots: dict[str | None, int],
    *,
    serials: list[str] | None = None,
    at: str = "S2",
    transfer_id: str = "TR-1",
) -> TransferReceived:
    return TransferReceived(
        sku=sku,
        transfer_id=transfer_id,
        location=at,
        lots=[TransferredLot(lot_code=code, quantity=n) for code, n in lots.items()],
        serials=serials,
        received_at=RECEIVED_AT,
    )


def figures(
    lots: dict[str | None, dict[str, Any]], *names: str
) -> dict[str | None, tuple[int, ...]]:
    return {code: tuple(lot[name] for name in names) for code, lot in lots.items()}


@pytest.fixture
async def stock() -> TransferStock:
    shop = TransferStock()
    await shop.send(
        product("MILK", Tracking.BATCH),
        product("PHONE", Tracking.SERIAL),
        source="lotline/catalog",
    )
    await shop.send(
        receipt("MILK", 10, "L1", date(2027, 3, 1)),
        receipt("MILK", 5, "L2", date(2027, 2, 1), receipt_id="R-2"),
    )
    return shop


async def test_a_shipment_picks_first_expiry_first_and_is_in_transit_at_the_destination(
    stock: TransferStock,
) -> None:
    ship = shipped("MILK", {None: 7})
    await stock.send(ship, source="store-ops")
    await stock.send(ship, source="store-ops")  # resent under a new id: applied once
    source = await stock.lots("MILK", "S1")
    assert figures(source, "on_hand", "transferred_out") == {"L1": (8, 2), "L2": (0, 5)}
    destination = await stock.level("MILK", "S2")
    assert (destination["on_hand"], destination["in_transit"]) == (0, 7)
    lots = {lot["code"]: lot for lot in destination["lots"]}
    assert figures(lots, "in_transit", "on_hand") == {"L2": (5, 0), "L1": (2, 0)}
    # The destination's new lots carry the source's expiry, so FEFO there is right.
    assert lots["L2"]["expires_on"] == "2027-02-01"
    transfer = await stock.transfer()
    assert transfer["status"] == "in_transit"
    assert (transfer["from_location"], transfer["to_location"]) == ("S1", "S2")
    assert transfer["shipped"] == [
        {"lot_code": "L2", "quantity": 5},
        {"lot_code": "L1", "quantity": 2},
    ]


async def test_a_short_receipt_shows_the_difference_and_leaves_transit(
    stock: TransferStock,
) -> None:
    await stock.send(shipped("MILK", {None: 7}), source="store-ops")
    # The lot was not read on arrival: the units fill the shipped lots in order.
    await stock.send(received("MILK", {None: 6}), source="store-ops")
    destination = await stock.level("MILK", "S2")
    assert (destination["on_hand"], destination["in_transit"]) == (6, 0)
    lots = {lot["code"]: lot for lot in destination["lots"]}
    assert figures(lots, "on_hand", "transferred_in", "missing_in_transit") == {
        "L2": (5, 5, 0),
        "L1": (1, 1, 1),
    }
    transfer = await stock.transfer()
    assert transfer["status"] == "discrepancy"
    assert transfer["difference"] == [{"lot_code": "L1", "quantity": -1}]
    movements = [
        m for m in await stock.store.lot_movements("MILK", "L1") if m["document_type"] == "transfer"
    ]
    assert [(m["kind"], m["location"], m["quantity"]) for m in movements] == [
        ("shipped", "S1", 2),
        ("transfer_received", "S2", 1),
    ]
    assert (movements[0]["to_location"], movements[1]["from_location"]) == ("S2", "S1")


async def test_a_receipt_in_full_closes_the_transfer_without_a_difference(
    stock: TransferStock,
) -> None:
    await stock.send(shipped("MILK", {"L1": 4}), source="store-ops")
    await stock.send(received("MILK", {"L1": 4}), source="store-ops")
    assert (await stock.transfer())["status"] == "received", await stock.transfer()
    assert (await stock.transfer())["difference"] == []
    assert figures(await stock.lots("MILK", "S2"), "on_hand", "in_transit") == {"L1": (4, 0)}


async def test_a_receipt_before_its_shipment_is_matched_when_the_shipment_comes(
    stock: TransferStock,
) -> None:
    await stock.send(received("MILK", {"L1": 3}), source="store-ops")
    assert (await stock.transfer())["status"] == "received_not_shipped"
    await stock.send(shipped("MILK", {"L1": 4}), source="store-ops")
    lots = await stock.lots("MILK", "S2")
    assert figures(lots, "on_hand", "in_transit", "missing_in_transit") == {"L1": (3, 0, 1)}
    assert (await stock.lots("MILK", "S1"))["L1"]["on_hand"] == 6
    assert (await stock.transfer())["difference"] == [{"lot_code": "L1", "quantity": -1}]


async def test_a_recall_reaching_stock_in_transit_quarantines_it_on_arrival(
    stock: TransferStock,
) -> None:
    await stock.send(shipped("MILK", {"L1": 4}), source="store-ops")
    stock.publisher.clear()
    await stock.send(recall("MILK", "L1"))
    reports = {q.location: q for q in stock.sent(EventType.STOCK_QUARANTINED)}
    # Held 6 at the source; 4 on the way to S2, which answers for them from now on.
    assert {loc: (q.quantity, q.received) for loc, q in reports.items()} == {
        "S1": (6, 6),
        "S2": (0, 4),
    }
    stock.publisher.clear()
    await stock.send(received("MILK", {"L1": 4}), source="store-ops")
    lots = await stock.lots("MILK", "S2")
    assert figures(lots, "on_hand", "quarantined", "in_transit") == {"L1": (0, 4, 0)}
    (arrival,) = stock.sent(EventType.STOCK_QUARANTINED)
    assert (arrival.location, arrival.recall_id, arrival.quantity, arrival.received) == (
        "S2",
        "RC-1",
        4,
        4,
    )
    kinds = [
        m["kind"] for m in await stock.store.lot_movements("MILK", "L1") if m["at"] == RECEIVED_AT
    ]
    assert sorted(kinds) == ["quarantined", "transfer_received"]


async def test_a_recalled_lot_shipped_moves_its_account_with_it(stock: TransferStock) -> None:
    await stock.send(recall("MILK", "L1"))
    stock.publisher.clear()
    await stock.send(shipped("MILK", {"L1": 10}, to="DC"), source="store-ops")
    reports = {q.location: q for q in stock.sent(EventType.STOCK_QUARANTINED)}
    assert {loc: (q.quantity, q.received) for loc, q in reports.items()} == {
        "S1": (0, 0),
        "DC": (0, 10),
    }


async def test_serials_received_that_were_not_shipped_show_on_the_transfer(
    stock: TransferStock,
) -> None:
    await stock.send(receipt("PHONE", 3, serials=["A", "B", "C"], receipt_id="R-P"))
    await stock.send(shipped("PHONE", {None: 2}, serials=["A", "B"]), source="store-ops")
    await stock.send(received("PHONE", {None: 2}, serials=["A", "C"]), source="store-ops")
    transfer = await stock.transfer()
    assert (transfer["serials_missing"], transfer["serials_unexpected"]) == (["B"], ["C"])
    assert transfer["status"] == "discrepancy"
    assert (await stock.level("PHONE", "S2"))["on_hand"] == 2


async def test_goods_received_elsewhere_are_missing_where_they_were_sent(
    stock: TransferStock,
) -> None:
    await stock.send(shipped("MILK", {"L1": 4}), source="store-ops")
    await stock.send(received("MILK", {"L1": 4}, at="S3"), source="store-ops")
    assert figures(await stock.lots("MILK", "S2"), "in_transit", "missing_in_transit") == {
        "L1": (0, 4)
    }
    assert (await stock.lots("MILK", "S3"))["L1"]["on_hand"] == 4
    transfer = await stock.transfer()
    assert (transfer["status"], transfer["received_location"]) == ("discrepancy", "S3")


async def test_a_transfer_of_a_product_stock_does_not_know_waits_for_it() -> None:
    shop = TransferStock()
    deferred = await shop.send(shipped("NEW", {None: 1}), source="store-ops")
    assert len(deferred) == 1


def test_units_whose_lot_was_not_read_fill_the_shipped_lots_in_order() -> None:
    assert attribute_receipt({None: 6}, {"L2": 5, "L1": 2}) == {"L2": 5, "L1": 1}
    assert attribute_receipt({"L1": 2, None: 4}, {"L2": 3, "L1": 2}) == {"L1": 2, "L2": 3, None: 1}
    assert attribute_receipt({None: 2}, None) == {None: 2}


def test_shipping_from_a_recalled_lot_takes_its_quarantine_first() -> None:
    level = Level("MILK", "S1")
    level.receive(5, "L1", None, None)
    level.quarantine_lot("L1", "RC-1")
    picks, quarantine = level.ship({"L1": 5}, SOLD_AT.date())
    assert [(p.lot_code, p.quantity) for p in picks] == [("L1", 5)]
    assert quarantine is not None
    assert quarantine.quantity == 0
    assert (level.lots["L1"].on_hand, level.lots["L1"].accounted_received) == (0, 0)


def test_a_transfer_document_round_trips() -> None:
    transfer = Transfer(
        "TR-1",
        "MILK",
        "S1",
        "S2",
        shipped={"L1": 2, None: 1},
        received={"L1": 2},
        received_location="S2",
        shipped_at=SHIPPED_AT,
        received_at=RECEIVED_AT,
    )
    assert Transfer.from_document(transfer.to_document()) == transfer
    assert transfer.difference() == {None: -1}
