"""Small helpers the tests share (fixtures live in conftest.py)."""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Callable
from typing import Any

import httpx


async def eventually(
    check: Callable[[], Any], timeout: float = 30.0, interval: float = 0.25
) -> Any:
    """Poll an (async) check until it stops raising AssertionError, then return its value.

    A dropped HTTP connection is polled through too: uvicorn closes idle keep-alive
    connections, and a client may reuse one at the moment it is closed."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            result = check()
            if asyncio.iscoroutine(result):
                result = await result
            return result
        except (AssertionError, httpx.TransportError):
            if time.monotonic() > deadline:
                raise
            await asyncio.sleep(interval)


# The operator the tests' recall services know (RECALL_OPERATOR_TOKENS), and how to act as it.
OPERATOR_TOKEN = "tests-operator-" + "0" * 24
OPERATOR_ENV = {"RECALL_OPERATOR_TOKENS": f"tests:operator:{OPERATOR_TOKEN}"}
AS_OPERATOR = {"Authorization": f"Bearer {OPERATOR_TOKEN}"}


async def consumer_lag(bootstrap: str, service: str, client_options: dict[str, Any]) -> int:
    """Records on the service's topics that its consumer group has not committed yet."""
    from aiokafka import AIOKafkaConsumer, TopicPartition
    from aiokafka.admin import AIOKafkaAdminClient

    from lotline.events import CONSUMED_BY, consumer_group

    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, **client_options)
    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap, enable_auto_commit=False, **client_options
    )
    await admin.start()
    try:
        await consumer.start()
        try:
            committed = await admin.list_consumer_group_offsets(consumer_group(service))
            await consumer._client.force_metadata_update()  # what partitions_for_topic reads
            partitions = [
                TopicPartition(event_type.topic, partition)
                for event_type in CONSUMED_BY[service]
                for partition in consumer.partitions_for_topic(event_type.topic) or ()
            ]
            assert len(partitions) == len(CONSUMED_BY[service]) * int(
                os.environ.get("KAFKA_PARTITIONS", "6")
            ), f"no metadata for the topics of {service}: {partitions}"
            ends = await consumer.end_offsets(partitions)
        finally:
            await consumer.stop()
    finally:
        await admin.close()
    lag = 0
    for tp in partitions:
        done = committed.get(tp)
        position = done.offset if done is not None and done.offset >= 0 else 0
        lag += max(0, ends[tp] - position)
    return lag
