"""Events a POS sends with the official CloudEvents SDK, in binary and structured mode, are
applied by a real stock service; an event without an id is dead-lettered, never given one."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest
from cloudevents.core.bindings import kafka
from cloudevents.core.formats.json import JSONFormat
from cloudevents.core.v1.event import CloudEvent as SdkEvent

from lotline.events import EventType, ItemReceived, ItemSold, ProductRegistered, Tracking

from support import eventually

pytestmark = pytest.mark.infra

TOPIC = EventType.ITEM_SOLD.topic


def till_sale(sku: str, sale_id: str, quantity: int, **attributes: Any) -> SdkEvent:
    data = ItemSold(
        sku=sku,
        sale_id=sale_id,
        line=1,
        location="S1",
        quantity=quantity,
        sold_at=datetime.now(UTC),
    )
    return SdkEvent(
        {
            "type": TOPIC,
            "source": "pos/sdk-till",
            "subject": sku,
            "datacontenttype": "application/json; charset=utf-8",
            "partitionkey": sku,
            **attributes,
        },
        data.model_dump(mode="json"),
    )


async def test_sdk_events_in_both_modes_are_applied_and_one_without_an_id_is_dead_lettered(  # type: ignore[no-untyped-def]
    bus, start_service, run_id
) -> None:
    stock = start_service("stock")
    sku = f"CE-{run_id}"
    await bus.publish(
        ProductRegistered(sku=sku, name="Salt", tracking=Tracking.QUANTITY),
        ItemReceived(receipt_id=f"R-{run_id}", location="S1", sku=sku, quantity=10),
    )
    binary = kafka.to_binary(
        till_sale(sku, f"T1-{run_id}", 3, id=f"sdk-till/{run_id}/1"), JSONFormat()
    )
    structured = kafka.to_structured(
        till_sale(sku, f"T2-{run_id}", 2, id=f"sdk-till/{run_id}/2"), JSONFormat()
    )
    # The SDK gives every event it builds an id, so the id-less ones are taken apart by hand.
    no_id = json.loads(structured.value)
    del no_id["id"]
    no_id["data"] = dict(no_id["data"], sale_id=f"T3-{run_id}", quantity=4)
    no_ce_id = kafka.to_binary(till_sale(sku, f"T4-{run_id}", 4), JSONFormat())
    records = [
        (binary.value, binary.headers),
        (structured.value, structured.headers),
        (json.dumps(no_id).encode(), structured.headers),
        (no_ce_id.value, {k: v for k, v in no_ce_id.headers.items() if k != "ce_id"}),
        # The till's retry of its first sale, same id: a copy, dropped.
        (binary.value, binary.headers),
    ]
    producer = await bus.producer(TOPIC)
    for value, headers in records:
        await producer.send_and_wait(TOPIC, value, key=sku.encode(), headers=list(headers.items()))
    # Lotline's own structured event after them, on the same partition: when it is applied,
    # everything before it has been read.
    marker = kafka.to_structured(till_sale(sku, f"T5-{run_id}", 1), JSONFormat())
    await producer.send_and_wait(
        TOPIC, marker.value, key=sku.encode(), headers=list(marker.headers.items())
    )

    async def applied() -> None:
        async with httpx.AsyncClient(base_url=stock.url) as client:
            response = await client.get(f"/stock/{sku}")
        assert response.status_code == 200, response.text
        # 10 received, 3 + 2 + 1 sold; only this count says the id-less sales were not
        # applied and the retry was applied once.
        assert response.json()["on_hand"] == 4

    await eventually(applied, timeout=60)

    async def dead_lettered() -> None:
        letters = {
            (h["lotline-dlq-partition"], h["lotline-dlq-offset"]): h
            for record in await bus.read_all(f"{TOPIC}.dlq")
            if record.key == sku.encode()
            for h in [{k: v.decode() for k, v in record.headers}]
            # Another test's serial registry may read item-sold too and dead-letter them again.
            if h["lotline-dlq-service"] == "stock"
        }
        fields = sorted(h["lotline-dlq-field"] for h in letters.values())
        assert fields == ["ce_id", "id"], letters
        assert all("required" in h["lotline-dlq-reason"] for h in letters.values())
        # The binary-mode letter keeps the attributes it came with, to be replayed as sent.
        (binary,) = [h for h in letters.values() if h["lotline-dlq-field"] == "ce_id"]
        assert binary["ce_type"] == "item-sold", binary

    await eventually(dead_lettered, timeout=60)
