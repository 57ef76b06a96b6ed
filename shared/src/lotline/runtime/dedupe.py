"""Remembers which events a service has applied, so a re-sent copy (new offset) changes nothing.

Redelivery of the same record is caught by each effect's own offset guard. A copy of an event
sent twice by its producer sits at another offset; it is caught here by its CloudEvents
`source` + `id`. Both copies share a key, hence a partition, so the first is always remembered
before the second is read.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from pymongo.asynchronous.collection import AsyncCollection
from pymongo.errors import BulkWriteError

from lotline.runtime.mongo import find_by_ids

if TYPE_CHECKING:
    from lotline.runtime.consumer import Delivery

DUPLICATE_KEY = 11000


class SeenEvents:
    def __init__(self, collection: AsyncCollection[dict[str, Any]]) -> None:
        self._collection = collection

    async def unseen(self, deliveries: list[Delivery]) -> list[Delivery]:
        """The deliveries not applied before, each event once (first copy wins)."""
        first: dict[str, Delivery] = {}
        for delivery in deliveries:
            first.setdefault(delivery.event.dedupe_key, delivery)
        if not first:
            return []
        seen = await find_by_ids(self._collection, first, {"_id": 1})
        return [d for key, d in first.items() if key not in seen]

    async def remember(self, deliveries: list[Delivery]) -> None:
        docs = [
            {"_id": d.event.dedupe_key, "type": d.event.type.value, "at": d.event.time}
            for d in deliveries
        ]
        if not docs:
            return
        try:
            await self._collection.insert_many(docs, ordered=False)
        except BulkWriteError as exc:
            # Already remembered by an earlier, interrupted run of the same batch.
            if any(e.get("code") != DUPLICATE_KEY for e in exc.details.get("writeErrors", [])):
                raise
