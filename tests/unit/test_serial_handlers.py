"""Each handler of the serial registry against in-memory state: the store over the in-memory
database, the write-ahead log, and the consumer's unit of work as `lotline.serials.app`
wires it. Receipts and their rejections (missing serials, tracking mismatch, duplicates, an
unknown product given up), sales (unknown serial, sold twice, no serial, recalled unit),
returns, recalls by serial and by lot (before the receipt and before the product too), and
the sale applied before a recall issued before it."""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import uuid4

import pytest
from memory_db import MemoryDatabase, MemoryPublisher, memory_consumers

from lotline.events import (
    BatchRecalled,
    ClaimRefusal,
    CloudEvent,
    EventData,
    EventType,
    FlagReason,
    ItemReceived,
    ItemReturned,
    ItemSold,
    Lot,
    ProductRegistered,
    RejectReason,
    ReturnReason,
    Tracking,
    UnitStatus,
    decode,
    envelope_of,
)
from lotline.runtime.consumer import BatchHandler, Delivery, GiveUp
from lotline.runtime.owned import OwnedState
from lotline.runtime.settings import Settings
from lotline.runtime.wal import WriteAheadLog
from lotline.serials.domain import (
    Unit,
    flag_event_id,
    recall_answer_key,
    recall_scope,
    rejection_event_id,
    units_recalled_event_id,
)
from lotline.serials.handlers import SerialHandlers
from lotline.serials.store import SerialStore

RECEIVED_AT = datetime(2026, 11, 29, 9, 0, 0, 123000, tzinfo=UTC)
SOLD_AT = datetime(2026, 11, 30, 12, 0, tzinfo=UTC)
ISSUED_AT = datetime(2026, 11, 30, 15, 0, tzinfo=UTC)
AFTER = ISSUED_AT + timedelta(hours=1)


class Registry:
    """The serial registry's consumers over in-memory state; `send` is one batch of a topic."""

    def __init__(self, db: MemoryDatabase | None = None) -> None:
        self.db = db or MemoryDatabase()
        self.publisher = MemoryPublisher()
        self.settings = Settings(consumer_retry_backoff_s=1e-6, consumer_retry_backoff_max_s=1e-6)
        owned = OwnedState()
        self.wal = WriteAheadLog(self.db, self.publisher)  # type: ignore[arg-type]
        self.store = SerialStore(self.db, owned, self.wal)  # type: ignore[arg-type]
        handlers = SerialHandlers(self.store)
        # As lotline.serials.app registers them.
        wiring: dict[EventType, tuple[BatchHandler, GiveUp | None]] = {
            EventType.PRODUCT_REGISTERED: (handlers.on_products_registered, None),
            EventType.ITEM_RECEIVED: (
                handlers.on_items_received,
                handlers.on_receipts_given_up,
            ),
            EventType.BATCH_RECALLED: (handlers.on_batches_recalled, None),
            EventType.ITEM_SOLD: (handlers.on_items_sold, handlers.on_sales_given_up),
            EventType.ITEM_RETURNED: (handlers.on_items_returned, None),
            EventType.WARRANTY_CLAIMED: (
                handlers.on_warranty_claims,
                handlers.on_warranty_claims_given_up,
            ),
        }
        self.consumers = memory_consumers(
            "serial-registry",
            wiring,
            db=self.db,
            publisher=self.publisher,
            settings=self.settings,
            owned=owned,
            wal=self.wal,
        )
        self.offsets: dict[str, int] = {}

    def delivery(self, item: EventData | CloudEvent[Any], source: str = "till") -> Delivery:
        event = item if isinstance(item, CloudEvent) else envelope_of(item, source=source)
        topic = event.type.topic
        self.offsets[topic] = self.offsets.get(topic, -1) + 1
        return Delivery(event, topic, 0, self.offsets[topic])

    async def send(
        self, *items: EventData | CloudEvent[Any], source: str = "till"
    ) -> list[Delivery]:
        return await self.apply([self.delivery(item, source) for item in items])

    async def apply(self, deliveries: list[Delivery]) -> list[Delivery]:
        (event_type,) = {d.event.type for d in deliveries}
        for delivery in deliveries:
            self.wal.observe(delivery.data.key, delivery.partition)
        return await self.consumers[event_type].process_deliveries(deliveries)

    async def unit(self, serial: str, sku: str = "PHONE") -> Unit:
        """A unit as any reader sees it (the HTTP side: through the log)."""
        found = await self.store.unit(sku, serial)
        assert found is not None, f"{sku} {serial} is not in the registry"
        return found

    def sent(self, event_type: EventType) -> list[Any]:
        return [event.data for event in self.publisher.events(event_type)]


