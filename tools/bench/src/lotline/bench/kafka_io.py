"""The bench's side of Kafka: publishing fast, and watching when the services commit.

Lotline's consumers commit a batch's offsets only once its effects are durable, so a
service's committed offset past a record is the moment that record's effect is durable.
`CommitWatcher` polls the consumer groups' committed offsets with the admin client and
keeps every change, from which it answers "when was record (partition, offset) applied by
every group" (latency) and "when had every group passed these offsets" (throughput).
"""

from __future__ import annotations

import asyncio
import bisect
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient

from lotline.events import OutgoingMessage
from lotline.runtime import telemetry

Offsets = dict[TopicPartition, int]


@dataclass(frozen=True)
class Sent:
    """One published record: where it landed and when the bench handed it to the producer."""

    partition: int
    offset: int
    at: float


def producer(bootstrap: str, login: dict[str, Any], *, linger_ms: int = 20) -> AIOKafkaProducer:
    """A POS-like producer (acks=all, idempotent) that batches hard: big batches, some linger.
    `login`: aiokafka's security options (SASL). With the OTEL_* variables naming an exporter,
    every event it sends starts a trace (off otherwise: no span, headers as encoded)."""
    telemetry.setup_tracing("bench")
    return AIOKafkaProducer(
        bootstrap_servers=bootstrap,
        acks="all",
        enable_idempotence=True,
        linger_ms=linger_ms,
        max_batch_size=1024 * 1024,
        max_request_size=16 * 1024 * 1024,
        **login,
    )


async def publish(producer: AIOKafkaProducer, messages: Sequence[OutgoingMessage]) -> list[Sent]:
    """Send every message without waiting for each; returns where each landed, in order."""
    futures = []
    stamps = []
    for message in messages:
        stamps.append(time.monotonic())
        futures.append(
            await producer.send(
                message.topic,
                message.value,
                key=message.key,
                headers=telemetry.sending_headers(message),
            )
        )
    return await _records(futures, stamps)


async def _records(futures: Sequence[asyncio.Future[Any]], stamps: Sequence[float]) -> list[Sent]:
    """Where each record landed, with when it was sent. A commit watcher shares this event
    loop: taking 60,000 results in one step (a gather, then the records) held it 0.2-0.4 s
    just as the last lines were applied, and their commits were seen that much late. So the
    loop gets a turn every thousand."""
    records: list[Sent] = []
    for number, (future, at) in enumerate(zip(futures, stamps, strict=True)):
        metadata = await future
        records.append(Sent(metadata.partition, metadata.offset, at))
        if number % 1000 == 999:
            await asyncio.sleep(0)
    return records


async def publish_paced(
    producer: AIOKafkaProducer,
    messages: Sequence[OutgoingMessage],
    rate: float,
    tick_s: float = 0.005,
) -> list[Sent]:
    """Send at a steady `rate` per second: every tick, as many as the clock says are due."""
    futures: list[asyncio.Future[Any]] = []
    stamps: list[float] = []
    started = time.monotonic()
    sent = 0
    while sent < len(messages):
        due = min(len(messages), int((time.monotonic() - started) * rate) + 1)
        while sent < due:
            message = messages[sent]
            stamps.append(time.monotonic())
            futures.append(
                await producer.send(
                    message.topic,
                    message.value,
                    key=message.key,
                    headers=telemetry.sending_headers(message),
                )
            )
            sent += 1
        await asyncio.sleep(tick_s)
    return await _records(futures, stamps)


class TopicReader:
    """Reads partitions and end offsets of topics (a consumer without a group)."""

    def __init__(self, bootstrap: str, login: dict[str, Any]) -> None:
        self.bootstrap = bootstrap
        self.login = login
        self.consumer = AIOKafkaConsumer(
            bootstrap_servers=bootstrap, enable_auto_commit=False, group_id=None, **login
        )

    async def start(self) -> None:
        await self.consumer.start()

    async def stop(self) -> None:
        await self.consumer.stop()

    async def partitions(self, topics: Iterable[str]) -> list[TopicPartition]:
        found: list[TopicPartition] = []
        for topic in topics:
            numbers = self.consumer.partitions_for_topic(topic)
            if not numbers:
                await self.consumer._client.force_metadata_update()
                numbers = self.consumer.partitions_for_topic(topic) or set()
            if not numbers:
                raise RuntimeError(f"topic {topic!r} does not exist on the broker")
            found.extend(TopicPartition(topic, p) for p in sorted(numbers))
        return found

    async def ends(self, topics: Iterable[str]) -> Offsets:
        partitions = await self.partitions(topics)
        ends: dict[TopicPartition, int] = await self.consumer.end_offsets(partitions)
        return dict(ends)

    async def records(self, since: Offsets, key_prefix: bytes, within_s: float = 30.0) -> list[Any]:
        """Records written since `since` whose key starts with `key_prefix` (this run's)."""
        reader = AIOKafkaConsumer(
            bootstrap_servers=self.bootstrap,
            enable_auto_commit=False,
            group_id=None,
            max_partition_fetch_bytes=16 * 1024 * 1024,
            **self.login,
        )
        await reader.start()
        try:
            partitions = list(since)
            reader.assign(partitions)
            ends = await reader.end_offsets(partitions)
            for tp, offset in since.items():
                reader.seek(tp, offset)
            found: list[Any] = []
            deadline = time.monotonic() + within_s
            while time.monotonic() < deadline:
                positions = {tp: await reader.position(tp) for tp in partitions}
                if all(positions[tp] >= ends[tp] for tp in partitions):
                    break
                batch = await reader.getmany(timeout_ms=200)
                for items in batch.values():
                    found.extend(r for r in items if r.key and r.key.startswith(key_prefix))
            return found
        finally:
            await reader.stop()


