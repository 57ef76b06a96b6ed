"""`lotline trace`: where a lot or a unit came from and where it is now, on a terminal or to
files (EPCIS 2.0 JSON-LD, FSMA-style CSV), as the recall service assembles it."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import quote

import httpx
import typer
from rich.table import Table
from rich.text import Text

from lotline.cli.clients import CliError, Services, error_message
from lotline.cli.views import console

trace_app = typer.Typer(
    help="Trace a lot or a unit: origin, where every unit is now, and every event.",
    no_args_is_help=True,
)

KIND_STYLE = {
    "received": "green",
    "refused": "magenta",
    "sold": "cyan",
    "sale_attributed": "cyan",
    "returned": "yellow",
    "recalled": "bold red",
    "quarantined": "red",
}

EpcisOpt = Annotated[
    Path | None,
    typer.Option("--epcis", help="Also write the trace as an EPCIS 2.0 document (JSON-LD)"),
]
CsvOpt = Annotated[
    Path | None,
    typer.Option("--csv", help="Also write the trace as a sortable CSV, one row per event"),
]


def _path(*parts: str) -> str:
    return "/" + "/".join(quote(part, safe="") for part in parts)


def _fetch_text(services: Services, path: str) -> str:
    api = services.recall
    try:
        with httpx.Client(timeout=api.timeout, headers=api.headers) as client:
            response = client.get(f"{api.base_url}{path}")
    except httpx.TransportError:
        raise CliError(
            f"cannot reach the {api.name} at {api.base_url}: is `make run` running?"
        ) from None
    if response.status_code >= 400:
        raise CliError(f"the {api.name} said: {error_message(response)}")
    return response.text


def _write(target: Path, text: str, what: str) -> None:
    try:
        target.write_text(text, encoding="utf-8")
    except OSError as exc:
        raise CliError(f"cannot write {what} to {target}: {exc.strerror or exc}") from None
    console.print(Text(f"{what} written to {target}", style="green"))


def _exports(services: Services, path: str, epcis: Path | None, csv: Path | None) -> None:
    if epcis is not None:
        document = services.recall.get(f"{path}/epcis")
        _write(epcis, json.dumps(document, indent=2) + "\n", "EPCIS 2.0 document")
    if csv is not None:
        _write(csv, _fetch_text(services, f"{path}/csv"), "CSV")


def _when(value: str) -> str:
    return value[:19].replace("T", " ")


def _timeline(events: list[dict[str, Any]]) -> None:
    table = Table(title=f"Timeline ({len(events)} events)")
    for column in ("When", "Event", "Store", "Qty", "Document", "Customer", "Detail"):
        table.add_column(column, justify="right" if column == "Qty" else "left")
    for e in events:
        detail = e.get("detail") or e.get("supplier") or e.get("return_reason") or ""
        if e.get("serials"):
            shown = ", ".join(e["serials"][:3]) + (" …" if len(e["serials"]) > 3 else "")
            detail = f"{detail} [{shown}]".strip()
        line = f"#{e['line']}" if e.get("line") is not None else ""
        table.add_row(
            _when(e["at"]),
            Text(e["kind"], style=KIND_STYLE.get(e["kind"], "")),
            e.get("location") or "-",
            str(e["quantity"]),
            f"{e['document_type']} {e['document_id']}{line}",
            e.get("customer_ref") or "-",
            detail,
        )
    console.print(table)


def _product_line(product: dict[str, Any]) -> str:
    name = f" {product['name']}" if product.get("name") else ""
    gtin = f", GTIN {product['gtin']}" if product.get("gtin") else ""
    return f"{product['sku']}{name}{gtin}"


def show_lot(trace: dict[str, Any]) -> None:
    header = Text()
    header.append(f"Lot {trace['lot_code']} of {_product_line(trace['product'])}", style="bold")
    if trace.get("expires_on"):
        header.append(f", expires {trace['expires_on']}")
    for r in trace.get("recalls", []):
        header.append(
            f"  RECALLED {r['recall_id']} (class {r['classification']})", style="bold red"
        )
    console.print(header)
    t = trace["totals"]
    console.print(
        f"Received {t['received']}, sold {t['sold']}, returned {t['returned']}; now "
        f"{t['on_hand']} on hand, {t['quarantined']} quarantined, {t['damaged']} damaged"
    )
    if trace["stores"]:
        stores = Table(title="Per store")
        for column in ("Store", "Received", "Sold", "Returned", "On hand", "Quarantined"):
            stores.add_column(column, justify="left" if column == "Store" else "right")
        for s in trace["stores"]:
            stores.add_row(
                s["location"],
                *(str(s[k]) for k in ("received", "sold", "returned", "on_hand")),
                Text(str(s["quarantined"]), style="red" if s["quarantined"] else ""),
            )
        console.print(stores)
    if trace.get("unit_counts"):
        counts = ", ".join(f"{n} {status}" for status, n in sorted(trace["unit_counts"].items()))
        console.print(f"Serial units: {counts}")
    _timeline(trace["events"])


def show_unit(trace: dict[str, Any]) -> None:
    header = Text()
    header.append(f"{trace['serial']} of {_product_line(trace['product'])}: ", style="bold")
    header.append(f"{trace['status']} at {trace['location']}", style="bold")
    if trace.get("lot_code"):
        header.append(f", lot {trace['lot_code']}")
    if trace.get("recalled"):
        header.append(f"  RECALLED ({', '.join(trace['recall_ids'])})", style="bold red")
    console.print(header)
    if trace.get("digital_link"):
        console.print(f"GS1 Digital Link: {trace['digital_link']}")
    _timeline(trace["events"])
    console.print(Text("Event ids: " + ", ".join(
        e["source_event"] for e in trace["events"] if e.get("source_event")
    ), style="dim"), soft_wrap=True)  # fmt: skip


@trace_app.command("lot", help="Where a lot came from and where every unit of it is now.")
def trace_lot(
    sku: Annotated[str, typer.Argument(help="The product's SKU", show_default=False)],
    lot: Annotated[str, typer.Argument(help="The lot code", show_default=False)],
    epcis: EpcisOpt = None,
    csv: CsvOpt = None,
) -> None:
    services = Services()
    path = _path("trace", "lots", sku, lot)
    show_lot(services.recall.get(path))
    _exports(services, path, epcis, csv)


@trace_app.command("unit", help="A serial unit's life, receipt to sale to return.")
def trace_unit(
    sku: Annotated[str, typer.Argument(help="The product's SKU", show_default=False)],
    serial: Annotated[str, typer.Argument(help="The unit's serial number", show_default=False)],
    epcis: EpcisOpt = None,
) -> None:
    services = Services()
    path = _path("trace", "units", sku, serial)
    show_unit(services.recall.get(path))
    _exports(services, path, epcis, None)