def product(sku: str, tracking: Tracking = Tracking.SERIAL) -> ProductRegistered:
    return ProductRegistered(sku=sku, name=sku.title(), tracking=tracking, revision=1)


def receipt(
    *serials: str,
    receipt_id: str = "R-1",
    lot: str | None = "L1",
    sku: str = "PHONE",
    quantity: int | None = None,
) -> ItemReceived:
    return ItemReceived(
        sku=sku,
        receipt_id=receipt_id,
        location="S1",
        quantity=quantity or len(serials),
        lot=Lot(code=lot) if lot else None,
        serials=list(serials) or None,
        received_at=RECEIVED_AT,
    )


def sold(
    serial: str | None, sale_id: str = "T-1", at: datetime = SOLD_AT, sku: str = "PHONE"
) -> ItemSold:
    return ItemSold(
        sku=sku,
        sale_id=sale_id,
        line=1,
        location="S2",
        quantity=1,
        serial=serial,
        customer_ref="C-7",
        sold_at=at,
    )


def recall(
    *serials: str, lots: tuple[str, ...] = (), recall_id: str = "RC-1", sku: str = "PHONE"
) -> BatchRecalled:
    return BatchRecalled(
        sku=sku,
        recall_id=recall_id,
        lot_codes=list(lots),
        serials=list(serials),
        reason="Battery",
        classification="II",
        issued_by="operator",
        issued_at=ISSUED_AT,
    )


@pytest.fixture
async def registry() -> Registry:
    shop = Registry()
    await shop.send(product("PHONE"), product("SALT", Tracking.QUANTITY), source="lotline/catalog")
    return shop


# ----------------------------------------------------------------------------------- receipts


async def test_a_receipt_registers_each_unit_in_stock_once(registry: Registry) -> None:
    await registry.send(receipt("IMEI-1", "IMEI-2", "IMEI-3"))
    await registry.send(receipt("IMEI-1", "IMEI-2", "IMEI-3"))  # resent under a new id
    assert len(registry.db["units"]) == 0  # staged on the log, written out in the background
    await registry.wal.materialize()
    assert len(registry.db["units"]) == 3
    unit = await registry.unit("IMEI-2")
    assert (unit.status, unit.location, unit.lot_code, unit.receipt_id) == (
        UnitStatus.IN_STOCK,
        "S1",
        "L1",
        "R-1",
    )
    assert unit.received_at == RECEIVED_AT
    assert [entry.what for entry in unit.history] == ["received at S1 in receipt R-1, lot L1"]
    states = await registry.store.lot_states("PHONE", "L1")
    assert {serial: doc["status"] for serial, doc in states.items()} == {
        "IMEI-1": "in_stock",
        "IMEI-2": "in_stock",
        "IMEI-3": "in_stock",
    }
    assert registry.publisher.sent == []


async def test_receipts_the_registry_cannot_take_are_rejected(registry: Registry) -> None:
    await registry.send(receipt("IMEI-1", "IMEI-2"))
    await registry.send(
        receipt(receipt_id="R-2", quantity=5),  # a serial item with no serials
        receipt("S-1", "S-2", receipt_id="R-3", sku="SALT"),  # serials for a quantity item
        receipt("IMEI-2", "IMEI-9", receipt_id="R-4"),  # one of them registered already
    )
    rejections = registry.publisher.events(EventType.RECEIPT_REJECTED)
    found = [
        (e.data.receipt_id, e.data.reason, e.data.serials, e.data.quantity) for e in rejections
    ]
    assert found == [
        ("R-2", RejectReason.MISSING_SERIALS, [], 5),
        ("R-3", RejectReason.TRACKING_MISMATCH, ["S-1", "S-2"], 2),
        ("R-4", RejectReason.DUPLICATE_SERIAL, ["IMEI-2"], 1),
    ]
    assert [e.data.detail for e in rejections] == [
        "PHONE is tracked by serial, but receipt R-2 lists no serials for its 5 units: none "
        "were registered",
        "SALT is tracked by quantity, not by serial, but receipt R-3 lists 2 serials: none "
        "were registered",
        "1 of the 2 serials of receipt R-4 are already registered for PHONE and were not "
        "booked again: IMEI-2 (receipt R-1, in_stock at S1)",
    ]
    assert rejections[2].id == str(
        rejection_event_id("PHONE", "R-4", RejectReason.DUPLICATE_SERIAL, ["IMEI-2"])
    )
    assert (await registry.unit("IMEI-2")).receipt_id == "R-1"  # not taken over
    assert (await registry.unit("IMEI-9")).receipt_id == "R-4"


