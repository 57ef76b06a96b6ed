"""Whether Lotline ended in exactly the state the events call for: nothing lost, nothing doubled.

Stock is read through its HTTP API (one call per location). The serial registry's sold units
are read from its database by _id (the one indexed lookup FerretDB has). A recall is checked
through the serial registry's HTTP API, since a lot recall is no longer written to each unit:
its scope is saved once and every reader applies it, so only the readers show the result.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import httpx
from pymongo.asynchronous.collection import AsyncCollection

from lotline.bench.infra import OPERATOR
from lotline.bench.workload import LevelExpectation, RecallWorkload, SalesWorkload
from lotline.runtime.wal import WriteAheadLog

MAX_PROBLEMS = 10
READ_CONCURRENCY = 32


@dataclass
class Verdict:
    checked: int = 0
    problems: list[str] = field(default_factory=list)
    problem_count: int = 0

    @property
    def ok(self) -> bool:
        return self.problem_count == 0 and self.checked > 0

    def check(self, ok: bool, problem: str) -> None:
        self.checked += 1
        if not ok:
            self.problem_count += 1
            if len(self.problems) < MAX_PROBLEMS:
                self.problems.append(problem)

    def as_dict(self) -> dict[str, Any]:
        return {
            "verified": self.ok,
            "checked": self.checked,
            "problems": self.problem_count,
            "first_problems": self.problems,
        }


async def get_json(http: httpx.AsyncClient, url: str) -> Any:
    for attempt in range(5):
        try:
            response = await http.get(url)
            response.raise_for_status()
            return response.json()
        except httpx.TransportError:
            if attempt == 4:
                raise
            await asyncio.sleep(0.5)
    raise AssertionError("unreachable")


async def stock_levels(verdict: Verdict, stock_url: str, expected: list[LevelExpectation]) -> None:
    """Every (sku, location) holds exactly the expected stock per lot, and nothing else."""
    by_location: dict[str, dict[str, LevelExpectation]] = {}
    for level in expected:
        by_location.setdefault(level.location, {})[level.sku] = level
    async with httpx.AsyncClient(timeout=120) as http:
        for location, levels in by_location.items():
            body = await get_json(http, f"{stock_url}/locations/{location}/stock")
            found = {line["sku"]: line for line in body["skus"]}
            verdict.check(
                set(found) == set(levels),
                f"{location}: stock lists {len(found)} SKUs, expected {len(levels)}",
            )
            for sku, level in levels.items():
                line = found.get(sku)
                on_hand = {lot["lot_code"]: lot["on_hand"] for lot in (line or {}).get("lots", [])}
                quarantined = {
                    lot["lot_code"]: lot["quarantined"]
                    for lot in (line or {}).get("lots", [])
                    if lot["quarantined"]
                }
                verdict.check(
                    on_hand == level.on_hand and quarantined == level.quarantined,
                    f"{sku} at {location}: on hand {on_hand}, quarantined {quarantined}; "
                    f"expected {level.on_hand}, {level.quarantined}",
                )


async def sold_units(
    verdict: Verdict, units: AsyncCollection[Any], workload: SalesWorkload
) -> None:
    """Every serial sold is recorded sold by its sale; every spare unit is still in stock.
    Read as the registry reads them (`lotline.runtime.wal`): written out or still pending."""
    log = WriteAheadLog(units.database, versioned=[units.name])
    for start in range(0, len(workload.units), 5_000):
        part = workload.units[start : start + 5_000]
        found = await log.read(
            units.name,
            [f"{u.sku} {u.serial}" for u in part],
            {"status": 1, "sale_id": 1, "location": 1},
        )
        docs = [found.get(f"{u.sku} {u.serial}") for u in part]
        for unit, doc in zip(part, docs, strict=True):
            if doc is None:
                verdict.check(False, f"unit {unit.sku} {unit.serial} is not registered")
            elif unit.sale_id is None:
                verdict.check(
                    doc.get("status") == "in_stock" and doc.get("sale_id") is None,
                    f"unit {unit.sku} {unit.serial}: {doc.get('status')} by "
                    f"{doc.get('sale_id')}, expected in stock",
                )
            else:
                verdict.check(
                    doc.get("status") == "sold" and doc.get("sale_id") == unit.sale_id,
                    f"unit {unit.sku} {unit.serial}: {doc.get('status')} by "
                    f"{doc.get('sale_id')}, expected sold by {unit.sale_id}",
                )


async def registered_receipt(
    verdict: Verdict, serials_url: str, stock_url: str, sku: str, lot: str, quantity: int
) -> None:
    async with httpx.AsyncClient(timeout=600) as http:
        page = await get_json(http, f"{serials_url}/lots/{sku}/{lot}/units?limit=1")
        verdict.check(
            page["total"] == quantity and page["counts"].get("in_stock") == quantity,
            f"lot {lot} of {sku}: {page['total']} units {page['counts']}, expected "
            f"{quantity} in stock",
        )
        stock = await get_json(http, f"{stock_url}/stock/{sku}")
        verdict.check(
            stock["on_hand"] == quantity,
            f"stock of {sku}: {stock['on_hand']} on hand, expected {quantity}",
        )


def scope_of(doc: dict[str, Any] | None, recall_id: str, lot_codes: list[str]) -> bool:
    """Whether the serial registry's recall document of a SKU holds a scope of this recall
    covering every lot."""
    return any(
        scope.get("recall_id") == recall_id and set(scope.get("lot_codes") or ()) >= set(lot_codes)
        for scope in (doc or {}).get("scopes", [])
    )


async def recalled(
    verdict: Verdict,
    stock_url: str,
    serials_url: str,
    recall_url: str,
    recall_scopes: AsyncCollection[Any],
    workload: RecallWorkload,
    recall_id: str,
    pages: int,
) -> None:
    """Every lot at every store quarantined whole; the recall's scope saved over every lot;
    the serial registry's lot pages (`pages` of them, spread over the lots) counting all
    their units recalled; a sample of units of every lot recalled by this recall; and the
    recall service's contact list complete and exact."""
    per_level = workload.units_per_receipt
    per_lot = per_level * len(workload.stores)
    async with httpx.AsyncClient(timeout=600) as http:
        stock = await get_json(http, f"{stock_url}/stock/{workload.sku}")
        lots = {(lot["location"], lot["lot_code"]): lot for lot in stock["lots"]}
        for store in workload.stores:
            for code in workload.lot_codes:
                lot = lots.get((store, code))
                verdict.check(
                    lot is not None
                    and lot["quarantined"] == per_level
                    and lot["on_hand"] == 0
                    and lot["recall_id"] == recall_id,
                    f"lot {code} at {store}: {lot}, expected {per_level} quarantined by "
                    f"{recall_id}",
                )

        doc = await recall_scopes.find_one({"_id": workload.sku})
        verdict.check(
            scope_of(doc, recall_id, workload.lot_codes),
            f"serial registry: no scope of {recall_id} over all {len(workload.lot_codes)} lots "
            f"of {workload.sku} ({len((doc or {}).get('scopes', []))} scopes saved)",
        )

        # Each lot page is a pass over the lot: a few at a time, not to swamp the database.
        gate = asyncio.Semaphore(4)

        async def lot_page(code: str) -> None:
            async with gate:
                page = await get_json(
                    http, f"{serials_url}/lots/{workload.sku}/{code}/units?limit=1"
                )
            verdict.check(
                page["total"] == per_lot
                and page["recalled"] == page["total"]
                and page["counts"].get("in_stock") == per_lot,
                f"lot page {code}: {page['total']} units, {page['recalled']} recalled, "
                f"{page['counts']}; expected {per_lot} in stock, all recalled",
            )

        codes = workload.lot_codes
        step = max(1, -(-len(codes) // max(1, pages)))
        await asyncio.gather(*(lot_page(code) for code in codes[::step][:pages]))

        units = asyncio.Semaphore(READ_CONCURRENCY)

        async def unit(serial: str) -> None:
            async with units:
                found = await get_json(http, f"{serials_url}/units/{workload.sku}/{serial}")
            verdict.check(
                found["recalled"] is True
                and recall_id in found["recall_ids"]
                and found["status"] == "in_stock",
                f"unit {serial}: recalled {found['recalled']} by {found['recall_ids']}, "
                f"{found['status']}; expected in stock, recalled by {recall_id}",
            )

        await asyncio.gather(
            *(unit(s) for code in workload.lot_codes for s in workload.sample_serials(code))
        )

        detail = await get_json(http, f"{recall_url}/recalls/{recall_id}")
    progress = detail["progress"]
    answer = progress["units_answer"]
    counts = {status: n for status, n in answer["counts"].items() if n}
    verdict.check(
        detail["published"] and detail["issued_by"] == OPERATOR,
        f"recall {recall_id}: published {detail['published']}, issued by "
        f"{detail['issued_by']!r}; expected published, by {OPERATOR!r}",
    )
    verdict.check(
        answer["complete"]
        and counts == {"in_stock": workload.units}
        and answer["unknown_serials"] == 0
        and progress["units_to_contact"] == 0
        and not detail["contacts"],
        f"recall {recall_id}: answer complete {answer['complete']}, units {counts}, "
        f"{progress['units_to_contact']} to contact; expected {workload.units} in stock, "
        "none sold, so no one to contact",
    )


def no_flags(verdict: Verdict, records: list[Any]) -> None:
    """No sale flagged, no receipt rejected, nothing dead-lettered for this run's keys."""
    topics = Counter(record.topic for record in records)
    verdict.check(not records, f"unexpected records for this run: {dict(topics)}")
