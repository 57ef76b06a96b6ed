"""The unit of work without Kafka or a database: the write-ahead log (`lotline.runtime.wal`)
over the in-memory database, and the consumer's unit of work through it.

What a batch commits is one insert into `wal`, whatever it changed; the owner and any other
reader see it before it is written out; the materializer writes each document once however
many batches changed it; a next owner restores what was not written out, republishes its
events and knows the events it applied (a split commit that failed part-way never
happened); fingerprints move to pages and, forgotten, to `wal_applied`; too much pending
makes a commit wait. The consumer drops copies before its handler, records nothing of a
deferred event, drops what a failed handler staged, and applies a batch retried after a
failed commit once.
"""

from __future__ import annotations

import asyncio
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import NAMESPACE_URL, uuid5

import bson
import pytest
from aiokafka import TopicPartition
from memory_db import MemoryDatabase, MemoryPublisher
from pymongo import DeleteOne
from pymongo.errors import AutoReconnect, BulkWriteError, ConnectionFailure, DuplicateKeyError

from lotline.events import (
    EventDecodeError,
    EventType,
    ItemSold,
    StockLow,
    decode,
    encode,
    envelope_of,
)
from lotline.events.codec import OutgoingMessage
from lotline.events.topics import key_partition
from lotline.runtime import wal as wal_module
from lotline.runtime.consumer import (
    BatchResult,
    Delivery,
    EventConsumer,
    Progress,
    owned_partition,
)
from lotline.runtime.dedupe import digest
from lotline.runtime.owned import OwnedState
from lotline.runtime.settings import Settings
from lotline.runtime.wal import (
    MAX_KEY_PAGES,
    Entry,
    Fact,
    StreamTaken,
    WriteAheadLog,
    checkpoint_id,
    entry_id,
    key_page_id,
    overlay,
)

NOW = datetime.now(UTC)


def fact(key: str, partition: int = 0, at: datetime = NOW) -> Fact:
    return Fact(partition, key, at)


def message(sku: str, n: int) -> OutgoingMessage:
    """An event a change emits (its id derived, as the services derive theirs)."""
    low = StockLow(sku=sku, location="S1", on_hand=n, reorder_point=10, cause="item-sold")
    return encode(low, source="lotline/test", id=uuid5(NAMESPACE_URL, f"{sku}/{n}"), time=NOW)


def sent_ids(publisher: MemoryPublisher) -> list[str]:
    return [m.event.id for m in publisher.sent]


def log_of(db: MemoryDatabase | None = None, **options: Any) -> WriteAheadLog:
    return WriteAheadLog(db or MemoryDatabase(), MemoryPublisher(), **options)  # type: ignore[arg-type]


def logged(db: MemoryDatabase) -> dict[str, Entry]:
    """The log's entries (not its checkpoints), as the log itself reads them back."""
    found = (Entry.from_document(doc) for doc in db["wal"].documents() if "p" in doc)
    return {entry_id(entry.partition, entry.seq): entry for entry in found}


def keys_of(page: dict[str, Any]) -> dict[str, float]:
    """The fingerprints a page of `wal_keys` holds (a document, or its BSON bytes)."""
    keys = page["keys"]
    return dict(bson.decode(keys) if isinstance(keys, bytes) else keys)


def parts(wal: WriteAheadLog) -> tuple[MemoryDatabase, MemoryPublisher]:
    return wal._db, wal._publisher  # type: ignore[return-value]


async def commit_one(
    wal: WriteAheadLog, sku: str, doc: dict[str, Any], key: str | None = None, partition: int = 0
) -> None:
    """One batch: a document of `sku` as the batch leaves it, and the event it applied."""
    wal.observe(sku, partition)
    wal.stage(sku, "docs", sku, doc)
    if key is not None:
        wal.record([fact(key, partition)])
    await wal.commit()


# ------------------------------------------------------------------------------ the memory db


async def test_the_memory_db_refuses_duplicates_as_mongodb_does() -> None:
    """The premise of everything below: a duplicate _id is refused, an ordered insert stops
    at it, an upsert whose guard misses the document is a duplicate, and values come back
    as BSON leaves them."""
    db = MemoryDatabase()
    entries = db["wal"]
    await entries.insert_one({"_id": "a", "at": datetime(2026, 1, 2, 3, 4, 5, 678901, UTC)})
    with pytest.raises(DuplicateKeyError):
        await entries.insert_one({"_id": "a"})
    with pytest.raises(BulkWriteError) as refused:
        await entries.insert_many([{"_id": "b"}, {"_id": "a"}, {"_id": "c"}], ordered=True)
    assert [(e["index"], e["code"]) for e in refused.value.details["writeErrors"]] == [(1, 11000)]
    assert [d["_id"] for d in entries.documents()] == ["a", "b"]
    with pytest.raises(BulkWriteError) as unordered:
        await entries.insert_many([{"_id": "a"}, {"_id": "c"}], ordered=False)
    assert [e["index"] for e in unordered.value.details["writeErrors"]] == [0]
    assert [d["_id"] for d in entries.documents()] == ["a", "b", "c"]
    with pytest.raises(DuplicateKeyError):
        await entries.update_one(
            {"_id": "a", "revision": {"$lt": 1}}, {"$set": {"x": 1}}, upsert=True
        )
    assert await entries.find_one({"_id": "a"}) == {
        "_id": "a",
        "at": datetime(2026, 1, 2, 3, 4, 5, 678000, UTC),  # milliseconds, aware, as stored
    }
    with pytest.raises(NotImplementedError):
        entries.find({"_id": {"$in": ["a"]}})


# -------------------------------------------------------------------------------- committing


async def test_a_batch_is_one_insert_of_its_partitions_entries_then_its_events() -> None:
    wal = log_of()
    db, publisher = parts(wal)
    wal.observe("SKU-1", 2)
    wal.observe("SKU-2", 5)
    wal.stage("SKU-1", "levels", "SKU-1 S1", {"on_hand": 1}, [message("SKU-1", 1)])
    wal.stage("SKU-1", "levels", "SKU-1 S2", {"on_hand": 7})
    wal.stage("SKU-2", "levels", "SKU-2 S1", {"on_hand": 3}, [message("SKU-2", 3)])
    # Staged again in the same batch: the last version wins, the events add up.
    wal.stage("SKU-1", "levels", "SKU-1 S1", {"on_hand": 2}, [message("SKU-1", 2)])
    wal.emit("SKU-2", [message("SKU-2", 99)])
    wal.record([fact("sale 1", 2), fact("sale 2", 5)])
    assert publisher.sent == []
    await wal.commit()

    assert db["wal"].calls["insert_many"] == 1
    entries = logged(db)
    assert sorted(entries) == [entry_id(2, 1), entry_id(5, 1)]
    assert [(p.doc_id, p.doc) for p in entries[entry_id(2, 1)].puts] == [
        ("SKU-1 S1", {"on_hand": 2}),
        ("SKU-1 S2", {"on_hand": 7}),
    ]
    assert entries[entry_id(2, 1)].keys == {digest("sale 1"): NOW.timestamp()}
    assert entries[entry_id(5, 1)].keys == {digest("sale 2"): NOW.timestamp()}
    assert [m.value for m in entries[entry_id(5, 1)].outbox] == [message("SKU-2", 99).value]
    # Published after the insert, each once, in entry order.
    assert sent_ids(publisher) == [
        message("SKU-1", 1).event.id,
        message("SKU-1", 2).event.id,
        message("SKU-2", 3).event.id,
        message("SKU-2", 99).event.id,
    ]
    assert wal.pending_docs == 3
    assert db["levels"].documents() == []  # not written out yet


