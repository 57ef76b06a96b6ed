"""Rebuild the lot journals and the serial fingerprints from the units as stored:
`python -m lotline.serials.rebuild`.

For a registry whose units were written before lot journals existed (or to repair one): each
unit with a lot gets its stored state appended to its lot's journal, so lot pages, counts and
recall answers see it, and every unit is indexed in its SKU's fingerprints again (a receipt
finds the serials registered already through them). Two passes over `serials.units`' ids.

Run it with every serial-registry instance stopped. A journal's last entry per unit wins, and
an instance writing meanwhile could journal a newer state that this older one then follows.
Running it twice is harmless: the second pass appends the same states again.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

from lotline.serials.domain import lot_key
from lotline.serials.store import Doc, SerialStore, lot_entry

# Units read at a time, by _id.
READ_PART = 1_000


async def _lot_entries(store: SerialStore) -> AsyncIterator[tuple[str, Doc]]:
    # Each unit once, as its newest version (a unit's changes are stored as versions,
    # "<_id>/<n>", beside the document of its receipt).
    ids: list[str] = []
    async for doc in store.units.find({}, {"_id": 1}):
        if "/" not in doc["_id"]:
            ids.append(doc["_id"])
        if len(ids) >= READ_PART:
            for entry in await _entries_of(store, ids):
                yield entry
            ids = []
    for entry in await _entries_of(store, ids):
        yield entry


async def _entries_of(store: SerialStore, ids: list[str]) -> list[tuple[str, Doc]]:
    units = (await store.read_units(ids)).values()
    return [
        (lot_key(unit.sku, unit.lot_code), lot_entry(unit))
        for unit in units
        if unit.lot_code is not None
    ]


async def rebuild(store: SerialStore) -> int:
    """Journal every unit that has a lot, and index every unit; returns how many were
    journalled."""
    journalled = await store.lot_units.append_stream(_lot_entries(store))
    await store.index_serials(again=True)
    return journalled


def main() -> None:
    from lotline.serials.app import service

    async def run() -> None:
        try:
            count = await rebuild(SerialStore(service.db))
        finally:
            await service.mongo.close()
        print(f"lot journals: {count:,} units journalled")

    asyncio.run(run())


if __name__ == "__main__":
    main()