async def test_receipts_of_one_batch_are_registered_together_the_first_owning_a_serial(
    registry: Registry,
) -> None:
    """One batch, registered together: a serial two receipts of the batch list is the
    earlier receipt's, and the later one is told; the same receipt twice in the batch is
    registered once; the batch's receipts, units, lot journals and fingerprints are one
    insert into the log, and nothing is written elsewhere until it is written out."""
    names = ("units", "receipts", "lot_units", "sku_serials", "wal")
    calls = {name: dict(registry.db[name].calls) for name in names}
    await registry.send(
        receipt("IMEI-1", "IMEI-2"),
        receipt("IMEI-2", "IMEI-3", receipt_id="R-2", lot="L2"),
        receipt("IMEI-1", "IMEI-2"),  # R-1 resent under a new id, in the same batch
    )
    # (The log's own first write of the partition, its checkpoint, aside.)
    assert registry.db["wal"].calls["insert_many"] == calls["wal"].get("insert_many", 0) + 1
    writes = ("insert_one", "insert_many", "update_one", "replace_one", "bulk_write")
    for name in names[:-1]:
        for write in writes:
            done = registry.db[name].calls.get(write, 0)
            assert done == calls[name].get(write, 0), (name, write)
    await registry.wal.materialize()
    assert len(registry.db["receipts"]) == 2
    assert [
        (u.serial, u.receipt_id) for u in [await registry.unit(f"IMEI-{n}") for n in (1, 2, 3)]
    ] == [
        ("IMEI-1", "R-1"),
        ("IMEI-2", "R-1"),
        ("IMEI-3", "R-2"),
    ]
    rejections = registry.sent(EventType.RECEIPT_REJECTED)
    assert [(r.receipt_id, r.reason, r.serials) for r in rejections] == [
        ("R-2", RejectReason.DUPLICATE_SERIAL, ["IMEI-2"])
    ]
    assert sorted(await registry.store.lot_states("PHONE", "L2")) == ["IMEI-3"]
    # Delivered again, the batch finds its receipts registered and changes nothing.
    await registry.send(receipt("IMEI-2", "IMEI-3", receipt_id="R-2", lot="L2"))
    assert len(registry.db["units"]) == 3
    # Applied already: not answered twice.
    assert len(registry.sent(EventType.RECEIPT_REJECTED)) == 1


def decoded(event_type: EventType, **data: Any) -> CloudEvent[Any]:
    """An event as a consumer decodes it from its bytes: held to its schema only, not to the
    rules a schema cannot state (those the registry answers)."""
    envelope = {"specversion": "1.0", "id": str(uuid4()), "source": "dock", "type": event_type}
    raw = json.dumps({**envelope, "subject": data["sku"], "data": data})
    return decode(raw.encode(), event_type)


async def test_a_receipt_breaking_a_rule_its_schema_cannot_state_is_rejected_naming_it(
    registry: Registry,
) -> None:
    """Schema-valid, so never dead-lettered; booked nowhere, and answered on the contract
    with the rule it broke, whatever the product (or none registered yet)."""
    received = EventType.ITEM_RECEIVED
    lot = {"code": "L2", "produced_on": "2027-03-02", "expires_on": "2027-03-01"}
    three = ["IMEI-1", "IMEI-2", "IMEI-3"]
    assert (
        await registry.send(
            decoded(
                received, sku="PHONE", receipt_id="R-1", location="S1", quantity=2, serials=three
            ),
            decoded(received, sku="SALT", receipt_id="R-2", location="S1", quantity=6, lot=lot),
            decoded(
                received, sku="NOBODY", receipt_id="R-3", location="S1", quantity=1, serials=three
            ),
        )
        == []
    )
    rejections = registry.sent(EventType.RECEIPT_REJECTED)
    assert [(r.sku, r.receipt_id, r.reason, r.quantity, r.lot_code) for r in rejections] == [
        ("PHONE", "R-1", RejectReason.SERIALS_NOT_QUANTITY, 2, None),
        ("SALT", "R-2", RejectReason.PRODUCED_AFTER_EXPIRY, 6, "L2"),
        ("NOBODY", "R-3", RejectReason.SERIALS_NOT_QUANTITY, 1, None),
    ]
    assert [r.detail for r in rejections[:2]] == [
        "receipt R-1 was not booked: serials lists 3 serials but quantity is 2",
        "receipt R-2 was not booked: lot L2: produced_on 2027-03-02 is after expires_on 2027-03-01",
    ]
    assert len(registry.db["units"]) == 0
    assert registry.publisher.dead_letters == []


