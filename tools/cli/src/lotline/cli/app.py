"""The `lotline` command: typer wiring, options and one-line errors."""

from __future__ import annotations

import os
import sys
import uuid
from collections.abc import Iterator, Sequence
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import quote

import typer
from pydantic import BaseModel, ValidationError
from rich.progress import BarColumn, DownloadColumn, Progress, TextColumn, TimeRemainingColumn
from typer.core import TyperGroup

from lotline.cli import demo as demo_module
from lotline.cli import views
from lotline.cli.clients import SOURCE, CliError, Services, publish
from lotline.cli.scan import Scan, ScanError, parse_scan
from lotline.cli.serials import SerialsError, check_distinct, parse_serials, read_serials
from lotline.cli.trace import trace_app
from lotline.events import (
    ClaimKind,
    Classification,
    EventData,
    ItemReceived,
    ItemReturned,
    ItemSold,
    Lot,
    ReturnReason,
    Tracking,
    WarrantyClaimed,
    encode,
)

LARGE_RECEIPT = 10_000  # serials from which a progress bar is worth showing


class OneLineErrors(TyperGroup):
    """Every failure ends as one red line on stderr and a non-zero exit, never a traceback."""

    def main(  # type: ignore[override]
        self,
        args: Sequence[str] | None = None,
        prog_name: str | None = None,
        complete_var: str | None = None,
        standalone_mode: bool = True,
        **extra: Any,
    ) -> Any:
        try:
            result = super().main(
                args=args,
                prog_name=prog_name or "lotline",
                complete_var=complete_var,
                standalone_mode=False,
                **extra,
            )
        except typer.Abort:
            views.error("aborted")
            sys.exit(130)
        except typer.TyperException as exc:  # bad options and arguments, unknown commands
            formatted = getattr(exc, "format_message", None)
            message = str(formatted() if formatted else exc).replace("Value error, ", "")
            context = getattr(exc, "ctx", None)
            hint = f" (see `{context.command_path} --help`)" if context is not None else ""
            if message:  # empty after `lotline` alone: the help was shown
                views.error(f"{message}{hint}")
            sys.exit(getattr(exc, "exit_code", 2))
        except (CliError, SerialsError, ScanError) as exc:
            views.error(str(exc))
            sys.exit(1)
        except Exception as exc:
            if os.environ.get("LOTLINE_DEBUG"):
                raise
            views.error(f"unexpected {type(exc).__name__}: {exc} (LOTLINE_DEBUG=1 shows details)")
            sys.exit(1)
        sys.exit(result if isinstance(result, int) else 0)


def _help(text: str) -> dict[str, Any]:
    return {"help": text, "context_settings": {"help_option_names": ["-h", "--help"]}}


