"""Append-only lists kept in pages found by `_id`: what a lot holds, read in time that
grows with the lot, not with the collection.

FerretDB v1 serves only `{_id: <value>}` from an index; a filter on any other field (a lot's
units by `sku` and `lot_code`, its movements) reads every document of the collection, so
each lot trace and each lot page cost a pass over everything ever received or moved. A
list kept here grows by whole pages instead, each an insert of
`{"_id": "<key> #<n>", "key": <key>, "n": <items>, "blob": <zlib of the BSON of
{"items": [...]}>}` with n counting from 0, and is read back by `_id` lookups alone, on
FerretDB and MongoDB alike. The items travel as one compressed value, not as thousands of
fields: FerretDB stores a document as JSON and parses every field of it on each read, which
made a recall's contact list (a million journal entries) cost 40-90 s of the database's
time, and a lot's entries, alike but for their serials, compress about fifteen times (a
page of 2,000 in a third of a millisecond). Pages written before, with their items as an
array, are read as they are.

Pages are never changed or deleted, and page n is written only once pages 0..n-1 exist, so
the pages of a key are numbered without gaps and a reader finds how many there are by
probing (doubling, then halving). A writer appends before it writes the data its items
describe, so nothing written is ever missing from its list; a batch replayed after a crash
appends its items again, so a reader keeps each item once, or the last word on each thing.
Two writers
of one key (a rebalance overlap) cannot overwrite each other: the loser of a page number
gets a duplicate key error and takes the next one.
"""

from __future__ import annotations

import zlib
from collections.abc import (
    AsyncIterable,
    Awaitable,
    Callable,
    Iterable,
    Mapping,
    MutableMapping,
    Sequence,
)
from datetime import UTC
from typing import Any

import bson
from bson.codec_options import CodecOptions
from pymongo.asynchronous.collection import AsyncCollection
from pymongo.errors import BulkWriteError

from lotline.runtime.mongo import INSERT_PART, READ_CONCURRENCY, Doc, each_at_most, find_by_ids
from lotline.runtime.pace import Pace

DUPLICATE_KEY = 11000
# Items per page: a page of stock movements stays well under 1 MB.
PAGE_ITEMS = 2000
# Items held per append by append_stream.
FLUSH_EVERY = 20_000
# Rounds of "page taken, probe again" before giving up on a key other writers keep growing.
MAX_ROUNDS = 5


class PagesContended(RuntimeError):
    """Another writer kept taking the page numbers this one tried."""


# Items read back from a page's bytes as the driver reads documents: times in UTC, aware.
_CODEC: CodecOptions[Doc] = CodecOptions(tz_aware=True, tzinfo=UTC)


def page_id(key: str, number: int) -> str:
    return f"{key} #{number}"


def page_doc(key: str, number: int, items: Sequence[Any]) -> Doc:
    """Page `number` of `key`, its items as one compressed BSON value."""
    return {
        "_id": page_id(key, number),
        "key": key,
        "n": len(items),
        "blob": zlib.compress(bson.encode({"items": list(items)}), 1),
    }


def page_items(doc: Doc) -> list[Any]:
    """A page's items: from its bytes, or (a page written before) its array."""
    blob = doc.get("blob")
    if blob is not None:
        items: list[Any] = bson.decode(zlib.decompress(blob), _CODEC)["items"]
        return items
    return list(doc.get("items", ()))


