"""Transfers in the serial registry against in-memory state: units shipped are in transit to
the destination, then in stock there once received, each with a history entry; a unit
received that was not shipped says so; one shipped and not received stays in transit; a
recalled unit stays recalled wherever it goes."""

from __future__ import annotations

from dataclasses import replace
from datetime import timedelta

import pytest
from test_serial_handlers import RECEIVED_AT, Registry, product, recall, receipt

from lotline.events import (
    EventType,
    Tracking,
    TransferReceived,
    TransferredLot,
    TransferShipped,
    UnitStatus,
)
from lotline.serials.handlers import SerialHandlers

SHIPPED_AT = RECEIVED_AT + timedelta(days=1)
ARRIVED_AT = SHIPPED_AT + timedelta(hours=6)


class TransferRegistry(Registry):
    """The registry's consumers with the transfer topics, as lotline.serials.app wires them."""

    def __init__(self) -> None:
        super().__init__()
        handlers = SerialHandlers(self.store)
        template = self.consumers[EventType.ITEM_RETURNED]
        for event_type, handler in (
            (EventType.TRANSFER_SHIPPED, handlers.on_transfers_shipped),
            (EventType.TRANSFER_RECEIVED, handlers.on_transfers_received),
        ):
            self.consumers[event_type] = replace(template, event_type=event_type, handler=handler)


def shipped(*serials: str, sku: str = "PHONE") -> TransferShipped:
    return TransferShipped(
        sku=sku,
        transfer_id="TR-1",
        location="S1",
        to_location="S2",
        lots=[TransferredLot(quantity=len(serials))],
        serials=list(serials),
        shipped_at=SHIPPED_AT,
    )


def received(*serials: str, at: str = "S2") -> TransferReceived:
    return TransferReceived(
        sku="PHONE",
        transfer_id="TR-1",
        location=at,
        lots=[TransferredLot(quantity=len(serials))],
        serials=list(serials),
        received_at=ARRIVED_AT,
    )


@pytest.fixture
async def registry() -> TransferRegistry:
    shop = TransferRegistry()
    await shop.send(product("PHONE"), product("SALT", Tracking.QUANTITY), source="lotline/catalog")
    await shop.send(receipt("A", "B", "C"))
    return shop


async def test_units_shipped_are_in_transit_then_in_stock_where_they_arrived(
    registry: TransferRegistry,
) -> None:
    ship = shipped("A", "B")
    await registry.send(ship, source="store-ops")
    await registry.send(ship, source="store-ops")  # resent under a new id: applied once
    a = await registry.unit("A")
    assert (a.status, a.location, a.in_transit_to, a.transfer_id) == (
        UnitStatus.IN_STOCK,
        "S1",
        "S2",
        "TR-1",
    )
    assert [e.type for e in a.history].count(EventType.TRANSFER_SHIPPED) == 1
    await registry.send(received("A", "B"), source="store-ops")
    a = await registry.unit("A")
    assert (a.location, a.in_transit_to) == ("S2", None)
    assert a.history[-1].what == "received at S2 in transfer TR-1"
    assert a.history[-1].location == "S2"
    assert (await registry.unit("C")).location == "S1"


async def test_a_unit_received_not_shipped_says_so_and_one_not_received_stays_in_transit(
    registry: TransferRegistry,
) -> None:
    await registry.send(shipped("A", "B"), source="store-ops")
    await registry.send(received("A", "C"), source="store-ops")
    c = await registry.unit("C")
    assert c.location == "S2"
    assert "it was not shipped in this transfer (it was in_stock at S1)" in c.history[-1].what
    b = await registry.unit("B")
    assert (b.location, b.in_transit_to) == ("S1", "S2")


async def test_a_recalled_unit_stays_recalled_when_it_arrives(registry: TransferRegistry) -> None:
    await registry.send(shipped("A"), source="store-ops")
    await registry.send(recall(lots=("L1",)))
    await registry.send(received("A"), source="store-ops")
    a = await registry.unit("A")
    assert (a.location, a.recalled) == ("S2", True)


async def test_a_transfer_of_a_product_without_serials_changes_no_unit(
    registry: TransferRegistry,
) -> None:
    salt = TransferShipped(
        sku="SALT",
        transfer_id="TR-2",
        location="S1",
        to_location="S2",
        lots=[TransferredLot(quantity=3)],
        shipped_at=SHIPPED_AT,
    )
    assert await registry.send(salt, source="store-ops") == []
    assert await registry.send(shipped("X", sku="NEW"), source="store-ops") != []
