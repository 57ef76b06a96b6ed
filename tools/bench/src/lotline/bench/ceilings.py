"""The ceilings of this machine, measured in the same run: Kafka alone and the database alone.

Kafka: Kafka's own ProducerPerformance / ConsumerPerformance (the JVM client, from the
kafka-tools jar the local stack already has), and a raw aiokafka loop, the client the
services use. The aiokafka figures are the ceiling the ratios use: a Python service cannot
consume faster than its client library can, whatever the broker does.

Database: PyMongo async doing exactly the writes Lotline makes, with no Kafka and no
logic in between: stock's whole-level ReplaceOne by _id in parts of 50, the serial
registry's unit inserts (10,000 a command, two commands in flight), its per-unit UpdateOne
by _id in parts of 50 (a sale), and one streamed read of a product's units by lot (what the
serial registry does to answer a recall: the contact list). For reference only, one
update_many flagging every unit of a product's lots: what a lot recall cost when it wrote
each unit, which Lotline no longer does (it saves the recall's scope, one document).

Every client logs in (SASL) with the options it is given; Kafka's JVM tools get the same
login in a client properties file only their owner can read, deleted afterwards.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import subprocess
import tempfile
import time
import uuid
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from aiokafka import AIOKafkaConsumer
from aiokafka.admin import NewTopic
from pymongo import AsyncMongoClient, InsertOne, ReplaceOne, UpdateOne

from lotline.bench.kafka_io import admin_client, producer

BULK_PART = 50
INSERT_CHUNK = 10_000


@dataclass
class KafkaCeiling:
    message_bytes: int
    records: int
    aiokafka_produce_per_s: float
    aiokafka_consume_per_s: float
    java_produce_per_s: float | None = None
    java_consume_per_s: float | None = None
    java_note: str = ""

    @property
    def per_s(self) -> float:
        """What a Python pipeline through this broker can pass: the slower aiokafka side."""
        return min(self.aiokafka_produce_per_s, self.aiokafka_consume_per_s)


@dataclass
class DatabaseCeiling:
    level_replaces_per_s: float
    unit_inserts_per_s: float
    unit_updates_per_s: float
    # A streamed pass over a product's units by lot: the serial registry's recall answer.
    unit_reads_per_s: float
    # Reference only: flagging each unit with one update_many, what a lot recall no longer does.
    unit_flag_update_many_per_s: float
    levels: int
    units: int

    def sale_lines_per_s(self, serial_share: float) -> float:
        """Sale lines per second if each line costs one level write, and a serial line
        also one unit update, on the same server (no reads, no Kafka)."""
        per_line = 1 / self.level_replaces_per_s + serial_share / self.unit_updates_per_s
        return 1 / per_line


def as_dict(ceiling: KafkaCeiling | DatabaseCeiling) -> dict[str, Any]:
    figures = asdict(ceiling)
    if isinstance(ceiling, KafkaCeiling):
        figures["ceiling_per_s"] = ceiling.per_s
    return figures


# ------------------------------------------------------------------------------------- Kafka


async def measure_kafka(
    bootstrap: str, login: dict[str, Any], libs: Path | None, message_bytes: int, records: int
) -> KafkaCeiling:
    """`login`: aiokafka's security options, a principal that may create topics and groups."""
    topic = f"lotline-bench-ceiling-{uuid.uuid4().hex[:8]}"
    admin = await admin_client(bootstrap, login)
    try:
        await admin.create_topics([NewTopic(topic, 6, 1)])
        produce = await _aiokafka_produce(bootstrap, login, topic, message_bytes, records)
        consume = await _aiokafka_consume(bootstrap, login, topic, records)
        ceiling = KafkaCeiling(message_bytes, records, produce, consume)
        if libs is None:
            ceiling.java_note = "Kafka's jars not found: the JVM tools were not run"
        else:
            java_topic = f"{topic}-java"
            await admin.create_topics([NewTopic(java_topic, 6, 1)])
            try:
                with java_client_config(login) as config:
                    ceiling.java_produce_per_s = await asyncio.to_thread(
                        _java_produce, libs, bootstrap, config, java_topic, message_bytes, records
                    )
                    ceiling.java_consume_per_s = await asyncio.to_thread(
                        _java_consume, libs, bootstrap, config, java_topic, records
                    )
            except RuntimeError as exc:
                ceiling.java_note = str(exc)[:500]
            finally:
                await admin.delete_topics([java_topic])
        return ceiling
    finally:
        await admin.delete_topics([topic])
        await admin.close()