@dataclass
class CommitWatcher:
    """Polls the committed offsets of consumer groups on some partitions, keeping changes."""

    admin: AIOKafkaAdminClient
    groups: Sequence[str]
    partitions: Sequence[TopicPartition]
    interval_s: float = 0.005
    # group -> partition -> ([times], [committed offsets]) at each change, times monotonic.
    history: dict[str, dict[TopicPartition, tuple[list[float], list[int]]]] = field(
        default_factory=dict
    )
    polls: int = 0
    poll_seconds: float = 0.0
    _task: asyncio.Task[None] | None = None

    async def __aenter__(self) -> CommitWatcher:
        for group in self.groups:
            self.history[group] = {tp: ([], []) for tp in self.partitions}
        await self.poll()
        self._task = asyncio.create_task(self._run())
        return self

    async def __aexit__(self, *_: object) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)

    async def _run(self) -> None:
        while True:
            await self.poll()
            await asyncio.sleep(self.interval_s)

    async def poll(self) -> None:
        started = time.monotonic()
        answers = await asyncio.gather(
            *(
                self.admin.list_consumer_group_offsets(group, partitions=list(self.partitions))
                for group in self.groups
            )
        )
        now = time.monotonic()
        self.polls += 1
        self.poll_seconds += now - started
        for group, committed in zip(self.groups, answers, strict=True):
            for tp in self.partitions:
                meta = committed.get(tp)
                offset = meta.offset if meta is not None else -1
                times, offsets = self.history[group][tp]
                # Kept as a running maximum: an older offset seen after a rebalance means a
                # redelivery, whose effects were already durable when first committed.
                if not offsets or offset > offsets[-1]:
                    times.append(now)
                    offsets.append(offset)

    @property
    def mean_poll_ms(self) -> float:
        return 1000 * self.poll_seconds / max(self.polls, 1)

    def committed(self, group: str) -> Offsets:
        return {tp: offsets[-1] for tp, (_, offsets) in self.history[group].items() if offsets}

    def passed_at(self, group: str, tp: TopicPartition, offset: int) -> float | None:
        """When the group's committed offset first went past `offset` (the record applied)."""
        times, offsets = self.history[group][tp]
        index = bisect.bisect_right(offsets, offset)
        return times[index] if index < len(offsets) else None

    def applied_at(self, tp: TopicPartition, offset: int) -> float | None:
        """When every group had applied the record at (tp, offset)."""
        moments = [self.passed_at(group, tp, offset) for group in self.groups]
        if any(m is None for m in moments):
            return None
        return max(m for m in moments if m is not None)

    def done(self, targets: Offsets, groups: Sequence[str] | None = None) -> bool:
        for group in groups or self.groups:
            committed = self.committed(group)
            if any(committed.get(tp, -1) < end for tp, end in targets.items() if end > 0):
                return False
        return True

    def done_at(self, targets: Offsets, group: str) -> float | None:
        """When the group had committed up to every target offset (all records before)."""
        moments = []
        for tp, end in targets.items():
            if end <= 0:
                continue
            moment = self.passed_at(group, tp, end - 1)
            if moment is None:
                return None
            moments.append(moment)
        return max(moments, default=None)

    async def wait(self, targets: Offsets, within_s: float, what: str) -> None:
        deadline = time.monotonic() + within_s
        while not self.done(targets):
            if time.monotonic() > deadline:
                behind = {
                    group: sum(
                        max(0, end - self.committed(group).get(tp, 0))
                        for tp, end in targets.items()
                    )
                    for group in self.groups
                }
                raise TimeoutError(f"{what}: not applied within {within_s:.0f} s, behind {behind}")
            await asyncio.sleep(self.interval_s)

    def applied_series(self, group: str, base: Offsets) -> list[tuple[float, int]]:
        """(time, records applied since `base`) at every change, summed over partitions."""
        events: list[tuple[float, TopicPartition, int]] = []
        for tp, (times, offsets) in self.history[group].items():
            events.extend((t, tp, o) for t, o in zip(times, offsets, strict=True))
        events.sort(key=lambda e: e[0])
        current = {tp: base.get(tp, 0) for tp in self.partitions}
        series = []
        for t, tp, offset in events:
            current[tp] = max(current[tp], offset, base.get(tp, 0))
            series.append((t, sum(current[p] - base.get(p, 0) for p in self.partitions)))
        return series


async def admin_client(bootstrap: str, login: dict[str, Any]) -> AIOKafkaAdminClient:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=15000, **login)
    await admin.start()
    return admin


async def group_members(admin: AIOKafkaAdminClient, group: str) -> int:
    """How many consumers are in a group now (other instances would share the work)."""
    (response,) = await admin.describe_consumer_groups([group])
    # DescribeGroups v0-v3: groups = [(error, group_id, state, protocol_type, protocol, members)]
    entry = response.groups[0]
    return len(entry[5])
