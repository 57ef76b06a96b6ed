"""Which names a key may hold (`lotline.runtime.members`), over the in-memory database: never
a name it holds left out, whoever reads (the owner, a next owner, after its memory dropped
the key); chance matches rare; the fingerprints go with the batch's entry and are written to
pages by the log's writer, not on their own."""

from __future__ import annotations

from typing import Any

from memory_db import MemoryDatabase, MemoryPublisher

from lotline.runtime.members import Fingerprints, _Runs
from lotline.runtime.pages import PagedLists
from lotline.runtime.wal import WriteAheadLog


def index_of(db: MemoryDatabase, **options: Any) -> tuple[WriteAheadLog, Fingerprints]:
    wal = WriteAheadLog(db, MemoryPublisher())  # type: ignore[arg-type]
    lists = PagedLists(db["sku_serials"])  # type: ignore[arg-type]
    return wal, Fingerprints(lists, wal, **options)


async def test_every_name_added_is_found_by_the_owner_and_a_next_owner() -> None:
    db = MemoryDatabase()
    wal, index = index_of(db)
    names = [f"SN-{n:06d}" for n in range(20_000)]
    for start in range(0, len(names), 1_000):  # twenty batches
        wal.observe("P", 0)
        index.add("P", names[start : start + 1_000])
        await wal.commit()
    assert "insert_many" not in db["sku_serials"].calls  # in the log's entries, not yet pages
    assert await index.maybe("P", names) == set(names)

    others = [f"XX-{n:06d}" for n in range(20_000)]
    # 20,000 fingerprints among 2^32 values: a chance match is about 1 in 200,000.
    assert len(await index.maybe("P", others)) <= 2
    assert await index.maybe("Q", names) == set()

    pending_reader = index_of(db)[1]  # another instance, the entries not written out yet
    assert await pending_reader.maybe("P", names[::97]) == set(names[::97])
    await wal.materialize()
    assert db["sku_serials"].calls["insert_many"] >= 1
    next_owner = index_of(db)[1]
    assert await next_owner.maybe("P", names) == set(names)


async def test_memory_is_bounded_and_a_key_dropped_is_read_again() -> None:
    db = MemoryDatabase()
    wal, index = index_of(db, max_held=1_500)
    wal.observe("A", 0)
    wal.observe("B", 0)
    index.add("A", [f"A{n}" for n in range(1_000)])
    index.add("B", [f"B{n}" for n in range(1_000)])
    await wal.commit()
    assert await index.maybe("A", ["A1", "A999"]) == {"A1", "A999"}
    assert await index.maybe("B", ["B1"]) == {"B1"}  # A is dropped: 2,000 > 1,500
    reads = db["sku_serials"].calls.get("find_one", 0)
    assert await index.maybe("B", ["B2"]) == {"B2"}
    assert db["sku_serials"].calls.get("find_one", 0) == reads  # B is held
    assert await index.maybe("A", ["A2"]) == {"A2"}  # read again


async def test_a_batch_that_fails_adds_nothing_once_memory_is_dropped() -> None:
    """The owner's memory of a key follows what it adds; a failed batch drops the owned
    caches (as the consumer does), and the log drops what the batch staged."""
    db = MemoryDatabase()
    held: dict[str, Any] = {}
    wal = WriteAheadLog(db, MemoryPublisher())  # type: ignore[arg-type]
    index = Fingerprints(PagedLists(db["sku_serials"]), wal, held)  # type: ignore[arg-type]
    wal.observe("P", 0)
    assert await index.maybe("P", ["S1"]) == set()
    index.add("P", ["S1"])
    assert await index.maybe("P", ["S1"]) == {"S1"}  # this batch's own
    wal.abort()
    held.clear()
    assert await index.maybe("P", ["S1"]) == set()


def test_runs_stay_few_and_sorted() -> None:
    from array import array

    runs = _Runs()
    values = list(range(0, 300_000, 3))
    for start in range(0, len(values), 1_000):
        runs.add(array("I", values[start : start + 1_000]))
    assert len(runs.runs) <= 8
    assert all(list(run) == sorted(run) for run in runs.runs)
    assert runs.size == len(values)
    assert all(v in runs for v in values[::1_001])
    assert 1 not in runs
    assert 299_999 not in runs