async def _aiokafka_produce(
    bootstrap: str, login: dict[str, Any], topic: str, size: int, records: int
) -> float:
    client = producer(bootstrap, login)
    await client.start()
    try:
        # A topic just created: wait for its metadata outside the timed part.
        await client.partitions_for(topic)
        value = b"x" * size
        keys = [f"SKU-{n % 1000:04d}".encode() for n in range(1000)]
        started = time.monotonic()
        futures = [await client.send(topic, value, key=keys[n % 1000]) for n in range(records)]
        await asyncio.gather(*futures)
        return records / (time.monotonic() - started)
    finally:
        await client.stop()


async def _aiokafka_consume(
    bootstrap: str, login: dict[str, Any], topic: str, records: int
) -> float:
    """A consumer like the services' (a group, batches of 500 records), reading everything."""
    consumer = AIOKafkaConsumer(
        topic,
        bootstrap_servers=bootstrap,
        group_id=f"{topic}-aiokafka",
        auto_offset_reset="earliest",
        enable_auto_commit=False,
        max_partition_fetch_bytes=16 * 1024 * 1024,
        **login,
    )
    await consumer.start()
    try:
        seen = 0
        started: float | None = None
        deadline = time.monotonic() + 300
        while seen < records and time.monotonic() < deadline:
            batch = await consumer.getmany(timeout_ms=500, max_records=500)
            count = sum(len(items) for items in batch.values())
            if count and started is None:
                started = time.monotonic()
            seen += count
        if started is None or seen < records:
            raise RuntimeError(f"aiokafka consumed only {seen} of {records} records")
        return seen / (time.monotonic() - started)
    finally:
        await consumer.stop()


def java_client_properties(login: dict[str, Any]) -> str:
    """The JVM client's settings for aiokafka's login options (PLAINTEXT or SASL_PLAINTEXT;
    TLS would need a trust store the bench does not have)."""
    protocol = str(login.get("security_protocol", "PLAINTEXT"))
    if protocol.endswith("SSL"):
        raise RuntimeError(f"the JVM tools were not run: {protocol} needs a trust store")
    lines = [f"security.protocol={protocol}"]
    if protocol.startswith("SASL"):
        mechanism = str(login["sasl_mechanism"])
        module = (
            "org.apache.kafka.common.security.plain.PlainLoginModule"
            if mechanism == "PLAIN"
            else "org.apache.kafka.common.security.scram.ScramLoginModule"
        )
        username = _jaas_quoted(str(login["sasl_plain_username"]))
        password = _jaas_quoted(str(login["sasl_plain_password"]))
        lines += [
            f"sasl.mechanism={mechanism}",
            f'sasl.jaas.config={module} required username="{username}" password="{password}";',
        ]
    return "\n".join(lines) + "\n"


def _jaas_quoted(value: str) -> str:
    # A JAAS quoted string, inside a Java properties value (where a backslash escapes too).
    return value.replace("\\", "\\\\\\\\").replace('"', '\\\\"')


@contextlib.contextmanager
def java_client_config(login: dict[str, Any]) -> Iterator[Path]:
    """The login in a client properties file for Kafka's tools: mode 0600 from its creation
    (it holds a password), deleted afterwards."""
    handle, name = tempfile.mkstemp(prefix="lotline-bench-kafka-", suffix=".properties")
    path = Path(name)
    try:
        with os.fdopen(handle, "w") as file:
            file.write(java_client_properties(login))
        yield path
    finally:
        path.unlink(missing_ok=True)