app = typer.Typer(
    cls=OneLineErrors,
    name="lotline",
    help="Lotline from the command line: products, deliveries, sales, returns, stock, "
    "serialized units and recalls. Every command has --help.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)
products_app = typer.Typer(
    help="Products in the catalog: add one, list them.", no_args_is_help=True
)
recall_app = typer.Typer(help="Recalls: issue one, follow it, close it.", no_args_is_help=True)
app.add_typer(products_app, name="products")
app.add_typer(recall_app, name="recall")
app.add_typer(trace_app, name="trace")
warranty_app = typer.Typer(
    help="Warranty: take a claim on a sold unit, list a unit's claims.", no_args_is_help=True
)
app.add_typer(warranty_app, name="warranty")

# --- options shared by several commands ---------------------------------------------------

SkuArg = Annotated[
    str | None,
    typer.Argument(help="The product's SKU (leave out when you give --scan)", show_default=False),
]
LocationOpt = Annotated[
    str, typer.Option("--location", "-l", help="Store or warehouse code, e.g. STORE-12")
]
ScanOpt = Annotated[
    str | None,
    typer.Option(
        "--scan",
        help="The scanned GS1 barcode: (01)…(10)…(17)…(21)… or https://id.gs1.org/01/…; "
        "gives the product, lot, expiry and serial",
    ),
]
LotOpt = Annotated[str | None, typer.Option("--lot", help="Lot or batch code on the pack")]
SerialOpt = Annotated[str | None, typer.Option("--serial", help="Serial number (IMEI) of the unit")]

OPTION_OF_FIELD = {
    "sku": "SKU",
    "location": "--location",
    "quantity": "--quantity",
    "lot": "--lot",
    "lot_code": "--lot",
    "serials": "--serials",
    "serial": "--serial",
    "receipt_id": "--receipt-id",
    "supplier": "--supplier",
    "sale_id": "--sale-id",
    "return_id": "--return-id",
    "line": "--line",
    "customer_ref": "--customer",
    "claim_id": "--claim-id",
    "replacement_serial": "--replacement",
    "override_reason": "--override",
    "problem": "--problem",
}


def _event(model: type[BaseModel], **fields: Any) -> Any:
    """Build an event, turning the contract's complaint into one line naming the option."""
    try:
        return model(**fields)
    except ValidationError as exc:
        first = exc.errors(include_url=False)[0]
        loc = [str(part) for part in first["loc"]]
        problem = first["msg"].removeprefix("Value error, ")
        if not loc:  # a rule across fields: the contract's sentence says it all
            raise CliError(problem) from None
        option = OPTION_OF_FIELD.get(loc[0], loc[0])
        if option == "--serials" and len(loc) > 1:
            problem = f"serial number {int(loc[1]) + 1}: {problem}"
        raise CliError(f"{option}: {problem}") from None


def _event_id(kind: str, key: str) -> uuid.UUID:
    """The same receipt, sale or return line always gets the same event id: a retry is
    dropped as a duplicate by the services."""
    return uuid.uuid5(uuid.NAMESPACE_URL, f"{SOURCE}/{kind}/{key}")


def _new_id(prefix: str) -> str:
    return f"{prefix}-{datetime.now(UTC):%Y%m%d%H%M%S}-{uuid.uuid4().hex[:6].upper()}"


def _scanned(services: Services, sku: str | None, code: str | None) -> tuple[str, Scan | None]:
    if code is None:
        if not sku:
            raise CliError("give the product's SKU or scan it with --scan")
        return sku, None
    scan = parse_scan(code)
    return services.sku_of_gtin(scan.gtin, sku or None), scan


def _agree(option: str, given: str | None, scanned: str | None) -> str | None:
    if given and scanned and given != scanned:
        raise CliError(f"{option} {given!r} differs from the scanned {scanned!r}")
    return given or scanned


def _parse_day(option: str, value: str | None) -> date | None:
    if value is None:
        return None
    try:
        return date.fromisoformat(value)
    except ValueError:
        raise CliError(f"{option}: {value!r} is not a date; write YYYY-MM-DD") from None


def _read_serials_file(path: Path, option: str) -> list[str]:
    try:
        size = path.stat().st_size
        with path.open(encoding="utf-8") as handle:
            if size < LARGE_RECEIPT * 8:
                return read_serials(handle, option)
            with _progress() as progress:
                task = progress.add_task(f"reading {path.name}", total=size)

                def lines() -> Iterator[str]:
                    for line in handle:
                        progress.advance(task, len(line.encode()))
                        yield line

                return read_serials(lines(), option)
    except OSError as exc:
        raise CliError(f"{option}: cannot read {path}: {exc.strerror or exc}") from None
    except UnicodeDecodeError:
        raise CliError(f"{option}: {path} is not a text file") from None


def _progress() -> Progress:
    return Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        DownloadColumn(),
        TimeRemainingColumn(),
        console=views.errors,
        transient=True,
        disable=not views.errors.is_terminal,
    )


def _send(event: EventData, event_id: uuid.UUID) -> None:
    message = encode(event, source=SOURCE, id=event_id)
    if len(message.value) < LARGE_RECEIPT * 16:
        publish([message])
        return
    with _progress() as progress:
        task = progress.add_task("sending to Kafka", total=len(message.value))
        publish([message], on_sent=lambda sent: progress.advance(task, sent))


# --- products -------------------------------------------------------------------------------

TokenOpt = Annotated[
    str | None,
    typer.Option(
        "--token",
        envvar="LOTLINE_OPERATOR_TOKEN",
        help="The operator's token (else $LOTLINE_OPERATOR_TOKEN, else the token file "
        "$LOTLINE_OPERATOR_TOKEN_FILE or the one `make run` writes); it says who is acting",
        show_default=False,
    ),
]


