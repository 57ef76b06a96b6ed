"""The batch consumer's own logic in memory: a poison event is isolated, its neighbours are
applied and recorded as applied by the unit of work, and a consumer that cannot commit says
so after `stall_after_s`. Retries, bisection, deferral and dead letters, each to the exact
calls and headers (the unit of work's own path in detail is in test_unit_of_work.py)."""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import bson
import pytest
from memory_db import MemoryDatabase

from lotline.events import ItemSold, envelope_of
from lotline.events.envelope import envelope_class
from lotline.events.topics import EventType
from lotline.runtime.consumer import BatchResult, Delivery, EventConsumer, Progress
from lotline.runtime.owned import OwnedState
from lotline.runtime.settings import Settings
from lotline.runtime.wal import Fact, WriteAheadLog

NOW = datetime.now(UTC)
# A time the contract refuses today; built past validation to stand for any value the
# database cannot hold, whatever the contract lets through tomorrow.
UNSTORABLE = datetime(9999, 12, 31, 23, 59, 59, tzinfo=timezone(-timedelta(hours=14)))


class DeadLetters:
    """Stands in for Kafka where the consumer dead-letters: keeps what it was given."""

    def __init__(self) -> None:
        self.sent: list[tuple[str, bytes | None, dict[str, str]]] = []

    async def send_raw(
        self, topic: str, key: bytes | None, value: bytes | None, headers: dict[str, str]
    ) -> None:
        self.sent.append((topic, key, headers))

    async def send(self, messages: Any) -> None:
        raise AssertionError("nothing is published in these tests")


async def recorded(under_test: EventConsumer, batch: list[Delivery]) -> list[int]:
    """The offsets of `batch` whose events the unit of work recorded as applied."""
    facts = [Fact(d.partition, d.event.idempotency_key, d.event.time) for d in batch]
    answers = await under_test.wal.applied(facts)
    return [d.offset for d, known in zip(batch, answers, strict=True) if known]


def sale(n: int, at: datetime = NOW) -> Delivery:
    data = ItemSold(sku="SKU-1", sale_id=f"T-{n}", line=1, location="S1", quantity=1, sold_at=NOW)
    if at is NOW:
        event = envelope_of(data, source="till")
    else:
        fields = dict(envelope_of(data, source="till"))
        fields["time"] = at
        event = envelope_class(EventType.ITEM_SOLD).model_construct(**fields)
    return Delivery(event, "item-sold", 0, n)


def consumer(handler: Any, stall_after_s: float = 60.0) -> EventConsumer:
    settings = Settings(consumer_retry_backoff_s=0.001, consumer_retry_backoff_max_s=0.001)
    return EventConsumer(
        service="stock",
        event_type=EventType.ITEM_SOLD,
        handler=handler,
        publisher=DeadLetters(),  # type: ignore[arg-type]
        settings=settings,
        owned=OwnedState(),
        progress=Progress(stall_after_s),
        wal=WriteAheadLog(MemoryDatabase(), DeadLetters()),  # type: ignore[arg-type]
    )


async def test_an_event_whose_time_bson_cannot_hold_is_applied_and_recorded_with_the_rest() -> None:
    """The step that once froze stock (recording a time the database cannot hold): the unit
    of work records an event's time as a number, so the batch commits, and a copy of the
    event is still recognised."""
    applied: list[int] = []

    async def handler(deliveries: list[Delivery]) -> BatchResult:
        applied.extend(d.offset for d in deliveries)
        return BatchResult()

    under_test = consumer(handler)
    batch = [sale(0), sale(1), sale(2, at=UNSTORABLE), sale(3), sale(4)]
    assert await under_test.process_deliveries(batch) == []
    assert applied == [0, 1, 2, 3, 4]
    assert await recorded(under_test, batch) == [0, 1, 2, 3, 4]
    dead: DeadLetters = under_test.publisher  # type: ignore[assignment]
    assert dead.sent == []
    copy = Delivery(batch[2].event, "item-sold", 0, 9)
    assert await under_test.process_deliveries([copy]) == []
    assert applied == [0, 1, 2, 3, 4]


