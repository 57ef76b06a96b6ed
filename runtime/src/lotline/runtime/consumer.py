"""Batch consumption, effectively once: decode, dead-letter, retry, one commit per batch.

Every Lotline consumer runs through `EventConsumer`. A batch of records is decoded with the
one codec; records that cannot be used go to `<topic>.dlq` with the reason in headers; the
rest are one unit of work on the write-ahead log: copies of events already applied are
dropped, the service's handler stages what the others change and emit, and the changes,
the events and the record of what was applied are made durable in one insert, then
published. Only then is the offset committed, once for the batch.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import partial
from typing import Any

import structlog
from aiokafka import ConsumerRecord, TopicPartition
from aiokafka.coordinator.assignors.range import RangePartitionAssignor
from aiokafka.errors import KafkaError
from faststream.kafka import KafkaBroker, KafkaMessage
from faststream.middlewares import AckPolicy
from pymongo.errors import AutoReconnect, ConnectionFailure

from lotline.events import (
    CloudEvent,
    EventDecodeError,
    EventType,
    consumer_group,
    decode,
    encode_event,
)
from lotline.events.codec import OutgoingMessage
from lotline.events.topics import key_partition, message_key, router_of
from lotline.runtime.owned import ForgetOnRebalance, OwnedState
from lotline.runtime.settings import Settings
from lotline.runtime.telemetry import CONSUMER_LAG, TopicMetrics, consuming
from lotline.runtime.wal import Fact, StreamTaken, WriteAheadLog

log = structlog.get_logger(__name__)

# The header a misrouted event carries once moved to its key's partition: where it was.
MOVED_FROM = "lotline-moved-from"

# Failures of the infrastructure rather than of the message: waited out, never dead-lettered.
INFRASTRUCTURE_ERRORS: tuple[type[BaseException], ...] = (
    # Another instance wrote the partition's log: apply the batch again from what it wrote.
    StreamTaken,
    ConnectionFailure,
    AutoReconnect,
    KafkaError,
    OSError,
    asyncio.TimeoutError,
)


@dataclass
class Progress:
    """Whether a service's consumer is getting anywhere, for readiness and for the log.

    Trouble is any retry or failed batch since the last commit. Trouble that lasts longer
    than `stall_after_s` is a stall: the consumer has lag it cannot work off, so the instance
    says it is not ready (an orchestrator stops routing to it and an operator is paged)
    rather than look healthy while its offsets stand still.
    """

    stall_after_s: float
    trouble_since: float | None = None
    trouble: str = ""
    _reported: bool = False

    def troubled(self, what: str) -> None:
        if self.trouble_since is None:
            self.trouble_since = time.monotonic()
        self.trouble = what

    def committed(self) -> None:
        if self._reported:
            log.info("consumer_recovered")
        self.trouble_since, self.trouble, self._reported = None, "", False

    def stalled(self) -> str | None:
        """What the consumer is stuck on, once it has been stuck for `stall_after_s`."""
        if self.trouble_since is None:
            return None
        stuck_s = time.monotonic() - self.trouble_since
        if stuck_s < self.stall_after_s:
            return None
        if not self._reported:
            log.error("consumer_stalled", stuck_s=round(stuck_s, 1), on=self.trouble)
            self._reported = True
        return self.trouble


@dataclass(frozen=True)
class Delivery:
    """One decoded event and where it sat in Kafka (its position guards redelivery)."""

    event: CloudEvent[Any]
    topic: str
    partition: int
    offset: int

    @property
    def data(self) -> Any:
        return self.event.data

    @property
    def stream(self) -> str:
        """Topic and partition: one ordered stream, whose offsets only grow."""
        return f"{self.topic}:{self.partition}"

    def describe(self) -> str:
        """Where the event sat and which it is, for a log line a person can act on."""
        return (
            f"{self.topic}:{self.partition}@{self.offset} "
            f"(id {self.event.id}, source {self.event.source})"
        )


@dataclass
class Deferred:
    """An event that could not be applied yet for a passing cause (e.g. unknown product)."""

    delivery: Delivery
    reason: str


@dataclass
class BatchResult:
    deferred: list[Deferred] = field(default_factory=list)
    # Isolated as poison and dead-lettered: not applied, so not remembered as applied (a
    # replay from the DLQ once the cause is fixed must not be taken for a copy).
    dead_lettered: list[Delivery] = field(default_factory=list)

    def defer(self, delivery: Delivery, reason: str) -> None:
        self.deferred.append(Deferred(delivery, reason))


BatchHandler = Callable[[list[Delivery]], Awaitable[BatchResult | None]]
GiveUp = Callable[[list[Deferred]], Awaitable[None]]


class Publisher:
    """Sends encoded events and waits until Kafka has them (acks=all)."""

    def __init__(self, broker: KafkaBroker) -> None:
        self._broker = broker

    async def send(self, messages: Sequence[OutgoingMessage]) -> None:
        if not messages:
            return
        futures = [
            await self._broker.publish(
                message.value,
                topic=message.topic,
                key=message.key,
                headers={name: value.decode() for name, value in message.headers},
                no_confirm=True,
            )
            for message in messages
        ]
        await asyncio.gather(*futures)

    async def send_raw(
        self,
        topic: str,
        key: bytes | None,
        value: bytes | None,
        headers: dict[str, str],
        partition: int | None = None,
    ) -> None:
        future = await self._broker.publish(
            value or b"",
            topic=topic,
            key=key,
            headers=headers,
            partition=partition,
            no_confirm=True,
        )
        await future


@dataclass
class EventConsumer:
    """Runs one service's handler over one topic's share of each batch."""

    service: str
    event_type: EventType
    handler: BatchHandler
    publisher: Publisher
    settings: Settings
    owned: OwnedState
    progress: Progress
    wal: WriteAheadLog
    give_up: GiveUp | None = None
    metrics: TopicMetrics = field(init=False)
    _deferred_since: dict[tuple[str, int], float] = field(default_factory=dict)
    _routed: bool = field(init=False, default=False)

    def __post_init__(self) -> None:
        self.metrics = TopicMetrics(self.event_type.topic)
        # Whether the topic's producers are outside Lotline (and may partition otherwise).
        self._routed = router_of(self.event_type) is not None

    async def process(
        self, records: list[ConsumerRecord[Any, Any]], partitions: int | None = None
    ) -> list[Delivery]:
        """Apply one topic's records; returns those to read again later (deferred).
        `partitions`: the topic's partition count, to recognise misrouted events."""
        group = consumer_group(self.service)
        with consuming(self.event_type.topic, group, records, self.metrics):
            return await self._process(records, partitions)

    async def _process(
        self, records: list[ConsumerRecord[Any, Any]], partitions: int | None = None
    ) -> list[Delivery]:
        deliveries: list[Delivery] = []
        for record in records:
            try:
                event = decode(record.value, self.event_type, headers=record.headers)
            except EventDecodeError as exc:
                await self.dead_letter(record, exc.problem, exc.field)
                continue
            if (
                partitions
                and self._routed
                and record.partition != key_partition(event.data.key, partitions)
            ):
                await self._misrouted(record, event.data.key, partitions)
                continue
            deliveries.append(Delivery(event, record.topic, record.partition, record.offset))
            # What the event changes belongs to its key's partition, the one it came from.
            self.wal.observe(event.data.key, record.partition)
        return await self.process_deliveries(deliveries)

    async def _misrouted(self, record: ConsumerRecord[Any, Any], key: str, partitions: int) -> None:
        """An event on another partition than its SKU's (its producer partitions otherwise
        than murmur2, or sent no key) is never applied here: this instance may not own the
        SKU, and every document has one writer. The topic's router moves it, unchanged but
        for its key, to the SKU's partition, where its owner applies it; the topic's other
        consumers skip it and apply the moved copy."""
        right = key_partition(key, partitions)
        self.metrics.misrouted.inc()
        if router_of(self.event_type) != self.service:
            return
        headers = {
            **{name: value.decode("utf-8", "replace") for name, value in record.headers or ()},
            MOVED_FROM: f"{record.partition}@{record.offset}",
        }
        log.warning(
            "misrouted_event_moved",
            topic=record.topic,
            partition=record.partition,
            offset=record.offset,
            key=key,
            to_partition=right,
            hint="partition by murmur2 of the SKU (librdkafka: partitioner=murmur2_random)",
        )
        await self._until_done(
            lambda: self.publisher.send_raw(
                record.topic, message_key(key), record.value, headers, partition=right
            )
        )

    async def process_deliveries(self, deliveries: list[Delivery]) -> list[Delivery]:
        """Apply decoded events once each; returns those to read again later (deferred)."""
        if not deliveries:
            return []
        return await self.apply(deliveries)

    async def apply(self, deliveries: list[Delivery]) -> list[Delivery]:
        """Hand the batch to the handler. What it defers is read again in a later batch
        (when, say, the product's registration has arrived), until it has waited
        `consumer_defer_max_s`; then it goes to the DLQ and the `give_up` hook.
        Returns the events to read again."""
        result = await self._run_handler(deliveries)
        deferred = result.deferred
        self.metrics.applied.inc(len(deliveries) - len(deferred) - len(result.dead_lettered))
        self.metrics.deferred.inc(len(deferred))
        now = time.monotonic()
        expired: list[Deferred] = []
        revisit: list[Delivery] = []
        for item in deferred:
            position = (item.delivery.stream, item.delivery.offset)
            first = self._deferred_since.setdefault(position, now)
            if now - first >= self.settings.consumer_defer_max_s:
                expired.append(item)
                del self._deferred_since[position]
            else:
                revisit.append(item.delivery)
        for item in expired:
            await self.dead_letter_delivery(item.delivery, item.reason)
        if expired and self.give_up is not None:
            await self._until_done(partial(self._give_up, self.give_up, expired))
        applied = {(d.stream, d.offset) for d in deliveries} - {
            (item.delivery.stream, item.delivery.offset) for item in deferred
        }
        for position in applied:
            self._deferred_since.pop(position, None)
        # Given up and dead-lettered: never recorded as applied by the unit of work (a
        # deferred event is not), so a replay from the DLQ is not dropped as a copy.
        return revisit

    async def _run_handler(self, deliveries: list[Delivery]) -> BatchResult:
        """Run the handler; a batch that keeps failing is split to isolate the poison."""
        attempt = 1
        while True:
            try:
                return await self._call_handler(deliveries) or BatchResult()
            except INFRASTRUCTURE_ERRORS as exc:
                # Not the message's fault: wait for the database or broker to come back.
                log.warning("infrastructure_unavailable", error=repr(exc), attempt=attempt)
                self.progress.troubled(f"infrastructure unavailable: {exc!r}")
                await asyncio.sleep(self._backoff(attempt))
                attempt += 1
            except Exception as exc:
                self.progress.troubled(
                    f"handler failed on {len(deliveries)} events from "
                    f"{deliveries[0].describe()}: {exc!r}"
                )
                if attempt < self.settings.consumer_retry_attempts:
                    log.warning("handler_failed", error=repr(exc), attempt=attempt)
                    await asyncio.sleep(self._backoff(attempt))
                    attempt += 1
                    continue
                if len(deliveries) == 1:
                    log.error("poison_event", on=deliveries[0].describe(), error=repr(exc))
                    await self.dead_letter_delivery(deliveries[0], f"handler failed: {exc!r}")
                    return BatchResult(dead_lettered=list(deliveries))
                merged = BatchResult()
                middle = len(deliveries) // 2
                for half in (deliveries[:middle], deliveries[middle:]):
                    result = await self._run_handler(half)
                    merged.deferred.extend(result.deferred)
                    merged.dead_lettered.extend(result.dead_lettered)
                return merged

    async def _call_handler(self, deliveries: list[Delivery]) -> BatchResult | None:
        # Again before each try: a rebalance during an earlier one released the
        # partitions, and with them which partition each key's documents belong to.
        for delivery in deliveries:
            self.wal.observe(delivery.data.key, delivery.partition)
        return await self._unit_of_work(deliveries)

    async def _unit_of_work(self, deliveries: list[Delivery]) -> BatchResult:
        """One unit of work: the events not applied yet go to the handler, which stages the
        documents it changes and the events it emits on the write-ahead log; then all of it,
        and the record of which events were applied, is made durable in one insert and the
        events are published. Only then does the batch's commit move the offsets."""
        async with self.wal.foreground():
            try:
                return await self._unit_of_work_in(self.wal, deliveries)
            except BaseException:
                # Within the unit's turn, so no other unit's changes are dropped with its
                # own. Memory may now hold changes the database never got: read afresh.
                self.owned.forget("batch failed")
                self.wal.abort()
                raise

    async def _unit_of_work_in(self, wal: WriteAheadLog, deliveries: list[Delivery]) -> BatchResult:
        started = time.perf_counter()
        facts = [Fact(d.partition, d.event.idempotency_key, d.event.time) for d in deliveries]
        done = await wal.applied(facts)
        fresh = [(d, f) for d, f, old in zip(deliveries, facts, done, strict=True) if not old]
        self.metrics.duplicate.inc(len(deliveries) - len(fresh))
        checked = time.perf_counter()
        result = BatchResult()
        if fresh:
            result = await self.handler([d for d, _ in fresh]) or result
        handled = time.perf_counter()
        waiting = {id(item.delivery) for item in result.deferred}
        wal.record(f for d, f in fresh if id(d) not in waiting)
        await wal.commit()
        # Where a batch's time goes, for whoever tunes a deployment (debug level).
        log.debug(
            "unit_of_work",
            topic=self.event_type.topic,
            events=len(deliveries),
            copies=len(deliveries) - len(fresh),
            check_s=round(checked - started, 3),
            handle_s=round(handled - checked, 3),
            commit_s=round(time.perf_counter() - handled, 3),
        )
        return result

    async def _give_up(self, hook: GiveUp, expired: list[Deferred]) -> None:
        """The hook's answer to events given up (the business must hear of them), made
        durable and sent like any batch's events."""
        async with self.wal.unit_of_work():
            await hook(expired)

    async def _until_done(self, step: Callable[[], Awaitable[Any]]) -> Any:
        attempt = 1
        while True:
            try:
                return await step()
            except INFRASTRUCTURE_ERRORS as exc:
                log.warning("infrastructure_unavailable", error=repr(exc), attempt=attempt)
                self.progress.troubled(f"infrastructure unavailable: {exc!r}")
                await asyncio.sleep(self._backoff(attempt))
                attempt += 1

    def _backoff(self, attempt: int) -> float:
        base = self.settings.consumer_retry_backoff_s * 2 ** (attempt - 1)
        capped: float = min(base, self.settings.consumer_retry_backoff_max_s)
        return capped * random.uniform(0.8, 1.2)

    async def dead_letter(
        self, record: ConsumerRecord[Any, Any], reason: str, field: str = "(message)"
    ) -> None:
        await self._send_to_dlq(
            record.topic,
            record.partition,
            record.offset,
            record.key,
            record.value,
            reason,
            field,
            # Kept as sent: a binary-mode event's attributes are its ce_* headers, and a
            # dead letter must be replayable once the cause is fixed.
            original=record.headers or (),
        )

    async def dead_letter_delivery(self, delivery: Delivery, reason: str) -> None:
        message = encode_event(delivery.event)
        await self._send_to_dlq(
            delivery.topic,
            delivery.partition,
            delivery.offset,
            message.key,
            message.value,
            reason,
            "data",
        )

    async def _send_to_dlq(
        self,
        topic: str,
        partition: int,
        offset: int,
        key: bytes | None,
        value: bytes | None,
        reason: str,
        field: str,
        original: Sequence[tuple[str, bytes]] = (),
    ) -> None:
        headers = {
            **{name: value.decode("utf-8", "replace") for name, value in original},
            "lotline-dlq-reason": reason[:1000],
            "lotline-dlq-field": field,
            "lotline-dlq-topic": topic,
            "lotline-dlq-partition": str(partition),
            "lotline-dlq-offset": str(offset),
            "lotline-dlq-service": self.service,
            "lotline-dlq-at": datetime.now(UTC).isoformat(),
        }
        log.warning(
            "dead_lettered",
            topic=topic,
            partition=partition,
            offset=offset,
            field=field,
            reason=reason,
        )
        await self._until_done(lambda: self.publisher.send_raw(f"{topic}.dlq", key, value, headers))
        self.metrics.dead_lettered.inc()