@products_app.command("add", **_help("Register a new product in the catalog."))
def products_add(
    sku: Annotated[
        str, typer.Argument(help="The product's SKU, e.g. PHONE-X1", show_default=False)
    ],
    name: Annotated[str, typer.Option("--name", "-n", help="The product's name")],
    tracking: Annotated[
        Tracking,
        typer.Option(
            "--tracking",
            "-t",
            help="serial = every unit has a serial number (phones); batch = lots with expiry "
            "(milk, medicine); quantity = just counted (groceries)",
            case_sensitive=False,
        ),
    ],
    gtin: Annotated[
        str | None, typer.Option("--gtin", help="Barcode number (GTIN-8/12/13/14)")
    ] = None,
    shelf_life_days: Annotated[
        int | None, typer.Option("--shelf-life-days", min=0, help="Days it keeps, if it expires")
    ] = None,
    warranty_months: Annotated[
        int | None,
        typer.Option("--warranty-months", min=0, help="Warranty from the sale, in months"),
    ] = None,
    token: TokenOpt = None,
) -> None:
    body: dict[str, Any] = {"sku": sku, "name": name, "tracking": tracking.value}
    if gtin is not None:
        body["gtin"] = gtin
    if shelf_life_days is not None:
        body["shelf_life_days"] = shelf_life_days
    if warranty_months is not None:
        body["warranty_months"] = warranty_months
    services = Services()
    headers = services.endpoints.operator_auth(token, "adding a product")
    views.product(services.catalog.call("POST", "/products", json=body, headers=headers))


@products_app.command("list", **_help("List the catalog's products."))
def products_list(
    tracking: Annotated[
        Tracking | None,
        typer.Option(
            "--tracking", "-t", help="Only products tracked this way", case_sensitive=False
        ),
    ] = None,
) -> None:
    views.products(Services().all_products(tracking.value if tracking else None))


# --- the dock and the till --------------------------------------------------------------------


@app.command(
    "receive",
    **_help(
        "Book goods that arrived at a store or warehouse. Give --lot (and --expires) for batch "
        "items, serial numbers for serialized items (--serials IMEI-000100..IMEI-001099 or "
        "--serials-file), or scan the barcode with --scan."
    ),
)
def receive(
    sku: SkuArg = None,
    location: LocationOpt = ...,  # type: ignore[assignment]
    quantity: Annotated[
        int | None,
        typer.Option(
            "--quantity", "-q", min=1, help="Units received (defaults to the number of serials)"
        ),
    ] = None,
    lot: LotOpt = None,
    expires: Annotated[
        str | None, typer.Option("--expires", help="The lot's expiry date, YYYY-MM-DD")
    ] = None,
    serials: Annotated[
        list[str] | None,
        typer.Option(
            "--serials",
            help="Serial numbers: one, a comma-separated list, or a range FIRST..LAST "
            "(zero padding kept); may be repeated",
        ),
    ] = None,
    serials_file: Annotated[
        Path | None,
        typer.Option("--serials-file", help="A text file with one serial (or range) per line"),
    ] = None,
    receipt_id: Annotated[
        str | None,
        typer.Option("--receipt-id", help="The delivery note number (made up if left out)"),
    ] = None,
    supplier: Annotated[str | None, typer.Option("--supplier", help="Who delivered")] = None,
    scan: ScanOpt = None,
) -> None:
    services = Services()
    sku, scanned = _scanned(services, sku, scan)
    expires_on = _parse_day("--expires", expires)
    units: list[str] | None = None
    if serials and serials_file:
        raise CliError("give --serials or --serials-file, not both")
    if serials:
        units = parse_serials(serials, "--serials")
    elif serials_file:
        units = _read_serials_file(serials_file, "--serials-file")
    if scanned:
        lot = _agree("--lot", lot, scanned.lot)
        if expires_on and scanned.expires_on and expires_on != scanned.expires_on:
            raise CliError(f"--expires {expires_on} differs from the scanned {scanned.expires_on}")
        expires_on = expires_on or scanned.expires_on
        if scanned.serial:
            units = check_distinct([*(units or []), scanned.serial], "--serials")
    if expires_on and not lot:
        raise CliError("--expires needs --lot: the expiry belongs to a lot")
    if quantity is None:
        if units is None and not scanned:
            raise CliError("--quantity: say how many units arrived (or give their serials)")
        quantity = len(units) if units is not None else 1
    receipt_id = receipt_id or _new_id("RCV")
    event = _event(
        ItemReceived,
        sku=sku,
        receipt_id=receipt_id,
        location=location,
        quantity=quantity,
        lot=_event(Lot, code=lot, expires_on=expires_on) if lot else None,
        serials=units,
        supplier=supplier,
        received_at=datetime.now(UTC),
    )
    _send(event, _event_id("receipt", receipt_id))
    what = f"{event.quantity:,} unit(s) of {sku}"
    if event.lot:
        expiry = f", expires {event.lot.expires_on}" if event.lot.expires_on else ""
        what += f", lot {event.lot.code}{expiry}"
    if event.serials:
        what += f", serials {event.serials[0]}" + (
            f" … {event.serials[-1]}" if len(event.serials) > 1 else ""
        )
    views.done(f"Received {what} at {location} (receipt {receipt_id}).")


