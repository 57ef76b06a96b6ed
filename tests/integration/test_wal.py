"""The write-ahead log on the real FerretDB: a batch is one insert, its documents are written
in the background coalesced, every reader sees every committed batch before and after that,
and an owner that died (mid-publish, mid-write) leaves nothing lost and nothing doubled."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from pymongo import AsyncMongoClient
from pymongo.asynchronous.database import AsyncDatabase
from pymongo.errors import AutoReconnect

from lotline.events import OutgoingMessage, StockQuarantined, encode
from lotline.runtime import mongo as mongo_module
from lotline.runtime import wal as wal_module
from lotline.runtime.pages import PagedLists
from lotline.runtime.wal import VERSION, Fact, WriteAheadLog, checkpoint_id, entry_id

pytestmark = pytest.mark.infra


class HandedToKafka:
    """The events the log handed on to be published, in order."""

    def __init__(self) -> None:
        self.sent: list[OutgoingMessage] = []
        self.fail = False

    async def send(self, messages: Sequence[OutgoingMessage]) -> None:
        if self.fail:
            raise ConnectionError("broker gone")
        self.sent.extend(messages)


@pytest.fixture
async def db(mongo: AsyncMongoClient[dict[str, Any]], run_id: str) -> AsyncIterator[Any]:
    name = f"lotline_wal_{run_id.lower()}"
    yield mongo[name]
    await mongo.drop_database(name)


def quarantined(sku: str, n: int) -> OutgoingMessage:
    return encode(
        StockQuarantined(sku=sku, recall_id=f"RC-{n}", location="S1", lot_code="L1", quantity=n),
        source="tests",
    )


async def stored(db: AsyncDatabase[dict[str, Any]], collection: str) -> dict[str, Any]:
    return {doc["_id"]: doc async for doc in db[collection].find({})}


async def test_a_batch_is_one_insert_and_its_documents_follow_coalesced(db) -> None:  # type: ignore[no-untyped-def]
    kafka = HandedToKafka()
    log = WriteAheadLog(db, kafka)
    await log.restore([0, 1])
    log.observe("A", 0)
    log.observe("B", 1)
    for n in range(1, 6):  # five batches change the same two documents
        log.stage("A", "levels", "A S1", {"sku": "A", "on_hand": n})
        log.stage("B", "levels", "B S1", {"sku": "B", "on_hand": 10 * n}, [quarantined("B", n)])
        await log.commit()

    # Durable and visible before any document is written: five entries per partition.
    assert await db["wal"].count_documents({"p": {"$exists": True}}) == 10
    assert await stored(db, "levels") == {}
    assert (await log.latest("levels", ["A S1"]))["A S1"]["on_hand"] == 5
    other_reader = WriteAheadLog(db)
    seen = await other_reader.read("levels", ["A S1", "B S1", "C S1"])
    assert {k: v["on_hand"] for k, v in seen.items()} == {"A S1": 5, "B S1": 50}
    assert [m.event.data.quantity for m in kafka.sent] == [1, 2, 3, 4, 5]

    assert await log.materialize() == 2  # ten changes, two writes
    docs = await stored(db, "levels")
    assert {k: (v["on_hand"], v[VERSION]) for k, v in docs.items()} == {
        "A S1": (5, 5),
        "B S1": (50, 5),
    }
    assert await db["wal"].count_documents({"p": {"$exists": True}}) == 0
    assert (await db["wal"].find_one({"_id": checkpoint_id(0)}) or {})["seq"] == 5
    seen = await other_reader.read("levels", ["A S1", "B S1"], {"sku": 0})
    assert seen == {"A S1": {"_id": "A S1", "on_hand": 5}, "B S1": {"_id": "B S1", "on_hand": 50}}
    assert log.pending_docs == 0


async def test_events_a_failed_publish_left_go_out_with_the_next_commit(db) -> None:  # type: ignore[no-untyped-def]
    kafka = HandedToKafka()
    log = WriteAheadLog(db, kafka)
    await log.restore([0])
    log.observe("A", 0)
    log.stage("A", "levels", "A S1", {"on_hand": 1}, [quarantined("A", 1)])
    kafka.fail = True
    with pytest.raises(ConnectionError):
        await log.commit()
    kafka.fail = False
    await log.commit()  # the redelivered batch changes nothing: its levels are logged
    assert [m.event.data.quantity for m in kafka.sent] == [1]


async def test_a_reader_keeps_the_newer_of_the_document_and_the_pending_entry(db) -> None:  # type: ignore[no-untyped-def]
    log = WriteAheadLog(db)
    await log.restore([0])
    log.observe("A", 0)
    log.stage("A", "levels", "A S1", {"on_hand": 1})
    await log.commit()
    await log.materialize()
    log.stage("A", "levels", "A S1", {"on_hand": 2})
    await log.commit()
    # An entry a round wrote but had not deleted yet (the writer died in between) is older
    # than the document: the document wins.
    await db["wal"].insert_one(
        {
            "_id": entry_id(0, 1),
            "p": 0,
            "seq": 1,
            "puts": [{"c": "levels", "id": "A S1", "doc": {"on_hand": 1}, "out": []}],
        }
    )
    assert (await WriteAheadLog(db).read("levels", ["A S1"]))["A S1"]["on_hand"] == 2
    await log.materialize()
    assert (await WriteAheadLog(db).read("levels", ["A S1"]))["A S1"]["on_hand"] == 2


async def test_the_next_owner_restores_what_a_dead_owner_logged_and_publishes_it_again(db) -> None:  # type: ignore[no-untyped-def]
    kafka = HandedToKafka()
    dead = WriteAheadLog(db, kafka)
    await dead.restore([3])
    dead.observe("A", 3)
    dead.stage("A", "levels", "A S1", {"on_hand": 7}, [quarantined("A", 7)])
    kafka.fail = True  # logged, then the process died before Kafka had the event
    with pytest.raises(ConnectionError):
        await dead.commit()

    kafka = HandedToKafka()
    heir = WriteAheadLog(db, kafka)
    await heir.restore([3])
    heir.observe("A", 3)
    assert [m.event.data.quantity for m in kafka.sent] == [7]
    assert (await heir.latest("levels", ["A S1"]))["A S1"]["on_hand"] == 7
    heir.stage("A", "levels", "A S1", {"on_hand": 8})
    await heir.commit()  # numbered after the dead owner's entry, never over it
    assert await heir.materialize() == 1
    assert (await stored(db, "levels"))["A S1"]["on_hand"] == 8

    # A third owner finds nothing left to do.
    kafka = HandedToKafka()
    third = WriteAheadLog(db, kafka)
    await third.restore([3])
    third.observe("A", 3)
    assert kafka.sent == []
    assert third.pending_docs == 0


async def test_a_round_cut_short_is_written_again_by_the_next_owner(db, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.setattr(mongo_module, "BULK_PART", 50)
    log = WriteAheadLog(db)
    await log.restore([0])
    log.observe("A", 0)
    for n in range(200):
        log.stage("A", "levels", f"A S{n}", {"on_hand": n})
    await log.commit()
    # The round writes its documents in parts of 50 and gives way before each one: the
    # process is killed before the third part, after half of the documents are written
    # and before any checkpoint moves.
    parts = 0
    killed = asyncio.Event()

    async def give_way() -> None:
        nonlocal parts
        parts += 1
        if parts == 3:
            killed.set()
            await asyncio.Event().wait()

    log._give_way = give_way  # type: ignore[method-assign]
    task = asyncio.create_task(log.materialize())
    await asyncio.wait_for(killed.wait(), 10)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert 0 < len(await stored(db, "levels")) < 200

    heir = WriteAheadLog(db)
    await heir.restore([0])
    heir.observe("A", 0)
    assert heir.pending_docs == 200
    await heir.materialize()
    docs = await stored(db, "levels")
    assert {k: v["on_hand"] for k, v in docs.items()} == {f"A S{n}": n for n in range(200)}


async def test_a_batch_too_big_for_one_document_is_split_and_stays_exact(db, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.setattr(wal_module, "ENTRY_BYTES", 2_000)
    log = WriteAheadLog(db)
    await log.restore([0])
    log.observe("A", 0)
    for n in range(60):
        log.stage("A", "levels", f"A S{n}", {"on_hand": n, "pad": "x" * 100})
    await log.commit()
    assert await db["wal"].count_documents({"p": {"$exists": True}}) > 1
    seen = await WriteAheadLog(db).read("levels", [f"A S{n}" for n in range(60)])
    assert {k: v["on_hand"] for k, v in seen.items()} == {f"A S{n}": n for n in range(60)}


async def test_too_much_pending_makes_a_commit_wait_for_the_writer(db) -> None:  # type: ignore[no-untyped-def]
    log = WriteAheadLog(db, max_pending_docs=100)
    await log.restore([0])
    log.observe("A", 0)
    writer = asyncio.create_task(log.run(idle_s=0.01))
    try:
        for batch in range(5):
            for n in range(60):
                log.stage("A", "levels", f"A S{batch} {n}", {"at": datetime.now(UTC)})
            await log.commit()
            assert log.pending_docs < 100 + 60
    finally:
        writer.cancel()
    await log.materialize()
    assert await db["levels"].count_documents({}) == 300


async def test_giving_a_partition_up_waits_for_the_round_and_drops_it(db) -> None:  # type: ignore[no-untyped-def]
    log = WriteAheadLog(db)
    await log.restore([0, 1])
    log.observe("A", 0)
    log.observe("B", 1)
    log.stage("A", "levels", "A S1", {"on_hand": 1})
    log.stage("B", "levels", "B S1", {"on_hand": 2})
    await log.commit()
    await log.release([1])
    assert log.pending_docs == 1
    assert await log.materialize() == 1
    assert set(await stored(db, "levels")) == {"A S1"}
    heir = WriteAheadLog(db)
    await heir.restore([1])
    heir.observe("B", 1)
    assert (await heir.latest("levels", ["B S1"]))["B S1"]["on_hand"] == 2


async def test_a_batch_whose_insert_failed_is_applied_again_by_the_same_owner(
    db, monkeypatch
) -> None:  # type: ignore[no-untyped-def]
    log = WriteAheadLog(db)
    await log.restore([2])
    log.observe("A", 2)
    log.stage("A", "levels", "A S1", {"on_hand": 1})
    await log.commit()
    real_insert = log._entries.insert_many

    async def database_gone(*args: Any, **kwargs: Any) -> Any:
        raise AutoReconnect("127.0.0.1:27017: connection closed")

    monkeypatch.setattr(log._entries, "insert_many", database_gone)
    log.stage("A", "levels", "A S1", {"on_hand": 2})
    with pytest.raises(AutoReconnect):
        await log.commit()
    monkeypatch.setattr(log._entries, "insert_many", real_insert)
    # The consumer retries the batch from what every committed batch left: the logged
    # level, not written out yet, never the older document (there is none here at all).
    assert (await log.latest("levels", ["A S1"]))["A S1"]["on_hand"] == 1
    # The same key, on the partition it still owns.
    log.stage("A", "levels", "A S1", {"on_hand": 2})
    await log.commit()
    assert (await WriteAheadLog(db).read("levels", ["A S1"]))["A S1"]["on_hand"] == 2
    assert await log.materialize() == 1
    assert (await stored(db, "levels"))["A S1"]["on_hand"] == 2


def facts(partition: int, *keys: str, at: datetime | None = None) -> list[Fact]:
    when = at or datetime.now(UTC)
    return [Fact(partition, key, when) for key in keys]


async def test_the_events_a_batch_applied_are_recorded_with_it_and_known_to_the_next_owner(
    db,
) -> None:  # type: ignore[no-untyped-def]
    owner = WriteAheadLog(db, HandedToKafka())
    await owner.restore([0])
    owner.observe("A", 0)
    # Copies within one batch: the first counts, the second is already applied.
    assert await owner.applied(facts(0, "sale 1", "sale 1", "sale 2")) == [False, True, False]
    owner.stage("A", "levels", "A S1", {"sku": "A", "on_hand": 1})
    owner.record(facts(0, "sale 1", "sale 2"))
    await owner.commit()
    assert await owner.applied(facts(0, "sale 1", "sale 2", "sale 3")) == [True, True, False]

    # Logged, not written out: the next owner reads the entry.
    pending = WriteAheadLog(db, HandedToKafka())
    assert await pending.applied(facts(0, "sale 1", "sale 3")) == [True, False]

    # Written out: the entry is gone, and its fingerprints are in a page of the partition.
    await owner.materialize()
    assert await db["wal"].count_documents({"p": {"$exists": True}}) == 0
    assert await db["wal_keys"].count_documents({"p": 0}) == 1
    after = WriteAheadLog(db, HandedToKafka())
    assert await after.applied(facts(0, "sale 1", "sale 2", "sale 3")) == [True, True, False]


async def test_what_memory_forgets_is_looked_up_and_pages_are_merged(db) -> None:  # type: ignore[no-untyped-def]
    owner = WriteAheadLog(db, HandedToKafka(), recent_max=3)
    await owner.restore([0])
    owner.observe("A", 0)
    start = datetime(2026, 11, 1, tzinfo=UTC)
    for n in range(wal_module.MAX_KEY_PAGES + 4):  # more rounds than pages are kept
        owner.stage("A", "levels", "A S1", {"sku": "A", "on_hand": n})
        owner.record([Fact(0, f"sale {n}", start + timedelta(minutes=n))])
        await owner.commit()
        await owner.materialize()
    assert await db["wal_keys"].count_documents({"p": 0}) <= wal_module.MAX_KEY_PAGES
    # The oldest are forgotten by memory (at most 3 held) but kept by _id: still applied.
    assert len(await db["wal_applied"].find({}).to_list()) >= 10
    again = WriteAheadLog(db, HandedToKafka(), recent_max=3)
    old_and_new = [Fact(0, f"sale {n}", start + timedelta(minutes=n)) for n in range(20)]
    assert await again.applied(old_and_new) == [True] * 20
    assert await again.applied([Fact(0, "sale new", start)]) == [False]


async def test_a_commit_split_in_entries_that_failed_part_way_never_happened(
    db, monkeypatch
) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.setattr(wal_module, "ENTRY_BYTES", 200)  # one document per entry
    owner = WriteAheadLog(db, HandedToKafka())
    await owner.restore([0])
    owner.observe("A", 0)
    for n in range(3):
        owner.stage("A", "levels", f"A S{n}", {"sku": "A", "on_hand": n, "pad": "x" * 150})
    owner.record(facts(0, "receipt 1"))
    # The last of the three entries never made it (the insert stopped before it).
    real_insert = db["wal"].insert_many

    async def insert_two(docs: list[dict[str, Any]], **kwargs: Any) -> Any:
        await real_insert(docs[:2], **kwargs)
        raise AutoReconnect("connection lost mid-insert")

    monkeypatch.setattr(owner, "_entries", db["wal"])
    monkeypatch.setattr(owner._entries, "insert_many", insert_two, raising=False)
    with pytest.raises(AutoReconnect):
        await owner.commit()

    successor = WriteAheadLog(db, HandedToKafka())
    # Not applied: its batch is redelivered and applied whole; the two entries are gone.
    assert await successor.applied(facts(0, "receipt 1")) == [False]
    assert await db["wal"].count_documents({"p": {"$exists": True}}) == 0
    assert await successor.read("levels", ["A S0", "A S1"]) == {}


async def test_list_items_go_with_the_batch_and_read_in_the_order_batches_were_applied(db) -> None:  # type: ignore[no-untyped-def]
    owner = WriteAheadLog(db, HandedToKafka())
    journal = PagedLists(db["lot_units"])
    owner.register(journal)
    await owner.restore([0])
    owner.observe("A", 0)
    # Written directly before the log existed (or by an insert of new units): no number.
    await journal.append({"A L1": [{"serial": "1", "status": "in_stock"}]})
    owner.append("A", journal, {"A L1": [{"serial": "1", "status": "sold"}]})
    # The owner sees the batch it is applying; nobody else does until it commits.
    assert [i["status"] for i in await owner.read_list(journal, "A L1")] == ["in_stock", "sold"]
    reader = WriteAheadLog(db)
    assert [i["status"] for i in await reader.read_list(journal, "A L1")] == ["in_stock"]
    await owner.commit()
    owner.append("A", journal, {"A L1": [{"serial": "1", "status": "returned"}]})
    await owner.commit()
    pending = await reader.read_list(journal, "A L1")
    assert [i["status"] for i in pending] == ["in_stock", "sold", "returned"]
    assert await db["lot_units"].count_documents({}) == 1  # nothing written out yet

    await owner.materialize()  # both batches' items in one page, after the first
    assert await db["lot_units"].count_documents({}) == 2
    written = await reader.read_list(journal, "A L1")
    assert [i["status"] for i in written] == ["in_stock", "sold", "returned"]
    assert all(VERSION not in item for item in written)


async def test_the_writer_gives_way_to_a_unit_of_work_unless_a_commit_waits_for_room(db) -> None:  # type: ignore[no-untyped-def]
    log = WriteAheadLog(db, HandedToKafka(), give_way_s=30)
    await log.restore([0])
    log.observe("A", 0)
    log.stage("A", "levels", "A S1", {"sku": "A", "on_hand": 1})
    await log.commit()
    async with log.foreground():  # a batch being applied
        writing = asyncio.create_task(log.materialize())
        await asyncio.sleep(0.3)
        assert not writing.done()  # waits for the batch, not for its 30 s
        assert await stored(db, "levels") == {}
    assert await asyncio.wait_for(writing, timeout=10) == 1
    assert (await stored(db, "levels"))["A S1"]["on_hand"] == 1

    # Batches back to back cannot hold the writer up for good: a round that has not
    # worked yet waits `give_way_s`, then writes.
    busy = WriteAheadLog(db, HandedToKafka(), give_way_s=0.2)
    await busy.restore([2])
    busy.observe("C", 2)
    busy.stage("C", "levels", "C S1", {"sku": "C", "on_hand": 3})
    await busy.commit()
    async with busy.foreground():  # never ends while the round runs
        assert await asyncio.wait_for(busy.materialize(), timeout=10) == 1
        assert (await stored(db, "levels"))["C S1"]["on_hand"] == 3

    # A commit that waits for room is never kept waiting by the writer giving way.
    full = WriteAheadLog(db, HandedToKafka(), give_way_s=30, max_pending_docs=100)
    await full.restore([1])
    full.observe("B", 1)
    for n in range(100):
        full.stage("B", "levels", f"B S{n}", {"sku": "B", "on_hand": n})
    await full.commit()
    async with full.foreground():
        full.stage("B", "levels", "B S0", {"sku": "B", "on_hand": -1})
        committing = asyncio.create_task(full.commit())
        await asyncio.sleep(0.1)
        assert await asyncio.wait_for(full.materialize(), timeout=10) == 100
        await asyncio.wait_for(committing, timeout=10)
