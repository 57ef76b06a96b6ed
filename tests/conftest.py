"""The one fixture module that brings up infrastructure and runs services for the tests.

Infrastructure, in order of preference: the Kafka and MongoDB named by
`KAFKA_BOOTSTRAP_SERVERS` and `MONGODB_URL`; else containers (testcontainers) when a Docker
engine answers; else the project's own local stack (real Kafka from Maven Central jars and
FerretDB built from source), started once per test session.

Kafka logins: on the local stack (started here, or named by KAFKA_BOOTSTRAP_SERVERS) every
process logs in as its own principal from the stack's secrets file, so the ACLs hold during
every test; elsewhere everything uses the KAFKA_USERNAME/KAFKA_PASSWORD of the environment.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from pymongo import AsyncMongoClient

from lotline.devstack import (
    ADMIN,
    SERVICE_MODULES,
    LocalStack,
    StackSecrets,
    free_port,
    http_ready,
    wait_until_ready,
)
from lotline.events import EventData, OutgoingMessage, encode
from lotline.events.topics import CONSUMED_BY, DLQ_SUFFIX, PUBLISHED_BY
from lotline.runtime.settings import Settings

from support import OPERATOR_ENV

ROOT = Path(__file__).resolve().parents[1]


@dataclass(frozen=True)
class Infra:
    kafka_bootstrap: str
    mongodb_url: str
    how: str
    # The local stack's logins, one per principal; None on any other broker.
    secrets: StackSecrets | None = None

    def env(self) -> dict[str, str]:
        """Where the infrastructure is; a process's Kafka login comes from `login_env`."""
        return {"KAFKA_BOOTSTRAP_SERVERS": self.kafka_bootstrap, "MONGODB_URL": self.mongodb_url}

    def login_env(self, principal: str) -> dict[str, str]:
        """The settings that log a process in as `principal` (nothing extra off the local
        stack: it inherits the environment's KAFKA_USERNAME, if any)."""
        return self.secrets.credentials(principal).env() if self.secrets else {}

    def client_options(self, principal: str = ADMIN) -> dict[str, Any]:
        """aiokafka's login options for `principal` (the admin by default)."""
        if self.secrets:
            return self.secrets.credentials(principal).client_options()
        return Settings().kafka_client_options()


def _local_secrets(bootstrap: str) -> StackSecrets | None:
    """The secrets of the local stack, when `bootstrap` is that stack's broker."""
    stack = LocalStack.from_env()
    if bootstrap != stack.kafka.bootstrap:
        return None
    return StackSecrets.read(stack.dir)