@app.command("sell", **_help("Record a sale line from a till (or scan the item with --scan)."))
def sell(
    sku: SkuArg = None,
    location: LocationOpt = ...,  # type: ignore[assignment]
    quantity: Annotated[int, typer.Option("--quantity", "-q", min=1, help="Units sold")] = 1,
    serial: SerialOpt = None,
    lot: LotOpt = None,
    customer: Annotated[
        str | None, typer.Option("--customer", help="Customer reference, for recalls")
    ] = None,
    sale_id: Annotated[
        str | None,
        typer.Option("--sale-id", help="The receipt number of the sale (made up if left out)"),
    ] = None,
    line: Annotated[int, typer.Option("--line", min=1, help="Line number on the sale")] = 1,
    scan: ScanOpt = None,
) -> None:
    sku, scanned = _scanned(Services(), sku, scan)
    if scanned:
        serial = _agree("--serial", serial, scanned.serial)
        lot = _agree("--lot", lot, scanned.lot)
    sale_id = sale_id or _new_id("SALE")
    event = _event(
        ItemSold,
        sku=sku,
        sale_id=sale_id,
        line=line,
        location=location,
        quantity=quantity,
        serial=serial,
        lot_code=lot,
        customer_ref=customer,
        sold_at=datetime.now(UTC),
    )
    _send(event, _event_id("sale", f"{sale_id}#{line}"))
    what = f"serial {serial}" if serial else f"{quantity} unit(s)"
    lot_text = f", lot {lot}" if lot else ""
    views.done(f"Sold {what} of {sku}{lot_text} at {location} (sale {sale_id}, line {line}).")


@app.command("return", **_help("Take back an item a customer returned."))
def return_(
    sku: SkuArg = None,
    location: LocationOpt = ...,  # type: ignore[assignment]
    reason: Annotated[
        ReturnReason,
        typer.Option(
            "--reason",
            help="customer = changed their mind; recall = returned because of a recall; "
            "damaged = broken, not for sale again",
            case_sensitive=False,
        ),
    ] = ...,  # type: ignore[assignment]
    quantity: Annotated[int, typer.Option("--quantity", "-q", min=1, help="Units returned")] = 1,
    serial: SerialOpt = None,
    lot: LotOpt = None,
    sale_id: Annotated[
        str | None, typer.Option("--sale-id", help="The original sale's receipt number")
    ] = None,
    return_id: Annotated[
        str | None, typer.Option("--return-id", help="The return's number (made up if left out)")
    ] = None,
    line: Annotated[int, typer.Option("--line", min=1, help="Line number on the return")] = 1,
    scan: ScanOpt = None,
) -> None:
    sku, scanned = _scanned(Services(), sku, scan)
    if scanned:
        serial = _agree("--serial", serial, scanned.serial)
        lot = _agree("--lot", lot, scanned.lot)
    return_id = return_id or _new_id("RET")
    event = _event(
        ItemReturned,
        sku=sku,
        return_id=return_id,
        line=line,
        sale_id=sale_id,
        location=location,
        quantity=quantity,
        serial=serial,
        lot_code=lot,
        reason=reason,
        returned_at=datetime.now(UTC),
    )
    _send(event, _event_id("return", f"{return_id}#{line}"))
    what = f"serial {serial}" if serial else f"{quantity} unit(s)"
    views.done(f"Returned {what} of {sku} at {location} ({reason.value}; return {return_id}).")


# --- looking things up ----------------------------------------------------------------------


def _path(*parts: str) -> str:
    return "/" + "/".join(quote(part, safe="") for part in parts)