async def test_a_claim_whose_replacement_is_the_claimed_unit_is_refused(
    registry: Registry,
) -> None:
    await registry.send(receipt("IMEI-1", "IMEI-2"))
    await registry.send(sold("IMEI-1"))
    claim = decoded(
        EventType.WARRANTY_CLAIMED,
        sku="PHONE",
        claim_id="W-1",
        serial="IMEI-1",
        location="S2",
        kind="replacement",
        replacement_serial="IMEI-1",
        claimed_at=AFTER.isoformat(),
    )
    assert await registry.send(claim) == []
    (refusal,) = registry.sent(EventType.WARRANTY_CLAIM_REFUSED)
    assert (refusal.claim_id, refusal.reason, refusal.detail) == (
        "W-1",
        ClaimRefusal.REPLACEMENT_IS_CLAIMED_UNIT,
        "replacement_serial IMEI-1 is the claimed unit itself",
    )
    assert (await registry.unit("IMEI-1")).status is UnitStatus.SOLD  # nothing taken
    assert registry.publisher.dead_letters == []


async def test_a_receipt_of_an_unknown_product_waits_then_is_rejected(registry: Registry) -> None:
    delivery = registry.delivery(receipt("X-1", "X-2", sku="NOBODY"))
    waiting = await registry.apply([delivery])
    assert waiting == [delivery]
    consumer = registry.consumers[EventType.ITEM_RECEIVED]
    # First deferred longer ago than the limit (no test waits for a clock).
    consumer._deferred_since[(delivery.stream, delivery.offset)] = (
        time.monotonic() - registry.settings.consumer_defer_max_s
    )
    assert await registry.apply([delivery]) == []
    (rejection,) = registry.sent(EventType.RECEIPT_REJECTED)
    assert (rejection.reason, rejection.serials, rejection.quantity) == (
        RejectReason.UNKNOWN_SKU,
        ["X-1", "X-2"],
        2,
    )
    assert rejection.detail == (
        "NOBODY is not a registered product; the 2 serials of receipt R-1 were not registered"
    )
    assert [h["lotline-dlq-topic"] for _, _, _, h in registry.publisher.dead_letters] == [
        "item-received"
    ]


# -------------------------------------------------------------------------------------- sales


async def test_a_sale_records_the_customer_and_flags_what_is_wrong(registry: Registry) -> None:
    await registry.send(receipt("IMEI-1", "IMEI-2"))
    await registry.send(
        sold("IMEI-1"),
        sold("IMEI-404", sale_id="T-2"),  # never received
        sold(None, sale_id="T-3"),  # a serial item sold without its serial
        sold(None, sale_id="T-4", sku="SALT"),  # stock's business
    )
    await registry.send(sold("IMEI-1", sale_id="T-5"))  # sold again
    await registry.wal.materialize()  # (read back from the log)
    unit = await registry.unit("IMEI-1")
    assert (unit.status, unit.location, unit.sale_id, unit.customer_ref, unit.sold_at) == (
        UnitStatus.SOLD,
        "S2",
        "T-5",
        "C-7",
        SOLD_AT,
    )
    ghost = await registry.unit("IMEI-404")
    assert (ghost.status, ghost.receipt_id, ghost.sale_id) == (UnitStatus.SOLD, None, "T-2")
    flags = registry.publisher.events(EventType.SALE_FLAGGED)
    assert [(f.data.sale_id, f.data.reason, f.data.serial) for f in flags] == [
        ("T-3", FlagReason.UNKNOWN_SERIAL, None),
        ("T-2", FlagReason.UNKNOWN_SERIAL, "IMEI-404"),
        ("T-5", FlagReason.SERIAL_NOT_IN_STOCK, "IMEI-1"),
    ]
    assert (
        flags[2].data.detail == "serial IMEI-1 of PHONE was already sold in sale T-1 line 1 at S2"
    )
    assert flags[0].data.detail == (
        "PHONE is tracked by serial but sale T-3 line 1 carries no serial: 1 unit(s) left untraced"
    )
    assert flags[2].id == str(flag_event_id("PHONE", "T-5", 1, FlagReason.SERIAL_NOT_IN_STOCK))
    assert [f.data.lot_code for f in flags] == [None, None, "L1"]


