"""How answers look on a terminal: rich tables and timelines, nothing else."""

from __future__ import annotations

from datetime import date, datetime
from typing import Any

from rich.console import Console
from rich.table import Table
from rich.text import Text

console = Console(highlight=False)
errors = Console(stderr=True, highlight=False)

STATUS_STYLE = {
    "in_stock": "green",
    "sold": "cyan",
    "returned": "yellow",
    "missing": "red",
    "written_off": "red",
    "destroyed": "dim",
    "returned_to_supplier": "dim",
}


def error(message: str) -> None:
    errors.print(Text(f"error: {' '.join(message.split())}", style="bold red"), soft_wrap=True)


def done(message: str) -> None:
    console.print(Text(message, style="green"), soft_wrap=True)


def _when(value: Any) -> str:
    if not value:
        return "-"
    try:
        return datetime.fromisoformat(str(value)).strftime("%Y-%m-%d %H:%M:%S")
    except ValueError:
        return str(value)


def _dash(value: Any) -> str:
    return "-" if value is None or value == "" else str(value)


def products(items: list[dict[str, Any]]) -> None:
    if not items:
        console.print("No products.")
        return
    table = Table(title=f"Products ({len(items)})")
    for column in ("SKU", "Name", "Tracking", "GTIN", "Shelf life (days)", "Revision", "Stocked"):
        table.add_column(column)
    for p in items:
        table.add_row(
            p["sku"],
            p["name"],
            p["tracking"],
            _dash(p.get("gtin")),
            _dash(p.get("shelf_life_days")),
            str(p.get("revision", "")),
            "yes" if p.get("has_receipts") else "no",
        )
    console.print(table)


def product(p: dict[str, Any]) -> None:
    gtin = f", GTIN {p['gtin']}" if p.get("gtin") else ""
    revision = f"revision {p['revision']}"
    done(f"Product {p['sku']} ({p['name']}): {p['tracking']} tracking{gtin}, {revision}")


def stock(s: dict[str, Any]) -> None:
    table = Table(
        title=f"Stock of {s['sku']}: {s['on_hand']} on hand, {s['quarantined']} quarantined, "
        f"{s['locations']} location(s)"
    )
    # Units on their way between locations show only when there are some.
    moving = any(lot.get("in_transit") for lot in s["lots"])
    if moving:
        table.title = f"{table.title}, {s.get('in_transit', 0)} in transit"
    for column in ("Location", "Lot", "Expires", "On hand", "Quarantined", "Damaged", "Recall"):
        table.add_column(
            column, justify="right" if column in ("On hand", "Quarantined", "Damaged") else "left"
        )
    if moving:
        table.add_column("In transit", justify="right")
    for lot in sorted(s["lots"], key=lambda x: (x["location"], x.get("lot_code") or "")):
        table.add_row(
            lot["location"],
            _dash(lot.get("lot_code")),
            _dash(lot.get("expires_on")),
            str(lot["on_hand"]),
            Text(str(lot["quarantined"]), style="red" if lot["quarantined"] else ""),
            str(lot["damaged"]),
            _dash(lot.get("recall_id")),
            *([str(lot.get("in_transit", 0))] if moving else []),
        )
    console.print(table)


def expiring_lots(lots: list[dict[str, Any]], days: int, today: date) -> None:
    where = {lot["location"] for lot in lots}
    if not lots:
        console.print(f"No lots on hand expire within {days} day(s).")
        return
    table = Table(
        title=f"Lots expiring within {days} day(s): {len(lots)} lot(s) at {len(where)} location(s)"
    )
    for column in ("Expires", "Days left", "SKU", "Location", "Lot", "On hand"):
        table.add_column(column, justify="right" if column in ("Days left", "On hand") else "left")
    for lot in lots:
        left = (date.fromisoformat(lot["expires_on"]) - today).days
        style = "bold red" if left < 0 else "yellow" if left <= 1 else ""
        table.add_row(
            lot["expires_on"],
            Text("expired" if left < 0 else str(left), style=style),
            lot["sku"],
            lot["location"],
            lot["lot_code"],
            str(lot["on_hand"]),
        )
    console.print(table)


