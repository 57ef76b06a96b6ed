"""MongoDB access patterns that hold on both MongoDB and FerretDB v1, as measured here.

FerretDB 1.24 (SQLite backend) leaks one pooled connection per statement of a multi-
statement write command until the command ends, and its pool holds 100: an `update` or
`delete` of 100 or more statements therefore hangs the whole server. It also pushes only
`_id` equality down to the index; `{"_id": {"$in": [...]}}` scans the collection. So bulk
writes go in parts below that limit, and reads by many ids are concurrent `find_one`s.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable, Sequence
from typing import Any

from pymongo.asynchronous.collection import AsyncCollection
from pymongo.results import BulkWriteResult

Doc = dict[str, Any]

# Statements per write command: safely under FerretDB's pool of 100 connections.
BULK_PART = 50
# Concurrent reads by _id: a third of the pool, leaving room for writers and other readers.
READ_CONCURRENCY = 32


async def bulk_write_in_parts(
    collection: AsyncCollection[Doc], operations: Sequence[Any], *, ordered: bool = True
) -> tuple[int, int]:
    """Write in parts of BULK_PART; returns (matched, upserted) over all parts."""
    matched = upserted = 0
    for start in range(0, len(operations), BULK_PART):
        result: BulkWriteResult = await collection.bulk_write(
            list(operations[start : start + BULK_PART]), ordered=ordered
        )
        matched += result.matched_count
        upserted += result.upserted_count
    return matched, upserted


async def find_by_ids(
    collection: AsyncCollection[Doc], ids: Iterable[str], projection: Doc | None = None
) -> dict[str, Doc]:
    """The documents with these _ids (missing ones are absent), by indexed lookups."""
    gate = asyncio.Semaphore(READ_CONCURRENCY)

    async def one(doc_id: str) -> Doc | None:
        async with gate:
            return await collection.find_one({"_id": doc_id}, projection)

    wanted = list(dict.fromkeys(ids))
    found = await asyncio.gather(*(one(doc_id) for doc_id in wanted))
    return {doc["_id"]: doc for doc in found if doc is not None}