class PagedLists:
    """Lists of items under string keys, appended to in pages of at most `page_items`.

    `tails` remembers the next free page of each key this writer appended to; pass a cache
    dropped on rebalance (lotline.runtime.owned): a stale tail costs one duplicate key
    error and a probe, never a lost or overwritten page.
    """

    def __init__(
        self,
        collection: AsyncCollection[Doc],
        tails: MutableMapping[str, int] | None = None,
        page_items: int = PAGE_ITEMS,
    ) -> None:
        self.collection = collection
        self._tails: MutableMapping[str, int] = {} if tails is None else tails
        self.page_items = page_items

    async def append(
        self,
        items_by_key: Mapping[str, Sequence[Any]],
        between: Callable[[], Awaitable[None]] | None = None,
    ) -> None:
        """Append each key's items after what the key holds, in one ordered insert command
        (more only when another writer took a page number meanwhile). `between` is awaited
        now and then while the pages are encoded (a background writer giving way)."""
        pending: dict[str, list[Sequence[Any]]] = {
            key: [items[i : i + self.page_items] for i in range(0, len(items), self.page_items)]
            for key, items in items_by_key.items()
            if items
        }
        for _ in range(MAX_ROUNDS):
            if not pending:
                return
            await self._find_tails(pending)
            docs: list[Doc] = []
            pace = Pace(between=between)  # a round's pages: tens of thousands of items
            for key, pages in pending.items():
                first = await self._tail(key)
                for offset, items in enumerate(pages):
                    docs.append(page_doc(key, first + offset, items))
                    await pace.step()
                self._tails[key] = first + len(pages)
            pending = {}
            # A page number another writer took: everything from it on was not written.
            # Probe those keys again and append their pages after what they hold now.
            for doc in await self._insert_in_order(docs, between):
                self._tails.pop(doc["key"], None)
                pending.setdefault(doc["key"], []).append(page_items(doc))
        if pending:
            raise PagesContended(f"pages of {sorted(pending)} kept being taken by another writer")

    async def _insert_in_order(
        self, docs: list[Doc], between: Callable[[], Awaitable[None]] | None
    ) -> list[Doc]:
        """Insert `docs` in order, `INSERT_PART` a command, awaiting `between` before each
        one after the first (a round's append is a page or more for each of thousands of
        keys: stock's ledger, one per level sold in 30 s). It stops at the first page number
        already taken: whatever lands (a crash included) is a prefix of `docs`, so of each
        key's pages, and no key ever has a gap. Returns the pages not written: the refused
        one and all after it."""
        for start in range(0, len(docs), INSERT_PART):
            if start and between is not None:
                await between()
            try:
                await self.collection.insert_many(docs[start : start + INSERT_PART], ordered=True)
            except BulkWriteError as exc:
                errors = exc.details.get("writeErrors", [])
                if exc.details.get("writeConcernErrors") or any(
                    error.get("code") != DUPLICATE_KEY for error in errors
                ):
                    raise
                return docs[start + min(error["index"] for error in errors) :]
        return []

    async def append_stream(
        self, pairs: AsyncIterable[tuple[str, Any]], every: int | None = None
    ) -> int:
        """Append `(key, item)` pairs as they come, `every` (FLUSH_EVERY) items an append: a
        rebuild from a pass over older data. Returns how many."""
        every = every or FLUSH_EVERY
        pending: dict[str, list[Any]] = {}
        held = appended = 0
        async for key, item in pairs:
            pending.setdefault(key, []).append(item)
            held += 1
            if held >= every:
                await self.append(pending)
                appended, held, pending = appended + held, 0, {}
        await self.append(pending)
        return appended + held

    async def read(self, key: str) -> list[Any]:
        """Every item appended to `key`, replays included, each writer's in the order it
        appended them (two racing writers' pages interleave)."""
        count = await self._count(key)
        ids = [page_id(key, number) for number in range(count)]
        found = await find_by_ids(self.collection, ids)
        return [item for doc_id in ids if doc_id in found for item in page_items(found[doc_id])]

    async def _find_tails(self, keys: Iterable[str]) -> None:
        """Probe the keys whose tail is not known yet side by side (a batch's new lots are
        many, each a few lookups)."""
        unknown = [key for key in keys if key not in self._tails]
        await each_at_most(READ_CONCURRENCY, unknown, self._tail)

    async def _tail(self, key: str) -> int:
        if key not in self._tails:
            self._tails[key] = await self._count(key)
        return self._tails[key]

    async def _count(self, key: str) -> int:
        """How many pages `key` has: pages are numbered without gaps, so probe 1, 2, 4, ...
        past the last one, then halve the interval between the last found and the first
        missing."""

        async def exists(number: int) -> bool:
            found = await self.collection.find_one({"_id": page_id(key, number)}, {"_id": 1})
            return found is not None

        if not await exists(0):
            return 0
        present, missing = 0, 1
        while await exists(missing):
            present, missing = missing, missing * 2
        while missing - present > 1:
            middle = (present + missing) // 2
            if await exists(middle):
                present = middle
            else:
                missing = middle
        return missing
