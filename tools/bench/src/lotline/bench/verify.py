"""Whether Lotline ended in exactly the state the events call for: nothing lost, nothing doubled.

Stock is read through its HTTP API (one call per location). The serial registry's units
are read from its database by _id (the one indexed lookup FerretDB has) or, for a whole
product, streamed in one pass: its HTTP API pages a lot at a time, and every page would
be a scan of the collection.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import httpx
from pymongo.asynchronous.collection import AsyncCollection

from lotline.bench.workload import LevelExpectation, RecallWorkload, SalesWorkload

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


async def _get(http: httpx.AsyncClient, url: str) -> Any:
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
            body = await _get(http, f"{stock_url}/locations/{location}/stock")
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
    """Every serial sold is recorded sold by its sale; every spare unit is still in stock."""
    gate = asyncio.Semaphore(READ_CONCURRENCY)

    async def one(sku: str, serial: str) -> dict[str, Any] | None:
        async with gate:
            return await units.find_one(
                {"_id": f"{sku} {serial}"}, {"status": 1, "sale_id": 1, "location": 1}
            )

    for start in range(0, len(workload.units), 5_000):
        part = workload.units[start : start + 5_000]
        docs = await asyncio.gather(*(one(u.sku, u.serial) for u in part))
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
        page = await _get(http, f"{serials_url}/lots/{sku}/{lot}/units?limit=1")
        verdict.check(
            page["total"] == quantity and page["counts"].get("in_stock") == quantity,
            f"lot {lot} of {sku}: {page['total']} units {page['counts']}, expected "
            f"{quantity} in stock",
        )
        stock = await _get(http, f"{stock_url}/stock/{sku}")
        verdict.check(
            stock["on_hand"] == quantity,
            f"stock of {sku}: {stock['on_hand']} on hand, expected {quantity}",
        )


async def recalled(
    verdict: Verdict,
    stock_url: str,
    units: AsyncCollection[Any],
    workload: RecallWorkload,
    recall_id: str,
) -> None:
    """Every lot at every store quarantined whole; every unit flagged by this recall."""
    per_level = workload.units_per_receipt
    async with httpx.AsyncClient(timeout=120) as http:
        stock = await _get(http, f"{stock_url}/stock/{workload.sku}")
    lots = {(lot["location"], lot["lot_code"]): lot for lot in stock["lots"]}
    for store in workload.stores:
        for code in workload.lot_codes:
            lot = lots.get((store, code))
            verdict.check(
                lot is not None
                and lot["quarantined"] == per_level
                and lot["on_hand"] == 0
                and lot["recall_id"] == recall_id,
                f"lot {code} at {store}: {lot}, expected {per_level} quarantined by {recall_id}",
            )
    counted: Counter[str] = Counter()
    flagged: Counter[str] = Counter()
    cursor = units.find({"sku": workload.sku}, {"lot_code": 1, "recall_ids": 1}, batch_size=10_000)
    async for doc in cursor:
        counted[doc.get("lot_code")] += 1
        flagged[doc.get("lot_code")] += recall_id in (doc.get("recall_ids") or ())
    for code in workload.lot_codes:
        expected = per_level * len(workload.stores)
        verdict.check(
            counted[code] == expected and flagged[code] == expected,
            f"lot {code}: {counted[code]} units, {flagged[code]} flagged; expected {expected}",
        )
    verdict.check(
        sum(counted.values()) == workload.units,
        f"{sum(counted.values())} units of {workload.sku}, expected {workload.units}",
    )


def no_flags(verdict: Verdict, records: list[Any]) -> None:
    """No sale flagged, no receipt rejected, nothing dead-lettered for this run's keys."""
    topics = Counter(record.topic for record in records)
    verdict.check(not records, f"unexpected records for this run: {dict(topics)}")
