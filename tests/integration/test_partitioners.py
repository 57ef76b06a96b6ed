"""Safe whatever the producer's partitioner (issue 13, item 4). A till on confluent-kafka
(librdkafka: CRC32 by default, `consistent_random`) and a dock scanner on aiokafka (murmur2)
publish events of the same SKUs, some with no key at all, while two instances of stock and
two of the serial registry share the work. An event on another partition than its SKU's is
never applied there: stock moves it to the right partition, and every level and unit ends
exact, through either instance's API."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest
from confluent_kafka import Producer

from lotline.events import ItemReceived, ItemSold, Lot, ProductRegistered, Tracking, encode
from lotline.events.topics import key_partition

from support import eventually

pytestmark = pytest.mark.infra

PARTITIONS = 6  # the local stack's topics


def librdkafka_producer(infra: Any) -> Producer:
    """A POS on librdkafka with its default partitioner, logged in as `pos`."""
    login = infra.secrets.credentials("pos")
    return Producer(
        {
            "bootstrap.servers": infra.kafka_bootstrap,
            "security.protocol": "SASL_PLAINTEXT",
            "sasl.mechanism": "SCRAM-SHA-512",
            "sasl.username": login.username,
            "sasl.password": login.password.get_secret_value(),
            "enable.idempotence": True,
        }
    )


def crc32_partition(key: bytes) -> int:
    """Where librdkafka's `consistent_random` puts a key."""
    import zlib

    return zlib.crc32(key) % PARTITIONS


@pytest.mark.timeout(300)
async def test_two_instances_stay_exact_with_a_crc32_producer_beside_a_murmur2_one(  # type: ignore[no-untyped-def]
    bus, infra, start_service, run_id
) -> None:
    if infra.secrets is None:
        pytest.skip("needs the local stack's logins for the librdkafka producer")
    stocks = [start_service("stock"), start_service("stock")]
    registries = [start_service("serial-registry"), start_service("serial-registry")]
    # SKUs whose CRC32 partition differs from their murmur2 one: the case that breaks.
    candidates = (f"MIX-{run_id}-{n}" for n in range(1000))
    flours = [
        sku for sku in candidates if crc32_partition(sku.encode()) != key_partition(sku, PARTITIONS)
    ][:4]
    phones = [f"{sku}-P" for sku in flours]
    await bus.publish(
        *(ProductRegistered(sku=sku, name="Flour", tracking=Tracking.BATCH) for sku in flours),
        *(ProductRegistered(sku=sku, name="Phone", tracking=Tracking.SERIAL) for sku in phones),
    )
    # Receipts by the dock scanner (aiokafka, murmur2): the right partitions.
    await bus.publish(
        *(
            ItemReceived(sku=sku, receipt_id=f"R-{sku}", location="S1", quantity=20,
                         lot=Lot(code="L1"))
            for sku in flours
        ),
        *(
            ItemReceived(sku=sku, receipt_id=f"R-{sku}", location="S1", quantity=3,
                         serials=[f"{sku}-U{n}" for n in range(3)])
            for sku in phones
        ),
    )  # fmt: skip

    async with httpx.AsyncClient(timeout=30) as http:

        async def received() -> None:
            for sku in flours:
                level = (await http.get(f"{stocks[0].url}/stock/{sku}")).json()
                assert level.get("on_hand") == 20, level
            for sku in phones:
                unit = await http.get(f"{registries[0].url}/units/{sku}/{sku}-U2")
                assert unit.status_code == 200, unit.text

        await eventually(received, timeout=90)

        # The till, on librdkafka defaults: sales on CRC32's partitions, and a few with no
        # key at all (librdkafka then picks a partition at random).
        till = librdkafka_producer(infra)
        now = datetime.now(UTC)
        sent = 0
        for n, sku in enumerate(flours):
            for line in range(1, 6):  # five lines of one unit each
                sale = ItemSold(sku=sku, sale_id=f"T-{sku}", line=line, location="S1",
                                quantity=1, sold_at=now)  # fmt: skip
                message = encode(sale, source="till-7")
                key = None if line == 5 else message.key
                till.produce(message.topic, message.value, key=key, headers=message.headers)
                sent += 1
            phone = phones[n]
            sale = ItemSold(sku=phone, sale_id=f"T-{phone}", line=1, location="S1", quantity=1,
                            serial=f"{phone}-U0", customer_ref=f"C-{n}", sold_at=now)  # fmt: skip
            message = encode(sale, source="till-7")
            till.produce(message.topic, message.value, key=message.key, headers=message.headers)
            sent += 1
        assert await asyncio.to_thread(till.flush, 30) == 0
        # And the same SKUs from aiokafka (murmur2), interleaved.
        await bus.publish(
            *(
                ItemSold(sku=sku, sale_id=f"W-{sku}", line=1, location="S1", quantity=2,
                         sold_at=now)
                for sku in flours
            )
        )  # fmt: skip

        async def exact() -> None:
            for instance in stocks:  # either instance answers for every SKU
                for sku in flours:
                    level = (await http.get(f"{instance.url}/stock/{sku}")).json()
                    assert level.get("on_hand") == 20 - 5 - 2, (instance.url, sku, level)
                for sku in phones:
                    level = (await http.get(f"{instance.url}/stock/{sku}")).json()
                    assert level.get("on_hand") == 2, (instance.url, sku, level)
            for instance in registries:
                for sku in phones:
                    unit = (await http.get(f"{instance.url}/units/{sku}/{sku}-U0")).json()
                    assert unit["status"] == "sold", unit
                    assert sum(e["type"] == "item-sold" for e in unit["history"]) == 1

        await eventually(exact, timeout=90)
        # Moved by stock, never applied where it arrived: no sale counted twice later either.
        await asyncio.sleep(3)
        await exact()
        moved = [
            record
            for record in await bus.read_all("item-sold", timeout=60)
            if record.key is not None
            and record.key.decode() in set(flours) | set(phones)
            and any(name == "lotline-moved-from" for name, _ in record.headers)
        ]
        assert moved, "no sale was moved to its SKU's partition"
        assert all(
            record.partition == key_partition(record.key.decode(), PARTITIONS) for record in moved
        )
        assert sent == 4 * 6
