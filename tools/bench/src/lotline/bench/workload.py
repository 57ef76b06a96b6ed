"""What each scenario sends and what Lotline must hold afterwards; pure, no I/O.

Every name carries the run's id, so a run never meets another run's leftovers and its
effects can be found again by key. The expected state is computed from the same events
that are sent, by the rules a store expects (FEFO picking), not read back from Lotline.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta

from lotline.events import (
    Classification,
    ItemReceived,
    ItemSold,
    Lot,
    ProductRegistered,
    Tracking,
)

KINDS = (Tracking.QUANTITY, Tracking.BATCH, Tracking.SERIAL)
# Spare stock received beyond what is sold, so no sale ever runs short (a flag would
# make the expected state depend on timing).
SPARE = 3


def location_code(run: str, index: int) -> str:
    return f"B{run}-S{index:02d}"


def sku_code(run: str, tracking: Tracking, index: int) -> str:
    return f"B{run}-{tracking.value[0].upper()}{index:04d}"


@dataclass(frozen=True)
class LevelExpectation:
    """One SKU at one location after the run: on hand per lot (None: no lot)."""

    sku: str
    location: str
    on_hand: dict[str | None, int]
    quarantined: dict[str | None, int] = field(default_factory=dict)


@dataclass(frozen=True)
class UnitExpectation:
    sku: str
    serial: str
    sale_id: str | None  # None: still in stock


@dataclass
class SalesWorkload:
    """Scenario 1 and 2: products of the three kinds, the stock they need, and the sales."""

    run: str
    products: list[ProductRegistered]
    receipts: list[ItemReceived]
    sales: list[ItemSold]
    levels: list[LevelExpectation]
    units: list[UnitExpectation]

    @property
    def locations(self) -> list[str]:
        return sorted({level.location for level in self.levels})


def sales_workload(
    run: str, lines: int, skus: int, locations: int, today: date | None = None
) -> SalesWorkload:
    """`lines` sale lines spread evenly over `skus` SKUs (a third each quantity, batch and
    serial) and `locations` stores. Quantity lines sell 1-3, batch lines 1-2 picked FEFO from
    two lots, serial lines one named unit each."""
    if lines < 1 or skus < 3 or locations < 1:
        raise ValueError("a sales workload needs lines >= 1, skus >= 3 and locations >= 1")
    today = today or datetime.now(UTC).date()
    sold_at = datetime.combine(today, datetime.min.time(), UTC) + timedelta(hours=12)
    sku_list = [sku_code(run, KINDS[i % 3], i) for i in range(skus)]
    tracking = {sku: KINDS[i % 3] for i, sku in enumerate(sku_list)}
    stores = [location_code(run, j) for j in range(locations)]

    sales: list[ItemSold] = []
    sold_qty: Counter[tuple[str, str]] = Counter()
    sold_serials: dict[tuple[str, str], list[tuple[str, str]]] = {}
    for n in range(lines):
        sku = sku_list[n % skus]
        store = stores[(n // skus) % locations]
        kind = tracking[sku]
        serial = None
        quantity = 1
        if kind is Tracking.QUANTITY:
            quantity = 1 + n % 3
        elif kind is Tracking.BATCH:
            quantity = 1 + n % 2
        else:
            sold_here = sold_serials.setdefault((sku, store), [])
            serial = f"{store[-3:]}-{len(sold_here):06d}"
        sale_id = f"B{run}-{n}"
        if serial is not None:
            sold_serials[(sku, store)].append((serial, sale_id))
        sold_qty[(sku, store)] += quantity
        sales.append(
            ItemSold(
                sku=sku,
                sale_id=sale_id,
                line=1,
                location=store,
                quantity=quantity,
                serial=serial,
                customer_ref=f"C-{n % 997}",
                sold_at=sold_at,
            )
        )

    products = [
        ProductRegistered(sku=sku, name=f"Bench {tracking[sku].value} {sku}", tracking=kind)
        for sku, kind in tracking.items()
    ]
    receipts: list[ItemReceived] = []
    levels: list[LevelExpectation] = []
    units: list[UnitExpectation] = []
    for sku in sku_list:
        kind = tracking[sku]
        for store in stores:
            sold = sold_qty[(sku, store)]
            receipt_id = f"R{run}-{sku[-5:]}-{store[-3:]}"
            if kind is Tracking.QUANTITY:
                receipts.append(
                    ItemReceived(
                        sku=sku, receipt_id=receipt_id, location=store, quantity=sold + SPARE
                    )
                )
                levels.append(LevelExpectation(sku, store, {None: SPARE}))
            elif kind is Tracking.BATCH:
                # The first lot expires first, so FEFO empties it before touching the second.
                first, second = sold // 2 + 1, sold - sold // 2 - 1 + SPARE
                lots = (
                    ("EARLY", first, today + timedelta(days=200)),
                    ("LATE", second, today + timedelta(days=400)),
                )
                for code, quantity, expires in lots:
                    if quantity > 0:
                        receipts.append(
                            ItemReceived(
                                sku=sku,
                                receipt_id=f"{receipt_id}-{code}",
                                location=store,
                                quantity=quantity,
                                lot=Lot(code=code, expires_on=expires),
                            )
                        )
                taken_first = min(first, sold)
                levels.append(
                    LevelExpectation(
                        sku,
                        store,
                        {"EARLY": first - taken_first, "LATE": second - (sold - taken_first)},
                    )
                )
            else:
                sold_units = sold_serials.get((sku, store), [])
                spare = [f"{store[-3:]}-X{k:05d}" for k in range(SPARE)]
                serials = [serial for serial, _ in sold_units] + spare
                receipts.append(
                    ItemReceived(
                        sku=sku,
                        receipt_id=receipt_id,
                        location=store,
                        quantity=len(serials),
                        lot=Lot(code="L1", expires_on=today + timedelta(days=700)),
                        serials=serials,
                    )
                )
                levels.append(LevelExpectation(sku, store, {"L1": SPARE}))
                units.extend(
                    UnitExpectation(sku, serial, sale_id) for serial, sale_id in sold_units
                )
                units.extend(UnitExpectation(sku, serial, None) for serial in spare)
    return SalesWorkload(run, products, receipts, sales, levels, units)


@dataclass
class ReceiptWorkload:
    """Scenario 3: a container of phones, one receipt with every serial."""

    product: ProductRegistered
    receipt: ItemReceived

    @property
    def lot_code(self) -> str:
        assert self.receipt.lot is not None
        return self.receipt.lot.code


def receipt_workload(run: str, serials: int, today: date | None = None) -> ReceiptWorkload:
    if serials < 1:
        raise ValueError("a receipt needs at least one serial")
    today = today or datetime.now(UTC).date()
    sku = f"B{run}-PHONE"
    product = ProductRegistered(sku=sku, name="Bench phone", tracking=Tracking.SERIAL)
    receipt = ItemReceived(
        sku=sku,
        receipt_id=f"R{run}-CONTAINER",
        location=location_code(run, 0),
        quantity=serials,
        lot=Lot(code="C1", expires_on=today + timedelta(days=3650)),
        serials=[f"{35_000_000_000_000 + k:015d}" for k in range(serials)],
    )
    return ReceiptWorkload(product, receipt)


@dataclass
class RecallWorkload:
    """Scenario 4: serialized units of one product in `lots` lots across `stores` stores."""

    run: str
    product: ProductRegistered
    lot_codes: list[str]
    stores: list[str]
    units_per_receipt: int

    @property
    def sku(self) -> str:
        return self.product.sku

    @property
    def units(self) -> int:
        return len(self.lot_codes) * len(self.stores) * self.units_per_receipt

    def receipts(self, today: date | None = None) -> Iterator[ItemReceived]:
        """One receipt per lot and store, built as they are sent (a million serials is a lot)."""
        today = today or datetime.now(UTC).date()
        return (
            ItemReceived(
                sku=self.sku,
                receipt_id=f"R{self.run}-{lot}-{store[-3:]}",
                location=store,
                quantity=self.units_per_receipt,
                lot=Lot(code=lot, expires_on=today + timedelta(days=3650)),
                serials=[self.serial(lot, store, k) for k in range(self.units_per_receipt)],
            )
            for lot in self.lot_codes
            for store in self.stores
        )

    def serial(self, lot: str, store: str, index: int) -> str:
        return f"{lot}-{store[-2:]}-{index:06d}"

    def sample_serial(self, lot: str) -> str:
        """One unit of the lot (the first of the first store)."""
        return self.serial(lot, self.stores[0], 0)

    def sample_serials(self, lot: str) -> list[str]:
        """A few units of the lot, at its first and last store."""
        last = self.units_per_receipt - 1
        return sorted(
            {
                self.serial(lot, self.stores[0], 0),
                self.serial(lot, self.stores[-1], last),
                self.serial(lot, self.stores[len(self.stores) // 2], last // 2),
            }
        )

    def recall_request(self, recall_id: str) -> dict[str, object]:
        """The body of POST /recalls for every lot of the product (the operator who issues
        it is the one the token names, not a field)."""
        return {
            "recall_id": recall_id,
            "sku": self.sku,
            "lot_codes": self.lot_codes,
            "reason": "Benchmark: every lot of the product",
            "classification": Classification.I.value,
        }


def recall_workload(run: str, units: int, lots: int, stores: int) -> RecallWorkload:
    if lots < 1 or stores < 1 or units < lots * stores:
        raise ValueError(f"{units} units cannot fill {lots} lots in {stores} stores")
    if units % (lots * stores):
        raise ValueError(f"{units} units do not split evenly over {lots} lots x {stores} stores")
    sku = f"B{run}-RECALLED"
    return RecallWorkload(
        run=run,
        product=ProductRegistered(sku=sku, name="Bench recalled phone", tracking=Tracking.SERIAL),
        lot_codes=[f"LOT{k:03d}" for k in range(lots)],
        stores=[location_code(run, j) for j in range(stores)],
        units_per_receipt=units // (lots * stores),
    )


def average_size(encoded: list[bytes]) -> int:
    """Mean size in bytes of encoded events (the Kafka ceilings use the same size)."""
    return round(sum(len(value) for value in encoded) / max(len(encoded), 1))
