"""The chaos suite's shop: a stream of receipts, sales and returns, and the truth it implies.

`Shop` decides the next events from what it has itself sent and had acknowledged, so at
the end it knows exactly what every service must show: per SKU, location and lot how many
units were received, sold and returned; per serial unit the events it saw and its status.
"""

from __future__ import annotations

import random
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta

from lotline.events import (
    EventData,
    ItemReceived,
    ItemReturned,
    ItemSold,
    Lot,
    ReturnReason,
    Tracking,
    UnitStatus,
)

LOCATIONS = ("S1", "S2", "S3")
LOTS = ("L1", "L2", "L3")

# A level's lot: (sku, location, lot code or None).
LotKey = tuple[str, str, str | None]


@dataclass(frozen=True)
class Product:
    sku: str
    tracking: Tracking


@dataclass
class SerialUnit:
    sku: str
    serial: str
    lot: str
    location: str
    status: UnitStatus = UnitStatus.IN_STOCK
    # Every event that touched it, by the key the registry keeps in its history.
    refs: list[tuple[str, str]] = field(default_factory=list)
    sale_id: str | None = None
    sold_tick: int = -1
    returned_for_recall: bool = False


@dataclass
class Counts:
    received: int = 0
    sold: int = 0
    returned: int = 0
    recall_returned: int = 0

    @property
    def expected_stock(self) -> int:
        """On hand plus quarantined: receipts - sales + returns (no damaged returns here)."""
        return self.received - self.sold + self.returned