async def test_a_sale_resent_under_a_new_id_changes_the_unit_once(registry: Registry) -> None:
    await registry.send(receipt("IMEI-1"))
    await registry.send(sold("IMEI-1"))
    await registry.send(sold("IMEI-1"))
    unit = await registry.unit("IMEI-1")
    assert [entry.type for entry in unit.history] == [
        EventType.ITEM_RECEIVED,
        EventType.ITEM_SOLD,
    ]
    assert registry.sent(EventType.SALE_FLAGGED) == []


# ------------------------------------------------------------------------------------ returns


async def test_a_return_brings_the_unit_back_where_it_was_returned(registry: Registry) -> None:
    await registry.send(receipt("IMEI-1"))
    await registry.send(sold("IMEI-1"))
    back = ItemReturned(
        sku="PHONE",
        return_id="RT-1",
        sale_id="T-1",
        location="S3",
        quantity=1,
        serial="IMEI-1",
        reason=ReturnReason.CUSTOMER,
        returned_at=AFTER,
    )
    stranger = back.model_copy(update={"return_id": "RT-2", "serial": "IMEI-77"})
    await registry.send(back, stranger)
    await registry.wal.materialize()  # (read back from the log)
    unit = await registry.unit("IMEI-1")
    assert (unit.status, unit.location, unit.return_id, unit.returned_at) == (
        UnitStatus.RETURNED,
        "S3",
        "RT-1",
        AFTER,
    )
    assert unit.history[-1].what == "returned at S3 in return RT-1 (customer)"
    unknown = await registry.unit("IMEI-77")
    assert unknown.status is UnitStatus.RETURNED
    assert unknown.history[-1].what == (
        "returned at S3 in return RT-2 (customer); the serial was never received or sold here"
    )


# ------------------------------------------------------------------------------------ recalls


async def test_a_recall_by_serial_flags_its_units_and_answers_with_the_unknown_ones(
    registry: Registry,
) -> None:
    await registry.send(receipt("IMEI-1", "IMEI-2"))
    await registry.send(recall("IMEI-2", "IMEI-77"))
    assert (await registry.unit("IMEI-2")).recall_ids == ("RC-1",)
    assert (await registry.unit("IMEI-1")).recall_ids == ()
    (answer,) = registry.sent(EventType.UNITS_RECALLED)
    assert (answer.chunk, answer.chunks, answer.unknown_serials, answer.sold_units) == (
        1,
        1,
        ["IMEI-77"],
        [],
    )
    assert answer.counts == {UnitStatus.IN_STOCK: 1, UnitStatus.SOLD: 0, UnitStatus.RETURNED: 0}
    await registry.send(sold("IMEI-2", at=AFTER))
    (flag,) = registry.sent(EventType.SALE_FLAGGED)
    assert (flag.reason, flag.recall_id, flag.detail) == (
        FlagReason.RECALLED,
        "RC-1",
        "serial IMEI-2 of PHONE is under recall RC-1: contact the customer",
    )


