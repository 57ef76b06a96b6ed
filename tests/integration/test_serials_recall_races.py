"""The serial registry on the real FerretDB and broker where a recall and the sales or receipts of
its units meet: in one batch, saved by another instance mid-batch, or applied after the sale."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from datetime import UTC, date, datetime, timedelta
from itertools import count
from typing import Any

import httpx
import pytest
from conftest import EventBus, ServiceProcess
from pymongo import AsyncMongoClient
from pymongo.asynchronous.database import AsyncDatabase

from lotline.events import (
    BatchRecalled,
    Classification,
    EventData,
    FlagReason,
    ItemReceived,
    ItemSold,
    Lot,
    ProductRegistered,
    SaleFlagged,
    UnitStatus,
    decode,
    encode,
)
from lotline.runtime.consumer import Delivery
from lotline.runtime.wal import StreamTaken, WriteAheadLog
from lotline.serials.domain import Unit
from lotline.serials.handlers import SerialHandlers
from lotline.serials.store import SerialStore, UnitChange

from support import eventually

pytestmark = pytest.mark.infra

SOURCE = "lotline/serial-registry"
ISSUED_AT = datetime(2026, 11, 22, 12, 0, tzinfo=UTC)
_offsets = count()


class SavedMeanwhile(SerialStore):
    """This instance's store. `meanwhile` runs once, just before the next write of units:
    what another instance does between this batch reading the recall scopes and writing."""

    meanwhile: Callable[[], Awaitable[None]] | None = None

    async def _before_write(self) -> None:
        step, self.meanwhile = self.meanwhile, None
        if step is not None:
            await step()

    async def register_units(self, units: Sequence[Unit]) -> dict[str, Unit]:
        await self._before_write()
        return await super().register_units(units)

    async def apply_changes(self, changes: Sequence[UnitChange]) -> None:
        await self._before_write()
        await super().apply_changes(changes)


@pytest.fixture
async def db(
    mongo: AsyncMongoClient[dict[str, Any]], run_id: str
) -> AsyncIterator[AsyncDatabase[dict[str, Any]]]:
    name = f"lotline_tests_recall_races_{run_id}"
    yield mongo[name]
    await mongo.drop_database(name)


def owns_partition(sku: str, *stores: SerialStore) -> None:
    """The SKU's events come from partition 0, to each of these stores' instance."""
    for store in stores:
        store.wal.observe(sku, 0)


async def as_the_consumer_would(
    apply: Callable[[list[Delivery]], Awaitable[Any]], deliveries: list[Delivery]
) -> None:
    """Apply a batch as the consumer does: one that finds its partition's log written by
    another instance meanwhile is applied again, from what that instance logged."""
    for _ in range(3):
        try:
            await batch(apply, deliveries)
            return
        except StreamTaken:
            continue
    raise AssertionError("the partition's log kept being taken")


async def batch(
    apply: Callable[[list[Delivery]], Awaitable[Any]], deliveries: list[Delivery]
) -> Any:
    """One batch through a handler, committed as the consumer commits its unit of work."""
    handlers: SerialHandlers = apply.__self__  # type: ignore[attr-defined]
    try:
        result = await apply(deliveries)
        await handlers.store.wal.commit()
    except BaseException:
        handlers.store.wal.abort()
        raise
    return result


def delivered(data: EventData) -> Delivery:
    event = encode(data, source="tests").event
    return Delivery(event, event.type.topic, 0, next(_offsets))


def receipt(sku: str, serials: list[str], receipt_id: str = "R-1") -> ItemReceived:
    return ItemReceived(
        sku=sku,
        receipt_id=receipt_id,
        location="DC-1",
        quantity=len(serials),
        serials=serials,
        lot=Lot(code="L1", expires_on=date(2028, 1, 31)),
        received_at=ISSUED_AT - timedelta(days=3),
    )


def sale(sku: str, serial: str, sold_at: datetime, sale_id: str = "S-1") -> ItemSold:
    return ItemSold(
        sku=sku,
        sale_id=sale_id,
        line=1,
        location="STORE-7",
        quantity=1,
        serial=serial,
        customer_ref=f"CUST-{sale_id}",
        sold_at=sold_at,
    )


def recall(sku: str, lots: list[str], serials: list[str] = []) -> BatchRecalled:  # noqa: B006
    return BatchRecalled(
        sku=sku,
        recall_id="RC-1",
        lot_codes=lots,
        serials=serials,
        reason="battery may overheat",
        classification=Classification.I,
        issued_by="qa@lotline",
        issued_at=ISSUED_AT,
    )


async def flags(bus: EventBus, sku: str) -> list[SaleFlagged]:
    """The sale-flagged events the registry published for one SKU (stock's share the topic),
    once each: a resend (a redelivered batch) carries its original id, a copy consumers drop."""
    events = (
        decode(record.value)
        for record in await bus.read_all("sale-flagged")
        if record.key == sku.encode()
    )
    return list({event.id: event.data for event in events if event.source == SOURCE}.values())


async def test_a_recall_saved_by_another_instance_mid_batch_still_flags_its_sales(
    db: AsyncDatabase[dict[str, Any]], bus: EventBus, run_id: str
) -> None:
    sku = f"PHONE-{run_id}"
    mine = SavedMeanwhile(db, wal=WriteAheadLog(db, bus))
    handlers = SerialHandlers(mine)
    other = SerialHandlers(SerialStore(db, wal=WriteAheadLog(db, bus)))
    owns_partition(sku, mine, other.store)
    await mine.save_products([ProductRegistered(sku=sku, name="Phone", tracking="serial")])
    await batch(handlers.on_items_received, [delivered(receipt(sku, ["A0", "A1"]))])

    # Between this batch reading the (no) recall scopes and writing the sale, the instance
    # that held the partitions a moment ago applies a recall of the lot: it saves the scope
    # and answers from units that do not show the sale yet.
    async def recall_elsewhere() -> None:
        await batch(other.on_batches_recalled, [delivered(recall(sku, ["L1"]))])

    mine.meanwhile = recall_elsewhere
    await as_the_consumer_would(
        handlers.on_items_sold, [delivered(sale(sku, "A0", ISSUED_AT + timedelta(hours=1)))]
    )

    assert mine.meanwhile is None  # the recall did come in between
    stored = await mine.unit(sku, "A0")
    assert stored is not None
    assert (stored.status, stored.recall_ids) == (UnitStatus.SOLD, ("RC-1",))
    sold = [entry for entry in stored.history if entry.ref == "S-1#1"]
    assert [f.reason for entry in sold for f in entry.flags] == [FlagReason.RECALLED]
    assert [(f.sale_id, f.reason, f.recall_id, f.customer_ref) for f in await flags(bus, sku)] == [
        ("S-1", FlagReason.RECALLED, "RC-1", "CUST-S-1")
    ]


async def test_a_recall_saved_by_another_instance_mid_receipt_flags_the_units_it_names(
    db: AsyncDatabase[dict[str, Any]], bus: EventBus, run_id: str
) -> None:
    sku = f"PHONE-{run_id}"
    mine = SavedMeanwhile(db, wal=WriteAheadLog(db, bus))
    handlers = SerialHandlers(mine)
    other = SerialHandlers(SerialStore(db, wal=WriteAheadLog(db, bus)))
    owns_partition(sku, mine, other.store)
    await mine.save_products([ProductRegistered(sku=sku, name="Phone", tracking="serial")])
    await batch(handlers.on_items_received, [delivered(receipt(sku, ["A0"], "R-0"))])

    # A recall naming B1 is applied elsewhere while this receipt inserts B0 and B1: it finds
    # no B1 to flag, so this batch's second look at the scopes must.
    async def recall_elsewhere() -> None:
        await batch(other.on_batches_recalled, [delivered(recall(sku, [], ["B1"]))])

    mine.meanwhile = recall_elsewhere
    await as_the_consumer_would(
        handlers.on_items_received, [delivered(receipt(sku, ["B0", "B1"], "R-1"))]
    )

    assert mine.meanwhile is None
    units = await mine.units_by_id([f"{sku} B0", f"{sku} B1"])
    assert {unit.serial: unit.recall_ids for unit in units.values()} == {
        "B0": (),
        "B1": ("RC-1",),
    }
    # The recall's batch took the partition's next log entry, so this one was applied again
    # (`as_the_consumer_would`), and received B1 under the recall it now saw.
    assert [entry.ref for entry in units[f"{sku} B1"].history] == ["R-1"]


async def test_a_recall_applied_after_a_sale_made_under_it_flags_that_sale(
    db: AsyncDatabase[dict[str, Any]], bus: EventBus, run_id: str
) -> None:
    sku = f"PHONE-{run_id}"
    store = SerialStore(db, wal=WriteAheadLog(db, bus))
    handlers = SerialHandlers(store)
    owns_partition(sku, store)
    await store.save_products([ProductRegistered(sku=sku, name="Phone", tracking="serial")])
    await batch(handlers.on_items_received, [delivered(receipt(sku, ["A0", "A1", "A2"]))])
    # A till sold A1 an hour after the recall was issued, before the registry applied it;
    # A0 was sold the day before (its customer is named in the recall's answer instead).
    await batch(
        handlers.on_items_sold,
        [
            delivered(sale(sku, "A0", ISSUED_AT - timedelta(days=1), "S-0")),
            delivered(sale(sku, "A1", ISSUED_AT + timedelta(hours=1), "S-1")),
        ],
    )
    assert await flags(bus, sku) == []
    the_recall = delivered(recall(sku, ["L1"]))
    await batch(handlers.on_batches_recalled, [the_recall])
    # Redelivered: nothing flagged or written twice.
    await batch(handlers.on_batches_recalled, [the_recall])

    found = await flags(bus, sku)
    assert [(f.sale_id, f.serial, f.reason, f.recall_id, f.location) for f in found] == [
        ("S-1", "A1", FlagReason.RECALLED, "RC-1", "STORE-7")
    ]
    assert found[0].detail == f"serial A1 of {sku} is under recall RC-1: contact the customer"
    a1 = await store.unit(sku, "A1")
    assert a1 is not None
    assert a1.recall_ids == ("RC-1",)
    assert [(entry.ref, [f.reason for f in entry.flags]) for entry in a1.history] == [
        ("R-1", []),
        ("S-1#1", []),
        ("RC-1", []),
        ("S-1#1", [FlagReason.RECALLED]),
    ]
    a0 = await store.unit(sku, "A0")
    assert a0 is not None
    assert [entry.ref for entry in a0.history] == ["R-1", "S-0#1"]


@pytest.fixture
async def registry_cleanup(
    mongo: AsyncMongoClient[dict[str, Any]], run_id: str
) -> AsyncIterator[None]:
    """Afterwards, remove this run's documents from the registry's shared database."""
    yield
    db = mongo["serials"]
    ours, prefix = {"$regex": f"-{run_id}$"}, {"$regex": f"-{run_id} "}
    await db["units"].delete_many({"sku": ours})
    await db["lot_units"].delete_many({"key": prefix})
    await db["products"].delete_many({"_id": ours})
    await db["recalls"].delete_many({"_id": ours})
    await db["receipts"].delete_many({"_id": prefix})
    await db["recall_answers"].delete_many({"_id": prefix})


async def unit_view(http: httpx.AsyncClient, sku: str, serial: str) -> dict[str, Any]:
    response = await http.get(f"/units/{sku}/{serial}")
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


async def test_a_recall_and_the_sales_of_its_units_in_one_batch_flag_the_sales(
    bus: EventBus,
    start_service: Callable[..., ServiceProcess],
    registry_cleanup: None,
    run_id: str,
) -> None:
    sku = f"WATCH-{run_id}"
    first = start_service("serial-registry")
    async with httpx.AsyncClient(base_url=first.url, timeout=30) as http:
        await bus.publish(
            ProductRegistered(sku=sku, name="Watch", tracking="serial"),
            receipt(sku, ["A0", "A1", "A2"]),
        )
        await eventually(lambda: unit_view(http, sku, "A2"))
    first.stop()
    # Published while no registry runs, so the next one reads them in one batch: a recall of
    # the lot, a sale made before it was issued and one made after.
    await bus.publish(recall(sku, ["L1"]))
    await bus.publish(
        sale(sku, "A0", ISSUED_AT - timedelta(hours=1), "S-1"),
        sale(sku, "A1", ISSUED_AT + timedelta(minutes=30), "S-2"),
    )
    second = start_service("serial-registry", CONSUMER_MAX_RECORDS="10000")

    async def flagged() -> dict[str, tuple[FlagReason, str | None, str | None, str]]:
        found = {
            f.sale_id: (f.reason, f.recall_id, f.customer_ref, f.detail)
            for f in await flags(bus, sku)
        }
        assert set(found) == {"S-1", "S-2"}
        return found

    assert await eventually(flagged) == {
        "S-1": (
            FlagReason.RECALLED,
            "RC-1",
            "CUST-S-1",
            f"serial A0 of {sku} is sold before recall RC-1 was issued but reported after it: "
            "contact the customer",
        ),
        "S-2": (
            FlagReason.RECALLED,
            "RC-1",
            "CUST-S-2",
            f"serial A1 of {sku} is under recall RC-1: contact the customer",
        ),
    }
    async with httpx.AsyncClient(base_url=second.url, timeout=30) as http:
        # History reads in time order: A0 was sold before the recall was issued, A1 after.
        recalled = ("batch-recalled", "RC-1", [])
        for serial, sale_id, before, after in (
            ("A0", "S-1", [], [recalled]),
            ("A1", "S-2", [recalled], []),
        ):
            sold = await unit_view(http, sku, serial)
            assert (sold["status"], sold["recalled"], sold["recall_ids"]) == (
                "sold",
                True,
                ["RC-1"],
            ), serial
            assert (sold["sale_id"], sold["location"]) == (sale_id, "STORE-7")
            assert [
                (h["type"], h["ref"], [f["reason"] for f in h["flags"]]) for h in sold["history"]
            ] == [
                ("item-received", "R-1", []),
                *before,
                ("item-sold", f"{sale_id}#1", ["recalled"]),
                *after,
            ]
        kept = await unit_view(http, sku, "A2")
        assert (kept["status"], kept["recalled"]) == ("in_stock", True)