def _java(libs: Path, main: str, args: list[str], timeout: float = 300) -> str:
    command = ["java", "-Xmx256m", "-cp", f"{libs}/*", main, *args]
    try:
        result = subprocess.run(
            command, capture_output=True, text=True, timeout=timeout, check=False
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise RuntimeError(f"{main.rsplit('.', 1)[-1]} failed: {exc}") from exc
    if result.returncode != 0:
        tail = "\n".join((result.stdout + result.stderr).splitlines()[-10:])
        raise RuntimeError(f"{main.rsplit('.', 1)[-1]} exited {result.returncode}: {tail}")
    return result.stdout


def _java_produce(
    libs: Path, bootstrap: str, config: Path, topic: str, size: int, records: int
) -> float:
    output = _java(
        libs,
        "org.apache.kafka.tools.ProducerPerformance",
        [
            "--topic", topic,
            "--num-records", str(records),
            "--record-size", str(size),
            "--throughput", "-1",
            "--producer.config", str(config),
            "--producer-props",
            f"bootstrap.servers={bootstrap}",
            "acks=all",
            "linger.ms=20",
            "batch.size=1048576",
        ],
    )  # fmt: skip
    # The last line: "N records sent, X records/sec (Y MB/sec), ..."
    found = re.findall(r"(\d+) records sent, ([\d.]+) records/sec", output)
    if not found:
        raise RuntimeError(f"ProducerPerformance said nothing readable: {output[-300:]}")
    return float(found[-1][1])


def _java_consume(libs: Path, bootstrap: str, config: Path, topic: str, records: int) -> float:
    output = _java(
        libs,
        "org.apache.kafka.tools.ConsumerPerformance",
        [
            "--bootstrap-server", bootstrap,
            "--topic", topic,
            "--messages", str(records),
            "--group", f"{topic}-java",
            "--consumer.config", str(config),
            "--timeout", "60000",
        ],
    )  # fmt: skip
    # A header, then: start.time, end.time, data.consumed.in.MB, MB.sec,
    # data.consumed.in.nMsg, nMsg.sec, rebalance.time.ms, fetch.time.ms, fetch.MB.sec,
    # fetch.nMsg.sec. fetch.nMsg.sec leaves the group join out, like the aiokafka loop.
    lines = [line for line in output.splitlines() if line and line[0].isdigit()]
    if not lines:
        raise RuntimeError(f"ConsumerPerformance said nothing readable: {output[-300:]}")
    fields = [field.strip() for field in lines[-1].split(",")]
    return float(fields[9] if len(fields) > 9 else fields[5])


# ---------------------------------------------------------------------------------- database


def _level_doc(n: int, version: int) -> dict[str, Any]:
    """Shaped like a stock level: a few lots, the streams it was applied from, an outbox."""
    return {
        "_id": f"BENCH-{n % 1000:04d} STORE-{n // 1000:03d}",
        "sku": f"BENCH-{n % 1000:04d}",
        "location": f"STORE-{n // 1000:03d}",
        "lots": [
            {
                "code": code,
                "expires_on": "2027-06-30",
                "on_hand": 100 - version,
                "quarantined": 0,
                "damaged": 0,
                "recall_id": None,
                "received": 100,
                "sold": version,
                "returned": 0,
            }
            for code in ("EARLY", "LATE")
        ],
        "on_hand": 200 - 2 * version,
        "quarantined": 0,
        "next_expiry": "2027-06-30",
        "version": version,
        "streams": {f"item-sold:{p}": 1000 * version + p for p in range(6)},
        "outbox": [],
    }


def _unit_doc(n: int, at: datetime) -> dict[str, Any]:
    """Shaped like a unit the serial registry inserts for a receipt."""
    return {
        "_id": f"BENCH-PHONE {n:015d}",
        "sku": "BENCH-PHONE",
        "serial": f"{n:015d}",
        "status": "in_stock",
        "location": f"STORE-{n % 20:02d}",
        "lot_code": f"LOT{n % 100:03d}",
        "lot_expires_on": "2030-01-01",
        "receipt_id": f"R-{n // 500}",
        "received_event": f"bench#{uuid.UUID(int=n // 500)}",
        "received_at": at,
        "received_location": f"STORE-{n % 20:02d}",
    }


async def measure_database(mongodb_url: str, levels: int, units: int) -> DatabaseCeiling:
    client: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(mongodb_url, tz_aware=True)
    name = f"lotline_bench_{uuid.uuid4().hex[:8]}"
    db = client[name]
    try:
        level_coll = db["levels"]
        # First round creates the levels; the second is the steady state, replacing them.
        for version in (1, 2):
            started = time.monotonic()
            ops = [ReplaceOne({"_id": (d := _level_doc(n, version))["_id"]}, d, upsert=True)
                   for n in range(levels)]  # fmt: skip
            started = time.monotonic()
            for part in range(0, len(ops), BULK_PART):
                await level_coll.bulk_write(ops[part : part + BULK_PART], ordered=False)
            replaces = levels / (time.monotonic() - started)

        unit_coll = db["units"]
        await unit_coll.create_index([("sku", 1), ("lot_code", 1), ("status", 1)])
        at = datetime.now(UTC)
        docs = [_unit_doc(n, at) for n in range(units)]
        gate = asyncio.Semaphore(2)

        async def insert(chunk: list[dict[str, Any]]) -> None:
            async with gate:
                await unit_coll.insert_many(chunk, ordered=False)

        started = time.monotonic()
        await asyncio.gather(
            *(insert(docs[i : i + INSERT_CHUNK]) for i in range(0, units, INSERT_CHUNK))
        )
        inserts = units / (time.monotonic() - started)

        updated = min(units, max(levels, 1000))
        sales: list[InsertOne[Any] | UpdateOne] = [
            UpdateOne(
                {"_id": docs[n]["_id"]},
                {
                    "$set": {
                        "status": "sold",
                        "sale_id": f"S-{n}",
                        "line": 1,
                        "customer_ref": "C-1",
                        "sold_at": at,
                    },
                    "$push": {
                        "history": {
                            "type": "item-sold",
                            "event_id": f"bench#{n}",
                            "at": at,
                            "what": "sold",
                            "ref": f"S-{n}#1",
                        }
                    },
                },
            )
            for n in range(updated)
        ]
        started = time.monotonic()
        for part in range(0, len(sales), BULK_PART):
            await unit_coll.bulk_write(sales[part : part + BULK_PART], ordered=True)
        updates = updated / (time.monotonic() - started)

        # The recall's answer: every unit of the product's lots, streamed, a few fields each.
        lots = {"sku": "BENCH-PHONE", "lot_code": {"$in": [f"LOT{k:03d}" for k in range(100)]}}
        started = time.monotonic()
        read = 0
        projection = {"serial": 1, "status": 1, "lot_code": 1, "sale_id": 1, "location": 1}
        async for _doc in unit_coll.find(lots, projection):
            read += 1
        reads = read / (time.monotonic() - started)

        # Reference only: what a lot recall cost when it flagged each unit.
        started = time.monotonic()
        result = await unit_coll.update_many(
            {
                "sku": "BENCH-PHONE",
                "lot_code": {"$in": [f"LOT{k:03d}" for k in range(100)]},
                "recall_ids": {"$ne": "RC-BENCH"},
            },
            {
                "$addToSet": {"recall_ids": "RC-BENCH"},
                "$set": {"recalled": True, "recalled_at": at},
                "$push": {"history": {"type": "batch-recalled", "at": at, "what": "recalled"}},
            },
        )
        flags = result.modified_count / (time.monotonic() - started)
        return DatabaseCeiling(replaces, inserts, updates, reads, flags, levels, units)
    finally:
        await client.drop_database(name)
        await client.close()
