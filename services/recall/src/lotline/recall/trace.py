"""Lot and unit traces, assembled over HTTP from the services that own each part.

The catalog knows the product (name, GTIN), stock the lot's receipts, sales, returns and
quarantines per store, the serial registry the units and each unit's history; this service
adds its recalls. No service's database is read but this one's. Served as JSON, as an
EPCIS 2.0 document and as an FSMA-style CSV.

Customer references are in a trace only for a caller whose Bearer token may read them (staff
or operator); that caller's token is passed on to the serial registry, which applies the
same rule. Anyone else gets the trace with every customer reference left out.
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Annotated, Any, TypeVar
from urllib.parse import quote

import httpx
from fastapi import APIRouter, Depends, HTTPException, Path, Request, Response
from fastapi.responses import JSONResponse

from lotline.events.models import LotCode, Serial, Sku
from lotline.recall import epcis, fsma
from lotline.recall.store import RecallStore
from lotline.recall.timeline import (
    LotTrace,
    ProductInfo,
    RecallRef,
    UnitTrace,
    assemble_lot,
    assemble_unit,
    recalls_of_lot,
)
from lotline.runtime.auth import NO_STORE, Caller, may_read_personal_data
from lotline.runtime.settings import Settings, get_settings


def _no_store(response: Response) -> None:
    response.headers.update(NO_STORE)


router = APIRouter(prefix="/trace", tags=["trace"], dependencies=[Depends(_no_store)])

# The registry serves a lot's units in pages of at most this many.
UNITS_PAGE = 1000
TIMEOUT_S = 30.0

SkuPath = Annotated[Sku, Path(description="The product's SKU")]
LotPath = Annotated[LotCode, Path(description="The lot code")]
SerialPath = Annotated[Serial, Path(description="The unit's serial")]


class Upstream:
    """One service this one asks for its part; its failures become clear 502/503 answers."""

    def __init__(self, name: str, base_url: str, client: httpx.AsyncClient) -> None:
        self.name = name
        self.base_url = base_url.rstrip("/")
        self.client = client

    async def get(self, path: str, **params: Any) -> Any | None:
        """The JSON at `path`, or None when the service has no such thing (404)."""
        url = f"{self.base_url}{path}"
        try:
            response = await self.client.get(url, params=params or None)
        except httpx.HTTPError as exc:
            raise HTTPException(
                503,
                f"the {self.name} at {self.base_url} did not answer ({type(exc).__name__}); "
                "the trace would be incomplete",
                headers={"Retry-After": "5"},
            ) from None
        if response.status_code == 404:
            return None
        if response.status_code != 200:
            raise HTTPException(502, f"the {self.name} answered {response.status_code} for {path}")
        return response.json()


class Sources:
    def __init__(
        self, settings: Settings, client: httpx.AsyncClient, customers: bool = False
    ) -> None:
        self.catalog = Upstream("catalog service", settings.catalog_url, client)
        self.stock = Upstream("stock service", settings.stock_url, client)
        self.serials = Upstream("serial registry", settings.serials_url, client)
        self.customers = customers  # whether the caller may see customer references


async def sources(request: Request, caller: Caller) -> AsyncIterator[Sources]:
    customers = may_read_personal_data(caller)
    # The caller's own token, so the registry answers them as it would answer them directly.
    headers = {"Authorization": request.headers["Authorization"]} if customers else {}
    async with httpx.AsyncClient(timeout=TIMEOUT_S, headers=headers) as client:
        yield Sources(get_settings(), client, customers)


Trace = TypeVar("Trace", LotTrace, UnitTrace)


def without_customers(trace: Trace) -> Trace:
    """The trace with every customer reference left out (counts and events stay)."""
    update: dict[str, Any] = {
        "events": [e.model_copy(update={"customer_ref": None}) for e in trace.events]
    }
    if isinstance(trace, LotTrace) and trace.units is not None:
        update["units"] = [u.model_copy(update={"customer_ref": None}) for u in trace.units]
    if isinstance(trace, UnitTrace):
        update["customer_ref"] = None
    return trace.model_copy(update=update)


def recall_store(request: Request) -> RecallStore:
    store: RecallStore = request.app.state.recall_store
    return store


SourcesDep = Annotated[Sources, Depends(sources)]
StoreDep = Annotated[RecallStore, Depends(recall_store)]


def _p(value: str) -> str:
    return quote(value, safe="")


async def _product(sources: Sources, sku: str) -> ProductInfo:
    found = await sources.catalog.get(f"/products/{_p(sku)}")
    if found is None:
        return ProductInfo(sku=sku)
    return ProductInfo(
        sku=sku, name=found.get("name"), gtin=found.get("gtin"), tracking=found.get("tracking")
    )


async def _lot_units(sources: Sources, sku: str, lot_code: str) -> list[dict[str, Any]] | None:
    units: list[dict[str, Any]] = []
    while True:
        page = await sources.serials.get(
            f"/lots/{_p(sku)}/{_p(lot_code)}/units", limit=UNITS_PAGE, skip=len(units)
        )
        if page is None:
            return units or None
        units.extend(page["units"])
        if not page["units"] or len(units) >= page["matched"]:
            return units


async def lot_trace(sources: Sources, store: RecallStore, sku: str, lot_code: str) -> LotTrace:
    product = await _product(sources, sku)
    stock = await sources.stock.get(f"/lots/{_p(sku)}/{_p(lot_code)}/trace")
    units = None
    if product.tracking in (None, "serial"):
        units = await _lot_units(sources, sku, lot_code)
    recalls = recalls_of_lot(
        (await store.recalls_by_sku([sku])).get(sku, []),
        lot_code,
        (u["serial"] for u in units or ()),
    )
    if stock is None and units is None and not recalls:
        raise HTTPException(404, f"nothing is known of lot {lot_code!r} of sku {sku!r}")
    trace = assemble_lot(sku, lot_code, product, stock, units, recalls)
    return trace if sources.customers else without_customers(trace)


async def unit_trace(sources: Sources, store: RecallStore, sku: str, serial: str) -> UnitTrace:
    unit = await sources.serials.get(f"/units/{_p(sku)}/{_p(serial)}")
    if unit is None:
        raise HTTPException(404, f"no unit with serial {serial!r} of sku {sku!r} is registered")
    product = await _product(sources, sku)
    found = await store.recalls_by_id(unit.get("recall_ids", []))
    recalls = [RecallRef.of(r) for r in sorted(found.values(), key=lambda r: r.issued_at)]
    trace = assemble_unit(unit, product, recalls)
    return trace if sources.customers else without_customers(trace)


def _filename(*parts: str) -> str:
    return "-".join(re.sub(r"[^A-Za-z0-9._-]", "_", part) for part in parts)


def _epcis_response(document: dict[str, Any], name: str) -> JSONResponse:
    return JSONResponse(
        document,
        media_type=epcis.MEDIA_TYPE,
        headers={"Content-Disposition": f'inline; filename="{name}.epcis.jsonld"', **NO_STORE},
    )


# The routes with a suffix come first: a lot code may contain "/".


@router.get(
    "/lots/{sku}/{lot_code:path}/epcis",
    summary="A lot's trace as a GS1 EPCIS 2.0 document (JSON-LD)",
    response_class=JSONResponse,
    responses={200: {"content": {epcis.MEDIA_TYPE: {}}}},
)
async def lot_epcis(
    sku: SkuPath, lot_code: LotPath, sources: SourcesDep, store: StoreDep
) -> JSONResponse:
    trace = await lot_trace(sources, store, sku, lot_code)
    document = epcis.lot_document(trace, datetime.now(UTC))
    return _epcis_response(document, _filename("trace", sku, lot_code))


@router.get(
    "/lots/{sku}/{lot_code:path}/csv",
    summary="A lot's trace as a sortable CSV, one row per event (FSMA-style)",
    response_class=Response,
    responses={200: {"content": {"text/csv": {}}}},
)
async def lot_csv(
    sku: SkuPath, lot_code: LotPath, sources: SourcesDep, store: StoreDep
) -> Response:
    trace = await lot_trace(sources, store, sku, lot_code)
    name = _filename("trace", sku, lot_code)
    return Response(
        fsma.spreadsheet(trace.product, trace.events),
        media_type=fsma.MEDIA_TYPE,
        headers={"Content-Disposition": f'attachment; filename="{name}.csv"', **NO_STORE},
    )


@router.get(
    "/lots/{sku}/{lot_code:path}",
    response_model=LotTrace,
    summary="Where a lot came from and where every unit of it is now",
)
async def get_lot_trace(
    sku: SkuPath, lot_code: LotPath, sources: SourcesDep, store: StoreDep
) -> LotTrace:
    return await lot_trace(sources, store, sku, lot_code)


@router.get(
    "/units/{sku}/{serial:path}/epcis",
    summary="A unit's life as a GS1 EPCIS 2.0 document (JSON-LD)",
    response_class=JSONResponse,
    responses={200: {"content": {epcis.MEDIA_TYPE: {}}}},
)
async def unit_epcis(
    sku: SkuPath, serial: SerialPath, sources: SourcesDep, store: StoreDep
) -> JSONResponse:
    trace = await unit_trace(sources, store, sku, serial)
    document = epcis.unit_document(trace, datetime.now(UTC))
    return _epcis_response(document, _filename("unit", sku, serial))


@router.get(
    "/units/{sku}/{serial:path}",
    response_model=UnitTrace,
    summary="A unit's life, receipt to sale to return, with every event that touched it",
)
async def get_unit_trace(
    sku: SkuPath, serial: SerialPath, sources: SourcesDep, store: StoreDep
) -> UnitTrace:
    return await unit_trace(sources, store, sku, serial)
