"""`lotline count`, `adjust`, `dispose`, `stock reorder-point` and `stock low`: the stock room's
own operations, published as the `store-ops` principal (the contract's publisher of them)."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table

from lotline.cli import views
from lotline.cli.app import (
    OPTION_OF_FIELD,
    LocationOpt,
    LotOpt,
    ScanOpt,
    SkuArg,
    _agree,
    _event,
    _event_id,
    _help,
    _new_id,
    _read_serials_file,
    _scanned,
    _send,
    app,
    stock_app,
)
from lotline.cli.clients import CliError, Services
from lotline.cli.scan import parse_scan
from lotline.cli.serials import check_distinct, parse_serials
from lotline.events import (
    AdjustmentDirection,
    AdjustmentReason,
    CountedLot,
    DisposalMethod,
    ReorderPointSet,
    StockAdjusted,
    StockCounted,
    StockDisposed,
)

OPTION_OF_FIELD.update(
    {
        "count_id": "--count-id",
        "lots": "--lot",
        "adjustment_id": "--adjustment-id",
        "disposal_id": "--disposal-id",
        "reference": "--reference",
        "recall_id": "--recall",
        "note": "--note",
        "reorder_point": "--point",
        "counted_by": "--by",
        "set_by": "--by",
    }
)

SerialsOpt = Annotated[
    list[str] | None,
    typer.Option(
        "--serials",
        help="Serial numbers: one, a comma-separated list, or a range FIRST..LAST; may be repeated",
    ),
]
SerialsFileOpt = Annotated[
    Path | None,
    typer.Option("--serials-file", help="A text file with one serial (or range) per line"),
]
ByOpt = Annotated[str | None, typer.Option("--by", help="Who did it (name or badge)")]


def _serials(serials: list[str] | None, serials_file: Path | None) -> list[str] | None:
    if serials and serials_file:
        raise CliError("give --serials or --serials-file, not both")
    if serials:
        return parse_serials(serials, "--serials")
    if serials_file:
        return _read_serials_file(serials_file, "--serials-file")
    return None


# --- counting ---------------------------------------------------------------------------------


def _lot_counts(values: list[str]) -> dict[str | None, int]:
    """`--lot L1=7` (repeatable): the units found of each lot."""
    counted: dict[str | None, int] = {}
    for value in values:
        code, sep, number = value.rpartition("=")
        if not sep or not code:
            raise CliError(f"--lot: {value!r} is not LOT=UNITS, e.g. --lot L1=7")
        try:
            units = int(number)
        except ValueError:
            raise CliError(f"--lot: {value!r}: {number!r} is not a number of units") from None
        if units < 0:
            raise CliError(f"--lot: {value!r}: units found cannot be negative")
        if code in counted:
            raise CliError(f"--lot: lot {code} is counted twice")
        counted[code] = units
    return counted


@app.command(
    "count",
    **_help(
        "Record a physical count of a product at a location: its on-hand becomes what was "
        "found, per lot (--lot L1=7, repeatable; a lot not named was not found), units whose "
        "lot was not read (--quantity), or every serial found (--serials); or scan each item "
        "on the shelf with --scan (repeatable)."
    ),
)
def count(
    sku: SkuArg = None,
    location: LocationOpt = ...,  # type: ignore[assignment]
    lot: Annotated[
        list[str] | None,
        typer.Option("--lot", help="LOT=UNITS found of one lot, e.g. L1=7; may be repeated"),
    ] = None,
    quantity: Annotated[
        int | None,
        typer.Option(
            "--quantity", "-q", min=0, help="Units found whose lot was not read (0: none found)"
        ),
    ] = None,
    serials: SerialsOpt = None,
    serials_file: SerialsFileOpt = None,
    count_id: Annotated[
        str | None,
        typer.Option("--count-id", help="The count sheet's number (made up if left out)"),
    ] = None,
    counted_by: ByOpt = None,
    scan: Annotated[
        list[str] | None,
        typer.Option(
            "--scan",
            help="A scanned GS1 barcode per item found (its lot and serial are counted); "
            "may be repeated",
        ),
    ] = None,
) -> None:
    services = Services()
    scans = [parse_scan(code) for code in scan or []]
    if scans:
        skus = {services.sku_of_gtin(s.gtin, sku or None) for s in scans}
        if len(skus) > 1:
            raise CliError(f"--scan: the scanned items are different products ({', '.join(skus)})")
        sku = skus.pop()
    elif not sku:
        raise CliError("give the product's SKU or scan the items with --scan")
    units = _serials(serials, serials_file)
    counted = _lot_counts(lot or [])
    for item in scans:
        code = item.lot
        if units is not None or item.serial:
            units = [*(units or []), *([item.serial] if item.serial else [])]
        counted[code] = counted.get(code, 0) + 1
    if units is not None and not scans:
        # Serials found: all of the one lot named, else of lots not read.
        if len(counted) > 1 or quantity is not None:
            raise CliError("--serials: give them with one --lot LOT (or none), not --quantity")
        code = next(iter(counted), None)
        counted = {code: len(units)}
    elif quantity is not None:
        counted[None] = counted.get(None, 0) + quantity
    if units is not None:
        units = check_distinct(units, "--serials")
    if not counted:
        raise CliError("say what was found: --lot LOT=UNITS, --quantity, --serials or --scan")
    count_id = count_id or _new_id("CNT")
    event = _event(
        StockCounted,
        sku=sku,
        count_id=count_id,
        location=location,
        lots=[CountedLot(lot_code=code, quantity=n) for code, n in counted.items()],
        serials=units,
        counted_by=counted_by,
        counted_at=datetime.now(UTC),
    )
    _send(event, _event_id("count", f"{sku} {location} {count_id}"))
    found = ", ".join(
        f"{n} of lot {code}" if code else f"{n} without a lot read" for code, n in counted.items()
    )
    views.done(
        f"Counted {event.quantity} unit(s) of {sku} at {location} ({found}; count {count_id}); "
        f"`lotline stock {sku}` shows the new on-hand once applied."
    )


# --- adjusting and disposing ------------------------------------------------------------------


@app.command(
    "adjust",
    **_help(
        "Change on-hand outside a sale or receipt: write units off (damaged, expired, theft, "
        "sample, other) or book units found; or scan the item with --scan."
    ),
)
def adjust(
    sku: SkuArg = None,
    location: LocationOpt = ...,  # type: ignore[assignment]
    reason: Annotated[
        AdjustmentReason,
        typer.Option(
            "--reason",
            help="damaged, expired, theft, sample, other (written off) or found (added)",
            case_sensitive=False,
        ),
    ] = ...,  # type: ignore[assignment]
    quantity: Annotated[
        int | None,
        typer.Option("--quantity", "-q", min=1, help="Units (defaults to the serials, or 1)"),
    ] = None,
    direction: Annotated[
        AdjustmentDirection | None,
        typer.Option(
            "--direction",
            help="out = off on-hand, in = added (default: in for found, out otherwise)",
            case_sensitive=False,
        ),
    ] = None,
    lot: LotOpt = None,
    serials: SerialsOpt = None,
    serials_file: SerialsFileOpt = None,
    note: Annotated[str | None, typer.Option("--note", help="What happened")] = None,
    adjustment_id: Annotated[
        str | None,
        typer.Option("--adjustment-id", help="The adjustment's number (made up if left out)"),
    ] = None,
    scan: ScanOpt = None,
) -> None:
    sku, scanned = _scanned(Services(), sku, scan)
    units = _serials(serials, serials_file)
    if scanned:
        lot = _agree("--lot", lot, scanned.lot)
        if scanned.serial:
            units = check_distinct([*(units or []), scanned.serial], "--serials")
    if quantity is None:
        quantity = len(units) if units else 1
    if direction is None:
        found = reason is AdjustmentReason.FOUND
        direction = AdjustmentDirection.IN if found else AdjustmentDirection.OUT
    adjustment_id = adjustment_id or _new_id("ADJ")
    event = _event(
        StockAdjusted,
        sku=sku,
        adjustment_id=adjustment_id,
        location=location,
        quantity=quantity,
        direction=direction,
        reason=reason,
        lot_code=lot,
        serials=units,
        note=note,
        adjusted_at=datetime.now(UTC),
    )
    _send(event, _event_id("adjustment", f"{sku} {location} {adjustment_id}"))
    verb = "Added" if direction is AdjustmentDirection.IN else "Wrote off"
    lot_text = f", lot {lot}" if lot else ""
    views.done(
        f"{verb} {quantity} unit(s) of {sku}{lot_text} at {location} "
        f"({reason.value}; adjustment {adjustment_id})."
    )


@app.command(
    "dispose",
    **_help(
        "Record that quarantined stock (recalled, or returned to quarantine) left for good: "
        "destroyed, or sent back to the supplier, under a reference; or scan it with --scan."
    ),
)
def dispose(
    sku: SkuArg = None,
    location: LocationOpt = ...,  # type: ignore[assignment]
    method: Annotated[
        DisposalMethod,
        typer.Option(
            "--method",
            help="destroyed, or returned_to_supplier",
            case_sensitive=False,
        ),
    ] = ...,  # type: ignore[assignment]
    reference: Annotated[
        str,
        typer.Option(
            "--reference", help="The destruction certificate or the supplier's return number"
        ),
    ] = ...,  # type: ignore[assignment]
    quantity: Annotated[
        int | None,
        typer.Option("--quantity", "-q", min=1, help="Units (defaults to the serials, or 1)"),
    ] = None,
    lot: LotOpt = None,
    serials: SerialsOpt = None,
    serials_file: SerialsFileOpt = None,
    recall: Annotated[
        str | None, typer.Option("--recall", help="The recall this disposal clears, if any")
    ] = None,
    disposal_id: Annotated[
        str | None,
        typer.Option("--disposal-id", help="The disposal's number (made up if left out)"),
    ] = None,
    scan: ScanOpt = None,
) -> None:
    sku, scanned = _scanned(Services(), sku, scan)
    units = _serials(serials, serials_file)
    if scanned:
        lot = _agree("--lot", lot, scanned.lot)
        if scanned.serial:
            units = check_distinct([*(units or []), scanned.serial], "--serials")
    if quantity is None:
        quantity = len(units) if units else 1
    disposal_id = disposal_id or _new_id("DSP")
    event = _event(
        StockDisposed,
        sku=sku,
        disposal_id=disposal_id,
        location=location,
        lot_code=lot,
        quantity=quantity,
        serials=units,
        method=method,
        reference=reference,
        recall_id=recall,
        disposed_at=datetime.now(UTC),
    )
    _send(event, _event_id("disposal", f"{sku} {location} {disposal_id}"))
    lot_text = f", lot {lot}" if lot else ""
    what = "destroyed" if method is DisposalMethod.DESTROYED else "returned to the supplier"
    for_recall = f" for recall {recall}" if recall else ""
    views.done(
        f"Disposed of {quantity} unit(s) of {sku}{lot_text} at {location}: {what}{for_recall} "
        f"(reference {event.reference}; disposal {disposal_id})."
    )


# --- reorder points and low stock -------------------------------------------------------------


@stock_app.command(
    "reorder-point",
    **_help(
        "Set the on-hand below which a product is reordered at a location (--point), or "
        "clear it (--clear); falling below it publishes stock-low once per crossing."
    ),
)
def reorder_point(
    sku: Annotated[str, typer.Argument(help="The product's SKU", show_default=False)],
    location: LocationOpt = ...,  # type: ignore[assignment]
    point: Annotated[
        int | None, typer.Option("--point", "-p", min=0, help="Reorder below this many units")
    ] = None,
    clear: Annotated[bool, typer.Option("--clear", help="Remove the reorder point")] = False,
    set_by: ByOpt = None,
) -> None:
    if (point is None) == (not clear):
        raise CliError("give --point UNITS, or --clear to remove the reorder point")
    set_at = datetime.now(UTC)
    event = _event(
        ReorderPointSet,
        sku=sku,
        location=location,
        reorder_point=point,
        set_by=set_by,
        set_at=set_at,
    )
    # Each setting is its own fact (the latest wins), so its id carries its time.
    _send(event, _event_id("reorder-point", f"{sku} {location} {set_at.isoformat()}"))
    if point is None:
        views.done(f"Cleared the reorder point of {sku} at {location}.")
    else:
        views.done(f"Reorder point of {sku} at {location} set to {point} unit(s).")


@stock_app.command("low", **_help("List the products below their reorder point, per location."))
def stock_low(
    location: Annotated[
        str | None, typer.Option("--location", "-l", help="Only this store or warehouse")
    ] = None,
) -> None:
    low_stock(Services().stock.get("/levels/low", location=location))


def low_stock(items: list[dict[str, Any]]) -> None:
    if not items:
        views.console.print("No product is below its reorder point.")
        return
    table = Table(title=f"Below the reorder point ({len(items)})")
    for column in ("SKU", "Location", "On hand", "Reorder point", "Short"):
        table.add_column(column)
    for item in sorted(items, key=lambda i: (i["location"], i["sku"])):
        table.add_row(
            item["sku"],
            item["location"],
            str(item["on_hand"]),
            str(item["reorder_point"]),
            str(item["reorder_point"] - item["on_hand"]),
        )
    views.console.print(table)