@dataclass
class Shop:
    """The truth of a run: every acknowledged event, folded into what it must have done."""

    run_id: str
    seed: int = 0
    products: list[Product] = field(default_factory=list)
    levels: dict[LotKey, Counts] = field(default_factory=dict)
    units: dict[tuple[str, str], SerialUnit] = field(default_factory=dict)
    events_sent: Counter[str] = field(default_factory=Counter)
    # SKUs whose events stop (quiet) before their recall, and that then see recall returns.
    quiet: set[str] = field(default_factory=set)
    tick: int = 0
    # Units of the big receipts (`big_receipt`), by (SKU, serial).
    bulk: set[tuple[str, str]] = field(default_factory=set)
    _serial_no: int = 0
    _ids: int = 0

    def __post_init__(self) -> None:
        self.random = random.Random(self.seed)

    @classmethod
    def open(cls, run_id: str, seed: int, quantity: int, batch: int, serial: int) -> Shop:
        shop = cls(run_id, seed)
        for n in range(quantity):
            shop.products.append(Product(f"CQ{n}-{run_id}", Tracking.QUANTITY))
        for n in range(batch):
            shop.products.append(Product(f"CB{n}-{run_id}", Tracking.BATCH))
        for n in range(serial):
            shop.products.append(Product(f"CS{n}-{run_id}", Tracking.SERIAL))
        return shop

    @property
    def recall_batch_sku(self) -> str:
        return next(p.sku for p in self.products if p.tracking is Tracking.BATCH)

    @property
    def recall_serial_sku(self) -> str:
        return next(p.sku for p in self.products if p.tracking is Tracking.SERIAL)

    def _id(self, prefix: str) -> str:
        self._ids += 1
        return f"{prefix}-{self.run_id}-{self._ids}"

    # ---------------------------------------------------------------------------- the stream

    def next_events(self, size: int) -> list[EventData]:
        """About `size` events of the next tick, for the SKUs that are not quiet."""
        self.tick += 1
        events: list[EventData] = []
        active = [p for p in self.products if p.sku not in self.quiet]
        while len(events) < size and active:
            product = self.random.choice(active)
            event = self._next_for(product)
            if event is not None:
                self.record(event)
                events.append(event)
        return events

    def _next_for(self, product: Product) -> EventData | None:
        roll = self.random.random()
        location = self.random.choice(LOCATIONS)
        if product.tracking is Tracking.SERIAL:
            return self._serial_event(product, roll, location)
        lot = None if product.tracking is Tracking.QUANTITY else self.random.choice(LOTS)
        counts = self.levels.get((product.sku, location, lot))
        on_hand = counts.expected_stock if counts else 0
        if roll < 0.3 or on_hand < 3:
            return ItemReceived(
                sku=product.sku,
                receipt_id=self._id("R"),
                location=location,
                quantity=self.random.randint(5, 20),
                lot=Lot(code=lot, expires_on=_expiry(lot)) if lot else None,
            )
        if roll < 0.85 or counts is None or counts.sold <= counts.returned:
            return ItemSold(
                sku=product.sku,
                sale_id=self._id("T"),
                line=1,
                location=location,
                quantity=self.random.randint(1, min(3, on_hand)),
                lot_code=lot,
                customer_ref=self._id("C"),
                sold_at=datetime.now(UTC),
            )
        return ItemReturned(
            sku=product.sku,
            return_id=self._id("RT"),
            location=location,
            quantity=1,
            lot_code=lot,
            reason=ReturnReason.CUSTOMER,
        )

    def _serial_event(self, product: Product, roll: float, location: str) -> EventData | None:
        mine = [u for u in self.units.values() if u.sku == product.sku]
        # A returned unit is not sold again within a run: a sale and a return are on two
        # topics, which nothing orders but time, and a run lasts minutes, not days.
        in_stock = [u for u in mine if u.status is UnitStatus.IN_STOCK]
        # A unit comes back a few ticks after its sale, for the same reason.
        sold = [u for u in mine if u.status is UnitStatus.SOLD and self.tick - u.sold_tick >= 3]
        if roll < 0.25 or len(in_stock) < 3:
            lot = self.random.choice(LOTS)
            serials = []
            for _ in range(self.random.randint(3, 8)):
                self._serial_no += 1
                serials.append(f"SN{self._serial_no:06d}")
            return ItemReceived(
                sku=product.sku,
                receipt_id=self._id("R"),
                location=location,
                quantity=len(serials),
                lot=Lot(code=lot, expires_on=_expiry(lot)),
                serials=serials,
            )
        if roll < 0.85 or not sold:
            unit = self.random.choice(in_stock)
            return ItemSold(
                sku=product.sku,
                sale_id=self._id("T"),
                line=1,
                location=unit.location,
                quantity=1,
                serial=unit.serial,
                lot_code=unit.lot,
                customer_ref=self._id("C"),
                sold_at=datetime.now(UTC),
            )
        unit = self.random.choice(sold)
        return self.serial_return(unit, ReturnReason.CUSTOMER)

    def serial_return(self, unit: SerialUnit, reason: ReturnReason) -> ItemReturned:
        return ItemReturned(
            sku=unit.sku,
            return_id=self._id("RT"),
            sale_id=unit.sale_id,
            location=unit.location,
            quantity=1,
            serial=unit.serial,
            lot_code=unit.lot,
            reason=reason,
        )

    def recall_returns(self, sku: str, lot: str | None, count: int) -> list[ItemReturned]:
        """Units brought back because of the recall: serial units sold, or lot quantities."""
        if any(p.sku == sku and p.tracking is Tracking.SERIAL for p in self.products):
            sold = [
                u
                for u in self.units.values()
                if u.sku == sku and u.lot == lot and u.status is UnitStatus.SOLD
            ]
            returns = [self.serial_return(u, ReturnReason.RECALL) for u in sold[:count]]
        else:
            where = sorted({key[1] for key in self.levels if key[0] == sku and key[2] == lot})
            returns = [
                ItemReturned(
                    sku=sku,
                    return_id=self._id("RT"),
                    location=self.random.choice(where),
                    quantity=self.random.randint(1, 2),
                    lot_code=lot,
                    reason=ReturnReason.RECALL,
                )
                for _ in range(count)
            ]
        for event in returns:
            self.record(event)
        return returns

    def big_receipt(self, serials: int) -> ItemReceived:
        """A container's worth of one serial SKU (not the recalled one), recorded."""
        sku = [p.sku for p in self.products if p.tracking is Tracking.SERIAL][-1]
        numbers = range(self._serial_no + 1, self._serial_no + 1 + serials)
        self._serial_no += serials
        receipt = ItemReceived(
            sku=sku,
            receipt_id=self._id("R"),
            location=LOCATIONS[0],
            quantity=serials,
            lot=Lot(code=LOTS[0], expires_on=_expiry(LOTS[0])),
            serials=[f"SN{n:06d}" for n in numbers],
        )
        self.record(receipt)
        self.bulk.update((sku, serial) for serial in receipt.serials or ())
        return receipt

    # ------------------------------------------------------------------------ recording

    def record(self, event: EventData) -> None:
        """Fold an event in as it is made. The driver resends it until Kafka acknowledges it
        (acks=all), and fails the run if any is left unacknowledged, so at the end every
        recorded event is an acknowledged one and must be applied exactly once."""
        self.events_sent[type(event).__name__] += 1
        match event:
            case ItemReceived():
                lot = event.lot.code if event.lot else None
                self._counts(event.sku, event.location, lot).received += event.quantity
                for serial in event.serials or ():
                    self.units[(event.sku, serial)] = SerialUnit(
                        event.sku,
                        serial,
                        lot or "",
                        event.location,
                        refs=[("item-received", event.receipt_id)],
                    )
            case ItemSold():
                self._counts(event.sku, event.location, event.lot_code).sold += event.quantity
                if event.serial is not None:
                    unit = self.units[(event.sku, event.serial)]
                    unit.status = UnitStatus.SOLD
                    unit.sale_id = event.sale_id
                    unit.sold_tick = self.tick
                    unit.refs.append(("item-sold", f"{event.sale_id}#{event.line}"))
            case ItemReturned():
                counts = self._counts(event.sku, event.location, event.lot_code)
                counts.returned += event.quantity
                if event.reason is ReturnReason.RECALL:
                    counts.recall_returned += event.quantity
                if event.serial is not None:
                    unit = self.units[(event.sku, event.serial)]
                    unit.status = UnitStatus.RETURNED
                    unit.returned_for_recall = event.reason is ReturnReason.RECALL
                    unit.refs.append(("item-returned", f"{event.return_id}#{event.line}"))

    def _counts(self, sku: str, location: str, lot: str | None) -> Counts:
        return self.levels.setdefault((sku, location, lot), Counts())

    # ------------------------------------------------------------------------ the truth

    def levels_of(self, sku: str) -> dict[LotKey, Counts]:
        return {key: c for key, c in self.levels.items() if key[0] == sku}

    def units_of(self, sku: str, lot: str | None = None) -> list[SerialUnit]:
        return [u for u in self.units.values() if u.sku == sku and (lot is None or u.lot == lot)]


def _expiry(lot: str | None) -> date | None:
    if lot is None:
        return None
    # Far enough ahead that no lot expires during a run, distinct per lot for FEFO.
    return date.today() + timedelta(days=200 + 30 * LOTS.index(lot))
