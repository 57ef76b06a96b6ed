"""`lotline transfer ship`, `receive` and `show`: goods moved between two locations, published
as the `store-ops` principal (the contract's publisher of transfers); `show` reads stock's
account of a transfer (shipped against received, per lot and serial)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any

import typer
from rich.table import Table

from lotline.cli import views
from lotline.cli.app import OPTION_OF_FIELD, _event, _event_id, _help, _new_id, _send, app
from lotline.cli.clients import CliError, Services
from lotline.cli.scan import parse_scan
from lotline.cli.serials import check_distinct
from lotline.cli.store_ops import ByOpt, SerialsFileOpt, SerialsOpt, _lot_counts, _serials
from lotline.events import TransferReceived, TransferShipped

OPTION_OF_FIELD.update(
    {
        "transfer_id": "--transfer-id",
        "to_location": "--to",
        "shipped_by": "--by",
        "received_by": "--by",
    }
)

transfer_app = typer.Typer(
    help="Transfers between locations: ship goods, receive them, see the difference.",
    no_args_is_help=True,
)
app.add_typer(transfer_app, name="transfer")

SkuArg = Annotated[
    str | None,
    typer.Argument(help="The product's SKU (leave out when you give --scan)", show_default=False),
]
LotsOpt = Annotated[
    list[str] | None,
    typer.Option("--lot", help="LOT=UNITS of one lot, e.g. L1=7; may be repeated"),
]
ScansOpt = Annotated[
    list[str] | None,
    typer.Option(
        "--scan",
        help="A scanned GS1 barcode per item (its lot and serial are taken); may be repeated",
    ),
]
TransferIdOpt = Annotated[
    str | None,
    typer.Option("--transfer-id", "-t", help="The transfer's number (made up if left out)"),
]


def _lines(
    services: Services,
    sku: str | None,
    lot: list[str] | None,
    quantity: int | None,
    serials: list[str] | None,
    scan: list[str] | None,
) -> tuple[str, dict[str | None, int], list[str] | None]:
    """The SKU, the units per lot (None: lot not named) and the serials, from the options
    or the scanned items (each scan is one item)."""
    scans = [parse_scan(code) for code in scan or []]
    if scans:
        skus = {services.sku_of_gtin(s.gtin, sku or None) for s in scans}
        if len(skus) > 1:
            raise CliError(f"--scan: the scanned items are different products ({', '.join(skus)})")
        sku = skus.pop()
    elif not sku:
        raise CliError("give the product's SKU or scan the items with --scan")
    lots = _lot_counts(lot or [])
    units = serials
    for item in scans:
        if units is not None or item.serial:
            units = [*(units or []), *([item.serial] if item.serial else [])]
        lots[item.lot] = lots.get(item.lot, 0) + 1
    if serials is not None and not scans:
        # Serials: all of the one lot named, else of lots not named.
        if len(lots) > 1 or quantity is not None:
            raise CliError("--serials: give them with one --lot LOT (or none), not --quantity")
        lots = {next(iter(lots), None): len(serials)}
    elif quantity is not None:
        lots[None] = lots.get(None, 0) + quantity
    if units is not None:
        units = check_distinct(units, "--serials")
    return sku, lots, units


@transfer_app.command(
    "ship",
    **_help(
        "Ship goods of a product from one location to another: per lot (--lot L1=7, "
        "repeatable), units of any lot (--quantity: stock picks them first expiry first), "
        "serial units (--serials), or scan each item with --scan (repeatable). They are in "
        "transit until `lotline transfer receive`."
    ),
)
def ship(
    sku: SkuArg = None,
    source: Annotated[
        str, typer.Option("--from", help="Where the goods leave from, e.g. STORE-12")
    ] = ...,  # type: ignore[assignment]
    destination: Annotated[
        str, typer.Option("--to", help="Where they are going, e.g. STORE-14")
    ] = ...,  # type: ignore[assignment]
    lot: LotsOpt = None,
    quantity: Annotated[
        int | None,
        typer.Option("--quantity", "-q", min=1, help="Units of no named lot (picked FEFO)"),
    ] = None,
    serials: SerialsOpt = None,
    serials_file: SerialsFileOpt = None,
    transfer_id: TransferIdOpt = None,
    shipped_by: ByOpt = None,
    scan: ScansOpt = None,
) -> None:
    sku, lots, units = _lines(Services(), sku, lot, quantity, _serials(serials, serials_file), scan)
    if not lots:
        raise CliError("say what is shipped: --lot LOT=UNITS, --quantity, --serials or --scan")
    transfer_id = transfer_id or _new_id("TRF")
    event = _event(
        TransferShipped,
        sku=sku,
        transfer_id=transfer_id,
        location=source,
        to_location=destination,
        # Plain data, so the contract's complaint about a lot names --lot.
        lots=[{"lot_code": code, "quantity": n} for code, n in lots.items()],
        serials=units,
        shipped_by=shipped_by,
        shipped_at=datetime.now(UTC),
    )
    _send(event, _event_id("transfer-shipped", f"{sku} {transfer_id}"))
    views.done(
        f"Shipped {event.quantity} unit(s) of {sku} from {source} to {destination} "
        f"(transfer {transfer_id}); `lotline transfer show {transfer_id}` follows it."
    )


@transfer_app.command(
    "receive",
    **_help(
        "Receive a transfer's goods of a product at a location: what arrived, per lot "
        "(--lot L1=7), units whose lot was not read (--quantity), serial units (--serials), "
        "or scan each item with --scan. What was shipped and is not listed did not arrive."
    ),
)
def receive(
    sku: SkuArg = None,
    location: Annotated[
        str, typer.Option("--at", "--location", "-l", help="Where the goods arrived")
    ] = ...,  # type: ignore[assignment]
    transfer_id: Annotated[
        str, typer.Option("--transfer-id", "-t", help="The transfer's number (on its papers)")
    ] = ...,  # type: ignore[assignment]
    lot: LotsOpt = None,
    quantity: Annotated[
        int | None,
        typer.Option("--quantity", "-q", min=0, help="Units whose lot was not read (0: none)"),
    ] = None,
    serials: SerialsOpt = None,
    serials_file: SerialsFileOpt = None,
    received_by: ByOpt = None,
    scan: ScansOpt = None,
) -> None:
    sku, lots, units = _lines(Services(), sku, lot, quantity, _serials(serials, serials_file), scan)
    if not lots and quantity is None:
        raise CliError(
            "say what arrived: --lot LOT=UNITS, --quantity (0: nothing), --serials or --scan"
        )
    event = _event(
        TransferReceived,
        sku=sku,
        transfer_id=transfer_id,
        location=location,
        lots=[{"lot_code": code, "quantity": n} for code, n in lots.items() if n],
        serials=units,
        received_by=received_by,
        received_at=datetime.now(UTC),
    )
    _send(event, _event_id("transfer-received", f"{sku} {transfer_id}"))
    views.done(
        f"Received {event.quantity} unit(s) of {sku} at {location} (transfer {transfer_id}); "
        f"`lotline transfer show {transfer_id}` shows any difference once applied."
    )


@transfer_app.command("show", **_help("Show a transfer: shipped against received, per lot."))
def show(
    transfer_id: Annotated[str, typer.Argument(help="The transfer's number", show_default=False)],
) -> None:
    transfer_view(Services().stock.get(f"/transfers/{transfer_id}"))


def _lot(code: str | None) -> str:
    return code if code is not None else "(no lot)"


def transfer_view(view: dict[str, Any]) -> None:
    for part in view["skus"]:
        shipped = {line["lot_code"]: line["quantity"] for line in part.get("shipped") or []}
        received = {line["lot_code"]: line["quantity"] for line in part.get("received") or []}
        route = f"{part.get('from_location') or '?'} -> {part.get('to_location') or '?'}"
        table = Table(
            title=f"Transfer {view['transfer_id']}, {part['sku']}: {route}, {part['status']}"
        )
        for column in ("Lot", "Shipped", "Received", "Difference"):
            table.add_column(column, justify="left" if column == "Lot" else "right")
        for code in [*shipped, *(c for c in received if c not in shipped)]:
            diff = received.get(code, 0) - shipped.get(code, 0)
            table.add_row(
                _lot(code),
                str(shipped.get(code, 0)) if part.get("shipped") is not None else "-",
                str(received.get(code, 0)) if part.get("received") is not None else "-",
                f"{diff:+d}"
                if part.get("shipped") is not None and part.get("received") is not None and diff
                else "",
            )
        views.console.print(table)
        if part.get("received_location") and part["received_location"] != part.get("to_location"):
            views.console.print(f"Received at {part['received_location']}, not where it was sent.")
        if part.get("serials_missing"):
            views.console.print(
                f"Serials shipped, not received: {', '.join(part['serials_missing'])}"
            )
        if part.get("serials_unexpected"):
            views.console.print(
                f"Serials received, not shipped: {', '.join(part['serials_unexpected'])}"
            )