async def test_a_key_no_event_of_the_batch_named_has_no_partition() -> None:
    wal = log_of()
    with pytest.raises(LookupError, match="'SKU-9'"):
        wal.stage("SKU-9", "levels", "SKU-9 S1", {})


async def test_an_empty_batch_writes_nothing() -> None:
    wal = log_of()
    db, publisher = parts(wal)
    await wal.commit()
    assert db["wal"].calls == {}
    assert publisher.sent == []


async def test_the_owner_reads_staged_then_pending_then_stored_versions() -> None:
    wal = log_of()
    db, _ = parts(wal)
    await db["docs"].insert_one({"_id": "C", "v": "stored", "_wal": 0})
    await db["docs"].insert_one({"_id": "B", "v": "stored"})
    await commit_one(wal, "B", {"v": "pending"})
    wal.observe("A", 0)
    wal.stage("A", "docs", "A", {"v": "staged"})
    assert await wal.latest("docs", ["A", "B", "C", "missing"]) == {
        "A": {"v": "staged"},
        "B": {"v": "pending"},
        "C": {"_id": "C", "v": "stored"},  # without the log's bookkeeping field
    }


# ------------------------------------------------------------------- applied / record / abort


async def test_applied_knows_copies_in_the_batch_staged_records_and_committed_ones() -> None:
    wal = log_of()
    assert await wal.applied([fact("a"), fact("b"), fact("a"), fact("a", partition=1)]) == [
        False,
        False,
        True,  # a copy of the first, later in the same batch
        False,  # the same key on another partition is another stream's business
    ]
    wal.record([fact("a")])
    assert await wal.applied([fact("a"), fact("c")]) == [True, False]  # staged, this batch
    await wal.commit()
    assert await wal.applied([fact("a"), fact("c")]) == [True, False]
    assert await log_of(wal._db).applied([fact("a"), fact("c")]) == [True, False]  # next owner


async def test_abort_drops_what_the_batch_staged_emitted_and_recorded() -> None:
    wal = log_of()
    db, publisher = parts(wal)
    wal.observe("SKU-1", 0)
    wal.stage("SKU-1", "docs", "SKU-1", {"v": 1}, [message("SKU-1", 1)])
    wal.emit("SKU-1", [message("SKU-1", 2)])
    wal.record([fact("sale 1")])
    wal.abort()
    await wal.commit()
    assert logged(db) == {}
    assert publisher.sent == []
    assert await wal.latest("docs", ["SKU-1"]) == {}
    assert await wal.applied([fact("sale 1")]) == [False]


# ---------------------------------------------------------------- reading, materializing


async def test_materialize_writes_each_document_once_with_its_newest_version() -> None:
    wal = log_of()
    db, _ = parts(wal)
    for n in range(1, 4):
        await commit_one(wal, "SKU-1", {"v": n}, key=f"sale {n}")
    await commit_one(wal, "SKU-2", {"v": 10})
    assert wal.pending_docs == 2

    assert await wal.materialize() == 2
    assert db["docs"].calls["bulk_write"] == 1
    assert db["docs"].documents() == [
        {"v": 3, "_id": "SKU-1", "_wal": 3},
        {"v": 10, "_id": "SKU-2", "_wal": 4},
    ]
    # The entries are gone, the checkpoint names the last one and the page of fingerprints.
    assert [d["_id"] for d in db["wal"].documents()] == [checkpoint_id(0)]
    checkpoint = db["wal"].get(checkpoint_id(0))
    assert checkpoint is not None
    assert checkpoint["seq"] == 4
    assert checkpoint["pages"] == [key_page_id(0, 4)]
    page = db["wal_keys"].get(key_page_id(0, 4))
    assert page is not None
    assert sorted(keys_of(page)) == sorted(digest(f"sale {n}") for n in range(1, 4))
    assert wal.pending_docs == 0
    assert await wal.materialize() == 0  # nothing left: no write
    assert db["docs"].calls["bulk_write"] == 1
    assert await wal.latest("docs", ["SKU-1"]) == {"SKU-1": {"v": 3, "_id": "SKU-1"}}


async def test_the_owner_answers_what_it_wrote_or_read_from_memory_until_it_lets_go() -> None:
    """Written out, a document is answered from the owner's memory, not read back; a
    document read once is too. Releasing the partition drops it all: the next owner's word
    (here written behind this one's back) is what the database holds."""
    wal = log_of()
    db, _ = parts(wal)
    await commit_one(wal, "SKU-1", {"v": 1}, key="sale 1")
    await wal.materialize()
    await db["docs"].insert_one({"_id": "SKU-2", "v": "stored"})
    reads = db["docs"].calls.get("find_one", 0)
    assert await wal.latest("docs", ["SKU-1"]) == {"SKU-1": {"v": 1, "_id": "SKU-1"}}
    assert await wal.latest("docs", ["SKU-2"]) == {"SKU-2": {"_id": "SKU-2", "v": "stored"}}
    assert await wal.latest("docs", ["SKU-1", "SKU-2"]) == {
        "SKU-1": {"v": 1, "_id": "SKU-1"},
        "SKU-2": {"_id": "SKU-2", "v": "stored"},
    }
    assert db["docs"].calls.get("find_one", 0) == reads + 1  # SKU-2, once

    await db["docs"].replace_one({"_id": "SKU-1"}, {"v": "another owner's"})
    await wal.release([0])
    wal.observe("SKU-1", 0)
    assert await wal.latest("docs", ["SKU-1"]) == {
        "SKU-1": {"_id": "SKU-1", "v": "another owner's"}
    }


async def test_the_owners_memory_of_documents_is_bounded() -> None:
    wal = log_of(known_docs=2)
    db, _ = parts(wal)
    for name in ("A", "B", "C"):
        await db["docs"].insert_one({"_id": name, "v": name})
    wal.observe("A", 0)
    await wal.latest("docs", ["A", "B", "C"])  # C read last: A goes first
    reads = db["docs"].calls["find_one"]
    await wal.latest("docs", ["B", "C"])
    assert db["docs"].calls["find_one"] == reads
    await wal.latest("docs", ["A"])
    assert db["docs"].calls["find_one"] == reads + 1
    assert len(wal._known) == 2

    off = log_of(db, known_docs=0)
    off.observe("A", 0)
    await off.latest("docs", ["A"])
    await off.latest("docs", ["A"])
    assert db["docs"].calls["find_one"] == reads + 3  # nothing kept: read each time