async def test_a_recall_by_lot_counts_its_units_and_lists_the_customers(
    registry: Registry,
) -> None:
    await registry.send(receipt("IMEI-1", "IMEI-2", "IMEI-3"), receipt("OTHER-1", lot="L2"))
    await registry.send(sold("IMEI-1"))
    event = recall(lots=("L1",))
    await registry.send(event)
    await registry.send(event)  # resent under a new id: the same answer, by id
    answers = registry.publisher.events(EventType.UNITS_RECALLED)
    key = recall_answer_key(event)
    assert [a.id for a in answers] == [str(units_recalled_event_id(key, 1))] * 2
    answer = answers[0].data
    assert answer.counts == {UnitStatus.IN_STOCK: 2, UnitStatus.SOLD: 1, UnitStatus.RETURNED: 0}
    assert [(u.serial, u.customer_ref, u.sale_id, u.sold_at) for u in answer.sold_units] == [
        ("IMEI-1", "C-7", "T-1", SOLD_AT)
    ]
    assert registry.sent(EventType.SALE_FLAGGED) == []  # sold before the recall was issued
    await registry.send(sold("IMEI-2", sale_id="T-2", at=AFTER), sold("OTHER-1", sale_id="T-3"))
    flags = registry.sent(EventType.SALE_FLAGGED)
    assert [(f.serial, f.reason, f.recall_id, f.lot_code) for f in flags] == [
        ("IMEI-2", FlagReason.RECALLED, "RC-1", "L1")
    ]


async def test_a_recall_before_the_product_and_its_receipt_recalls_the_units_on_arrival() -> None:
    registry = Registry()
    await registry.send(recall(lots=("L5",), recall_id="RC-5", sku="LATE"))
    (answer,) = registry.sent(EventType.UNITS_RECALLED)
    assert answer.counts == {UnitStatus.IN_STOCK: 0, UnitStatus.SOLD: 0, UnitStatus.RETURNED: 0}
    await registry.send(product("LATE"), source="lotline/catalog")
    await registry.send(receipt("LATE-1", "LATE-2", lot="L5", sku="LATE"))
    unit = await registry.unit("LATE-1", sku="LATE")
    assert (unit.recall_ids, unit.recalled_at) == (("RC-5",), ISSUED_AT)
    assert (
        unit.history[0].what == "received at S1 in receipt R-1, lot L5; already under recall RC-5"
    )
    await registry.send(sold("LATE-2", sku="LATE", at=AFTER))
    (flag,) = registry.sent(EventType.SALE_FLAGGED)
    assert (flag.serial, flag.reason, flag.recall_id) == ("LATE-2", FlagReason.RECALLED, "RC-5")


async def test_a_sale_applied_before_a_recall_issued_before_it_is_flagged_by_the_recall(
    registry: Registry,
) -> None:
    await registry.send(receipt("IMEI-1", "IMEI-2"))
    # Sold after the recall was issued, but the sale topic was applied first.
    await registry.send(sold("IMEI-1", at=AFTER))
    assert registry.sent(EventType.SALE_FLAGGED) == []
    await registry.send(recall("IMEI-1"))
    flags = registry.publisher.events(EventType.SALE_FLAGGED)
    assert [(f.data.serial, f.data.reason, f.data.recall_id) for f in flags] == [
        ("IMEI-1", FlagReason.RECALLED, "RC-1")
    ]
    # The same event the sale's own flag would have been.
    assert flags[0].id == str(flag_event_id("PHONE", "T-1", 1, FlagReason.RECALLED))


# ------------------------------------------------ a recall saved by another writer meanwhile


async def test_a_sale_finds_a_recall_another_writer_saved_after_its_first_look(
    registry: Registry,
) -> None:
    """Issue 11, item 4: the second look at recall scopes reads the database, not the
    memory the first look filled (a rebalance overlap: another instance applies a recall)."""
    await registry.send(receipt("IMEI-1", "IMEI-2"))
    await registry.send(sold("IMEI-2"))  # this instance now remembers PHONE's scopes: none
    other = Registry(registry.db)
    await other.store.save_recall_scope("PHONE", recall_scope(recall("IMEI-1"), "other#1"))
    await registry.send(sold("IMEI-1", sale_id="T-2", at=AFTER))
    flags = registry.sent(EventType.SALE_FLAGGED)
    assert [(f.serial, f.sale_id, f.reason, f.recall_id) for f in flags] == [
        ("IMEI-1", "T-2", FlagReason.RECALLED, "RC-1")
    ]
    await registry.wal.materialize()
    assert (await registry.unit("IMEI-1")).recall_ids == ("RC-1",)


