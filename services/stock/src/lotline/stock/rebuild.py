"""Move a ledger written before lot pages existed into them: `python -m lotline.stock.rebuild`.

Earlier versions kept one document per movement in `stock.movements`, read by a filter on
`sku` and `lot_code` (a pass over the whole collection on FerretDB). This appends each of them
to its lot's pages (`stock.ledger`), where lot traces read them. The old collection is left as
it was; drop it once the traces look right.

Safe while stock runs, and to run twice: a lot's movements are read once per movement id,
whichever page they are on.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

from pymongo.asynchronous.collection import AsyncCollection

from lotline.stock.store import StockStore, ledger_key


async def _movements(
    old: AsyncCollection[dict[str, Any]],
) -> AsyncIterator[tuple[str, dict[str, Any]]]:
    async for doc in old.find({}):
        yield ledger_key(doc["sku"], doc.get("lot_code")), doc


async def rebuild(store: StockStore, old: AsyncCollection[dict[str, Any]]) -> int:
    """Append every movement of the old collection `old` to the ledger; returns how many."""
    return await store.ledger.append_stream(_movements(old))


def main() -> None:
    from lotline.stock.app import service

    async def run() -> None:
        try:
            count = await rebuild(StockStore(service.db), service.db["movements"])
        finally:
            await service.mongo.close()
        print(f"ledger: {count:,} movements appended to their lots' pages")

    asyncio.run(run())


if __name__ == "__main__":
    main()