def unit(u: dict[str, Any]) -> None:
    status = u["status"]
    header = Text()
    header.append(f"{u['sku']} / {u['serial']}: ", style="bold")
    header.append(status, style=f"bold {STATUS_STYLE.get(status, '')}")
    header.append(f" at {u['location']}")
    if u.get("lot_code"):
        header.append(f", lot {u['lot_code']}")
        if u.get("lot_expires_on"):
            header.append(f" (expires {u['lot_expires_on']})")
    if u.get("recalled"):
        header.append(f"  RECALLED ({', '.join(u['recall_ids'])})", style="bold red")
    if u.get("in_transit_to"):
        header.append(f"  in transit to {u['in_transit_to']} (transfer {u.get('transfer_id')})")
    console.print(header)
    if u.get("sale_id"):
        customer = f", customer {u['customer_ref']}" if u.get("customer_ref") else ""
        console.print(
            f"Sold in {u['sale_id']} line {u.get('line')} on {_when(u.get('sold_at'))}{customer}"
        )
    warranty_line(u)
    if u.get("digital_link"):
        console.print(f"GS1 Digital Link: {u['digital_link']}")
    table = Table(title="History")
    for column in ("When", "Event", "What", "Ref", "Flags"):
        table.add_column(column)
    for entry in u.get("history", []):
        flags = "; ".join(f"{f['reason']}: {f['detail']}" for f in entry.get("flags", []))
        table.add_row(
            _when(entry["at"]),
            entry["type"],
            entry["what"],
            _dash(entry.get("ref")),
            Text(flags, style="red") if flags else "",
        )
    console.print(table)


WARRANTY_STYLE = {"in_warranty": "green", "expired": "yellow", "none": ""}


def warranty_line(u: dict[str, Any]) -> None:
    """The unit's warranty, and the units it replaced or was replaced by."""
    warranty = u.get("warranty") or {"status": "none"}
    line = Text("Warranty: ")
    status = warranty["status"]
    line.append(status.replace("_", " "), style=f"bold {WARRANTY_STYLE.get(status, '')}")
    if warranty.get("ends_on"):
        verb = "ends" if status == "in_warranty" else "ended"
        line.append(f", {verb} {warranty['ends_on']} ({warranty.get('months')} months from ")
        line.append(f"{warranty.get('starts_on')})")
    console.print(line)
    if u.get("replaces"):
        console.print(f"Replaces serial {u['replaces']} under warranty")
    if u.get("replaced_by"):
        console.print(f"Replaced by serial {u['replaced_by']} under warranty")


def claims(body: dict[str, Any]) -> None:
    items = body.get("claims", [])
    if not items:
        console.print(f"No warranty claims on {body['sku']} / {body['serial']}.")
        return
    table = Table(title=f"Warranty claims on {body['sku']} / {body['serial']}")
    for column in ("Claim", "Kind", "When", "Where", "In warranty", "Replacement", "Override"):
        table.add_column(column)
    for c in items:
        table.add_row(
            c["claim_id"],
            c["kind"],
            _when(c["at"]),
            c["location"],
            "yes" if c["in_warranty"] else "no",
            _dash(c.get("replacement_serial")),
            _dash(c.get("override_reason")),
        )
    console.print(table)


def recalls(items: list[dict[str, Any]]) -> None:
    if not items:
        console.print("No recalls.")
        return
    table = Table(title=f"Recalls ({len(items)})")
    for column in (
        "Recall",
        "SKU",
        "Class",
        "State",
        "Issued",
        "Lots",
        "Serials",
        "Quarantined",
        "To contact",
    ):
        table.add_column(column)
    for r in items:
        progress = r.get("progress", {})
        table.add_row(
            r["recall_id"],
            r["sku"],
            r["classification"],
            r["state"],
            _when(r["issued_at"]),
            ", ".join(r["lot_codes"]) or "-",
            str(len(r["serials"])),
            str(progress.get("quarantined_units", 0)),
            str(progress.get("units_to_contact", 0)),
        )
    console.print(table)