async def test_a_round_takes_whole_entries_up_to_round_docs() -> None:
    wal = log_of(round_docs=2)
    db, _ = parts(wal)
    for n in range(3):
        wal.observe("SKU-1", 0)
        wal.stage("SKU-1", "docs", f"d{n}a", {"n": n})
        wal.stage("SKU-1", "docs", f"d{n}b", {"n": n})
        await wal.commit()
    assert await wal.materialize() == 2
    assert await wal.materialize() == 2
    assert await wal.materialize() == 2
    assert await wal.materialize() == 0
    assert len(db["docs"]) == 6


async def test_entries_changing_the_same_documents_are_written_out_in_one_round() -> None:
    """A round counts different documents, not changes: busy documents coalesce."""
    wal = log_of(round_docs=2)
    db, _ = parts(wal)
    for n in range(3):
        wal.observe("SKU-1", 0)
        wal.stage("SKU-1", "docs", "a", {"n": n})
        wal.stage("SKU-1", "docs", "b", {"n": n})
        await wal.commit()
    assert await wal.materialize() == 2
    assert [d["_id"] for d in db["wal"].documents()] == [checkpoint_id(0)]
    assert db["docs"].documents() == [
        {"n": 2, "_id": "a", "_wal": 3},
        {"n": 2, "_id": "b", "_wal": 3},
    ]


async def test_any_reader_sees_every_committed_batch_before_and_after_it_is_written() -> None:
    owner = log_of()
    db, _ = parts(owner)
    reader = WriteAheadLog(db)  # type: ignore[arg-type]
    await commit_one(owner, "SKU-1", {"v": 1, "outbox": ["old"]})
    assert await reader.read("docs", ["SKU-1", "nope"]) == {
        "SKU-1": {"_id": "SKU-1", "v": 1, "outbox": ["old"]}
    }
    await owner.materialize()
    await commit_one(owner, "SKU-1", {"v": 2, "outbox": ["old"]})
    # Written out at entry 1, pending at entry 2: the newer one, by entry number.
    assert await reader.read("docs", ["SKU-1"], {"outbox": 0}) == {
        "SKU-1": {"_id": "SKU-1", "v": 2}
    }
    assert await reader.read("docs", ["SKU-1"], {"v": 1}) == {"SKU-1": {"_id": "SKU-1", "v": 2}}
    await owner.materialize()
    assert await reader.read("docs", ["SKU-1"], {"outbox": 0}) == {
        "SKU-1": {"_id": "SKU-1", "v": 2}
    }
    assert await reader.read("docs", []) == {}


async def test_a_versioned_collection_is_written_out_by_inserts_and_read_as_its_newest() -> None:
    """Units change a few times each and never coalesce: each version is an insert (an
    update costs sixteen inserts on FerretDB), and every reader takes the newest."""
    owner = log_of()
    owner.keep_versions("units")
    db, _ = parts(owner)
    await db["units"].insert_one({"_id": "P S1", "status": "in_stock"})  # the receipt's
    owner.know("units", [{"_id": "P S1", "status": "in_stock"}])
    for status in ("sold", "returned"):
        owner.observe("P", 0)
        owner.stage("P", "units", "P S1", {"status": status})
        await owner.commit()
        assert await owner.materialize() == 1
    owner.observe("P", 0)
    owner.stage("P", "units", "P S2", {"status": "in_stock"})  # never stored before
    await owner.commit()
    await owner.materialize()

    assert sorted(d["_id"] for d in db["units"].documents()) == ["P S1", "P S1/1", "P S1/2", "P S2"]
    assert "bulk_write" not in db["units"].calls
    assert "replace_one" not in db["units"].calls
    assert db["units"].calls.get("find_one", 0) == 1  # P S2: the owner knew P S1's versions
    reader = WriteAheadLog(db, versioned=["units"])  # type: ignore[arg-type]
    assert await reader.read("units", ["P S1", "P S2", "P S3"]) == {
        "P S1": {"_id": "P S1", "status": "returned"},
        "P S2": {"_id": "P S2", "status": "in_stock"},
    }
    assert await reader.read("units", ["P S1"], {"status": 1}) == {
        "P S1": {"_id": "P S1", "status": "returned"}
    }
    successor = log_of(db)
    successor.keep_versions("units")
    successor.observe("P", 0)
    assert await successor.latest("units", ["P S1"]) == {
        "P S1": {"_id": "P S1", "status": "returned"}
    }
    successor.stage("P", "units", "P S1", {"status": "sold"})
    await successor.commit()
    await successor.materialize()
    assert db["units"].get("P S1/3") == {"_id": "P S1/3", "status": "sold", "_wal": 4}


async def test_a_round_interrupted_after_inserting_versions_inserts_none_twice() -> None:
    owner = log_of()
    owner.keep_versions("units")
    db, _ = parts(owner)
    owner.observe("P", 0)
    owner.stage("P", "units", "P S1", {"status": "in_stock"})
    await owner.commit()
    await owner.materialize()
    owner.observe("P", 0)
    owner.stage("P", "units", "P S1", {"status": "sold"})
    owner.stage("P", "units", "P S2", {"status": "sold"})
    await owner.commit()
    db.fail_next("units", "insert_many", AutoReconnect("lost on the way back"), after_write=True)
    with pytest.raises(AutoReconnect):
        await owner.materialize()
    assert await owner.materialize() == 2  # the entry again: its versions are found written
    assert [d["_id"] for d in db["units"].documents()] == ["P S1", "P S1/1", "P S2"]

    # A next owner restoring an entry that was written out but not deleted writes nothing.
    owner.observe("P", 0)
    owner.stage("P", "units", "P S1", {"status": "returned"})
    await owner.commit()
    db.fail_next("wal", "bulk_write", AutoReconnect("gone before the checkpoint"))
    with pytest.raises(AutoReconnect):
        await owner.materialize()
    successor = log_of(db)
    successor.keep_versions("units")
    await successor.restore([0])
    assert await successor.materialize() == 1
    assert sorted(d["_id"] for d in db["units"].documents()) == ["P S1", "P S1/1", "P S1/2", "P S2"]


async def test_a_document_staged_new_is_written_as_version_0_without_a_lookup() -> None:
    """The owner found it absent (a receipt's new unit): its first write needs no look at
    the collection; a round interrupted after writing it finds it written, once."""
    owner = log_of()
    owner.keep_versions("units")
    db, _ = parts(owner)
    owner.observe("P", 0)
    owner.stage("P", "units", "P S1", {"status": "in_stock"}, new=True)
    owner.stage("P", "units", "P S2", {"status": "in_stock"}, new=True)
    await owner.commit()
    db.fail_next("wal", "bulk_write", AutoReconnect("gone before the checkpoint"))
    with pytest.raises(AutoReconnect):
        await owner.materialize()
    assert db["units"].calls.get("find_one", 0) == 0
    assert await owner.materialize() == 2  # the same entry again: found written
    assert sorted(d["_id"] for d in db["units"].documents()) == ["P S1", "P S2"]
    owner.observe("P", 0)
    owner.stage("P", "units", "P S1", {"status": "sold"})
    await owner.commit()
    await owner.materialize()
    assert db["units"].get("P S1/1") == {"_id": "P S1/1", "status": "sold", "_wal": 2}