def _docker_engine_answers() -> bool:
    if not shutil.which("docker"):
        return False
    try:
        result = subprocess.run(["docker", "info"], capture_output=True, timeout=10, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return False
    return result.returncode == 0


def _ensure_topics(found: Infra) -> None:
    from lotline.devstack import ensure_topics

    ensure_topics(
        found.kafka_bootstrap,
        int(os.environ.get("KAFKA_PARTITIONS", "6")),
        client_options=found.client_options(),
    )


@pytest.fixture(scope="session")
def infra() -> Iterator[Infra]:
    bootstrap = os.environ.get("KAFKA_BOOTSTRAP_SERVERS")
    mongodb_url = os.environ.get("MONGODB_URL")
    if bootstrap and mongodb_url:
        found = Infra(bootstrap, mongodb_url, "environment", _local_secrets(bootstrap))
        _ensure_topics(found)
        yield found
        return
    if _docker_engine_answers():
        from testcontainers.kafka import KafkaContainer
        from testcontainers.mongodb import MongoDbContainer

        with KafkaContainer().with_kraft() as kafka, MongoDbContainer("mongo:7") as mongo:
            found = Infra(kafka.get_bootstrap_server(), mongo.get_connection_url(), "containers")
            _ensure_topics(found)
            os.environ.update(found.env())
            yield found
        return
    stack = LocalStack.from_env()
    endpoints = stack.up()
    found = Infra(endpoints.kafka_bootstrap, endpoints.mongodb_url, "local stack", stack.secrets)
    os.environ.update(found.env())
    yield found
    # The local stack stays up between sessions (a second start takes seconds); CI and
    # `make infra-down` stop it.


@pytest.fixture
def run_id() -> str:
    """A fresh suffix, so each test's SKUs and ids never meet another run's leftovers."""
    return uuid.uuid4().hex[:8].upper()


@pytest.fixture(scope="session")
async def mongo(infra: Infra) -> AsyncIterator[AsyncMongoClient[dict[str, Any]]]:
    client: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(infra.mongodb_url, tz_aware=True)
    yield client
    await client.close()


def publisher_of(topic: str) -> str:
    """Who may write a topic under the contract: its publisher, or for a DLQ a service that
    consumes the topic; the admin for anything the contract does not name."""
    if topic.endswith(DLQ_SUFFIX):
        consumed = topic.removesuffix(DLQ_SUFFIX)
        readers = [s for s, events in sorted(CONSUMED_BY.items()) if consumed in events]
        return readers[0] if readers else ADMIN
    writers = [p for p, events in sorted(PUBLISHED_BY.items()) if topic in events]
    return writers[0] if writers else ADMIN


@dataclass
class EventBus:
    """What a POS, a dock scanner or an operator does to Lotline: publish events to Kafka.

    Each event goes out as the principal the contract lets publish it (item-sold as `pos`,
    item-received as `receiving`, ...), so the whole suite runs through the ACLs and a grant
    missing from the model fails the test that needs it. Reading back is the admin's."""

    infra: Infra
    producers: dict[str, AIOKafkaProducer] = field(default_factory=dict)

    @property
    def bootstrap(self) -> str:
        return self.infra.kafka_bootstrap

    async def producer(self, topic: str) -> AIOKafkaProducer:
        principal = publisher_of(topic)
        if principal not in self.producers:
            producer = AIOKafkaProducer(
                bootstrap_servers=self.bootstrap,
                acks="all",
                enable_idempotence=True,
                max_request_size=16 * 1024 * 1024,
                **self.infra.client_options(principal),
            )
            await producer.start()
            self.producers[principal] = producer
        return self.producers[principal]

    async def publish(self, *events: EventData, source: str = "tests") -> list[OutgoingMessage]:
        messages = [encode(event, source=source) for event in events]
        await self.send(messages)
        return messages

    async def send(self, messages: list[OutgoingMessage]) -> None:
        futures = [
            await (await self.producer(m.topic)).send(
                m.topic, m.value, key=m.key, headers=m.headers
            )
            for m in messages
        ]
        await asyncio.gather(*futures)

    async def send_raw(self, topic: str, value: bytes, key: bytes | None = None) -> None:
        await (await self.producer(topic)).send_and_wait(topic, value, key=key)

    async def read_all(self, topic: str, timeout: float = 5.0) -> list[Any]:
        """Every record now on a topic (from the start), for asserting what was published."""
        consumer = AIOKafkaConsumer(
            bootstrap_servers=self.bootstrap,
            enable_auto_commit=False,
            group_id=None,
            **self.infra.client_options(),
        )
        await consumer.start()
        try:
            partitions = [
                TopicPartition(topic, p) for p in consumer.partitions_for_topic(topic) or []
            ]
            if not partitions:
                await consumer._client.force_metadata_update()
                partitions = [
                    TopicPartition(topic, p) for p in consumer.partitions_for_topic(topic) or []
                ]
            consumer.assign(partitions)
            await consumer.seek_to_beginning(*partitions)
            ends = await consumer.end_offsets(partitions)
            records: list[Any] = []
            deadline = time.monotonic() + timeout
            while time.monotonic() < deadline:
                positions = [await consumer.position(tp) for tp in partitions]
                if all(pos >= ends[tp] for pos, tp in zip(positions, partitions, strict=True)):
                    break
                batch = await consumer.getmany(timeout_ms=200)
                for items in batch.values():
                    records.extend(items)
            return records
        finally:
            await consumer.stop()

    async def close(self) -> None:
        for producer in self.producers.values():
            await producer.stop()


@pytest.fixture(scope="session")
async def bus(infra: Infra) -> AsyncIterator[EventBus]:
    events = EventBus(infra)
    yield events
    await events.close()


@dataclass
class ServiceProcess:
    """One Lotline service running as its own OS process, as it would in production."""

    name: str
    module: str
    env: dict[str, str]
    log_path: Path
    port: int = field(default_factory=free_port)
    process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout: float = 60.0) -> ServiceProcess:
        env = {**os.environ, **self.env, "HTTP_PORT": str(self.port), "LOG_JSON": "true"}
        log = self.log_path.open("ab")
        self.process = subprocess.Popen(
            [sys.executable, "-m", self.module], env=env, stdout=log, stderr=log, cwd=ROOT
        )
        self.wait_ready(timeout)
        return self

    def wait_ready(self, timeout: float) -> None:
        assert self.process is not None
        process = self.process
        wait_until_ready(
            self.name,
            lambda: process.poll() is None,
            partial(http_ready, self.url),
            timeout,
            self.log_path,
        )

    def log_tail(self, lines: int = 40) -> str:
        if not self.log_path.exists():
            return "(no log)"
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])

    def stop(self, timeout: float = 30.0) -> int | None:
        """SIGTERM, as an orchestrator would: the service finishes its batch and leaves."""
        if self.process is None or self.process.poll() is not None:
            return None if self.process is None else self.process.returncode
        self.process.send_signal(signal.SIGTERM)
        try:
            return self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            return self.process.wait()

    def kill(self) -> None:
        """kill -9: no goodbye, no commit."""
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait()


@pytest.fixture
def start_service(infra: Infra, tmp_path: Path) -> Iterator[Callable[..., ServiceProcess]]:
    """Start a service as a separate process; every one started is stopped at the end."""
    started: list[ServiceProcess] = []

    def start(name: str, **env: str) -> ServiceProcess:
        # The service logs in to Kafka as itself, as `lotline-devstack services up` runs it,
        # and knows the tests' people (support.OPERATOR_ENV) unless the test names others.
        service = ServiceProcess(
            name=name,
            module=SERVICE_MODULES[name],
            env={**infra.env(), **infra.login_env(name), **OPERATOR_ENV, **env},
            log_path=tmp_path / f"{name}-{len(started)}.log",
        )
        started.append(service)
        return service.start()

    yield start
    for service in started:
        service.stop()
