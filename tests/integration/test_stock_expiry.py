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
from lotline.events.topics import key_partition
from lotline.runtime.consumer import Publisher
from lotline.runtime.service import make_broker
from lotline.runtime.settings import Settings
from lotline.runtime.wal import WriteAheadLog
from lotline.stock.domain import Level
from lotline.stock.expiry import ExpiryWarnings, warning_event_id
from lotline.stock.store import StockStore, level_id

from support import eventually

pytestmark = pytest.mark.infra

CHECK_EVERY_S = "1"


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

    async def warned() -> Counter[tuple[Any, ...]]:
        """The warnings on the topic, each with how many records carry it."""
        found = Counter(
            (
                e.data.sku,
                e.data.location,
                e.data.lot_code,
                e.data.days_left,
                e.data.threshold_days,
                e.data.quantity_on_hand,
            )
            for e in await events_of(bus, EventType.LOT_EXPIRING, {milk, yogurt})
        )
        assert set(found) == expected
        return found

    await eventually(warned, timeout=90)
    # The records are there and the partitions settled: let both instances run several
    # more passes over the same lots, and nothing is sent again. (Before, a partition that
    # moved as the second instance joined may have been re-sent what its first owner
    # logged, under the same event ids: copies consumers drop.)
    await asyncio.sleep(2 * float(CHECK_EVERY_S))
    settled = await warned()
    await asyncio.sleep(5 * float(CHECK_EVERY_S))
    assert await warned() == settled
    assert max(settled.values()) <= 2, settled.most_common(3)
    for instance in both:
        assert instance.process is not None
        assert instance.process.poll() is None, instance.log_tail()


async def _received(url: str, sku: str, lots: int) -> None:
    assert len(await lots_on_hand(url, sku)) == lots


async def _one_flag(bus: Any, sku: str) -> list[Any]:
    flags = [e.data for e in await events_of(bus, EventType.SALE_FLAGGED, {sku})]
    assert len(flags) == 1, flags
    return flags


class BrokerDown:
    """The publish of a process that dies right after the log's insert: Kafka never got it."""

    async def send(self, messages: Any) -> None:
        raise ConnectionError("the process died before publishing")


async def test_warnings_logged_before_a_crash_are_published_once_by_the_next_owner(  # type: ignore[no-untyped-def]
    infra, bus, run_id
) -> None:
    """Against the real FerretDB and Kafka: an instance logs its warnings and dies before
    publishing them; the partitions' next owner restores the log, publishes them with the
    ids the first would have used, and its own passes send none of them again. Another
    instance, holding none of the partitions, sends nothing."""
    login = {name.lower(): value for name, value in infra.login_env("stock").items()}
    settings = Settings(kafka_bootstrap_servers=infra.kafka_bootstrap, **login)
    client = AsyncMongoClient(infra.mongodb_url, tz_aware=True)
    broker = make_broker(settings, client_id=f"lotline-stock-test-{run_id}")
    database = client[f"stock_expiry_{run_id.lower()}"]
    today = datetime.now(UTC).date()
    skus = [f"RACE-{n}-{run_id}" for n in range(8)]
    partition = {sku: key_partition(sku, settings.kafka_partitions) for sku in skus}
    levels = []
    for n, sku in enumerate(skus):
        level = Level(sku, "S1")
        for days in (2, 6, 25, 40):
            level.receive(n + 1, f"L{days}", today + timedelta(days=days), None)
        levels.append({"_id": level_id(sku, "S1"), **level.to_document()})

    def instance(wal: WriteAheadLog, owns: dict[str, int]) -> ExpiryWarnings:
        return ExpiryWarnings(StockStore(database, wal=wal), wal, owns.get, thresholds=(30, 7, 1))

    try:
        await broker.start()
        await database["levels"].insert_many(levels)
        dying = WriteAheadLog(database, BrokerDown())
        with pytest.raises(ConnectionError):
            await instance(dying, partition).check()
        # Nothing reached Kafka; an instance holding no partition of these SKUs sends nothing.
        await instance(WriteAheadLog(database, Publisher(broker)), {}).check()
        assert await events_of(bus, EventType.LOT_EXPIRING, set(skus)) == []

        heir = WriteAheadLog(database, Publisher(broker))
        await heir.restore(set(partition.values()))  # as on its partitions' assignment
        for _ in range(2):
            await instance(heir, partition).check()

        async def published() -> list[Any]:
            found = await events_of(bus, EventType.LOT_EXPIRING, set(skus))
            assert len(found) == len(skus) * 3
            return found

        found = await eventually(published, timeout=60)
        by_lot = Counter((e.data.sku, e.data.location, e.data.lot_code) for e in found)
        assert set(by_lot.values()) == {1}, by_lot.most_common(3)
        assert {(e.data.lot_code, e.data.threshold_days) for e in found} == {
            ("L2", 7),
            ("L6", 7),
            ("L25", 30),
        }
        assert {e.id for e in found} == {
            str(warning_event_id(f"{e.data.sku} S1 {e.data.lot_code} {e.data.threshold_days}"))
            for e in found
        }
    finally:
        await broker.stop()
        await client.drop_database(database.name)
        await client.close()