async def test_a_handler_that_fails_on_one_event_applies_the_rest_and_dead_letters_it() -> None:
    applied: list[int] = []

    async def handler(deliveries: list[Delivery]) -> BatchResult:
        if any(d.offset == 5 for d in deliveries):
            raise OverflowError("date value out of range")
        applied.extend(d.offset for d in deliveries)
        return BatchResult()

    under_test = consumer(handler)
    batch = [sale(n) for n in range(8)]
    revisit = await under_test.process_deliveries(batch)

    assert revisit == []
    assert sorted(applied) == [0, 1, 2, 3, 4, 6, 7]
    dead: DeadLetters = under_test.publisher  # type: ignore[assignment]
    assert [headers["lotline-dlq-offset"] for _, _, headers in dead.sent] == ["5"]
    assert await recorded(under_test, batch) == [0, 1, 2, 3, 4, 6, 7]
    # It was trouble, but nothing is stuck: the next commit clears it.
    assert under_test.progress.trouble_since is not None
    under_test.progress.committed()
    assert under_test.progress.stalled() is None


async def test_an_event_of_a_product_not_known_yet_is_read_again_then_dead_lettered() -> None:
    async def handler(deliveries: list[Delivery]) -> BatchResult:
        result = BatchResult()
        for delivery in deliveries:
            result.defer(delivery, "sku 'SKU-1' is not known yet")
        return result

    under_test = consumer(handler)
    under_test.settings = Settings(consumer_defer_max_s=0.05)
    first = await under_test.process_deliveries([sale(0)])
    assert [d.offset for d in first] == [0]
    await asyncio.sleep(0.06)
    again = await under_test.process_deliveries([sale(0)])
    assert again == []
    dead: DeadLetters = under_test.publisher  # type: ignore[assignment]
    assert [headers["lotline-dlq-reason"] for _, _, headers in dead.sent] == [
        "sku 'SKU-1' is not known yet"
    ]


def test_trouble_that_outlasts_the_limit_is_a_stall_naming_the_event() -> None:
    progress = Progress(stall_after_s=0.05)
    assert progress.stalled() is None
    progress.troubled("handler failed on 1 events from item-sold:3@17 (id x, source till)")
    assert progress.stalled() is None  # not yet: a retry is not a stall
    time.sleep(0.06)
    assert progress.stalled() == (
        "handler failed on 1 events from item-sold:3@17 (id x, source till)"
    )
    progress.committed()
    assert progress.stalled() is None


def test_an_unstorable_time_really_fails_bson() -> None:
    """The premise of the tests above: BSON cannot hold the time the till sent."""
    with pytest.raises(OverflowError):
        bson.encode({"at": UNSTORABLE})


# ------------------------------------------------- retries, bisection, deferral, dead letters


def fast_consumer(handler: Any, **settings: Any) -> EventConsumer:
    """A consumer whose backoff is a microsecond: retries cost no time, none is measured."""
    under_test = consumer(handler)
    under_test.settings = Settings(
        consumer_retry_backoff_s=1e-6, consumer_retry_backoff_max_s=1e-6, **settings
    )
    return under_test


def dead_offsets(under_test: EventConsumer) -> list[str]:
    dead: DeadLetters = under_test.publisher  # type: ignore[assignment]
    return [headers["lotline-dlq-offset"] for _, _, headers in dead.sent]


async def test_a_handler_that_fails_a_few_times_is_retried_and_nothing_is_dead_lettered() -> None:
    calls: list[list[int]] = []

    async def handler(deliveries: list[Delivery]) -> BatchResult:
        calls.append([d.offset for d in deliveries])
        if len(calls) < 3:
            raise ValueError("a lock timed out")
        return BatchResult()

    under_test = fast_consumer(handler, consumer_retry_attempts=3)
    batch = [sale(0), sale(1)]
    assert await under_test.process_deliveries(batch) == []
    assert calls == [[0, 1], [0, 1], [0, 1]]  # the whole batch each time: no bisection
    assert dead_offsets(under_test) == []
    assert await recorded(under_test, batch) == [0, 1]
    assert "ValueError('a lock timed out')" in under_test.progress.trouble