class StockCommands(TyperGroup):
    """`lotline stock SKU` stays the short way to `lotline stock show SKU`."""

    # typer vendors its own click, whose types it does not export: hence Any.
    def resolve_command(self, ctx: Any, args: list[str]) -> tuple[str | None, Any, list[str]]:
        if args and args[0] not in self.commands and not args[0].startswith("-"):
            args = ["show", *args]
        return super().resolve_command(ctx, args)


stock_app = typer.Typer(
    cls=StockCommands,
    help="Stock: a product's per location and lot (`lotline stock SKU`), lots near expiry.",
    no_args_is_help=True,
)
app.add_typer(stock_app, name="stock")


@stock_app.command("show", **_help("Show a product's stock per location and lot."))
def stock(
    sku: Annotated[str, typer.Argument(help="The product's SKU", show_default=False)],
) -> None:
    views.stock(Services().stock.get(_path("stock", sku)))


@stock_app.command(
    "expiring", **_help("List lots on hand that expire within --days, in every store.")
)
def stock_expiring(
    days: Annotated[
        int, typer.Option("--days", "-d", min=0, max=3650, help="Expiring within this many days")
    ] = 7,
    location: Annotated[
        str | None, typer.Option("--location", "-l", help="Only this store or warehouse")
    ] = None,
) -> None:
    lots = Services().stock.get("/lots/expiring", days=days, location=location)
    views.expiring_lots(lots, days, datetime.now(UTC).date())


@app.command(
    "unit", **_help("Show one serialized unit: where it is and everything that happened to it.")
)
def unit(
    sku: Annotated[str, typer.Argument(help="The product's SKU", show_default=False)],
    serial: Annotated[
        str, typer.Argument(help="The unit's serial number (IMEI)", show_default=False)
    ],
) -> None:
    views.unit(Services().serials.get(_path("units", sku, serial)))


# --- warranty -------------------------------------------------------------------------------


@warranty_app.command(
    "claim",
    **_help(
        "Take a warranty claim on a sold unit (or scan it with --scan): repair, replacement "
        "or refund. The serial registry refuses one outside warranty unless --override says why."
    ),
)
def warranty_claim(
    sku: SkuArg = None,
    location: LocationOpt = ...,  # type: ignore[assignment]
    kind: Annotated[
        ClaimKind,
        typer.Option(
            "--kind",
            help="repair = fixed and given back; replacement = another unit in stock here "
            "(--replacement); refund = money back, the unit taken back",
            case_sensitive=False,
        ),
    ] = ...,  # type: ignore[assignment]
    serial: SerialOpt = None,
    replacement: Annotated[
        str | None,
        typer.Option("--replacement", help="Replacements: the serial of the unit given instead"),
    ] = None,
    override: Annotated[
        str | None,
        typer.Option("--override", help="Why the claim is granted outside warranty"),
    ] = None,
    problem: Annotated[str | None, typer.Option("--problem", help="What is wrong")] = None,
    claimed_by: Annotated[str | None, typer.Option("--by", help="Who took the claim")] = None,
    claim_id: Annotated[
        str | None, typer.Option("--claim-id", help="The claim's number (made up if left out)")
    ] = None,
    scan: ScanOpt = None,
) -> None:
    sku, scanned = _scanned(Services(), sku, scan)
    if scanned:
        serial = _agree("--serial", serial, scanned.serial)
    if not serial:
        raise CliError("give the unit's --serial or scan it with --scan")
    claim_id = claim_id or _new_id("WC")
    event = _event(
        WarrantyClaimed,
        sku=sku,
        claim_id=claim_id,
        serial=serial,
        location=location,
        kind=kind,
        replacement_serial=replacement,
        problem=problem,
        override_reason=override,
        claimed_by=claimed_by,
        claimed_at=datetime.now(UTC),
    )
    _send(event, _event_id("warranty-claim", f"{sku} {claim_id}"))
    swap = f", replaced by {replacement}" if replacement else ""
    views.done(
        f"Warranty claim {claim_id} ({kind.value}) on serial {serial} of {sku} at {location}"
        f"{swap} sent; `lotline warranty claims {sku} {serial}` shows it once applied."
    )


