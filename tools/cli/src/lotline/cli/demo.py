"""`lotline demo`: a store day played against a running Lotline, told as it happens."""

from __future__ import annotations

import random
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import Annotated, Any, TypeVar
from urllib.parse import quote

import typer
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    SpinnerColumn,
    TextColumn,
    TimeElapsedColumn,
)
from rich.table import Table

from lotline.cli import views
from lotline.cli.clients import SOURCE, CliError, Services, publish
from lotline.cli.serials import expand_range
from lotline.events import (
    AdjustmentDirection,
    AdjustmentReason,
    ClaimKind,
    CountedLot,
    DisposalMethod,
    EventData,
    ItemReceived,
    ItemSold,
    Lot,
    OutgoingMessage,
    StockAdjusted,
    StockCounted,
    StockDisposed,
    TransferReceived,
    TransferredLot,
    TransferShipped,
    WarrantyClaimed,
    encode,
)

STORES = ("STORE-1", "STORE-2", "STORE-3")
SHELF_SHARE = 0.6  # at most this share of a store's serial units is sold, the rest stays out

T = TypeVar("T")


@dataclass
class Product:
    sku: str
    name: str
    tracking: str
    gtin: str | None = None
    shelf_life_days: int | None = None
    lots: list[tuple[str, date]] = field(default_factory=list)  # (code, expires_on)


@dataclass
class Shelf:
    """What the demo put in one store for one serial product, and what it sold of it."""

    on_shelf: list[str] = field(default_factory=list)
    sold: dict[str, str] = field(default_factory=dict)  # serial -> customer ref
    lot_of: dict[str, str] = field(default_factory=dict)  # serial -> lot code


def gtin13(body12: str) -> str:
    """A GTIN-13 with its GS1 check digit."""
    total = sum(int(d) * (3 if i % 2 else 1) for i, d in enumerate(body12))
    return body12 + str((10 - total % 10) % 10)


def _path(*parts: str) -> str:
    return "/" + "/".join(quote(part, safe="") for part in parts)


def _event_id(key: str) -> uuid.UUID:
    return uuid.uuid5(uuid.NAMESPACE_URL, f"{SOURCE}/demo/{key}")


def _bar() -> Progress:
    return Progress(
        SpinnerColumn(),
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=views.errors,
        transient=True,
        disable=not views.errors.is_terminal,
    )


def _wait(what: str, check: Callable[[], T | None], timeout: float) -> T:
    """Poll `check` until it returns something; a clear error when the time is up."""
    deadline = time.monotonic() + timeout
    with views.errors.status(f"waiting: {what}"):
        while True:
            try:
                found = check()
            except CliError as exc:
                if time.monotonic() >= deadline:
                    raise CliError(
                        f"gave up after {timeout:.0f} s waiting for {what}: {exc}"
                    ) from None
                found = None
            if found is not None:
                return found
            if time.monotonic() >= deadline:
                raise CliError(
                    f"gave up after {timeout:.0f} s waiting for {what}: are all four services "
                    "running and consuming? (see their logs, or raise --timeout)"
                )
            time.sleep(0.5)


def _send(messages: list[OutgoingMessage], what: str) -> float:
    started = time.monotonic()
    with _bar() as bar:
        task = bar.add_task(what, total=len(messages))
        publish(messages, on_sent=lambda _size: bar.advance(task))
    return time.monotonic() - started


def _message(event: EventData, key: str) -> OutgoingMessage:
    return encode(event, source=SOURCE, id=_event_id(key))