async def test_entries_are_compressed_and_entries_logged_before_are_read() -> None:
    """A batch's documents and list items are stored as one compressed value each (a
    receipt's units are alike); entries logged before, uncompressed, still restore."""
    owner = log_of()
    db, _ = parts(owner)
    owner.observe("P", 0)
    for n in range(500):
        owner.stage("P", "docs", f"P S{n}", {"status": "in_stock", "lot": "L1", "n": n})
    await owner.commit()
    (doc,) = [d for d in db["wal"].documents() if "p" in d]
    assert "body" not in doc
    assert "lists" not in doc
    assert len(doc["zbody"]) < len(b"".join(p.encoded for p in logged(db)[entry_id(0, 1)].puts)) / 4
    old = {**doc, "_id": entry_id(3, 1), "p": 3, "end": 1}
    old["body"] = wal_module._expanded(old.pop("zbody"))
    old["lists"] = wal_module._expanded(old.pop("zlists"))
    await db["wal"].insert_one(old)
    await db["wal_partitions"].insert_one({"_id": 3})
    reader = log_of(db)
    found = await reader.read("docs", ["P S7"])
    assert found == {"P S7": {"_id": "P S7", "status": "in_stock", "lot": "L1", "n": 7}}
    successor = log_of(db)
    await successor.restore([3])
    assert await successor.materialize() == 500


async def test_a_version_another_writer_took_is_looked_up_and_the_next_one_written() -> None:
    owner = log_of()
    owner.keep_versions("units")
    db, _ = parts(owner)
    await db["units"].insert_one({"_id": "P S1", "status": "in_stock"})
    owner.know("units", [{"_id": "P S1", "status": "in_stock"}])
    await db["units"].insert_one({"_id": "P S1/1", "status": "older", "_wal": 0})  # behind it
    owner.observe("P", 0)
    owner.stage("P", "units", "P S1", {"status": "sold"})
    await owner.commit()
    assert await owner.materialize() == 1
    assert db["units"].get("P S1/2") == {"_id": "P S1/2", "status": "sold", "_wal": 1}
    reader = WriteAheadLog(db, versioned=["units"])  # type: ignore[arg-type]
    assert await reader.read("units", ["P S1"]) == {"P S1": {"_id": "P S1", "status": "sold"}}


async def test_pending_and_overlay_answer_a_query_on_another_field() -> None:
    owner = log_of()
    db, _ = parts(owner)
    await commit_one(owner, "A", {"low": True})
    await owner.materialize()
    await commit_one(owner, "A", {"low": False})
    await commit_one(owner, "B", {"low": True})
    pending = await WriteAheadLog(db).pending("docs")  # type: ignore[arg-type]
    assert pending == {"A": (2, {"low": False, "_id": "A"}), "B": (3, {"low": True, "_id": "B"})}
    written = [doc async for doc in db["docs"].find({"low": True})]
    assert written == [{"low": True, "_id": "A", "_wal": 1}]
    merged = overlay(written, pending)
    # Newest of each: A's pending version wins over the written one; the caller filters.
    assert sorted(merged, key=lambda d: d["_id"]) == [
        {"low": False, "_id": "A"},
        {"low": True, "_id": "B"},
    ]


async def test_a_reader_elsewhere_walks_each_partitions_entries_by_id_and_keeps_them() -> None:
    """Another instance's read is exact without scanning `wal`: it walks each partition's
    entries from the checkpoint by _id, keeps what it read (an entry never changes), and
    afterwards reads only the entries logged since; none of it after they are written out."""
    owner = log_of()
    db, _ = parts(owner)
    await commit_one(owner, "A", {"n": 1})
    await commit_one(owner, "B", {"n": 1}, partition=1)
    reader = WriteAheadLog(db)  # type: ignore[arg-type]
    scans = db["wal"].calls["find"]  # the owner's restores
    assert await reader.read("docs", ["A", "B"]) == {
        "A": {"n": 1, "_id": "A"},
        "B": {"n": 1, "_id": "B"},
    }
    assert db["wal"].calls["find"] == scans  # no scan of the log
    lookups = db["wal"].calls["find_one"]
    assert await reader.read("docs", ["A"]) == {"A": {"n": 1, "_id": "A"}}
    assert db["wal"].calls["find_one"] == lookups + 4  # per partition: checkpoint, next entry
    await commit_one(owner, "A", {"n": 2})
    assert await reader.read("docs", ["A"]) == {"A": {"n": 2, "_id": "A"}}
    # Written out and deleted meanwhile: the walk goes on from the moved checkpoint, and
    # what is kept of the written entries goes.
    await owner.materialize()
    await commit_one(owner, "A", {"n": 3})
    assert await reader.read("docs", ["A"]) == {"A": {"n": 3, "_id": "A"}}
    assert [seen.seq for seen in reader._tails[0].values()] == [3]
    await owner.materialize()
    assert await reader.read("docs", ["A", "B"]) == {
        "A": {"n": 3, "_id": "A"},
        "B": {"n": 1, "_id": "B"},
    }
    assert reader._tails == {0: {}, 1: {}}


async def test_a_reader_elsewhere_leaves_out_a_commit_whose_last_entry_is_not_in() -> None:
    """A commit split in entries counts once all of them are in (`restore` drops one that
    failed part-way), and what a reader left out it looks for again."""
    owner = log_of()
    db, _ = parts(owner)
    await commit_one(owner, "A", {"n": 1})
    reader = WriteAheadLog(db)  # type: ignore[arg-type]
    await reader.read("docs", ["A"])
    first, second = Entry(0, 2, []), Entry(0, 3, [])
    first.end = second.end = 3
    first.puts = [wal_module.Put("docs", "A", {"n": 2})]
    await db["wal"].insert_one(first.to_document())  # the second one not yet
    assert await reader.read("docs", ["A"]) == {"A": {"n": 1, "_id": "A"}}
    await db["wal"].insert_one(second.to_document())
    assert await reader.read("docs", ["A"]) == {"A": {"n": 2, "_id": "A"}}


async def test_a_log_written_before_partitions_were_named_is_walked_after_an_upgrade() -> None:
    """Before `wal_partitions`, a partition was known by its checkpoint only: the writer
    names those once when it starts, and a reader elsewhere then finds their entries."""
    owner = log_of()
    db, _ = parts(owner)
    await commit_one(owner, "A", {"n": 1}, partition=2)
    await db["wal_partitions"].bulk_write([DeleteOne({"_id": 2})])  # as an older version left it
    reader = WriteAheadLog(db)  # type: ignore[arg-type]
    assert await reader.read("docs", ["A"]) == {}
    await log_of(db).name_partitions()
    assert await reader.read("docs", ["A"]) == {"A": {"n": 1, "_id": "A"}}


