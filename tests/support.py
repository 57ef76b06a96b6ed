"""Small helpers the tests share (fixtures live in conftest.py)."""

from __future__ import annotations

import asyncio
import os
import time
import uuid
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


# The people every service a test starts knows (LOTLINE_TOKENS, given by `start_service`
# unless a test passes its own), and how to act as each: the operator may change recalls and
# products and read customers, staff may read customers only.
OPERATOR_TOKEN = "tests-operator-" + "0" * 24
STAFF_TOKEN = "tests-staff-" + "0" * 24
TEST_TOKENS = f"tests:operator:{OPERATOR_TOKEN},tests-staff:staff:{STAFF_TOKEN}"
OPERATOR_ENV = {"LOTLINE_TOKENS": TEST_TOKENS}
AS_OPERATOR = {"Authorization": f"Bearer {OPERATOR_TOKEN}"}
AS_STAFF = {"Authorization": f"Bearer {STAFF_TOKEN}"}


def unique_gtin() -> str:
    """A GTIN (14 digits) in the restricted-circulation range, new at every call: a GTIN
    belongs to one product, and the database keeps earlier runs' products."""
    from stdnum import ean

    body = "2" + f"{uuid.uuid4().int % 10**11:011d}"
    return "0" + body + ean.calc_check_digit(body)


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
