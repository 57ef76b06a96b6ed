"""The outbox of changes made by a request (`lotline.runtime.outbox`), over the recall's
store in memory: a recall saved with its broadcast is published once, whether the first
attempt works, fails, or the relay finds it later."""

from __future__ import annotations

from datetime import timedelta

from memory_db import MemoryDatabase, MemoryPublisher

from lotline.events import Classification, EventType
from lotline.recall.domain import Recall, RecallRequest
from lotline.recall.store import RecallStore, now
from lotline.runtime.outbox import Relay


def issued(recall_id: str, minutes_ago: float = 0.0) -> Recall:
    request = RecallRequest(
        sku="MILK",
        lot_codes=("L1",),
        serials=(),
        reason="Listeria",
        classification=Classification.I,
        issued_by="operator",
    )
    return Recall.issue(recall_id, request, now() - timedelta(minutes=minutes_ago))


def recalls_sent(publisher: MemoryPublisher) -> list[str]:
    return [e.data.recall_id for e in publisher.events(EventType.BATCH_RECALLED)]


async def test_a_saved_broadcast_is_published_once_right_after_the_request() -> None:
    store = RecallStore(MemoryDatabase())  # type: ignore[arg-type]
    publisher = MemoryPublisher()
    relay = Relay(store, publisher, grace_s=0.0, name="recall")
    await store.insert(issued("RC-1"), None)
    assert await relay.try_publish("RC-1")
    record = await store.load("RC-1")
    assert record is not None
    assert not record.broadcast_pending
    await relay.relay()  # nothing is left for the relay
    assert await relay.publish("RC-1")  # and a second publish sends nothing
    assert recalls_sent(publisher) == ["RC-1"]


async def test_a_broadcast_the_broker_refused_is_relayed_once_it_has_waited_its_grace() -> None:
    store = RecallStore(MemoryDatabase())  # type: ignore[arg-type]
    publisher = MemoryPublisher()
    relay = Relay(store, publisher, grace_s=60.0, name="recall")
    await store.insert(issued("RC-1", minutes_ago=0.1), None)
    await store.insert(issued("RC-OLD", minutes_ago=5), None)  # its instance died meanwhile
    publisher.fail_next(ConnectionError("the broker is down"))
    # The recall is saved: the request succeeded, the broadcast waits.
    assert not await relay.try_publish("RC-1")
    assert recalls_sent(publisher) == []
    await relay.relay()  # only what waited longer than the grace: RC-1 may be in flight
    assert recalls_sent(publisher) == ["RC-OLD"]
    relay.grace = timedelta(0)
    await relay.relay()
    await relay.relay()
    assert recalls_sent(publisher) == ["RC-OLD", "RC-1"]


async def test_the_relay_looks_back_no_further_than_its_horizon() -> None:
    store = RecallStore(MemoryDatabase(), relay_horizon=timedelta(days=1))  # type: ignore[arg-type]
    publisher = MemoryPublisher()
    await store.insert(issued("RC-ANCIENT", minutes_ago=2 * 24 * 60), None)
    await Relay(store, publisher, grace_s=0.0, name="recall").relay()
    assert recalls_sent(publisher) == []
