"""Expiry against the real Kafka and FerretDB: warnings once per lot and threshold with two
stock instances running, and expired lots left out of FEFO and flagged when sold."""

from __future__ import annotations

import asyncio
from collections import Counter
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from pymongo import AsyncMongoClient

from lotline.events import (
    BatchRecalled,
    Classification,
    EventType,
    ItemReceived,
    ItemSold,
    Lot,
    ProductRegistered,
    Tracking,
    decode,
)
from lotline.runtime.consumer import Publisher
from lotline.runtime.service import make_broker
from lotline.runtime.settings import Settings
from lotline.stock.domain import Level
from lotline.stock.expiry import ExpiryWarnings, LotOnHand, warning_event_id, warnings_due
from lotline.stock.store import StockStore, level_id

from support import eventually

pytestmark = pytest.mark.infra

CHECK_EVERY_S = "1"
# Long enough that no claim in flight is taken for an orphan while the passes race.
RESEND_AFTER_S = 600.0


def receipt(sku: str, location: str, code: str, days_left: int, quantity: int) -> ItemReceived:
    # The service counts days in UTC, as this does.
    expires_on = datetime.now(UTC).date() + timedelta(days=days_left)
    return ItemReceived(
        receipt_id=f"R-{sku}-{location}-{code}",
        location=location,
        sku=sku,
        quantity=quantity,
        lot=Lot(code=code, expires_on=expires_on),
    )


def sale(sku: str, sale_id: str, location: str, quantity: int, lot: str | None) -> ItemSold:
    return ItemSold(
        sku=sku,
        sale_id=sale_id,
        line=1,
        location=location,
        quantity=quantity,
        lot_code=lot,
        sold_at=datetime.now(UTC),
    )


async def lots_on_hand(url: str, sku: str) -> dict[tuple[str, str], int]:
    async with httpx.AsyncClient(base_url=url) as client:
        response = await client.get(f"/stock/{sku}")
    assert response.status_code == 200, response.text
    return {(lot["location"], lot["lot_code"]): lot["on_hand"] for lot in response.json()["lots"]}


async def events_of(bus: Any, event_type: EventType, skus: set[str]) -> list[Any]:
    # Shared topics grow over a test session: give reading them to the end some room.
    records = await bus.read_all(event_type.topic, timeout=30.0)
    keys = {sku.encode() for sku in skus}
    return [decode(r.value) for r in records if r.key in keys]


async def test_two_instances_warn_once_per_lot_and_threshold(  # type: ignore[no-untyped-def]
    bus, start_service, run_id
) -> None:
    milk, yogurt = f"EXP-MILK-{run_id}", f"EXP-YOG-{run_id}"
    # One instance books the store's state; it checks for warnings only as it starts, before
    # any of this run's lots exist, so the two instances below find the state complete.
    loader = start_service("stock", STOCK_EXPIRY_CHECK_INTERVAL_S="3600")
    await bus.publish(
        ProductRegistered(sku=milk, name="Milk 1L", tracking=Tracking.BATCH),
        ProductRegistered(sku=yogurt, name="Yogurt", tracking=Tracking.BATCH),
    )
    spread = [(f"L-D{d:02d}", d) for d in range(0, 31, 3)]  # 0, 3, ... 30 days left
    await bus.publish(
        receipt(milk, "S1", "L-20", 20, 6),
        receipt(milk, "S1", "L-05", 5, 4),
        receipt(milk, "S1", "L-01", 1, 2),
        receipt(milk, "S1", "L-45", 45, 9),
        receipt(milk, "S1", "L-SOLD", 3, 3),
        receipt(milk, "S1", "L-RECALLED", 5, 5),
        receipt(milk, "S2", "L-EXPIRED", -2, 5),
        receipt(milk, "S2", "L-05", 5, 8),
        receipt(milk, "S2", "L-10", 10, 10),
    )
    await eventually(lambda: _received(loader.url, milk, 9), timeout=90)
    await bus.publish(
        sale(milk, f"T1-{run_id}", "S1", 3, "L-SOLD"),
        # FEFO passes over the expired lot: the 3 come from L-05, the first sellable one.
        sale(milk, f"T2-{run_id}", "S2", 3, None),
        # The till scanned the expired lot: applied, and flagged.
        sale(milk, f"T3-{run_id}", "S2", 1, "L-EXPIRED"),
        BatchRecalled(
            sku=milk,
            recall_id=f"RC-{run_id}",
            lot_codes=["L-RECALLED"],
            reason="Seal broken",
            classification=Classification.II,
            issued_by="qa",
            issued_at=datetime.now(UTC),
        ),
    )

    async def settled() -> None:
        on_hand = await lots_on_hand(loader.url, milk)
        assert on_hand[("S1", "L-SOLD")] == 0
        assert on_hand[("S1", "L-RECALLED")] == 0
        assert (on_hand[("S2", "L-EXPIRED")], on_hand[("S2", "L-05")]) == (4, 5), on_hand
        assert on_hand[("S2", "L-10")] == 10

    await eventually(settled, timeout=90)
    (flag,) = await eventually(lambda: _one_flag(bus, milk), timeout=60)
    assert (flag.reason, flag.lot_code, flag.quantity, flag.sale_id) == (
        "expired",
        "L-EXPIRED",
        1,
        f"T3-{run_id}",
    )
    expired_on = datetime.now(UTC).date() - timedelta(days=2)
    assert flag.detail == f"lot L-EXPIRED expired on {expired_on}"
    loader.stop()

    # Two instances, started at once, both checking every second.
    both = await asyncio.gather(
        *(
            asyncio.to_thread(
                start_service,
                "stock",
                STOCK_EXPIRY_WARNING_DAYS="30,7,1",
                STOCK_EXPIRY_CHECK_INTERVAL_S=CHECK_EVERY_S,
            )
            for _ in range(2)
        )
    )
    # Lots that arrive while both run: whichever instance's pass comes first warns.
    await bus.publish(*(receipt(yogurt, "S3", code, days, days + 1) for code, days in spread))
    expected = {
        (milk, "S1", "L-20", 20, 30, 6),
        (milk, "S1", "L-05", 5, 7, 4),
        (milk, "S1", "L-01", 1, 1, 2),
        (milk, "S2", "L-05", 5, 7, 5),
        (milk, "S2", "L-10", 10, 30, 10),
        *(
            (yogurt, "S3", code, days, 1 if days <= 1 else 7 if days <= 7 else 30, days + 1)
            for code, days in spread
        ),
    }

    async def warned() -> list[tuple[Any, ...]]:
        found = [
            (
                e.data.sku,
                e.data.location,
                e.data.lot_code,
                e.data.days_left,
                e.data.threshold_days,
                e.data.quantity_on_hand,
            )
            for e in await events_of(bus, EventType.LOT_EXPIRING, {milk, yogurt})
        ]
        assert set(found) == expected
        return found

    await eventually(warned, timeout=90)
    # Let both instances run several more passes over the same lots: nothing is sent again.
    await asyncio.sleep(5 * float(CHECK_EVERY_S))
    found = await warned()
    assert Counter(found).most_common(1)[0][1] == 1, Counter(found).most_common(3)
    assert len(found) == len(expected)
    for instance in both:
        assert instance.process is not None
        assert instance.process.poll() is None, instance.log_tail()