async def test_infrastructure_errors_are_waited_out_however_long_and_never_dead_lettered() -> None:
    from pymongo.errors import AutoReconnect

    calls = 0

    async def handler(deliveries: list[Delivery]) -> BatchResult:
        nonlocal calls
        calls += 1
        if calls <= 7:
            raise AutoReconnect("primary stepped down")
        return BatchResult()

    under_test = fast_consumer(handler, consumer_retry_attempts=2)
    assert await under_test.process_deliveries([sale(0), sale(1), sale(2)]) == []
    assert calls == 8  # beyond the retry attempts, and never split
    assert dead_offsets(under_test) == []
    assert under_test.progress.trouble.startswith("infrastructure unavailable: AutoReconnect")


async def test_bisection_isolates_each_poison_event_and_hands_the_rest_over_in_halves() -> None:
    calls: list[list[int]] = []

    async def handler(deliveries: list[Delivery]) -> BatchResult:
        calls.append([d.offset for d in deliveries])
        if any(d.offset in (1, 6) for d in deliveries):
            raise KeyError("lots")
        return BatchResult()

    under_test = fast_consumer(handler, consumer_retry_attempts=1)
    batch = [sale(n) for n in range(8)]
    assert await under_test.process_deliveries(batch) == []
    assert calls == [
        [0, 1, 2, 3, 4, 5, 6, 7],
        [0, 1, 2, 3],
        [0, 1],
        [0],
        [1],
        [2, 3],
        [4, 5, 6, 7],
        [4, 5],
        [6, 7],
        [6],
        [7],
    ]
    dead: DeadLetters = under_test.publisher  # type: ignore[assignment]
    assert [(topic, key, h["lotline-dlq-offset"]) for topic, key, h in dead.sent] == [
        ("item-sold.dlq", b"SKU-1", "1"),
        ("item-sold.dlq", b"SKU-1", "6"),
    ]
    headers = dead.sent[0][2]
    assert headers["lotline-dlq-reason"] == "handler failed: KeyError('lots')"
    assert headers["lotline-dlq-field"] == "data"
    assert headers["lotline-dlq-topic"] == "item-sold"
    assert headers["lotline-dlq-partition"] == "0"
    assert headers["lotline-dlq-service"] == "stock"
    # The poison is not remembered as applied: replayed from the DLQ once fixed, it applies.
    assert await recorded(under_test, batch) == [0, 2, 3, 4, 5, 7]


async def test_deferred_events_are_read_again_until_applied_and_then_forgotten() -> None:
    waiting = {1}
    handled: list[list[int]] = []

    async def handler(deliveries: list[Delivery]) -> BatchResult:
        handled.append([d.offset for d in deliveries])
        result = BatchResult()
        for delivery in deliveries:
            if delivery.offset in waiting:
                result.defer(delivery, "sku 'SKU-1' is not known yet")
        return result

    under_test = fast_consumer(handler, consumer_defer_max_s=3600.0)
    batch = [sale(0), sale(1), sale(2)]
    revisit = await under_test.process_deliveries(batch)
    assert [d.offset for d in revisit] == [1]
    assert await recorded(under_test, batch) == [0, 2]
    assert list(under_test._deferred_since) == [("item-sold:0", 1)]
    # Read again from its offset: the later events are recognised, the deferred one applies.
    waiting.clear()
    assert await under_test.process_deliveries([batch[1], batch[2]]) == []
    assert handled == [[0, 1, 2], [1]]
    assert under_test._deferred_since == {}
    assert dead_offsets(under_test) == []
    assert await recorded(under_test, batch) == [0, 1, 2]


