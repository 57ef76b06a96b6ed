"""The batch consumer's own logic in memory: a poison event is isolated wherever it fails
(in the handler, or when its application is recorded), its neighbours are applied, and a
consumer that cannot commit says so after `stall_after_s`."""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import bson
import pytest

from lotline.events import ItemSold, envelope_of
from lotline.events.envelope import envelope_class
from lotline.events.topics import EventType
from lotline.runtime.consumer import BatchResult, Delivery, EventConsumer, Progress
from lotline.runtime.owned import OwnedState
from lotline.runtime.settings import Settings

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


class RememberedInMemory:
    """`SeenEvents` in memory, encoding each record as BSON the way the driver would, so a
    value BSON cannot hold fails here as it fails against the database."""

    def __init__(self) -> None:
        self.remembered: dict[str, dict[str, Any]] = {}

    async def unseen(self, deliveries: list[Delivery]) -> list[Delivery]:
        return [d for d in deliveries if d.event.dedupe_key not in self.remembered]

    async def remember(self, deliveries: list[Delivery]) -> None:
        docs = [{"_id": d.event.dedupe_key, "at": d.event.time} for d in deliveries]
        encoded = [bson.encode(doc) for doc in docs]  # raises before anything is kept
        assert len(encoded) == len(docs)
        for doc in docs:
            self.remembered[doc["_id"]] = doc


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
        seen=RememberedInMemory(),  # type: ignore[arg-type]
        settings=settings,
        owned=OwnedState(),
        progress=Progress(stall_after_s),
    )


async def test_an_event_that_cannot_be_recorded_is_dead_lettered_and_its_neighbours_kept() -> None:
    applied: list[int] = []

    async def handler(deliveries: list[Delivery]) -> BatchResult:
        applied.extend(d.offset for d in deliveries)
        return BatchResult()

    under_test = consumer(handler)
    batch = [sale(0), sale(1), sale(2, at=UNSTORABLE), sale(3), sale(4)]
    await under_test._remember(batch)  # the step that froze stock: it returns now

    seen: RememberedInMemory = under_test.seen  # type: ignore[assignment]
    assert sorted(seen.remembered) == sorted(d.event.dedupe_key for d in batch if d.offset != 2)
    dead: DeadLetters = under_test.publisher  # type: ignore[assignment]
    assert [(topic, headers["lotline-dlq-offset"]) for topic, _, headers in dead.sent] == [
        ("item-sold.dlq", "2")
    ]
    assert "could not be recorded" in dead.sent[0][2]["lotline-dlq-reason"]
    assert "OverflowError" in dead.sent[0][2]["lotline-dlq-reason"]


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
    seen: RememberedInMemory = under_test.seen  # type: ignore[assignment]
    assert len(seen.remembered) == 7
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
