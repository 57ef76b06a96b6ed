"""The serial registry's lot journal on the real FerretDB: a lot's counts and contact list
follow its units, also when a journalled state was not written after all."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any

import pytest
from pymongo import AsyncMongoClient

from lotline.events import UnitStatus
from lotline.serials.domain import RecallScope, Unit
from lotline.serials.store import SerialStore, UnitChange

pytestmark = pytest.mark.infra

SOLD_AT = datetime(2026, 11, 20, 10, 0, tzinfo=UTC)


@pytest.fixture
async def store(mongo: AsyncMongoClient[dict[str, Any]], run_id: str) -> AsyncIterator[SerialStore]:
    name = f"lotline_tests_journal_{run_id}"
    store = SerialStore(mongo[name])
    store.wal.observe("PHONE", 0)  # this instance owns the SKU's partition
    yield store
    await mongo.drop_database(name)


def unit(serial: str, lot: str = "L1") -> Unit:
    return Unit(sku="PHONE", serial=serial, status=UnitStatus.IN_STOCK, location="S1", lot_code=lot)


def sold(before: Unit, customer: str) -> Unit:
    return replace(
        before, status=UnitStatus.SOLD, sale_id="SALE-1", customer_ref=customer, sold_at=SOLD_AT
    )


async def test_counts_and_contacts_follow_each_change(store: SerialStore) -> None:
    units = [unit(f"S{n}") for n in range(5)] + [unit("OTHER", lot="L2")]
    assert await store.insert_units(units) == []
    changes = [
        UnitChange(units[1], sold(units[1], "C-1")),
        UnitChange(units[2], sold(units[2], "C-2")),
    ]
    assert await store.apply_changes(changes)
    await store.wal.commit()  # as the consumer commits the batch's unit of work
    back = replace(changes[1].after, status=UnitStatus.RETURNED)
    assert await store.apply_changes([UnitChange(changes[1].after, back)])
    await store.wal.commit()

    page = await store.lot_page("PHONE", "L1", None, None, limit=2, skip=1)
    assert {s: n for s, n in page.counts.items() if n} == {
        UnitStatus.IN_STOCK: 3,
        UnitStatus.SOLD: 1,
        UnitStatus.RETURNED: 1,
    }
    assert page.matched == 5
    assert [u.serial for u in page.units] == ["S1", "S2"]
    assert page.units[0].customer_ref == "C-1"

    scope = RecallScope(
        recall_id="RC-1", event_id="E-1", issued_at=SOLD_AT, lot_codes=frozenset({"L1"})
    )
    recalled = await store.recalled_units("PHONE", scope)
    assert recalled.counts[UnitStatus.SOLD] == 1
    assert [(s.serial, s.customer_ref, s.lot_code) for s in recalled.sold] == [("S1", "C-1", "L1")]


async def test_a_state_another_writer_beat_is_not_the_last_word(store: SerialStore) -> None:
    first = unit("S1")
    assert await store.insert_units([first]) == []
    # Another writer's copy thought the unit new, and sold: the insert is refused ...
    assert await store.insert_units([sold(first, "C-9")]) == [first.id]
    # ... and so is a change built on that belief.
    assert not await store.apply_changes([UnitChange(None, sold(first, "C-9"))])

    page = await store.lot_page("PHONE", "L1", None, None, limit=10, skip=0)
    assert page.counts[UnitStatus.IN_STOCK] == 1
    assert page.counts[UnitStatus.SOLD] == 0
    scope = RecallScope(
        recall_id="RC-1", event_id="E-1", issued_at=SOLD_AT, lot_codes=frozenset({"L1"})
    )
    assert (await store.recalled_units("PHONE", scope)).sold == []