async def test_an_event_deferred_past_its_limit_is_dead_lettered_and_given_up_on() -> None:
    from pymongo.errors import ConnectionFailure

    given_up: list[tuple[int, str]] = []
    hook_calls = 0

    async def handler(deliveries: list[Delivery]) -> BatchResult:
        result = BatchResult()
        for delivery in deliveries:
            if delivery.offset == 1:
                result.defer(delivery, "sku 'SKU-1' is not known yet")
        return result

    async def give_up(expired: list[Any]) -> None:
        nonlocal hook_calls
        hook_calls += 1
        if hook_calls == 1:
            raise ConnectionFailure("the flag could not be sent yet")
        given_up.extend((item.delivery.offset, item.reason) for item in expired)

    under_test = fast_consumer(handler, consumer_defer_max_s=15.0)
    under_test.give_up = give_up
    # First deferred long enough ago (no test waits for a clock).
    under_test._deferred_since[("item-sold:0", 1)] = time.monotonic() - 16.0
    assert await under_test.process_deliveries([sale(0), sale(1)]) == []
    assert dead_offsets(under_test) == ["1"]
    dead: DeadLetters = under_test.publisher  # type: ignore[assignment]
    assert dead.sent[0][2]["lotline-dlq-reason"] == "sku 'SKU-1' is not known yet"
    assert given_up == [(1, "sku 'SKU-1' is not known yet")]
    assert hook_calls == 2  # the hook's infrastructure failure was waited out
    assert under_test._deferred_since == {}


async def test_an_event_given_up_on_after_deferral_is_not_remembered_as_applied() -> None:
    async def handler(deliveries: list[Delivery]) -> BatchResult:
        result = BatchResult()
        for delivery in deliveries:
            result.defer(delivery, "its recall's answer is not in yet")
        return result

    under_test = fast_consumer(handler, consumer_defer_max_s=15.0)
    under_test._deferred_since[("item-sold:0", 0)] = time.monotonic() - 16.0
    given = [sale(0)]
    assert await under_test.process_deliveries(given) == []
    assert dead_offsets(under_test) == ["0"]
    # Not applied: a replay from the DLQ must apply it.
    assert await recorded(under_test, given) == []


async def test_an_undecodable_record_is_dead_lettered_as_sent_and_its_neighbours_applied() -> None:
    from aiokafka import ConsumerRecord

    from lotline.events import encode_event

    handled: list[int] = []

    async def handler(deliveries: list[Delivery]) -> BatchResult:
        handled.extend(d.offset for d in deliveries)
        return BatchResult()

    def record(offset: int, value: bytes, headers: list[tuple[str, bytes]]) -> Any:
        return ConsumerRecord(
            "item-sold", 4, offset, 0, 0, b"SKU-1", value, None, 5, len(value), headers
        )

    good = encode_event(sale(0).event)
    broken = b'{"specversion": "1.0", "id": "x", "source": "till", "type": "item-sold"}'
    under_test = fast_consumer(handler)
    revisit = await under_test.process(
        [
            record(10, good.value, good.headers),
            record(11, broken, [("traceparent", b"00-abc-def-01")]),
            record(12, good.value.replace(b"T-0", b"T-9"), good.headers),
        ]
    )
    assert revisit == []
    assert handled == [10, 12]
    dead: DeadLetters = under_test.publisher  # type: ignore[assignment]
    assert len(dead.sent) == 1
    topic, key, headers = dead.sent[0]
    assert (topic, key) == ("item-sold.dlq", b"SKU-1")
    assert headers["lotline-dlq-offset"] == "11"
    assert headers["lotline-dlq-partition"] == "4"
    assert headers["lotline-dlq-field"] == "subject"
    assert headers["traceparent"] == "00-abc-def-01"  # the record's own headers, kept


def test_a_batch_commits_the_partitions_it_read_from_and_stops_before_a_deferred_event() -> None:
    from aiokafka import ConsumerRecord, TopicPartition

    from lotline.runtime.consumer import next_positions

    def record(topic: str, partition: int, offset: int) -> Any:
        return ConsumerRecord(topic, partition, offset, 0, 0, b"k", b"v", None, 1, 1, [])

    records = [
        record("item-sold", 0, 7),
        record("item-sold", 0, 9),
        record("item-sold", 3, 2),
        record("item-received", 0, 40),
    ]
    deferred = {TopicPartition("item-sold", 3): 2}
    assert next_positions(records, deferred) == {
        TopicPartition("item-sold", 0): 10,
        TopicPartition("item-sold", 3): 2,  # read again from the deferred event
        TopicPartition("item-received", 0): 41,
    }
