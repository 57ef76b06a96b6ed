"""MongoDB access patterns that hold on both MongoDB and FerretDB v1, as measured here.

FerretDB 1.24 (SQLite backend) leaks one pooled connection per statement of a multi-
statement write command until the command ends, and its pool holds 100: an `update` or
`delete` of 100 or more statements therefore hangs the whole server. It also pushes only
`_id` equality down to the index; `{"_id": {"$in": [...]}}` scans the collection. So bulk
writes go in parts below that limit, and reads by many ids are concurrent `find_one`s.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Iterable, Sequence
from typing import Any, TypeVar

from pymongo import AsyncMongoClient
from pymongo.asynchronous.collection import AsyncCollection
from pymongo.results import BulkWriteResult

Doc = dict[str, Any]
T = TypeVar("T")

# Statements per write command: safely under FerretDB's pool of 100 connections.
BULK_PART = 50
# Documents per insert command of a background writer (a round's pages, a versioned
# collection's new versions). A round's 10,000 pages in one command held the database's one
# writer for their whole insert, and every batch's log insert queued behind it (p99 of the
# second a round starts: 350 ms).
INSERT_PART = 200
# Concurrent reads by _id: a third of the pool, leaving room for writers and other readers.
READ_CONCURRENCY = 32


async def bulk_write_in_parts(
    collection: AsyncCollection[Doc],
    operations: Sequence[Any],
    *,
    ordered: bool = True,
    between: Callable[[], Awaitable[None]] | None = None,
) -> tuple[int, int]:
    """Write in parts of BULK_PART; returns (matched, upserted) over all parts. `between`
    is awaited before each part (a background writer giving way to the foreground)."""
    matched = upserted = 0
    for start in range(0, len(operations), BULK_PART):
        if between is not None:
            await between()
        result: BulkWriteResult = await collection.bulk_write(
            list(operations[start : start + BULK_PART]), ordered=ordered
        )
        matched += result.matched_count
        upserted += result.upserted_count
    return matched, upserted


async def each_at_most(
    limit: int, items: Iterable[T], call: Callable[[T], Awaitable[object]]
) -> None:
    """`call` for every item, at most `limit` at a time: `limit` workers take the items in
    turn. A task per item behind a semaphore put all of them on the event loop at once: for
    10,000 lookups (a round's first read of the units it writes) that held the loop 93 ms
    for everything else, a batch included, and took 0.16 s; the workers take 16 ms and
    never hold it 2 ms."""
    remaining = iter(items)

    async def worker() -> None:
        for item in remaining:
            await call(item)

    await asyncio.gather(*(worker() for _ in range(limit)))


async def find_by_ids(
    collection: AsyncCollection[Doc], ids: Iterable[str], projection: Doc | None = None
) -> dict[str, Doc]:
    """The documents with these _ids (missing ones are absent), by indexed lookups, in the
    order of `ids`."""
    wanted = list(dict.fromkeys(ids))
    found: dict[str, Doc] = {}

    async def one(doc_id: str) -> None:
        doc = await collection.find_one({"_id": doc_id}, projection)
        if doc is not None:
            found[doc_id] = doc

    await each_at_most(READ_CONCURRENCY, wanted, one)
    return {found[doc_id]["_id"]: found[doc_id] for doc_id in wanted if doc_id in found}


class Reachability:
    """Whether the database answers a ping within `timeout_s`. Whoever asks while a ping is
    out shares it, and an answer stands for `fresh_s`: an outage costs one ping per interval
    however many requests wait, and a busy service does not ping per request."""

    def __init__(
        self, client: AsyncMongoClient[Doc], timeout_s: float, fresh_s: float = 0.5
    ) -> None:
        self.client = client
        self.timeout_s = timeout_s
        self.fresh_s = fresh_s
        self._ping: asyncio.Future[str | None] | None = None
        self._answer: str | None = None
        self._answered_at: float | None = None

    async def problem(self) -> str | None:
        """None when the database answered; otherwise why it did not. Never raises."""
        now = asyncio.get_running_loop().time()
        if self._answered_at is not None and now - self._answered_at < self.fresh_s:
            return self._answer
        if self._ping is None:
            self._ping = asyncio.ensure_future(self._ask())
        # One waiter giving up (its request ended) must not cancel the others' ping.
        return await asyncio.shield(self._ping)

    async def _ask(self) -> str | None:
        try:
            await asyncio.wait_for(self.client.admin.command("ping"), timeout=self.timeout_s)
            answer = None
        except TimeoutError:
            answer = f"no answer to a ping within {self.timeout_s:g} s"
        except Exception as exc:
            answer = f"ping failed: {exc!r}"
        finally:
            self._ping = None
        self._answer = answer
        self._answered_at = asyncio.get_running_loop().time()
        return answer