async def _received(url: str, sku: str, lots: int) -> None:
    assert len(await lots_on_hand(url, sku)) == lots


async def _one_flag(bus: Any, sku: str) -> list[Any]:
    flags = [e.data for e in await events_of(bus, EventType.SALE_FLAGGED, {sku})]
    assert len(flags) == 1, flags
    return flags


async def test_passes_racing_in_two_instances_publish_each_warning_once(  # type: ignore[no-untyped-def]
    infra, bus, run_id
) -> None:
    """The race itself, made certain: two instances' passes over the same lots at once,
    each with its own MongoDB client and Kafka producer, then a claim whose owner died
    before publishing it, which the other instance re-sends."""
    login = {name.lower(): value for name, value in infra.login_env("stock").items()}
    settings = Settings(kafka_bootstrap_servers=infra.kafka_bootstrap, **login)
    clients = [AsyncMongoClient(infra.mongodb_url, tz_aware=True) for _ in range(2)]
    brokers = [make_broker(settings, client_id=f"lotline-stock-test-{n}") for n in range(2)]
    database = f"stock_expiry_{run_id.lower()}"
    today = datetime.now(UTC).date()
    skus = [f"RACE-{n}-{run_id}" for n in range(8)]
    levels = []
    for n, sku in enumerate(skus):
        level = Level(sku, "S1")
        for days in (2, 6, 25, 40):
            level.receive(n + 1, f"L{days}", today + timedelta(days=days), None)
        levels.append({"_id": level_id(sku, "S1"), **level.to_document()})
    try:
        for broker in brokers:
            await broker.start()
        await clients[0][database]["levels"].insert_many(levels)
        instances = [
            ExpiryWarnings(
                client[database],
                StockStore(client[database]),
                Publisher(broker),
                thresholds=(30, 7, 1),
                relay_grace_s=RESEND_AFTER_S,
            )
            for client, broker in zip(clients, brokers, strict=True)
        ]
        for _ in range(3):
            await asyncio.gather(*(instance.check() for instance in instances))

        # A lot received since; instance 0 claims its warning and dies before publishing.
        late = Level(skus[0], "S2")
        late.receive(4, "L-LATE", today + timedelta(days=3), None)
        (orphan,) = warnings_due(
            [LotOnHand(skus[0], "S2", "L-LATE", today + timedelta(days=3), 4)], (30, 7, 1), today
        )
        await instances[0]._claim([orphan])
        # Until it has waited RESEND_AFTER_S, the claim may still be on its way: left alone.
        await instances[1].check()
        assert await _unpublished(clients[1][database]) == 1
        # Once it has, the next instance to check sends it.
        instances[1].relay_grace = timedelta(0)
        await instances[1].check()

        async def published() -> list[Any]:
            found = await events_of(bus, EventType.LOT_EXPIRING, set(skus))
            assert len(found) == len(skus) * 3 + 1
            return found

        found = await eventually(published, timeout=60)
        by_lot = Counter((e.data.sku, e.data.location, e.data.lot_code) for e in found)
        assert set(by_lot.values()) == {1}, by_lot.most_common(3)
        assert {(e.data.lot_code, e.data.threshold_days) for e in found} == {
            ("L2", 7),
            ("L6", 7),
            ("L25", 30),
            ("L-LATE", 7),
        }
        assert {e.id for e in found} == {
            str(
                warning_event_id(f"{e.data.sku} {e.data.location} {e.data.lot_code} 7")
                if e.data.threshold_days == 7
                else warning_event_id(f"{e.data.sku} S1 {e.data.lot_code} 30")
            )
            for e in found
        }
        assert await _unpublished(clients[0][database]) == 0
    finally:
        for broker in brokers:
            await broker.stop()
        await clients[0].drop_database(database)
        for client in clients:
            await client.close()


async def _unpublished(db: Any) -> int:
    return len([doc async for doc in db["expiry_warnings"].find({"published": False})])