@warranty_app.command("claims", **_help("List the warranty claims taken on one unit."))
def warranty_claims(
    sku: Annotated[str, typer.Argument(help="The product's SKU", show_default=False)],
    serial: Annotated[
        str, typer.Argument(help="The unit's serial number (IMEI)", show_default=False)
    ],
) -> None:
    views.claims(Services().serials.get(_path("units", sku, serial) + "/claims"))


# --- recalls --------------------------------------------------------------------------------


@recall_app.command(
    "issue",
    **_help("Recall lots and/or serial units of a product: every store quarantines them."),
)
def recall_issue(
    sku: Annotated[str, typer.Argument(help="The product's SKU", show_default=False)],
    reason: Annotated[str, typer.Option("--reason", help="Why, in words customers understand")],
    classification: Annotated[
        Classification,
        typer.Option(
            "--class",
            help="I = can cause serious harm; II = may cause harm; III = unlikely to harm",
        ),
    ],
    lots: Annotated[
        list[str] | None, typer.Option("--lot", help="A recalled lot code; may be repeated")
    ] = None,
    serials: Annotated[
        list[str] | None,
        typer.Option("--serial", help="A recalled serial or range FIRST..LAST; may be repeated"),
    ] = None,
    serials_file: Annotated[
        Path | None, typer.Option("--serials-file", help="A file with one recalled serial per line")
    ] = None,
    token: TokenOpt = None,
    recall_id: Annotated[
        str | None, typer.Option("--recall-id", help="Your own recall number (made up if left out)")
    ] = None,
) -> None:
    units = parse_serials(serials or [], "--serial")
    if serials_file:
        units = check_distinct(
            [*units, *_read_serials_file(serials_file, "--serials-file")], "--serial"
        )
    if not lots and not units:
        raise CliError("name what is recalled: --lot, --serial or --serials-file")
    body: dict[str, Any] = {
        "sku": sku,
        "lot_codes": lots or [],
        "serials": units,
        "reason": reason,
        "classification": classification.value,
    }
    if recall_id:
        body["recall_id"] = recall_id
    services = Services()
    headers = {
        **services.endpoints.operator_auth(token),
        "Idempotency-Key": recall_id or uuid.uuid4().hex,
    }
    issued = services.recall.call("POST", "/recalls", json=body, headers=headers)
    views.done(f"Recall {issued['recall_id']} issued for {sku}; stores are being told.")
    views.recall(issued)


@recall_app.command("list", **_help("List recalls, newest first."))
def recall_list(
    state: Annotated[
        str | None, typer.Option("--state", help="open or closed", show_default=False)
    ] = None,
    sku: Annotated[str | None, typer.Option("--sku", help="Only this product's recalls")] = None,
) -> None:
    if state not in (None, "open", "closed"):
        raise CliError(f"--state: {state!r} is not one of 'open', 'closed'")
    api = Services().recall
    items: list[dict[str, Any]] = []
    after: str | None = None
    while True:
        page = api.get("/recalls", state=state, sku=sku, after=after, limit=200)
        items.extend(page["items"])
        if (after := page.get("next_after")) is None:
            break
    views.recalls(items)


@recall_app.command(
    "show",
    **_help("Show a recall: quarantine per store and lot, customers to contact, flagged sales."),
)
def recall_show(
    recall_id: Annotated[str, typer.Argument(help="The recall's id", show_default=False)],
) -> None:
    views.recall(Services().recall.get(_path("recalls", recall_id)))


@recall_app.command("close", **_help("Close a recall once everything is dealt with."))
def recall_close(
    recall_id: Annotated[str, typer.Argument(help="The recall's id", show_default=False)],
    reason: Annotated[
        str | None,
        typer.Option(help="Why close it though not every unit is accounted for (then required)"),
    ] = None,
    token: TokenOpt = None,
) -> None:
    services = Services()
    closed = services.recall.call(
        "POST",
        _path("recalls", recall_id) + "/close",
        json={"reason": reason} if reason else None,
        headers=services.endpoints.operator_auth(token),
    )
    views.done(f"Recall {closed['recall_id']} closed by {closed['closed_by']}.")


app.command(
    "demo",
    **_help(
        "Play a store day against the running Lotline: products, receipts at three stores, "
        "thousands of sales, a recall; then shows where to look."
    ),
)(demo_module.demo)


# The stock room's commands live in their own module, built on the helpers above.
from lotline.cli import store_ops, transfers  # noqa: E402, F401


def main() -> None:
    app()
