"""The serial registry's lot journal on the real FerretDB: a lot's counts and contact list
follow its units, also when another instance wrote the partition meanwhile."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any

import pytest
from pymongo import AsyncMongoClient

from lotline.events import UnitStatus
from lotline.runtime.owned import OwnedState
from lotline.runtime.wal import StreamTaken
from lotline.serials.domain import RecallScope, ReceivedUnits, Unit
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


def received(template: Unit, *serials: str) -> ReceivedUnits:
    """A receipt's units: the template's, one per serial."""
    return ReceivedUnits(template, serials)


def sold(before: Unit, customer: str) -> Unit:
    return replace(
        before, status=UnitStatus.SOLD, sale_id="SALE-1", customer_ref=customer, sold_at=SOLD_AT
    )


async def test_counts_and_contacts_follow_each_change(store: SerialStore) -> None:
    units = [unit(f"S{n}") for n in range(5)] + [unit("OTHER", lot="L2")]
    receipts = [received(unit(""), *(u.serial for u in units[:5])), received(units[5], "OTHER")]
    assert await store.register_units(receipts) == {}
    changes = [
        UnitChange(units[1], sold(units[1], "C-1")),
        UnitChange(units[2], sold(units[2], "C-2")),
    ]
    await store.apply_changes(changes)
    await store.wal.commit()  # as the consumer commits the batch's unit of work
    back = replace(changes[1].after, status=UnitStatus.RETURNED)
    await store.apply_changes([UnitChange(changes[1].after, back)])
    await store.wal.commit()
    await store.wal.materialize()  # the units, journals and fingerprints written out

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


async def test_a_writer_that_thought_a_unit_new_loses_to_the_one_that_created_it(
    store: SerialStore,
) -> None:
    """A rebalance overlap: two instances hold the SKU's partition. The one that registers a
    unit first keeps it; the other, which could not see it yet and thought it new, loses
    the log's entry number, and its batch, applied again, finds the unit."""
    owned = OwnedState()
    other = SerialStore(store.wal._db, owned)
    other.wal.observe("PHONE", 0)
    await other.wal.restore([0])
    await store.wal.restore([0])
    first = unit("S1")
    assert await store.register_units([received(first, "S1")]) == {}
    await store.wal.commit()
    assert await other.register_units([received(sold(first, "C-9"), "S1")]) == {}
    with pytest.raises(StreamTaken):
        await other.wal.commit()
    owned.forget("batch failed")  # as the consumer does, then the batch again
    again = await other.register_units([received(sold(first, "C-9"), "S1")])
    assert list(again) == [first.id]
    await other.wal.commit()

    page = await store.lot_page("PHONE", "L1", None, None, limit=10, skip=0)
    assert page.counts[UnitStatus.IN_STOCK] == 1
    assert page.counts[UnitStatus.SOLD] == 0
    scope = RecallScope(
        recall_id="RC-1", event_id="E-1", issued_at=SOLD_AT, lot_codes=frozenset({"L1"})
    )
    assert (await store.recalled_units("PHONE", scope)).sold == []
