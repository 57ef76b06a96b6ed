"""The rebuild commands on the real FerretDB: units and movements written before lot journals
and ledger pages existed become visible to lot pages, recall answers and lot traces."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from pymongo import AsyncMongoClient
from pymongo.asynchronous.database import AsyncDatabase

from lotline.events import UnitStatus
from lotline.runtime import pages
from lotline.serials import rebuild as serials_rebuild
from lotline.serials.domain import RecallScope, Unit
from lotline.serials.store import SerialStore, unit_doc
from lotline.stock import rebuild as stock_rebuild
from lotline.stock.ledger import Movement, MovementKind
from lotline.stock.store import StockStore

pytestmark = pytest.mark.infra

AT = datetime(2026, 11, 20, 9, 0, tzinfo=UTC)


@pytest.fixture
async def db(
    mongo: AsyncMongoClient[dict[str, Any]], run_id: str
) -> AsyncIterator[AsyncDatabase[dict[str, Any]]]:
    name = f"lotline_tests_rebuild_{run_id}"
    yield mongo[name]
    await mongo.drop_database(name)


async def test_units_stored_before_journals_are_journalled(db, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    """Each unit once, as its newest version."""
    monkeypatch.setattr(pages, "FLUSH_EVERY", 7)  # several appends
    units = [
        Unit(
            sku="PHONE",
            serial=f"S{n:02d}",
            status=UnitStatus.IN_STOCK,
            location="S1",
            lot_code="L1",
        )
        for n in range(20)
    ]
    sold = Unit(
        sku="PHONE",
        serial="S03",
        status=UnitStatus.SOLD,
        location="S1",
        lot_code="L1",
        sale_id="SALE-1",
        customer_ref="C-3",
        sold_at=AT,
    )
    no_lot = Unit(sku="PHONE", serial="LOOSE", status=UnitStatus.IN_STOCK, location="S1")
    await db["units"].insert_many([unit_doc(u) for u in [*units, no_lot]])
    # S03's sale, written out later as its first version: the rebuild journals the newest.
    await db["units"].insert_one({**unit_doc(sold), "_id": "PHONE S03/1", "_wal": 2})
    store = SerialStore(db)
    assert (await store.lot_page("PHONE", "L1", None, None, 10, 0)).matched == 0  # not yet

    assert await serials_rebuild.rebuild(store) == 20
    assert await serials_rebuild.rebuild(SerialStore(db)) == 20  # again: harmless

    page = await store.lot_page("PHONE", "L1", None, None, 10, 0)
    assert {s: n for s, n in page.counts.items() if n} == {
        UnitStatus.IN_STOCK: 19,
        UnitStatus.SOLD: 1,
    }
    scope = RecallScope(recall_id="RC-1", event_id="E-1", issued_at=AT, lot_codes=frozenset({"L1"}))
    sold = (await store.recalled_units("PHONE", scope)).sold
    assert [(s.serial, s.customer_ref) for s in sold] == [("S03", "C-3")]


async def test_movements_of_the_old_ledger_reach_the_lot_trace(db, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.setattr(pages, "FLUSH_EVERY", 2)
    movements = [
        Movement(
            id=f"M{n}",
            kind=MovementKind.SOLD if n else MovementKind.RECEIVED,
            sku="MILK",
            location="S1",
            lot_code="L1" if n < 4 else None,
            quantity=10 if n == 0 else 1,
            at=AT + timedelta(minutes=n),
            event_id=f"E{n}",
            document_type="sale" if n else "receipt",
            document_id=f"D{n}",
        ).to_document()
        for n in range(5)
    ]
    await db["movements"].insert_many(movements)
    store = StockStore(db)

    assert await stock_rebuild.rebuild(store, db["movements"]) == 5
    assert await stock_rebuild.rebuild(store, db["movements"]) == 5  # again: read once each

    trace = await store.lot_movements("MILK", "L1")
    assert [(m["_id"], m["quantity"]) for m in trace] == [
        ("M0", 10),
        ("M1", 1),
        ("M2", 1),
        ("M3", 1),
    ]