async def test_a_reader_reads_its_own_partitions_from_memory() -> None:
    owner = log_of()
    db, _ = parts(owner)
    await commit_one(owner, "A", {"n": 1})
    lookups = db["wal"].calls["find_one"]
    assert await owner.read("docs", ["A"]) == {"A": {"n": 1, "_id": "A"}}
    assert db["wal"].calls["find_one"] == lookups  # no walk of its own partition


async def test_the_writer_waits_for_changes_to_coalesce_unless_a_rounds_worth_is_pending() -> None:
    """Rounds start once the oldest pending entry is `flush_after_s` old, so a document
    changed by every batch meanwhile is written once; changes of a round's worth of
    different documents (units sold once each, which never coalesce) do not wait."""
    wal = log_of(flush_after_s=0.3, round_docs=3)
    await commit_one(wal, "A", {"n": 1})
    started = asyncio.get_running_loop().time()
    await wal._wait_for_work(idle_s=0.01)
    assert asyncio.get_running_loop().time() - started >= 0.25
    for sku in "BCD":
        await commit_one(wal, sku, {"n": 1})
    started = asyncio.get_running_loop().time()
    await wal._wait_for_work(idle_s=0.01)
    assert asyncio.get_running_loop().time() - started < 0.1


async def test_memory_keeps_one_put_per_pending_document() -> None:
    """Puts that a later pending entry superseded leave memory (the log still has them); a
    round that takes only the earlier entries leaves such a document to the round that
    takes its newest version, and every read meanwhile is exact."""
    wal = log_of(round_docs=1)
    db, _ = parts(wal)
    for n in range(1_200):
        await commit_one(wal, "A", {"n": n})
    held = [put for entries in wal._pending.values() for e in entries for put in e.puts]
    assert len(held) < 300
    assert held[-1].doc == {"n": 1_199}
    assert await wal.materialize() >= 0
    assert await WriteAheadLog(db).read("docs", ["A"]) == {"A": {"n": 1_199, "_id": "A"}}  # type: ignore[arg-type]
    while await wal.materialize():
        pass
    assert db["docs"].get("A") == {"_id": "A", "n": 1_199, "_wal": 1_200}
    assert [d["_id"] for d in db["wal"].documents()] == [checkpoint_id(0)]


# --------------------------------------------------------------------- the next owner


async def test_a_next_owner_restores_what_was_not_written_out_and_sends_its_events_again() -> None:
    first = log_of()
    db, sent_first = parts(first)
    first.observe("SKU-1", 3)
    first.stage("SKU-1", "docs", "SKU-1", {"v": 1}, [message("SKU-1", 1)])
    first.record([fact("sale 1", 3)])
    await first.commit()
    await first.materialize()
    await commit_one(first, "SKU-1", {"v": 2}, key="sale 2", partition=3)
    first.observe("SKU-1", 3)
    first.stage("SKU-1", "docs", "SKU-1", {"v": 3}, [message("SKU-1", 3)])
    await first.commit()
    assert sent_ids(sent_first) == [message("SKU-1", 1).event.id, message("SKU-1", 3).event.id]

    # The first owner is gone (killed before its materializer ran again).
    second = log_of(db)
    _, sent_second = parts(second)
    await second.restore([3])
    # Only the entries after the checkpoint, so entry 1's event is not sent again.
    assert sent_ids(sent_second) == [message("SKU-1", 3).event.id]
    assert second.pending_docs == 1
    assert await second.latest("docs", ["SKU-1"]) == {"SKU-1": {"v": 3}}
    assert await second.applied([fact("sale 1", 3), fact("sale 2", 3), fact("sale 4", 3)]) == [
        True,  # from its page
        True,  # from its pending entry
        False,
    ]
    await second.restore([3])  # already its own: nothing read or sent again
    assert len(sent_second.sent) == 1
    await commit_one(second, "SKU-1", {"v": 4}, partition=3)
    assert db["wal"].get(entry_id(3, 4)) is not None  # numbering goes on without a gap
    assert await second.materialize() == 1
    assert db["docs"].get("SKU-1") == {"_id": "SKU-1", "v": 4, "_wal": 4}


async def test_a_next_owner_sends_events_its_contract_does_not_know_as_they_were() -> None:
    """A rolling upgrade: a newer instance logged an event with a field this version's
    contract does not know, then died; this one restores the partition and sends the event's
    bytes unchanged instead of stalling on it."""
    first = log_of()
    db, _ = parts(first)
    first.observe("SKU-1", 0)
    newer = message("SKU-1", 1)
    value = newer.value.replace(b'"cause":"item-sold"', b'"cause":"item-sold","in_transit":3')
    with pytest.raises(EventDecodeError, match="in_transit"):
        decode(value)
    first.stage("SKU-1", "docs", "SKU-1", {"v": 1}, [replace(newer, value=value)])
    first._publisher = None  # dies before it publishes
    with pytest.raises(wal_module.NoPublisher):
        await first.commit()

    sent = MemoryPublisher(checks_contract=False)
    second = WriteAheadLog(db, sent)  # type: ignore[arg-type]
    await second.restore([0])
    assert [m.value for m in sent.sent] == [value]
    assert sent.sent[0].event.id == newer.event.id


async def test_an_entry_a_lost_owner_wrote_under_a_number_written_out_is_dropped() -> None:
    """The old owner of a partition, not told yet, logs a batch under a number the new owner
    used and has written out and deleted since: the insert finds no duplicate. That entry
    is below the checkpoint, so no restore would ever take it: the next restore deletes it
    (its batch's offsets were not committed; the batch is applied again by the owner)."""
    old = log_of()
    db, _ = parts(old)
    await old.restore([0])  # numbers from 1
    new = log_of(db)
    await commit_one(new, "SKU-1", {"v": "new owner"}, key="sale 1")
    await new.materialize()
    await commit_one(old, "SKU-1", {"v": "lost owner"}, key="sale 1")  # entry 1 again
    assert db["wal"].get(entry_id(0, 1)) is not None

    later = log_of(db)
    await later.restore([0])
    assert db["wal"].get(entry_id(0, 1)) is None
    assert later.pending_docs == 0
    later.observe("SKU-1", 0)
    assert await later.latest("docs", ["SKU-1"]) == {"SKU-1": {"_id": "SKU-1", "v": "new owner"}}
    assert await WriteAheadLog(db).read("docs", ["SKU-1"]) == {  # type: ignore[arg-type]
        "SKU-1": {"_id": "SKU-1", "v": "new owner"}
    }