class Day:
    def __init__(
        self, services: Services, *, sales: int, serials: int, seed: int | None, timeout: float
    ) -> None:
        self.api = services
        self.sales = sales
        self.serials = serials
        self.timeout = timeout
        self.rng = random.Random(seed)
        self.run = uuid.uuid4().hex[:6].upper()
        self.operator = "?"  # who the recall service says issued the recalls
        self.today = datetime.now(UTC).date()
        self.products: list[Product] = []
        self.received: dict[str, int] = {}
        self.sold: dict[str, int] = {}
        self.stock: dict[tuple[str, str], int] = {}  # (sku, store) -> units on hand (no serials)
        self.shelves: dict[tuple[str, str], Shelf] = {}
        self.last_sold: dict[str, str] = {}  # serial sku -> last serial sold
        self.probes: list[tuple[str, str, str]] = []  # (sku, serial, status) to see settled

    # --- 1. the catalog -------------------------------------------------------------------

    def register(self) -> None:
        number = int(self.run, 16) % 10**10
        specs = [
            ("RICE", "Basmati rice 1 kg", "quantity", None),
            ("SOAP", "Olive soap bar", "quantity", None),
            ("MILK", "Whole milk 1 L", "batch", 21),
            ("ASPIRIN", "Aspirin 500 mg x20", "batch", 720),
            ("PHONE", "Phone X1 128 GB", "serial", None),
            ("EARBUDS", "Earbuds Pro", "serial", None),
        ]
        # The operator who issues the recalls registers the products too (role operator).
        auth = self.api.endpoints.operator_auth(what="registering the demo's products")
        for index, (stem, name, tracking, shelf_life) in enumerate(specs):
            product = Product(f"DEMO-{stem}-{self.run}", name, tracking)
            if tracking != "quantity":
                product.gtin = gtin13(f"2{index}{number:010d}")
            product.shelf_life_days = shelf_life
            body: dict[str, Any] = {"sku": product.sku, "name": name, "tracking": tracking}
            if product.gtin:
                body["gtin"] = product.gtin
            if shelf_life is not None:
                body["shelf_life_days"] = shelf_life
            if tracking == "serial":
                body["warranty_months"] = 24  # for the after-sales desk's claim
            self.api.catalog.call("POST", "/products", json=body, headers=auth)
            self.products.append(product)
        table = Table(title=f"1. Catalog: {len(self.products)} products (run {self.run})")
        for column in ("SKU", "Name", "Tracking", "GTIN", "Shelf life"):
            table.add_column(column)
        for p in self.products:
            table.add_row(p.sku, p.name, p.tracking, p.gtin or "-", str(p.shelf_life_days or "-"))
        views.console.print(table)

    # --- 2. the docks ---------------------------------------------------------------------

    def receive(self) -> None:
        messages: list[OutgoingMessage] = []
        rows: list[tuple[str, str, str, str]] = []
        now = datetime.now(UTC)
        per_store = max(100, self.sales // 3)
        for p in self.products:
            if p.tracking == "batch":
                life = p.shelf_life_days or 30
                p.lots = [
                    (f"L{self.run}{p.sku.split('-')[1][:2]}{n}", self.today + timedelta(days=d))
                    for n, d in enumerate((max(2, life // 4), life // 2, life), start=1)
                ]
                big = max(30, self.sales // 8)
                sizes = (max(10, self.sales // 20), big, big)
            elif p.tracking == "serial":
                p.lots = [
                    (f"B{self.run}{p.sku.split('-')[1][:2]}{n}", self.today + timedelta(days=3650))
                    for n in (1, 2)
                ]
            for s, store in enumerate(STORES, start=1):
                receipt = f"DEMO-RCV-{self.run}-{p.sku.split('-')[1]}-{s}"
                if p.tracking == "quantity":
                    qty = per_store + self.rng.randint(0, 50)
                    self._receipt(messages, p, store, receipt, qty, None, None, now)
                    rows.append((p.sku, store, "-", f"{qty:,} units"))
                elif p.tracking == "batch":
                    for n, ((code, expires), size) in enumerate(zip(p.lots, sizes, strict=True)):
                        qty = size + self.rng.randint(0, 10)
                        lot = Lot(code=code, expires_on=expires)
                        self._receipt(messages, p, store, f"{receipt}-{n}", qty, lot, None, now)
                        rows.append((p.sku, store, f"{code} (expires {expires})", f"{qty:,} units"))
                else:
                    shelf = self.shelves.setdefault((p.sku, store), Shelf())
                    prefix = f"{p.sku.split('-')[1][:2]}{self.run}S{s}-"
                    half = self.serials // 2
                    ranges = [(1, half), (half + 1, self.serials)]
                    for n, ((code, _), (low, high)) in enumerate(zip(p.lots, ranges, strict=True)):
                        if high < low:
                            continue
                        text = f"{prefix}{low:06d}..{prefix}{high:06d}"
                        units = expand_range(text)
                        shelf.on_shelf.extend(units)
                        shelf.lot_of.update(dict.fromkeys(units, code))
                        self.probes.append((p.sku, units[-1], "in_stock"))
                        lot = Lot(code=code)
                        self._receipt(
                            messages, p, store, f"{receipt}-{n}", len(units), lot, units, now
                        )
                        rows.append((p.sku, store, code, f"{len(units):,} serials {text}"))
        seconds = _send(messages, "receipts to Kafka")
        table = Table(
            title=f"2. Receipts: {len(messages)} deliveries, "
            f"{sum(self.received.values()):,} units, sent in {seconds:.1f} s"
        )
        for column in ("SKU", "Store", "Lot", "Received"):
            table.add_column(column)
        for row in rows:
            table.add_row(*row)
        views.console.print(table)

    def _receipt(
        self,
        messages: list[OutgoingMessage],
        p: Product,
        store: str,
        receipt: str,
        qty: int,
        lot: Lot | None,
        units: list[str] | None,
        now: datetime,
    ) -> None:
        event = ItemReceived(
            sku=p.sku,
            receipt_id=receipt,
            location=store,
            quantity=qty,
            lot=lot,
            serials=units,
            supplier="Demo Wholesale",
            received_at=now,
        )
        messages.append(_message(event, f"receipt/{receipt}"))
        self.received[p.sku] = self.received.get(p.sku, 0) + qty
        if units is None:
            self.stock[(p.sku, store)] = self.stock.get((p.sku, store), 0) + qty

    def wait_for_stock(self, what: str) -> None:
        def settled() -> bool | None:
            for p in self.products:
                expected = self.received[p.sku] - self.sold.get(p.sku, 0)
                try:
                    shown = self.api.stock.get(_path("stock", p.sku))
                except CliError:
                    return None
                if shown["on_hand"] + shown["quarantined"] != expected:
                    return None
            for sku, serial, status in self.probes:
                try:
                    unit = self.api.serials.get(_path("units", sku, serial))
                except CliError:
                    return None
                if unit["status"] != status:
                    return None
            return True

        started = time.monotonic()
        _wait(what, settled, self.timeout)
        views.done(f"   stock shows {what} ({time.monotonic() - started:.1f} s)")

    # --- 3. the tills ---------------------------------------------------------------------

    def sell(self) -> None:
        messages: list[OutgoingMessage] = []
        lines: dict[str, int] = {}
        now = datetime.now(UTC)
        fallback = [p for p in self.products if p.tracking != "serial"]
        for n in range(1, self.sales + 1):
            store = self.rng.choice(STORES)
            p = self.rng.choice(self.products)
            sale_id = f"DEMO-{self.run}-{store[-1]}-{n:05d}"
            sold_at = now + timedelta(milliseconds=n)
            serial: str | None = None
            lot: str | None = None  # the till scans the unit's GS1 code: serial and lot
            customer: str | None = None
            qty = 1
            if p.tracking == "serial":
                shelf = self.shelves[(p.sku, store)]
                total = len(shelf.on_shelf) + len(shelf.sold)
                if len(shelf.sold) < int(total * SHELF_SHARE):
                    serial = shelf.on_shelf.pop(self.rng.randrange(len(shelf.on_shelf)))
                    customer = f"CUST-{self.rng.randint(10000, 99999)}"
                    shelf.sold[serial] = customer
                    lot = shelf.lot_of[serial]
                    self.last_sold[p.sku] = serial
                else:
                    p = self.rng.choice(fallback)
            if serial is None:
                qty = self.rng.choice((1, 1, 1, 2, 3))
                qty = min(qty, self.stock[(p.sku, store)])
                if qty == 0:
                    continue
                self.stock[(p.sku, store)] -= qty
            sale = ItemSold(
                sku=p.sku,
                sale_id=sale_id,
                line=1,
                location=store,
                quantity=qty,
                serial=serial,
                lot_code=lot,
                customer_ref=customer,
                sold_at=sold_at,
            )
            messages.append(_message(sale, f"sale/{sale_id}#1"))
            self.sold[p.sku] = self.sold.get(p.sku, 0) + qty
            lines[p.tracking] = lines.get(p.tracking, 0) + 1
        seconds = _send(messages, "sales to Kafka")
        self.probes = [(sku, serial, "sold") for sku, serial in self.last_sold.items()]
        rate = len(messages) / seconds if seconds else 0
        views.console.print(
            f"[bold]3. Sales:[/bold] {len(messages):,} sale lines over {len(STORES)} stores "
            f"({lines.get('quantity', 0):,} counted, {lines.get('batch', 0):,} batch by FEFO, "
            f"{lines.get('serial', 0):,} serialized with customer refs), "
            f"{sum(self.sold.values()):,} units, published in {seconds:.1f} s ({rate:,.0f}/s)"
        )

    # --- 4. the recall --------------------------------------------------------------------

    def recall(self, p: Product, lots: list[str], serials: list[str], reason: str) -> str:
        body = {
            "sku": p.sku,
            "lot_codes": lots,
            "serials": serials,
            "reason": reason,
            "classification": "II",
            "recall_id": f"DEMO-RC-{self.run}-{p.sku.split('-')[1]}",
        }
        headers = {**self.api.endpoints.operator_auth(), "Idempotency-Key": body["recall_id"]}
        issued = self.api.recall.call("POST", "/recalls", json=body, headers=headers)
        self.operator = str(issued["issued_by"])
        return str(issued["recall_id"])

    def recall_lot_on_hand(self, p: Product, lot: str) -> int:
        shown = self.api.stock.get(_path("stock", p.sku))
        return sum(row["on_hand"] for row in shown["lots"] if row.get("lot_code") == lot)

    def wait_for_recall(
        self, recall_id: str, quarantined: int, contacts: int, *, units: bool
    ) -> dict[str, Any]:
        def reached() -> dict[str, Any] | None:
            r = self.api.recall.get(_path("recalls", recall_id))
            progress = r["progress"]
            done = (
                progress["quarantined_units"] >= quarantined
                and progress["units_to_contact"] >= contacts
                and (not units or _answered(progress))
            )
            return r if done else None

        started = time.monotonic()
        r = _wait(
            f"recall {recall_id} to quarantine {quarantined} and list {contacts} contact(s)",
            reached,
            self.timeout,
        )
        views.done(f"   recall {recall_id} followed through ({time.monotonic() - started:.1f} s)")
        return r

    # --- 5. the stock room and the after-sales desk ---------------------------------------

    def operate(self, milk: Product, milk_recall: str, phone: Product, loose: list[str]) -> str:
        """The evening: a transfer of milk between two stores, a count that finds the rice
        short, soap written off, the recalled milk destroyed, a phone repaired under
        warranty. Returns the transfer's id."""
        now = datetime.now(UTC)
        rice = next(p for p in self.products if p.tracking == "quantity")
        soap = [p for p in self.products if p.tracking == "quantity"][1]
        transfer_id = f"DEMO-TRF-{self.run}"
        counted = max(self.stock[(rice.sku, STORES[2])] - 2, 0)
        written_off = min(3, max(self.stock[(soap.sku, STORES[0])], 1))
        held = {
            row["location"]: row["quarantined"]
            for row in self.api.stock.get(_path("stock", milk.sku))["lots"]
            if row.get("lot_code") == milk.lots[1][0] and row["quarantined"] > 0
        }
        where = max(held, key=lambda store: held[store]) if held else STORES[0]
        destroyed = held.get(where, 0)
        ops: list[EventData] = [
            TransferShipped(
                sku=milk.sku,
                transfer_id=transfer_id,
                location=STORES[0],
                to_location=STORES[1],
                lots=[TransferredLot(quantity=5)],
                shipped_by="demo",
                shipped_at=now,
            ),
            StockCounted(
                sku=rice.sku,
                count_id=f"DEMO-CNT-{self.run}",
                location=STORES[2],
                lots=[CountedLot(quantity=counted)],
                counted_by="demo",
                counted_at=now,
            ),
            StockAdjusted(
                sku=soap.sku,
                adjustment_id=f"DEMO-ADJ-{self.run}",
                location=STORES[0],
                quantity=written_off,
                direction=AdjustmentDirection.OUT,
                reason=AdjustmentReason.DAMAGED,
                adjusted_at=now,
            ),
        ]
        if destroyed:
            ops.append(
                StockDisposed(
                    sku=milk.sku,
                    disposal_id=f"DEMO-DSP-{self.run}",
                    location=where,
                    lot_code=milk.lots[1][0],
                    quantity=destroyed,
                    method=DisposalMethod.DESTROYED,
                    reference=f"DEMO-CERT-{self.run}",
                    recall_id=milk_recall,
                    disposed_at=now,
                )
            )
        _send([_message(e, f"store-ops/{e.fact_key}") for e in ops], "store operations to Kafka")

        def transfer(status: str) -> Callable[[], dict[str, Any] | None]:
            def check() -> dict[str, Any] | None:
                view = self.api.stock.get(_path("transfers", transfer_id))
                return view if view["skus"][0]["status"] == status else None

            return check

        shipped = _wait(f"transfer {transfer_id} in transit", transfer("in_transit"), self.timeout)
        picked = ", ".join(
            f"{line['quantity']} of {line['lot_code'] or 'no lot'}"
            for line in shipped["skus"][0]["shipped"]
        )
        arrival = TransferReceived(
            sku=milk.sku,
            transfer_id=transfer_id,
            location=STORES[1],
            lots=[TransferredLot(quantity=5)],
            received_by="demo",
            received_at=datetime.now(UTC),
        )
        _send([_message(arrival, f"store-ops/{arrival.fact_key}")], "the transfer's receipt")
        _wait(f"transfer {transfer_id} received", transfer("received"), self.timeout)

        # A phone sold this morning, outside the recall, comes back to the desk.
        sold = [
            (serial, store)
            for store in STORES
            for serial, _ in self.shelves[(phone.sku, store)].sold.items()
            if self.shelves[(phone.sku, store)].lot_of[serial] == phone.lots[1][0]
            and serial not in loose
        ]
        claim_rows: list[tuple[str, str, str, str]] = []
        if sold:
            serial, store = sold[0]
            claim = WarrantyClaimed(
                sku=phone.sku,
                claim_id=f"DEMO-WTY-{self.run}",
                serial=serial,
                location=store,
                kind=ClaimKind.REPAIR,
                problem="Screen flickers",
                claimed_by="demo",
                claimed_at=datetime.now(UTC),
            )
            _send([_message(claim, f"after-sales/{claim.fact_key}")], "the warranty claim")

            def repaired() -> bool | None:
                claims = self.api.serials.get(_path("units", phone.sku, serial, "claims"))
                return True if claims["claims"] else None

            _wait(f"the warranty claim on {serial}", repaired, self.timeout)
            claim_rows.append(
                ("Warranty claim", store, f"{phone.sku} {serial}", "repair, in warranty")
            )

        def accounted() -> bool | None:
            if not destroyed:
                return True
            r = self.api.recall.get(_path("recalls", milk_recall))
            return True if r["accounting"]["disposed"] >= destroyed else None

        _wait(f"recall {milk_recall} to account for the disposal", accounted, self.timeout)
        table = Table(title="5. The stock room and the after-sales desk")
        for column in ("What", "Where", "Product", "Result"):
            table.add_column(column)
        table.add_row(
            "Transfer", f"{STORES[0]} -> {STORES[1]}", milk.sku, f"5 shipped ({picked}), received"
        )
        table.add_row("Count", STORES[2], rice.sku, f"{counted} found, 2 short (variance -2)")
        table.add_row("Write-off", STORES[0], soap.sku, f"{written_off} damaged")
        if destroyed:
            table.add_row(
                "Disposal",
                where,
                milk.sku,
                f"{destroyed} of recalled lot {milk.lots[1][0]} destroyed",
            )
        for row in claim_rows:
            table.add_row(*row)
        views.console.print(table)
        return transfer_id


def _answered(progress: dict[str, Any]) -> bool:
    answer = progress.get("units_answer") or {}
    return bool(answer.get("complete"))


def play(services: Services, *, sales: int, serials: int, seed: int | None, timeout: float) -> None:
    day = Day(services, sales=sales, serials=serials, seed=seed, timeout=timeout)
    views.console.print(
        f"[bold]Lotline demo[/bold] run {day.run}: {len(STORES)} stores, {sales:,} sales, "
        f"{serials} serials per serial product per store"
        + (f", seed {seed}" if seed is not None else "")
    )
    day.register()
    day.receive()
    day.wait_for_stock("every receipt")
    day.sell()
    day.wait_for_stock("every sale")

    # The phone's first production batch is faulty, and a handful of units from the second.
    phone = next(p for p in day.products if p.tracking == "serial")
    phone_lot = phone.lots[0][0]
    shelves = [day.shelves[(phone.sku, store)] for store in STORES]
    second = phone.lots[1][0]
    sold_b = [s for sh in shelves for s in sh.sold if sh.lot_of[s] == second][:3]
    shelf_b = [s for sh in shelves for s in sh.on_shelf if sh.lot_of[s] == second][:3]
    loose = sold_b + shelf_b
    sold_in_scope = [s for sh in shelves for s in sh.sold if sh.lot_of[s] == phone_lot]
    phone_quarantine = day.recall_lot_on_hand(phone, phone_lot)
    # The milk's middle lot, on the shelves now that FEFO has sold through the first.
    milk = next(p for p in day.products if p.tracking == "batch")
    milk_lot = milk.lots[1][0]
    milk_quarantine = day.recall_lot_on_hand(milk, milk_lot)

    phone_recall = day.recall(phone, [phone_lot], loose, "Battery may overheat while charging")
    milk_recall = day.recall(milk, [milk_lot], [], "Possible Listeria contamination")
    views.console.print(
        f"[bold]4. Recalls[/bold] issued by {day.operator!r}: {phone_recall} ({phone.sku}: lot "
        f"{phone_lot} + {len(loose)} serials, {len(sold_b)} of them sold) and {milk_recall} "
        f"({milk.sku}: lot {milk_lot})"
    )
    contacts = len(sold_in_scope) + len(sold_b)
    r_phone = day.wait_for_recall(phone_recall, phone_quarantine, contacts, units=True)
    r_milk = day.wait_for_recall(milk_recall, milk_quarantine, 0, units=False)

    summary(day, phone, phone_lot, r_phone)
    summary(day, milk, milk_lot, r_milk)
    transfer_id = day.operate(milk, milk_recall, phone, loose)
    where_to_look(services, phone, r_phone, milk, loose)
    views.console.print(f"  lotline transfer show {transfer_id}", soft_wrap=True)


def summary(day: Day, p: Product, lot: str, r: dict[str, Any]) -> None:
    progress = r["progress"]
    views.console.print(
        f"[bold]Recall {r['recall_id']}[/bold] ({p.sku}): "
        f"quarantined units: [red]{progress['quarantined_units']}[/red], "
        f"customers to contact: [red]{progress['units_to_contact']}[/red]"
    )
    shown = day.api.stock.get(_path("stock", p.sku))
    table = Table(title=f"Stock of lot {lot} of {p.sku} per store")
    for column in ("Store", "On hand", "Quarantined", "Recall"):
        table.add_column(column, justify="left" if column in ("Store", "Recall") else "right")
    for row in sorted(shown["lots"], key=lambda x: x["location"]):
        if row.get("lot_code") == lot:
            table.add_row(
                row["location"],
                str(row["on_hand"]),
                f"[red]{row['quarantined']}[/red]",
                row.get("recall_id") or "-",
            )
    views.console.print(table)
    contacts = r.get("contacts", [])
    if not contacts:
        return
    table = Table(title=f"Customers to contact ({len(contacts)}, first 8)")
    for column in ("Customer", "Serial", "Lot", "Store", "Sale"):
        table.add_column(column)
    for c in contacts[:8]:
        table.add_row(
            c.get("customer_ref") or "-",
            c["serial"],
            c.get("lot_code") or "-",
            c.get("location") or "-",
            c.get("sale_id") or "-",
        )
    views.console.print(table)


def where_to_look(
    services: Services, phone: Product, r: dict[str, Any], milk: Product, loose: list[str]
) -> None:
    recall_id = r["recall_id"]
    sold = r.get("contacts", [])
    serial = sold[0]["serial"] if sold else (loose[0] if loose else "")
    views.console.print("[bold]Where to look[/bold]")
    for line in (
        f"lotline recall show {recall_id}",
        f"lotline stock {phone.sku}",
        f"lotline stock {milk.sku}",
        f"lotline unit {phone.sku} {serial}",
        f"{services.recall.base_url}/recalls/{quote(recall_id, safe='')}",
        f"recall console: {services.recall.base_url}/console/recalls/{quote(recall_id, safe='')}",
        f"API docs: {services.catalog.base_url}/docs  {services.stock.base_url}/docs  "
        f"{services.serials.base_url}/docs  {services.recall.base_url}/docs",
    ):
        views.console.print(f"  {line}", soft_wrap=True)


def demo(
    sales: Annotated[
        int, typer.Option("--sales", min=1, help="Sale lines to ring up over the stores")
    ] = 3000,
    serials_per_product: Annotated[
        int,
        typer.Option(
            "--serials-per-product",
            min=2,
            max=100_000,
            help="Serials each store receives of each serial product",
        ),
    ] = 300,
    seed: Annotated[
        int | None, typer.Option("--seed", help="Play the same day again (same choices)")
    ] = None,
    timeout: Annotated[
        float, typer.Option("--timeout", min=1, help="Seconds to wait for each step to show")
    ] = 120.0,
) -> None:
    """Play a store day against the running Lotline: products, receipts at three stores,
    thousands of sales, a recall, and where to look at the result."""
    play(Services(), sales=sales, serials=serials_per_product, seed=seed, timeout=timeout)
