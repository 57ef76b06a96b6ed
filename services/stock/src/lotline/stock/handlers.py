"""One handler per event the stock service consumes: decode -> domain -> store -> publish."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any
from uuid import NAMESPACE_URL, UUID, uuid5

from lotline.events import (
    BatchRecalled,
    EventData,
    FlagReason,
    ItemReceived,
    ItemReturned,
    ItemSold,
    ProductRegistered,
    ReceiptRejected,
    RejectReason,
    ReorderPointSet,
    SaleFlagged,
    StockAdjusted,
    StockCounted,
    StockDisposed,
    StockLow,
    StockQuarantined,
    Tracking,
    TransferReceived,
    TransferShipped,
    WarrantyClaimed,
    WarrantyClaimRefused,
    encode,
)
from lotline.runtime.consumer import BatchResult, Deferred, Delivery
from lotline.runtime.settings import Settings
from lotline.stock.domain import Level, Quarantine, Recall, Transfer, attribute_receipt
from lotline.stock.ledger import Movement, counts_of, movements
from lotline.stock.store import Product, StockStore, StoredLevel, level_id, transfer_key

SOURCE = "lotline/stock"
# The serial registry's rejections are the ones stock corrects itself by.
REGISTRY_SOURCE = "lotline/serial-registry"
# Rejections of serial units the registry did not register: not on hand anywhere.
REFUSING = frozenset({RejectReason.DUPLICATE_SERIAL, RejectReason.MISSING_SERIALS})


def derived_id(delivery: Delivery, suffix: str) -> UUID:
    """The same input event always yields the same output ids, so a resend is a duplicate."""
    return uuid5(NAMESPACE_URL, f"{delivery.event.dedupe_key}/{suffix}")


# Applies one event to one level; returns the events to publish.
Change = Callable[[Delivery, Level, Product], list[tuple[EventData, str]]]


@dataclass
class StockHandlers:
    store: StockStore
    settings: Settings

    async def on_products_registered(self, deliveries: list[Delivery]) -> None:
        for delivery in deliveries:
            product: ProductRegistered = delivery.data
            await self.store.save_product(product)

    async def on_items_received(self, deliveries: list[Delivery]) -> BatchResult:
        def receive(
            delivery: Delivery, level: Level, product: Product
        ) -> list[tuple[EventData, str]]:
            receipt: ItemReceived = delivery.data
            lot_code = receipt.lot.code if receipt.lot else None
            expires_on = receipt.lot.expires_on if receipt.lot else None
            recall = product.recalls.get(lot_code) if lot_code else None
            serial_receipt = None
            if product.tracking is Tracking.SERIAL:
                # Remembered for the registry's answer, which may refuse some of its units.
                level.forget_receipts(self._receipts_remembered_since())
                serial_receipt = (receipt.receipt_id, delivery.event.time)
            quarantine = level.receive(
                receipt.quantity, lot_code, expires_on, recall, serial_receipt
            )
            return _quarantine_events(level, [quarantine])

        # A receipt that breaks a rule its schema cannot state is booked nowhere; the serial
        # registry answers it (receipt-rejected naming the rule) for the contract.
        booked = [d for d in deliveries if d.data.rule_broken() is None]
        return await self._apply(booked, receive)

    async def on_receipts_rejected(self, deliveries: list[Delivery]) -> BatchResult:
        """Serial units the registry refused leave on-hand, so stock and the registry agree.

        Only the registry's own refusals of units (duplicate or missing serials) count: a
        tracking mismatch or an unknown SKU is a matter for the receiving desk, and stock
        books those receipts by its own rules."""

        def refuse(
            delivery: Delivery, level: Level, product: Product
        ) -> list[tuple[EventData, str]]:
            rejection: ReceiptRejected = delivery.data
            if product.tracking is not Tracking.SERIAL:
                return []
            quantity = rejection.quantity or len(rejection.serials)
            if not quantity:
                return []  # a rejection from before the contract said how many
            since = self._receipts_remembered_since()
            level.forget_receipts(since)
            quarantine = level.refuse_receipt(
                rejection.receipt_id,
                rejection.lot_code,
                quantity,
                rejection.reason,
                # A rejection carries its receipt's time: one older than the level's
                # memory is of a receipt booked (and forgotten) long ago.
                receipt_forgotten=delivery.event.time < since,
            )
            return _quarantine_events(level, [quarantine])

        ours = [
            d for d in deliveries if d.event.source == REGISTRY_SOURCE and d.data.reason in REFUSING
        ]
        return await self._apply(ours, refuse)

    async def on_items_sold(self, deliveries: list[Delivery]) -> BatchResult:
        def sell(delivery: Delivery, level: Level, product: Product) -> list[tuple[EventData, str]]:
            sale: ItemSold = delivery.data
            held = {code: lot.quarantined for code, lot in level.lots.items() if lot.recall_id}
            outcome = level.sell(
                sale.quantity, sale.lot_code, product.tracking, sale.sold_at, product.recalls
            )
            # A sale out of a recall's quarantine lowers its total: the recall must not count
            # those units twice (held, and sold after the recall).
            emptied = [
                Quarantine(lot.recall_id, code, lot.quarantined)
                for code, lot in level.lots.items()
                if lot.recall_id and code in held and lot.quarantined != held[code]
            ]
            return _quarantine_events(level, emptied) + [
                (
                    SaleFlagged(
                        sku=sale.sku,
                        sale_id=sale.sale_id,
                        line=sale.line,
                        location=sale.location,
                        reason=flag.reason,
                        detail=flag.detail,
                        quantity=flag.quantity,
                        serial=sale.serial,
                        lot_code=flag.lot_code,
                        recall_id=flag.recall_id,
                        customer_ref=sale.customer_ref,
                        sold_at=sale.sold_at,
                    ),
                    f"flag/{n}",
                )
                for n, flag in enumerate(outcome.flags)
            ]

        return await self._apply(deliveries, sell)

    async def on_items_returned(self, deliveries: list[Delivery]) -> BatchResult:
        def take_back(
            delivery: Delivery, level: Level, product: Product
        ) -> list[tuple[EventData, str]]:
            item: ItemReturned = delivery.data
            recall = product.recalls.get(item.lot_code) if item.lot_code else None
            quarantine = level.return_item(item.quantity, item.lot_code, item.reason, recall)
            return _quarantine_events(level, [quarantine])

        return await self._apply(deliveries, take_back)

    async def on_batches_recalled(self, deliveries: list[Delivery]) -> BatchResult:
        result = BatchResult()
        products = await self.store.load_products(d.data.sku for d in deliveries)
        for delivery in deliveries:
            recall: BatchRecalled = delivery.data
            if not recall.lot_codes:
                continue  # A recall of serials only: the serial registry finds the units.
            # Kept even for a product not registered yet: recall wins, whatever the order,
            # so its lots are quarantined on arrival and their sales flagged.
            await self.store.add_recalls(
                recall.sku,
                [Recall(recall.recall_id, code, recall.issued_at) for code in recall.lot_codes],
            )
            if recall.sku not in products:
                continue  # no stock of it can exist before its registration

            def quarantine(
                delivery: Delivery, level: Level, product: Product
            ) -> list[tuple[EventData, str]]:
                event: BatchRecalled = delivery.data
                return _quarantine_events(
                    level,
                    [level.quarantine_lot(code, event.recall_id) for code in event.lot_codes],
                )

            await self._apply_to_levels(
                [delivery],
                quarantine,
                products,
                load=lambda sku=recall.sku: self.store.load_levels_of_sku(sku),
            )
        return result

    async def on_reorder_points_set(self, deliveries: list[Delivery]) -> BatchResult:
        """A store's reorder point for a product: the latest set wins; a level below it
        when it is set is low from then on (reported once, like any crossing)."""

        def set_point(
            delivery: Delivery, level: Level, product: Product
        ) -> list[tuple[EventData, str]]:
            event: ReorderPointSet = delivery.data
            level.set_reorder_point(event.reorder_point)
            return []

        return await self._apply(deliveries, set_point)

    async def on_stock_counted(self, deliveries: list[Delivery]) -> BatchResult:
        """A physical count sets each lot's on-hand to what was found (the ledger records
        the variance). For serial items stock books how many were found; the serials in
        the event are for the serial registry to tell which units are missing."""

        def count(
            delivery: Delivery, level: Level, product: Product
        ) -> list[tuple[EventData, str]]:
            event: StockCounted = delivery.data
            counted: dict[str | None, int] = {}
            for lot in event.lots:
                counted[lot.lot_code] = counted.get(lot.lot_code, 0) + lot.quantity
            level.count(counted)
            return []

        return await self._apply(deliveries, count)

    async def on_stock_adjusted(self, deliveries: list[Delivery]) -> BatchResult:
        def adjust(
            delivery: Delivery, level: Level, product: Product
        ) -> list[tuple[EventData, str]]:
            event: StockAdjusted = delivery.data
            level.adjust(event.quantity, event.direction, event.lot_code)
            return []

        return await self._apply(deliveries, adjust)

    async def on_stock_disposed(self, deliveries: list[Delivery]) -> BatchResult:
        """Quarantined units destroyed or sent back: a recalled lot's quarantine total goes
        down and its disposed figure up, both reported to the recall (stock-quarantined)."""

        def dispose(
            delivery: Delivery, level: Level, product: Product
        ) -> list[tuple[EventData, str]]:
            event: StockDisposed = delivery.data
            return _quarantine_events(level, [level.dispose(event.quantity, event.lot_code)])

        return await self._apply(deliveries, dispose)

    async def on_transfers_shipped(self, deliveries: list[Delivery]) -> BatchResult:
        """Units leave the source for the destination, where they are in transit: both
        levels of the SKU are on its partition, so one batch changes both. The transfer
        records the lots stock took (first expiry first where none was named)."""
        transfers: dict[str, tuple[Transfer, int]] = {}
        # The shipped lots' expiry, from the source to the destination's new lots.
        expiry: dict[str, dict[str | None, date | None]] = {}

        def ship(delivery: Delivery, level: Level, product: Product) -> list[tuple[EventData, str]]:
            event: TransferShipped = delivery.data
            transfer, _ = transfers[transfer_key(event.sku, event.transfer_id)]
            if level.location == event.location:
                wanted: dict[str | None, int] = {}
                for lot in event.lots:
                    wanted[lot.lot_code] = wanted.get(lot.lot_code, 0) + lot.quantity
                picks, quarantine = level.ship(wanted, event.shipped_at.date())
                transfer.shipped = {pick.lot_code: pick.quantity for pick in picks}
                transfer.from_location, transfer.to_location = event.location, event.to_location
                transfer.shipped_at, transfer.shipped_serials = event.shipped_at, event.serials
                expiry[transfer.transfer_id] = {
                    code: level.lots[code].expires_on for code in transfer.shipped
                }
                return _quarantine_events(level, [quarantine])
            # The receipt may have come first (two topics), and somewhere else.
            received = transfer.received
            if received is not None and transfer.received_location != event.to_location:
                received = {}
            quarantines = level.expect(
                transfer.shipped or {},
                expiry.pop(transfer.transfer_id, {}),
                product.recalls,
                received,
            )
            return _quarantine_events(level, list(quarantines))

        return await self._apply_transfers(
            deliveries,
            transfers,
            ship,
            lambda data, _: [
                (level_id(data.sku, data.location), data.location),
                (level_id(data.sku, data.to_location), data.to_location),
            ],
        )

    async def on_transfers_received(self, deliveries: list[Delivery]) -> BatchResult:
        """A transfer's goods arrived: on hand (quarantined for a recalled lot, which the
        recall then counts), out of transit; what was shipped and did not arrive stays on
        the transfer as its difference, and as missing at the destination. A receipt
        before its shipment (two topics) is booked, and matched when the shipment comes."""
        transfers: dict[str, tuple[Transfer, int]] = {}

        def receive(
            delivery: Delivery, level: Level, product: Product
        ) -> list[tuple[EventData, str]]:
            event: TransferReceived = delivery.data
            transfer, _ = transfers[transfer_key(event.sku, event.transfer_id)]
            if level.location == event.location:
                found: dict[str | None, int] = {}
                for lot in event.lots:
                    found[lot.lot_code] = found.get(lot.lot_code, 0) + lot.quantity
                expected_here = transfer.to_location in (None, event.location)
                shipped = transfer.shipped if expected_here else None
                received = attribute_receipt(found, shipped)
                transfer.received, transfer.received_location = received, event.location
                transfer.received_at, transfer.received_serials = event.received_at, event.serials
                return _quarantine_events(
                    level, list(level.arrive(received, shipped, product.recalls))
                )
            # Received somewhere else than it was sent to: nothing arrived where expected.
            return _quarantine_events(
                level, list(level.arrive({}, transfer.shipped, product.recalls))
            )

        def places(data: TransferReceived, transfer: Transfer) -> list[tuple[str, str]]:
            here = [(level_id(data.sku, data.location), data.location)]
            meant = transfer.to_location
            if meant is not None and meant != data.location and transfer.shipped is not None:
                here.append((level_id(data.sku, meant), meant))
            return here

        return await self._apply_transfers(
            deliveries,
            transfers,
            receive,
            places,
            origin=lambda data: (
                transfers[transfer_key(data.sku, data.transfer_id)][0].from_location
            ),
        )

    async def _apply_transfers(
        self,
        deliveries: list[Delivery],
        transfers: dict[str, tuple[Transfer, int]],
        change: Change,
        places: Callable[[Any, Transfer], list[tuple[str, str]]],
        origin: Callable[[Any], str | None] | None = None,
    ) -> BatchResult:
        """Apply transfer events to the levels they name, and stage the transfers with them
        (`transfers` is filled here, before `change` runs, with each one's partition)."""
        result = BatchResult()
        products = await self.store.load_products(d.data.sku for d in deliveries)
        known = []
        for delivery in deliveries:
            if delivery.data.sku in products:
                known.append(delivery)
            else:
                result.defer(delivery, f"sku {delivery.data.sku!r} is not known to stock yet")
        if not known:
            return result
        keys = [transfer_key(d.data.sku, d.data.transfer_id) for d in known]
        stored = await self.store.load_transfers(keys)
        for delivery, key in zip(known, keys, strict=True):
            data = delivery.data
            transfer = stored.get(key) or Transfer(data.transfer_id, data.sku)
            transfers[key] = (transfer, delivery.partition)
        ids = list(
            dict.fromkeys(
                level
                for d, key in zip(known, keys, strict=True)
                for level, _ in places(d.data, transfers[key][0])
            )
        )
        await self._apply_to_levels(
            known,
            change,
            products,
            load=lambda: self.store.load_levels(ids),
            places=lambda data: places(
                data, transfers[transfer_key(data.sku, data.transfer_id)][0]
            ),
            origin=origin,
        )
        await self.store.stage_transfers(transfers)
        return result

    async def on_warranty_claims(self, deliveries: list[Delivery]) -> BatchResult:
        """A warranty claim moves serial stock as the serial registry applies it: a
        replacement's unit leaves on-hand here, and the faulty unit of a replacement or a
        refund comes back, held as damaged. A claim the registry refuses is undone when its
        refusal arrives (`on_warranty_claims_refused`), as its refused receipts are."""

        def take(delivery: Delivery, level: Level, product: Product) -> list[tuple[EventData, str]]:
            claim: WarrantyClaimed = delivery.data
            if product.tracking is Tracking.SERIAL:
                level.forget_claims(self._receipts_remembered_since())
                level.take_claim(claim.claim_id, claim.kind, claim.claimed_at)
            return []

        return await self._apply(deliveries, take)

    async def on_warranty_claims_refused(self, deliveries: list[Delivery]) -> BatchResult:
        """The registry did not apply a claim: what stock did for it is undone (and a refusal
        that comes first keeps its claim from moving anything). Only the registry's own."""

        def undo(delivery: Delivery, level: Level, product: Product) -> list[tuple[EventData, str]]:
            refusal: WarrantyClaimRefused = delivery.data
            if product.tracking is Tracking.SERIAL:
                level.refuse_claim(refusal.claim_id, delivery.event.time)
            return []

        ours = [d for d in deliveries if d.event.source == REGISTRY_SOURCE]
        return await self._apply(ours, undo)

    def _receipts_remembered_since(self) -> datetime:
        """A level remembers its serial receipts as long as its events (the dedupe window)."""
        return datetime.now(UTC) - timedelta(hours=self.settings.dedupe_window_hours)

    async def on_give_up_sales(self, deferred: list[Deferred]) -> None:
        """A sale of a SKU nobody registered is still a sale: a person must look at it."""
        flags = []
        for item in deferred:
            sale: ItemSold = item.delivery.data
            flag = SaleFlagged(
                sku=sale.sku,
                sale_id=sale.sale_id,
                line=sale.line,
                location=sale.location,
                reason=FlagReason.UNKNOWN_SKU,
                detail=f"sku {sale.sku} is not in the catalog; the sale went to the DLQ",
                quantity=sale.quantity,
                serial=sale.serial,
                lot_code=sale.lot_code,
                customer_ref=sale.customer_ref,
                sold_at=sale.sold_at,
            )
            flags.append(encode(flag, source=SOURCE, id=derived_id(item.delivery, "unknown")))
        # Durable with the consumer's commit of the give-up, like every event stock emits.
        for message in flags:
            self.store.wal.emit(message.key.decode(), [message])

    async def _apply(self, deliveries: list[Delivery], change: Change) -> BatchResult:
        result = BatchResult()
        products = await self.store.load_products(d.data.sku for d in deliveries)
        known = []
        for delivery in deliveries:
            if delivery.data.sku in products:
                known.append(delivery)
            else:
                result.defer(delivery, f"sku {delivery.data.sku!r} is not known to stock yet")
        if known:
            ids = [level_id(d.data.sku, d.data.location) for d in known]
            await self._apply_to_levels(
                known, change, products, load=lambda: self.store.load_levels(ids)
            )
        return result

    async def _apply_to_levels(
        self,
        deliveries: list[Delivery],
        change: Change,
        products: dict[str, Product],
        load: Callable[[], Any],
        places: Callable[[Any], list[tuple[str, str]]] | None = None,
        origin: Callable[[Any], str | None] | None = None,
    ) -> None:
        """Read the levels, apply every event, stage the changed levels and the events they
        emit on the batch's unit of work (the consumer has already dropped the events
        applied before, and commits the batch: `lotline.runtime.wal`).

        `places` names the (level id, location) pairs an event changes, in order, when it
        is not its own location's level alone (a transfer's two ends); `origin`, where a
        transfer received came from, for the ledger."""
        levels: dict[str, StoredLevel] = await load()
        moved: list[Movement] = []
        for delivery in deliveries:
            data = delivery.data
            where: dict[str, str] = {}
            if isinstance(data, BatchRecalled):
                targets = [key for key, s in levels.items() if s.level.sku == data.sku]
            else:
                where = (
                    dict(places(data))
                    if places
                    else {level_id(data.sku, data.location): data.location}
                )
                targets = list(where)
            for key in targets:
                stored = levels.get(key)
                if stored is None:
                    stored = levels[key] = self.store.new_level(
                        key, Level(data.sku, where[key]), delivery.partition
                    )
                before = counts_of(stored.level)
                for event, suffix in change(delivery, stored.level, products[data.sku]):
                    stored.outbox.append(
                        encode(event, source=SOURCE, id=derived_id(delivery, f"{key}/{suffix}"))
                    )
                if stored.level.crossed_below_reorder_point():
                    low = StockLow(
                        sku=data.sku,
                        location=stored.level.location,
                        on_hand=stored.level.on_hand,
                        reorder_point=stored.level.reorder_point or 0,
                        cause=delivery.event.type.value,
                    )
                    stored.outbox.append(
                        encode(low, source=SOURCE, id=derived_id(delivery, f"{key}/low"))
                    )
                came_from = origin(data) if origin is not None else None
                moved.extend(movements(delivery.event, before, stored.level, came_from))
                stored.changed = True
        self.store.record_movements(moved)
        await self.store.stage_levels(levels)


def _quarantine_events(
    level: Level, quarantines: list[Quarantine | None]
) -> list[tuple[EventData, str]]:
    """The recall's lots here as they stand now: held, and the lot's account (received,
    disposed, sold before the recall), so the recall can account for every unit."""
    events: list[tuple[EventData, str]] = []
    for q in quarantines:
        if q is None:
            continue
        lot = level.lots.get(q.lot_code)
        event = StockQuarantined(
            sku=level.sku,
            recall_id=q.recall_id,
            location=level.location,
            lot_code=q.lot_code,
            quantity=q.quantity,
            # Net of transfers (the units a transfer moved are the destination's to answer
            # for) and of refusals (units the registry refused were never here).
            received=max(lot.accounted_received, 0) if lot else None,
            disposed=max(lot.disposed, 0) if lot else None,
            sold_before_recall=max(lot.sold_before_recall, 0) if lot else None,
        )
        events.append((event, f"quarantine/{q.lot_code}"))
    return events
