"""One handler per event the stock service consumes: decode -> domain -> store -> publish."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
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
    SaleFlagged,
    StockQuarantined,
    Tracking,
    encode,
)
from lotline.runtime.consumer import BatchResult, Deferred, Delivery, Publisher
from lotline.runtime.settings import Settings
from lotline.stock.domain import Level, Quarantine, Recall
from lotline.stock.ledger import Movement, counts_of, movements
from lotline.stock.store import Product, StockStore, StoredLevel, level_id

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
    publisher: Publisher
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

        return await self._apply(deliveries, receive)

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
            outcome = level.sell(
                sale.quantity, sale.lot_code, product.tracking, sale.sold_at, product.recalls
            )
            return [
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
        await self.publisher.send(flags)

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
    ) -> None:
        """Read the levels, apply every event, stage the changed levels and the events they
        emit on the batch's unit of work (the consumer has already dropped the events
        applied before, and commits the batch: `lotline.runtime.wal`)."""
        levels: dict[str, StoredLevel] = await load()
        moved: list[Movement] = []
        for delivery in deliveries:
            data = delivery.data
            targets = (
                [key for key, s in levels.items() if s.level.sku == data.sku]
                if isinstance(data, BatchRecalled)
                else [level_id(data.sku, data.location)]
            )
            for key in targets:
                stored = levels.get(key)
                if stored is None:
                    stored = levels[key] = self.store.new_level(
                        key, Level(data.sku, data.location), delivery.partition
                    )
                before = counts_of(stored.level)
                for event, suffix in change(delivery, stored.level, products[data.sku]):
                    stored.outbox.append(
                        encode(event, source=SOURCE, id=derived_id(delivery, f"{key}/{suffix}"))
                    )
                moved.extend(movements(delivery.event, before, stored.level))
                stored.changed = True
        await self.store.record_movements(moved)
        await self.store.stage_levels(levels)


def _quarantine_events(
    level: Level, quarantines: list[Quarantine | None]
) -> list[tuple[EventData, str]]:
    return [
        (
            StockQuarantined(
                sku=level.sku,
                recall_id=q.recall_id,
                location=level.location,
                lot_code=q.lot_code,
                quantity=q.quantity,
            ),
            f"quarantine/{q.lot_code}",
        )
        for q in quarantines
        if q is not None
    ]