class ServiceConsumer:
    """One Kafka consumer per service instance, over every topic the service consumes.

    The range assignor gives one instance partition p of every topic together, and every
    event of a SKU sits on the same partition number of each topic (same key, same
    partition count). So all events of a SKU are applied by one instance, one batch at a
    time: each document has a single writer. That matters: FerretDB v1 does not isolate
    concurrent updates of one document, and even on MongoDB it spares optimistic retries.
    """

    def __init__(
        self,
        service: str,
        settings: Settings,
        owned: OwnedState,
        progress: Progress,
        wal: WriteAheadLog,
    ) -> None:
        self.service = service
        self.settings = settings
        self.owned = owned
        self.progress = progress
        self.wal = wal
        self.topics: dict[str, EventConsumer] = {}
        # FastStream's subscriber; its aiokafka consumer (`.consumer`) exists while running.
        self._subscriber: Any = None

    def add(self, consumer: EventConsumer) -> None:
        self.topics[consumer.event_type.topic] = consumer

    def subscribe(self, broker: KafkaBroker) -> None:
        """Register with FastStream as one manually acknowledged batch subscriber."""
        if not self.topics:
            return

        async def on_batch(message: KafkaMessage) -> None:
            await self.consume(message)

        on_batch.__name__ = f"on_{self.service.replace('-', '_')}_events"
        names = ", ".join(f"`{topic}`" for topic in self.topics)
        self._subscriber = broker.subscriber(
            *self.topics,
            group_id=consumer_group(self.service),
            batch=True,
            max_records=self.settings.consumer_max_records,
            batch_timeout_ms=self.settings.consumer_batch_timeout_ms,
            fetch_max_wait_ms=self.settings.consumer_fetch_max_wait_ms,
            fetch_min_bytes=self.settings.consumer_fetch_min_bytes,
            auto_offset_reset="earliest",
            partition_assignment_strategy=(RangePartitionAssignor,),
            # Partitions moving elsewhere end this instance's claim to be the only writer.
            listener=ForgetOnRebalance(
                self.owned, on_revoke=self.wal.release, on_assign=self.wal.restore
            ),
            # A recall of a million units is one long batch; the group must not evict us.
            max_poll_interval_ms=self.settings.consumer_max_poll_interval_ms,
            # Offsets are committed by `consume` once the batch's effects are durable;
            # FastStream's default would commit on receipt (at most once).
            ack_policy=AckPolicy.MANUAL,
            max_partition_fetch_bytes=16 * 1024 * 1024,
            decoder=_records_undecoded,
            title=f"{self.service}",
            description=f"{self.service} consumes {names}",
        )
        self._subscriber(on_batch)

    def owner_of(self, key: str) -> int | None:
        """The partition of `key` when this instance holds it now, so that its documents and
        the events about it are this instance's to write (a timer's unit of work); None
        while another instance holds it, or before the group has assigned partitions."""
        kafka = getattr(self._subscriber, "consumer", None)
        if kafka is None or not self.topics:
            return None
        return owned_partition(kafka, next(iter(self.topics)), key)

    async def consume(self, message: KafkaMessage) -> None:
        records: tuple[ConsumerRecord[Any, Any], ...] = message.raw_message
        by_topic: dict[str, list[ConsumerRecord[Any, Any]]] = {}
        for record in records:
            by_topic.setdefault(record.topic, []).append(record)
        revisit: list[Delivery] = []
        try:
            # What the partitions' previous owner logged but did not write yet comes first.
            await self.wal.restore({record.partition for record in records})
            # Topics in the order the service registered them (e.g. receipts before sales).
            for topic, consumer in self.topics.items():
                if topic in by_topic:
                    # The partition count, to recognise an event on another partition than
                    # its SKU's (the group's metadata has it for every assigned topic).
                    kafka: Any = message.consumer  # aiokafka's consumer underneath
                    partitions = kafka.partitions_for_topic(topic)
                    count = len(partitions) if partitions else None
                    revisit.extend(await consumer.process(by_topic[topic], count))
        except asyncio.CancelledError:
            # Shutting down mid-batch: leave the offsets where they were, so it is redelivered.
            self.owned.forget("batch cancelled")
            await message.nack()
            raise
        except Exception as exc:
            # A failure outside the handlers' own retries (they dead-letter what they cannot
            # apply): say so loudly, and read the batch again rather than skip it. Readiness
            # turns not-ready if it goes on (`Progress`).
            self.owned.forget("batch failed")
            first = records[0]
            where = f"{first.topic}:{first.partition}@{first.offset}"
            self.progress.troubled(f"batch of {len(records)} from {where} failed: {exc!r}")
            log.exception("batch_failed", topics=sorted(by_topic), first=where)
            await message.nack()
            raise
        if revisit:
            # Read each deferred event's partition again from it: later events there were
            # applied and will be recognised; the commit below stops before it.
            earliest: dict[TopicPartition, int] = {}
            for delivery in revisit:
                tp = TopicPartition(delivery.topic, delivery.partition)
                earliest[tp] = min(earliest.get(tp, delivery.offset), delivery.offset)
            for tp, offset in earliest.items():
                message.consumer.seek(tp, offset)
        positions = next_positions(records, earliest if revisit else {})
        aiokafka: Any = message.consumer  # aiokafka's consumer underneath
        CONSUMER_LAG.applied(aiokafka, positions)
        try:
            # Only the partitions this batch read from: a plain commit names every assigned
            # one (stock's dozen topics: 72), and the broker writes each one's offset, some
            # twenty batches a second at a steady 1,000 lines/s.
            await aiokafka.commit(positions)
        except KafkaError as exc:
            # A rebalance took the partitions away; the new owner redelivers the batch
            # and the effects' guards make that harmless.
            log.warning("commit_failed", error=str(exc))
        else:
            self.progress.committed()
        if revisit:
            await asyncio.sleep(self.settings.consumer_retry_backoff_s)


def owned_partition(kafka: Any, topic: str, key: str) -> int | None:
    """`key`'s partition of `topic` if `kafka` (an aiokafka consumer) is assigned it. Every
    topic of a service has the same partition count and the range assignor gives one
    instance partition p of each, so one topic answers for all."""
    partitions = kafka.partitions_for_topic(topic)
    if not partitions:
        return None
    partition = key_partition(key, len(partitions))
    return partition if TopicPartition(topic, partition) in kafka.assignment() else None


def next_positions(
    records: Sequence[ConsumerRecord[Any, Any]], read_again: dict[TopicPartition, int]
) -> dict[TopicPartition, int]:
    """Where each partition a batch read from goes on: after its last record, or at the
    first record to be read again (deferred). What the consumer commits."""
    positions: dict[TopicPartition, int] = {}
    for record in records:
        tp = TopicPartition(record.topic, record.partition)
        positions[tp] = max(positions.get(tp, 0), record.offset + 1)
    positions.update(read_again)
    return positions


async def _records_undecoded(message: KafkaMessage) -> Any:
    """Skip FastStream's JSON decoding: the codec decodes each record once, with clear errors."""
    return None