async def test_a_sales_batch_looks_once_whether_any_recall_was_saved_meanwhile(
    registry: Registry,
) -> None:
    """The second look costs one lookup (the recalls' mark), not one per SKU sold, unless a
    recall was saved since the first look; then each SKU's scopes are read again."""
    skus = [f"PHONE-{n}" for n in range(5)]
    await registry.send(*(product(sku) for sku in skus))
    await registry.send(*(receipt("IMEI-9", sku=sku) for sku in skus))
    await registry.send(receipt("IMEI-1", "IMEI-2", "IMEI-3"))
    await registry.send(sold("IMEI-1"))
    recalls = registry.db["recalls"]
    before = recalls.calls.get("find_one", 0)
    await registry.send(sold("IMEI-2", sale_id="T-2"), *(sold("IMEI-9", sku=sku) for sku in skus))
    assert recalls.calls.get("find_one", 0) - before == 2  # the mark, before and after

    other = Registry(registry.db)
    await other.store.save_recall_scope("PHONE", recall_scope(recall("IMEI-3"), "other#1"))
    await registry.send(sold("IMEI-3", sale_id="T-3", at=AFTER))
    flags = registry.sent(EventType.SALE_FLAGGED)
    assert [(f.serial, f.reason, f.recall_id) for f in flags] == [
        ("IMEI-3", FlagReason.RECALLED, "RC-1")
    ]


async def test_a_receipt_finds_a_recall_another_writer_saved_while_it_inserted(
    registry: Registry,
) -> None:
    other = Registry(registry.db)
    scope = recall_scope(recall("IMEI-5", recall_id="RC-9"), "other#1")
    register_units = registry.store.register_units

    async def racing(units: Any) -> dict[str, Unit]:
        # The other instance saves its recall after this receipt read the scopes, before
        # its units are in (so the recall's own flagging cannot see them).
        await other.store.save_recall_scope("PHONE", scope)
        return await register_units(units)

    registry.store.register_units = racing  # type: ignore[method-assign]
    await registry.send(receipt("IMEI-5", "IMEI-6"))
    await registry.wal.materialize()
    assert (await registry.unit("IMEI-5")).recall_ids == ("RC-9",)
    assert (await registry.unit("IMEI-6")).recall_ids == ()


# ---------------------------------------------------------------- read back from the log


# An entry carries its documents as BSON bytes: they must read back as the services' client
# reads the database (aware UTC datetimes), whoever reads them (the HTTP side, a next owner,
# a retry after a failed commit).
async def test_a_unit_read_from_the_log_has_its_times_as_the_database_gives_them(
    registry: Registry,
) -> None:
    await registry.send(receipt("IMEI-1"))
    await registry.send(sold("IMEI-1"))
    pending = await registry.unit("IMEI-1")  # the HTTP side: from the log's entry
    assert (pending.sold_at, pending.received_at) == (SOLD_AT, RECEIVED_AT)


def customer_return(at: datetime = AFTER) -> ItemReturned:
    return ItemReturned(
        sku="PHONE",
        return_id="RT-1",
        location="S1",
        quantity=1,
        serial="IMEI-1",
        reason=ReturnReason.CUSTOMER,
        returned_at=at,
    )


async def test_a_next_owner_applies_a_late_sale_to_a_unit_whose_return_is_in_the_log(
    registry: Registry,
) -> None:
    await registry.send(receipt("IMEI-1"))
    await registry.send(customer_return())
    next_owner = Registry(registry.db)  # the partition moved; nothing was written out yet
    await next_owner.send(sold("IMEI-1"))  # made before the return, reported after it
    assert next_owner.publisher.dead_letters == []
    unit = await next_owner.unit("IMEI-1")
    assert (unit.status, unit.sale_id, unit.returned_at) == (UnitStatus.RETURNED, "T-1", AFTER)


async def test_a_unit_written_out_by_a_next_owner_keeps_every_change(registry: Registry) -> None:
    await registry.send(receipt("IMEI-1"))
    await registry.send(sold("IMEI-1"))
    next_owner = Registry(registry.db)
    await next_owner.send(customer_return())
    assert await next_owner.wal.materialize() == 2  # the unit, and its receipt's ledger
    assert [d["_id"] for d in registry.db["wal"].documents() if "p" in d] == []
    # Its receipt, its sale and its return, coalesced into its first version (units are
    # written out by inserts, never replaced).
    assert sorted(d["_id"] for d in registry.db["units"].documents()) == ["PHONE IMEI-1"]
    written = registry.db["units"].get("PHONE IMEI-1")
    assert written is not None
    assert (written["status"], written["sale_id"], written["return_id"], written["_wal"]) == (
        "returned",
        "T-1",
        "RT-1",
        # After the product's entry: the receipt's (its record of being applied), the
        # sale's, the return's.
        4,
    )
    assert (written["sold_at"], written["returned_at"]) == (SOLD_AT, AFTER)
    assert [e["type"] for e in written["history"]] == ["item-sold", "item-returned"]


