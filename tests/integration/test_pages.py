"""Paged lists (a lot's units, a lot's movements) on the real FerretDB: every item appended is
read back once, in order, however the pages fall, after a replay and with two writers."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any

import pytest
from pymongo import AsyncMongoClient
from pymongo.asynchronous.collection import AsyncCollection

from lotline.runtime import pages as pages_module
from lotline.runtime.pages import PagedLists, page_id

pytestmark = pytest.mark.infra


@pytest.fixture
async def pages(
    mongo: AsyncMongoClient[dict[str, Any]], run_id: str
) -> AsyncIterator[AsyncCollection[dict[str, Any]]]:
    collection = mongo["lotline_tests"][f"pages_{run_id}"]
    yield collection
    await collection.drop()


async def test_items_come_back_in_order_across_pages_and_appends(pages) -> None:  # type: ignore[no-untyped-def]
    lists = PagedLists(pages, page_items=3)
    await lists.append({"A L1": ["s1", "s2", "s3", "s4"], "A L2": ["t1"]})
    await lists.append({"A L1": ["s5"]})
    await lists.append({"A L1": [f"u{n}" for n in range(40)], "A L2": []})

    assert await lists.read("A L1") == ["s1", "s2", "s3", "s4", "s5", *(f"u{n}" for n in range(40))]
    assert await lists.read("A L2") == ["t1"]
    assert await lists.read("A L3") == []
    # 2 + 1 + 14 pages, numbered without gaps: a fresh reader counts them by probing alone.
    assert await pages.count_documents({"key": "A L1"}) == 17
    assert await pages.find_one({"_id": page_id("A L1", 16)}) is not None


@pytest.mark.parametrize("pages_before", [0, 1, 2, 5, 8, 33])
async def test_a_writer_that_forgot_its_tail_appends_after_the_last_page(  # type: ignore[no-untyped-def]
    pages, pages_before
) -> None:
    await PagedLists(pages, page_items=1).append({"K": [f"a{n}" for n in range(pages_before)]})
    restarted = PagedLists(pages, page_items=1)
    await restarted.append({"K": ["last"]})
    assert await restarted.read("K") == [*(f"a{n}" for n in range(pages_before)), "last"]


async def test_a_replayed_batch_is_appended_again_after_the_first_try(pages) -> None:  # type: ignore[no-untyped-def]
    lists = PagedLists(pages)
    batch = [{"_id": f"m{n}", "quantity": n} for n in range(3)]
    await lists.append({"K": batch})
    # The write the items describe failed: the batch comes again, to a new writer.
    await PagedLists(pages).append({"K": [*batch, {"_id": "m3", "quantity": 3}]})
    items = await lists.read("K")
    assert [item["quantity"] for item in items] == [0, 1, 2, 0, 1, 2, 3]


async def test_two_writers_of_one_key_lose_nothing(pages) -> None:  # type: ignore[no-untyped-def]
    # A rebalance overlap: both writers believe the same page number is next.
    first, second = PagedLists(pages, page_items=2), PagedLists(pages, page_items=2)
    await first.append({"K": ["x0"]})
    await second.append({"K": ["y0"]})
    await asyncio.gather(
        *(
            writer.append({"K": [f"{name}{n}" for n in range(1, 6)]})
            for writer, name in ((first, "x"), (second, "y"))
        )
    )
    items = await PagedLists(pages).read("K")
    assert sorted(items) == sorted([*(f"x{n}" for n in range(6)), *(f"y{n}" for n in range(6))])
    assert len(items) == 12
    # Each writer's items keep the order it appended them in.
    assert [i for i in items if i.startswith("x")] == [f"x{n}" for n in range(6)]
    assert [i for i in items if i.startswith("y")] == [f"y{n}" for n in range(6)]


async def test_items_are_stored_as_one_value_and_pages_written_before_still_read(pages) -> None:  # type: ignore[no-untyped-def]
    """A page's items are one BSON value (FerretDB parses every field of a document on each
    read); a page written before, its items an array, reads as it did."""
    sold_at = datetime(2026, 12, 1, 9, 30, tzinfo=UTC)
    await pages.insert_one({"_id": page_id("K", 0), "key": "K", "items": [{"serial": "A"}]})
    lists = PagedLists(pages)
    await lists.append({"K": [{"serial": "B", "sold_at": sold_at}]})
    stored = await pages.find_one({"_id": page_id("K", 1)})
    assert stored is not None
    assert "items" not in stored
    assert (stored["n"], type(stored["blob"])) == (1, bytes)
    assert await PagedLists(pages).read("K") == [
        {"serial": "A"},
        {"serial": "B", "sold_at": sold_at},
    ]


async def test_an_append_in_several_commands_leaves_no_gap_when_a_later_page_is_taken(  # type: ignore[no-untyped-def]
    pages, monkeypatch
) -> None:
    """A round's append goes in commands of `INSERT_PART` pages, giving way between them.
    When a page of a later command was taken by another writer, that page and every one
    after it are probed again and appended after what their keys hold: nothing is lost, no
    key has a gap, and what landed before the refusal is not written twice."""
    monkeypatch.setattr(pages_module, "INSERT_PART", 2)
    keys = ["A", "B", "C", "D", "E"]
    writer = PagedLists(pages)
    await writer.append({key: [f"{key}0"] for key in keys})
    await PagedLists(pages).append({"C": ["other"]})  # the writer's tail of C is stale now
    turns: list[int] = []

    async def between() -> None:
        turns.append(await pages.count_documents({}))

    await writer.append({key: [f"{key}1"] for key in keys}, between=between)

    reader = PagedLists(pages)
    for key in keys:
        expected = [f"{key}0", "other", f"{key}1"] if key == "C" else [f"{key}0", f"{key}1"]
        assert await reader.read(key) == expected
    # Pages numbered without gaps, none written twice: 5 + 1 + 5.
    assert await pages.count_documents({}) == 11
    # Before each command but the first of a try: A1 B1 | C1 refused; then C2 D1 | E1.
    assert turns == [8, 10]