async def test_a_split_commit_that_failed_part_way_is_dropped_by_the_next_owner(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    first = log_of()
    db, _ = parts(first)
    await commit_one(first, "SKU-1", {"v": "kept"}, key="sale 1")
    monkeypatch.setattr(wal_module, "ENTRY_BYTES", 200)  # three documents, three entries
    first.observe("SKU-1", 0)
    for n in range(3):
        first.stage("SKU-1", "docs", f"big {n}", {"pad": "x" * 150}, [message("SKU-1", n)])
    first.record([fact("sale 2")])
    await first.commit()
    assert [(e.seq, e.end) for e in logged(db).values()] == [(1, 1), (2, 4), (3, 4), (4, 4)]
    # The ordered insert landed its first two entries, not the last (which holds the
    # batch's fingerprints and events): as if the connection dropped in between.
    await db["wal"].bulk_write([DeleteOne({"_id": entry_id(0, 4)})])

    second = log_of(db)
    _, sent = parts(second)
    await second.restore([0])
    assert sorted(d["_id"] for d in db["wal"].documents()) == sorted(
        [checkpoint_id(0), entry_id(0, 1)]
    )
    assert sent.sent == []  # nothing of the broken commit was published
    assert await second.latest("docs", ["SKU-1", "big 0", "big 1"]) == {"SKU-1": {"v": "kept"}}
    assert await second.applied([fact("sale 1"), fact("sale 2")]) == [True, False]
    await commit_one(second, "SKU-1", {"v": "again"})
    assert logged(db)[entry_id(0, 2)].puts[0].doc == {"v": "again"}


async def test_a_writer_that_lost_its_partition_is_told_and_reads_the_log_again() -> None:
    old = log_of()
    db, _ = parts(old)
    await old.restore([0])
    new = log_of(db)
    await commit_one(new, "SKU-1", {"v": "new owner"}, key="sale 1")
    with pytest.raises(StreamTaken):
        await commit_one(old, "SKU-1", {"v": "old owner"}, key="sale 1")
    # What it held of the partition is dropped: its next read restores from the log.
    old.observe("SKU-1", 0)
    assert await old.latest("docs", ["SKU-1"]) == {"SKU-1": {"v": "new owner"}}
    assert await old.applied([fact("sale 1")]) == [True]


# ---------------------------------------------------------------- fingerprints over time


async def test_key_pages_pile_up_then_merge_into_one_a_next_owner_reads() -> None:
    wal = log_of()
    db, _ = parts(wal)
    for n in range(MAX_KEY_PAGES):
        await commit_one(wal, "SKU-1", {"v": n}, key=f"sale {n}")
        await wal.materialize()
    assert len(db["wal_keys"]) == MAX_KEY_PAGES
    await commit_one(wal, "SKU-1", {"v": "last"}, key="sale last")
    await wal.materialize()
    last = key_page_id(0, MAX_KEY_PAGES + 1)
    assert [d["_id"] for d in db["wal_keys"].documents()] == [last]
    page = db["wal_keys"].get(last)
    assert page is not None
    assert len(keys_of(page)) == MAX_KEY_PAGES + 1
    checkpoint = db["wal"].get(checkpoint_id(0))
    assert checkpoint is not None
    assert checkpoint["pages"] == [last]
    keys = [fact(f"sale {n}") for n in range(MAX_KEY_PAGES)] + [fact("sale last"), fact("new")]
    assert await log_of(db).applied(keys) == [True] * (MAX_KEY_PAGES + 1) + [False]


async def test_fingerprint_pages_are_one_value_and_pages_written_before_are_read() -> None:
    """A page of fingerprints is BSON bytes (a merged page holds up to 100,000, which FerretDB
    would store and parse as as many fields); a page an earlier version wrote as a document
    is still restored."""
    wal = log_of()
    db, _ = parts(wal)
    await commit_one(wal, "SKU-1", {"v": 1}, key="sale 1")
    await wal.materialize()
    page = db["wal_keys"].get(key_page_id(0, 1))
    assert page is not None
    assert isinstance(page["keys"], bytes)
    await db["wal_keys"].insert_one(
        {"_id": "keys 0 old", "p": 0, "keys": {digest("sale 0"): NOW.timestamp()}}
    )
    checkpoint = db["wal"].get(checkpoint_id(0))
    assert checkpoint is not None
    checkpoint["pages"] = ["keys 0 old", *checkpoint["pages"]]
    await db["wal"].replace_one({"_id": checkpoint_id(0)}, checkpoint)
    successor = log_of(db)
    assert await successor.applied([fact("sale 0"), fact("sale 1"), fact("sale 2")]) == [
        True,
        True,
        False,
    ]


async def test_fingerprints_memory_forgets_are_looked_up_in_wal_applied() -> None:
    wal = log_of(recent_max=2)
    db, _ = parts(wal)
    times = [NOW - timedelta(minutes=10 - n) for n in range(4)]
    for n, at in enumerate(times):
        wal.observe("SKU-1", 0)
        wal.stage("SKU-1", "docs", "SKU-1", {"v": n})
        wal.record([fact(f"sale {n}", at=at)])
        await wal.commit()
    await wal.materialize()
    # Memory keeps the newest two; the older two went to wal_applied, one document each.
    assert sorted(d["_id"] for d in db["wal_applied"].documents()) == sorted(
        [digest("sale 0"), digest("sale 1")]
    )
    checkpoint = db["wal"].get(checkpoint_id(0))
    assert checkpoint is not None
    assert checkpoint["since"] == times[2].timestamp()
    lookups = db["wal_applied"].calls.get("find_one", 0)
    assert await wal.applied(
        [
            fact("sale 0", at=times[0]),  # forgotten: looked up, found
            fact("sale 3", at=times[3]),  # remembered
            fact("never", at=times[0]),  # older than memory: looked up, not found
            fact("new", at=NOW),  # newer than memory's start: not applied, no lookup
        ]
    ) == [True, True, False, False]
    assert db["wal_applied"].calls["find_one"] - lookups == 2


async def test_events_older_than_the_window_are_forgotten_to_wal_applied() -> None:
    wal = log_of(window_s=3600)
    db, _ = parts(wal)
    old = NOW - timedelta(hours=2)
    wal.observe("SKU-1", 0)
    wal.stage("SKU-1", "docs", "SKU-1", {"v": 1})
    wal.record([fact("old sale", at=old), fact("new sale")])
    await wal.commit()
    await wal.materialize()
    assert [d["_id"] for d in db["wal_applied"].documents()] == [digest("old sale")]
    assert await wal.applied([fact("old sale", at=old), fact("new sale")]) == [True, True]


# --------------------------------------------------------------------------- backpressure


async def waiting_for_room() -> tuple[WriteAheadLog, MemoryDatabase, asyncio.Future[None]]:
    """A log with room for two pending documents, holding two, and a commit of a third
    waiting for the materializer."""
    wal = log_of(max_pending_docs=2)
    db, _ = parts(wal)
    wal.observe("SKU-1", 0)
    wal.stage("SKU-1", "docs", "a", {})
    wal.stage("SKU-1", "docs", "b", {})
    await wal.commit()
    wal.observe("SKU-1", 0)
    wal.stage("SKU-1", "docs", "c", {})
    waiting = asyncio.ensure_future(wal.commit())
    for _ in range(10):
        await asyncio.sleep(0)
    return wal, db, waiting


async def test_a_commit_waits_while_too_much_is_pending_until_the_materializer_catches_up() -> None:
    wal, db, waiting = await waiting_for_room()
    assert not waiting.done()
    assert db["wal"].calls["insert_many"] == 1  # the second batch is not in yet
    assert await wal.materialize() == 2
    await asyncio.wait_for(waiting, timeout=5)
    assert db["wal"].calls["insert_many"] == 2
    assert wal.pending_docs == 1


async def test_a_commit_waiting_for_room_through_a_rebalance_restores_its_partition() -> None:
    """The partitions are revoked (and handed back) while a commit waits for the writer: it
    restores the partition's log before numbering its entry, instead of failing (a failure
    there dead-lettered a receipt after its retries)."""
    wal, db, waiting = await waiting_for_room()
    await wal.release([0])
    assert await wal.materialize() == 0  # nothing of partition 0 is held here now
    await asyncio.wait_for(waiting, timeout=5)
    assert sorted(logged(db)) == [entry_id(0, 1), entry_id(0, 2)]
    assert await wal.materialize() == 3  # restored: the first entry, then this one


# ------------------------------------------------------------------------ failed commits


async def test_a_failed_publish_is_sent_first_by_the_next_commit() -> None:
    wal = log_of()
    db, publisher = parts(wal)
    publisher.fail_next(ConnectionError("broker gone"))
    wal.observe("SKU-1", 0)
    wal.stage("SKU-1", "docs", "SKU-1", {"v": 1}, [message("SKU-1", 1)])
    with pytest.raises(ConnectionError):
        await wal.commit()
    assert db["wal"].get(entry_id(0, 1)) is not None  # durable all the same
    await wal.commit()  # nothing staged: what is unsent goes out
    assert sent_ids(publisher) == [message("SKU-1", 1).event.id]
    await wal.commit()
    assert len(publisher.sent) == 1


# ------------------------------------------------------------- the consumer's unit of work


def sale(n: int, sku: str = "SKU-1", offset: int | None = None, source: str = "till") -> Delivery:
    data = ItemSold(sku=sku, sale_id=f"T-{n}", line=1, location="S1", quantity=1, sold_at=NOW)
    return Delivery(
        envelope_of(data, source=source), "item-sold", 0, n if offset is None else offset
    )


class Tally:
    """A handler that counts each SKU's sales in a document staged on the log, and emits an
    event per sale; `poison` offsets fail once they have staged their change."""

    def __init__(self, wal: WriteAheadLog, poison: set[int] | None = None) -> None:
        self.wal = wal
        self.poison = poison or set()
        self.calls: list[list[int]] = []
        self.defer: set[int] = set()
        self.fail_first = 0

    async def __call__(self, deliveries: list[Delivery]) -> BatchResult:
        self.calls.append([d.offset for d in deliveries])
        result = BatchResult()
        for delivery in deliveries:
            if delivery.offset in self.defer:
                result.defer(delivery, "not yet")
                continue
            sku = delivery.data.sku
            held = (await self.wal.latest("tally", [sku])).get(sku, {"sold": 0})
            doc = {"sold": held["sold"] + 1}
            self.wal.stage(sku, "tally", sku, doc, [message(sku, delivery.offset)])
            if delivery.offset in self.poison:
                raise ValueError(f"offset {delivery.offset}")
        if self.fail_first:
            self.fail_first -= 1
            raise ValueError("the first tries fail")
        return result


def log_consumer(wal: WriteAheadLog, handler: Any, **settings: Any) -> EventConsumer:
    _, publisher = parts(wal)
    return EventConsumer(
        service="stock",
        event_type=EventType.ITEM_SOLD,
        handler=handler,
        publisher=publisher,  # type: ignore[arg-type]
        settings=Settings(
            consumer_retry_backoff_s=1e-6, consumer_retry_backoff_max_s=1e-6, **settings
        ),
        owned=OwnedState(),
        progress=Progress(60.0),
        wal=wal,
    )


async def deliver(consumer: EventConsumer, deliveries: list[Delivery]) -> list[Delivery]:
    assert consumer.wal is not None
    for delivery in deliveries:
        consumer.wal.observe(delivery.data.sku, delivery.partition)
    return await consumer.process_deliveries(deliveries)


async def tally(wal: WriteAheadLog, sku: str = "SKU-1") -> int:
    found = await WriteAheadLog(wal._db).read("tally", [sku])
    return int(found[sku]["sold"]) if sku in found else 0


async def test_copies_are_dropped_before_the_handler_and_counted() -> None:
    wal = log_of()
    handler = Tally(wal)
    consumer = log_consumer(wal, handler)
    first = [sale(1), sale(2)]
    await deliver(consumer, first)
    # A redelivery of sale 1, a till's resend of sale 2 under a new envelope id, and two
    # envelopes of sale 3 in one batch: the handler sees sale 3, once.
    again = [first[0], sale(2, offset=7), sale(3), sale(3, offset=9)]
    assert again[1].event.id != first[1].event.id
    before = consumer.metrics.duplicate._value.get()
    await deliver(consumer, again)
    assert handler.calls == [[1, 2], [3]]
    assert await tally(wal) == 3
    assert consumer.metrics.duplicate._value.get() - before == 3


async def test_a_deferred_event_is_not_recorded_as_applied_and_is_handed_over_again() -> None:
    wal = log_of()
    handler = Tally(wal)
    handler.defer = {2}
    consumer = log_consumer(wal, handler)
    revisit = await deliver(consumer, [sale(1), sale(2), sale(3)])
    assert [d.offset for d in revisit] == [2]
    keys = [fact(d.event.idempotency_key) for d in (sale(1), sale(2), sale(3))]
    assert await wal.applied(keys) == [True, False, True]
    handler.defer = set()
    assert await deliver(consumer, [sale(2), sale(3)]) == []
    assert handler.calls == [[1, 2, 3], [2]]
    assert await tally(wal) == 3


async def test_a_failed_handler_leaves_nothing_of_what_it_staged() -> None:
    wal = log_of()
    db, publisher = parts(wal)
    handler = Tally(wal)
    handler.fail_first = 2
    consumer = log_consumer(wal, handler)
    await deliver(consumer, [sale(1), sale(2)])
    assert handler.calls == [[1, 2], [1, 2], [1, 2]]  # two failed tries, then applied
    assert await tally(wal) == 2  # not 6: the failed tries' changes were dropped
    assert list(logged(db)) == [entry_id(0, 1)]
    assert sent_ids(publisher) == [message("SKU-1", 1).event.id, message("SKU-1", 2).event.id]


async def test_a_poison_event_is_isolated_and_nothing_it_staged_is_committed() -> None:
    wal = log_of()
    _, publisher = parts(wal)
    handler = Tally(wal, poison={2})
    consumer = log_consumer(wal, handler, consumer_retry_attempts=2)
    batch = [sale(n, sku=f"SKU-{n}") for n in range(4)]
    assert await deliver(consumer, batch) == []
    assert [(topic, h["lotline-dlq-offset"]) for topic, _, _, h in publisher.dead_letters] == [
        ("item-sold.dlq", "2")
    ]
    assert [await tally(wal, f"SKU-{n}") for n in range(4)] == [1, 1, 0, 1]
    keys = [fact(d.event.idempotency_key) for d in batch]
    assert await wal.applied(keys) == [True, True, False, True]
    assert sorted(m.event.id for m in publisher.sent) == sorted(
        message(f"SKU-{n}", n).event.id for n in (0, 1, 3)
    )


@pytest.mark.parametrize(
    ("error", "after_write", "handled"),
    [
        (ConnectionFailure("down before the insert"), False, 2),
        # The insert landed but its answer was lost: the retry finds the batch in the log.
        (AutoReconnect("lost on the way back"), True, 1),
    ],
)
async def test_a_batch_retried_after_a_failed_commit_is_applied_once(
    error: Exception, after_write: bool, handled: int
) -> None:
    wal = log_of()
    db, publisher = parts(wal)
    handler = Tally(wal)
    consumer = log_consumer(wal, handler)
    await deliver(consumer, [sale(1)])
    db.fail_next("wal", "insert_many", error, after_write=after_write)
    await deliver(consumer, [sale(2), sale(3)])
    assert len(handler.calls) == 1 + handled
    assert await tally(wal) == 3
    assert list(logged(db)) == [
        entry_id(0, 1),
        entry_id(0, 2),
    ]
    # Entry 1 is sent again by the retry's restore (a copy by id, which consumers drop).
    assert sent_ids(publisher) == [message("SKU-1", n).event.id for n in (1, 1, 2, 3)]
    assert await log_of(db).applied([fact(sale(n).event.idempotency_key) for n in (1, 2, 3)]) == [
        True,
        True,
        True,
    ]


async def test_a_batch_retried_after_a_rebalance_released_its_partition_is_applied() -> None:
    """The partitions are revoked and handed back while a try of the batch runs, which
    drops which partition each key belongs to: the next try knows it again (it failed for
    good before, and the batch went to the dead-letter topic)."""
    wal = log_of()
    _, publisher = parts(wal)
    handler = Tally(wal)
    consumer = log_consumer(wal, handler)
    original = handler.__call__

    async def revoked_meanwhile(deliveries: list[Delivery]) -> BatchResult:
        if len(handler.calls) == 0:
            await wal.release([0])
        return await original(deliveries)

    consumer.handler = revoked_meanwhile
    await deliver(consumer, [sale(1), sale(2)])
    assert handler.calls == [[1, 2], [1, 2]]
    assert publisher.dead_letters == []
    assert await tally(wal) == 2


async def test_a_batch_whose_partition_another_writer_took_is_applied_on_what_it_wrote() -> None:
    wal = log_of()
    db, _ = parts(wal)
    handler = Tally(wal)
    consumer = log_consumer(wal, handler)
    await deliver(consumer, [sale(1)])
    # Meanwhile another instance, owning the partition now, applied sale 2.
    other = log_of(db)
    other_consumer = log_consumer(other, Tally(other))
    await deliver(other_consumer, [sale(2)])
    # This instance's batch of sales 2 and 3 finds entry 2 taken: StreamTaken, a retry on
    # what the log holds, sale 2 recognised there.
    await deliver(consumer, [sale(2), sale(3)])
    assert handler.calls == [[1], [2, 3], [3]]
    assert await tally(wal) == 3
    assert list(logged(db)) == [
        entry_id(0, 1),
        entry_id(0, 2),
        entry_id(0, 3),
    ]


async def test_partitions_assigned_are_restored_at_once_and_their_entries_written_out() -> None:
    """A partition handed over restores its log when it is assigned, not at its first event:
    one no event reaches afterwards would keep its entries unwritten (the bench waited on
    them for good after a scale-down)."""
    from aiokafka import TopicPartition

    from lotline.runtime.owned import ForgetOnRebalance

    first = log_of()
    db, _ = parts(first)
    await commit_one(first, "SKU-1", {"sold": 1})
    successor = log_of(db)
    listener = ForgetOnRebalance(OwnedState(), on_assign=successor.restore)
    await listener.on_partitions_assigned([TopicPartition("item-sold", 0)])
    assert successor.pending_docs == 1
    assert await successor.materialize() == 1
    assert [d for d in db["wal"].documents() if "p" in d] == []


# ------------------------------------------------------------ a timer's unit of work


async def test_a_timers_unit_of_work_waits_for_the_batch_in_progress_and_keeps_apart() -> None:
    """A unit of work outside a batch (the expiry warnings') never mixes its changes with
    a batch's: it starts once the batch has committed, and failing drops only its own."""
    wal = log_of()
    db, publisher = parts(wal)
    order: list[str] = []
    batch_may_commit = asyncio.Event()

    async def batch() -> None:
        async with wal.foreground():
            wal.observe("SKU-1", 0)
            wal.stage("SKU-1", "docs", "SKU-1", {"n": 1}, [message("SKU-1", 1)])
            order.append("batch staged")
            await batch_may_commit.wait()
            await wal.commit()
            order.append("batch committed")

    async def timer(fail: bool) -> None:
        async with wal.unit_of_work():
            order.append("timer started")
            wal.observe("SKU-2", 1)
            wal.emit("SKU-2", [message("SKU-2", 2)])
            if fail:
                raise ValueError("the timer's pass failed")

    running = asyncio.create_task(batch())
    await asyncio.sleep(0)
    waiting = asyncio.create_task(timer(fail=True))
    await asyncio.sleep(0.01)
    assert order == ["batch staged"]  # the timer waits: it would commit the batch's half
    batch_may_commit.set()
    await running
    with pytest.raises(ValueError, match="the timer's pass failed"):
        await waiting
    assert order == ["batch staged", "batch committed", "timer started"]
    assert [decode(m.value).data.sku for m in publisher.sent] == ["SKU-1"]
    assert (await WriteAheadLog(db).read("docs", ["SKU-1"]))["SKU-1"]["n"] == 1

    await timer(fail=False)  # on its own: committed and published
    assert [decode(m.value).data.sku for m in publisher.sent] == ["SKU-1", "SKU-2"]


class AssignedConsumer:
    """What `owned_partition` asks aiokafka's consumer: the topic's partitions, and which of
    them the group assigned to this instance."""

    def __init__(self, topic: str, count: int, assigned: set[int]) -> None:
        self.topic, self.count, self.assigned = topic, count, assigned

    def partitions_for_topic(self, topic: str) -> set[int] | None:
        return set(range(self.count)) if topic == self.topic else None

    def assignment(self) -> set[TopicPartition]:
        return {TopicPartition(self.topic, p) for p in self.assigned}


def test_an_instance_owns_a_key_when_it_holds_the_keys_partition() -> None:
    skus = [f"SKU-{n}" for n in range(40)]
    partitions = {sku: key_partition(sku, 6) for sku in skus}
    mine = AssignedConsumer("item-sold", 6, {0, 2, 4})
    assert {sku: owned_partition(mine, "item-sold", sku) for sku in skus} == {
        sku: p if p in {0, 2, 4} else None for sku, p in partitions.items()
    }
    # Before the group's metadata has the topic, nothing is this instance's.
    assert owned_partition(mine, "item-received", "SKU-1") is None
    assert owned_partition(AssignedConsumer("item-sold", 6, set()), "item-sold", "SKU-1") is None