# ------------------------------------------------------------ which serials exist already


async def test_a_big_receipt_looks_up_only_the_serials_its_fingerprints_match(
    registry: Registry,
) -> None:
    """A receipt's serials are checked against the SKU's fingerprints, not looked up one by
    one: of 3,000 serials, the 5 registered before are found and refused, and (but for a
    chance match of fingerprints) no other serial costs a lookup. A next owner reads the
    fingerprints back from the log and its pages."""
    first = [f"IMEI-{n:05d}" for n in range(2_000)]
    await registry.send(receipt(*first))
    again = first[:5]
    second = [*again, *(f"IMEI-{n:05d}" for n in range(10_000, 12_995))]
    lookups = registry.db["units"].calls.get("find_one", 0)
    await registry.send(receipt(*second, receipt_id="R-2"))
    assert registry.db["units"].calls.get("find_one", 0) - lookups <= 5 + 2
    (rejected,) = registry.sent(EventType.RECEIPT_REJECTED)
    assert (rejected.receipt_id, rejected.serials) == ("R-2", again)
    assert (await registry.unit("IMEI-10000")).receipt_id == "R-2"

    await registry.wal.materialize()
    next_owner = Registry(registry.db)
    third = ["IMEI-01999", "IMEI-12994", "IMEI-20000"]
    await next_owner.send(receipt(*third, receipt_id="R-3"))
    (rejected,) = next_owner.sent(EventType.RECEIPT_REJECTED)
    assert rejected.serials == ["IMEI-01999", "IMEI-12994"]
    assert (await next_owner.unit("IMEI-20000")).receipt_id == "R-3"


async def test_a_receipt_adopts_a_unit_first_seen_in_a_sale(registry: Registry) -> None:
    """A unit sold before its receipt arrived is created by the sale, fingerprint and all:
    its receipt then finds it, and adopts it rather than creating it again."""
    await registry.send(sold("IMEI-7"))
    await registry.send(receipt("IMEI-7", "IMEI-8"))
    assert registry.sent(EventType.RECEIPT_REJECTED) == []
    unit = await registry.unit("IMEI-7")
    assert (unit.status, unit.receipt_id, unit.sale_id) == (UnitStatus.SOLD, "R-1", "T-1")
    await registry.wal.materialize()
    assert sorted(d["_id"] for d in registry.db["units"].documents()) == [
        "PHONE IMEI-7",
        "PHONE IMEI-8",
    ]


async def test_units_stored_before_the_fingerprints_existed_are_indexed_once(
    registry: Registry,
) -> None:
    """An upgraded registry: its units were inserted one document each, without
    fingerprints. Its first start indexes them (a pass over the units' ids), so a receipt
    listing one of them still refuses it; a new registry only marks itself indexed."""
    fresh = Registry()
    assert await fresh.store.index_serials() == 0
    assert await fresh.store.index_serials() is None
    received = {"status": "in_stock", "location": "S1", "receipt_id": "R-0"}
    received |= {"received_at": RECEIVED_AT, "received_event": "old", "received_location": "S1"}
    await registry.db["units"].insert_many(
        [
            {"_id": "PHONE IMEI-1", "sku": "PHONE", "serial": "IMEI-1", **received},
            {"_id": "PHONE IMEI-1/1", "sku": "PHONE", "serial": "IMEI-1"}
            | {**received, "status": "sold", "location": "S2"},
            {"_id": "PHONE IMEI-2", "sku": "PHONE", "serial": "IMEI-2", **received},
        ]
    )
    assert await registry.store.index_serials() == 2
    assert await registry.store.index_serials() is None
    await registry.send(receipt("IMEI-1", "IMEI-3"))
    (rejected,) = registry.sent(EventType.RECEIPT_REJECTED)
    assert rejected.serials == ["IMEI-1"]
    assert (await registry.unit("IMEI-1")).status is UnitStatus.SOLD