def recall(r: dict[str, Any]) -> None:
    progress = r.get("progress", {})
    console.print(
        Text(f"Recall {r['recall_id']} — class {r['classification']} — {r['state']}", style="bold")
    )
    console.print(f"SKU {r['sku']}: {r['reason']}")
    console.print(
        f"Issued by {r['issued_by']} on {_when(r['issued_at'])}"
        + (f"; closed by {r['closed_by']} on {_when(r['closed_at'])}" if r.get("closed_at") else "")
    )
    if r["lot_codes"]:
        console.print(f"Lots: {', '.join(r['lot_codes'])}")
    if r["serials"]:
        shown = ", ".join(r["serials"][:10]) + (" …" if len(r["serials"]) > 10 else "")
        console.print(f"Serials ({len(r['serials'])}): {shown}")
    console.print(
        f"Quarantined units: {progress.get('quarantined_units', 0)}, "
        f"to contact: {progress.get('units_to_contact', 0)}, "
        f"returned: {progress.get('units_returned', 0)}, "
        f"sold after the recall: {progress.get('units_sold_after_recall', 0)}"
    )
    if accounting := r.get("accounting"):
        console.print(
            f"{accounting['summary'][0].upper()}{accounting['summary'][1:]} "
            f"({accounting['disposed']} disposed of)"
            + ("" if accounting["complete"] else "; closing it needs --reason")
        )
    if r.get("close_reason"):
        console.print(f"Closed because: {r['close_reason']}")
    if "quarantine" not in r:
        return
    _table(
        "Quarantine per store and lot",
        ("Location", "Lot", "Quantity", "Reported"),
        [
            (
                q["location"],
                _dash(q.get("lot_code")),
                str(q["quantity"]),
                _when(q.get("reported_at")),
            )
            for q in r["quarantine"]
        ],
    )
    if r.get("customers_shown") is False:
        console.print(
            "Customers to contact and flagged sales are shown to staff and operators only: "
            "set LOTLINE_OPERATOR_TOKEN or LOTLINE_OPERATOR_TOKEN_FILE to a staff token"
        )
    else:
        _customers(r)
    if r.get("unknown_serials"):
        console.print(f"Serials the registry never saw: {', '.join(r['unknown_serials'])}")


def _customers(r: dict[str, Any]) -> None:
    _table(
        "Customers to contact",
        ("Serial", "Lot", "Sale", "Location", "Sold", "Customer"),
        [
            (
                c["serial"],
                _dash(c.get("lot_code")),
                _dash(c.get("sale_id")),
                _dash(c.get("location")),
                _when(c.get("sold_at")),
                _dash(c.get("customer_ref")),
            )
            for c in r["contacts"]
        ],
    )
    _table(
        "Flagged sales",
        ("Sale", "Line", "Location", "Qty", "Serial", "Lot", "Customer", "Detail"),
        [
            (
                f["sale_id"],
                str(f["line"]),
                f["location"],
                str(f["quantity"]),
                _dash(f.get("serial")),
                _dash(f.get("lot_code")),
                _dash(f.get("customer_ref")),
                f["detail"],
            )
            for f in r["flagged_sales"]
        ],
    )


def _table(title: str, columns: tuple[str, ...], rows: list[tuple[str, ...]]) -> None:
    if not rows:
        console.print(f"{title}: none")
        return
    table = Table(title=f"{title} ({len(rows)})")
    for column in columns:
        table.add_column(column)
    for row in rows:
        table.add_row(*row)
    console.print(table)
