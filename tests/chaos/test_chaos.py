"""Faults survived with nothing lost or doubled: the four services under kill -9, a broker
restart, a database restart and a rebalance, while receipts, sales, returns and recalls flow.

`CHAOS_SCALE=full` (make chaos) runs several rounds of every fault over a longer stream;
the default, small, runs each fault once and fits in CI. The run prints its figures.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import random
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from aiokafka import AIOKafkaProducer
from pymongo import AsyncMongoClient
from workload import Shop

from lotline.devstack import SERVICE_MODULES, LocalStack
from lotline.events import (
    EventData,
    ItemReceived,
    ItemReturned,
    ItemSold,
    OutgoingMessage,
    ProductRegistered,
    ReturnReason,
    Tracking,
    UnitStatus,
    encode,
)
from lotline.runtime.wal import WriteAheadLog
from lotline.serials.store import unit_from_doc

from support import AS_OPERATOR, OPERATOR_ENV, consumer_lag, eventually

pytestmark = pytest.mark.infra

SCALE = os.environ.get("CHAOS_SCALE", "small")


@dataclass(frozen=True)
class Scale:
    quantity_skus: int
    batch_skus: int
    serial_skus: int
    tick_events: int  # events per tick of the steady stream
    tick_s: float
    burst: int  # events sent just before a kill, so it lands mid-batch
    kill_rounds: int  # kill -9 of each service
    infra_rounds: int  # Kafka and FerretDB restarts
    rebalanced: tuple[str, ...]  # services run twice, then one instance killed
    timeout_s: int
    big_receipt: int  # serials of a receipt the registry is killed writing out


SCALES = {
    "small": Scale(2, 2, 2, 12, 0.25, 150, 1, 1, ("stock",), 600, 5_000),
    "full": Scale(4, 4, 3, 25, 0.2, 400, 3, 2, ("stock", "serial-registry"), 1800, 10_000),
}
CHAOS = SCALES[SCALE]
SERVICES = tuple(SERVICE_MODULES)
# Small batches, so a kill lands between the effects of one batch and its commit.
SERVICE_ENV = {"CONSUMER_MAX_RECORDS": "100", "LOG_LEVEL": "INFO", **OPERATOR_ENV}
LAG_DEADLINE_S = 60.0


# ------------------------------------------------------------------------------ the producer


class AcknowledgedSender:
    """A till or dock scanner: sends each event until Kafka acknowledges it (acks=all,
    idempotent producer). A send that failed may still have landed; the resend carries the
    same event id, so the services must apply it once."""

    def __init__(self, bootstrap: str, client_options: dict[str, Any]) -> None:
        self.bootstrap = bootstrap
        self.client_options = client_options
        self.producer: AIOKafkaProducer | None = None
        self.acknowledged = 0
        self.resent = 0

    async def start(self) -> None:
        self.producer = AIOKafkaProducer(
            bootstrap_servers=self.bootstrap,
            acks="all",
            enable_idempotence=True,
            request_timeout_ms=10000,
            linger_ms=5,
            **self.client_options,
        )
        while True:
            try:
                await self.producer.start()
                return
            except Exception:
                await asyncio.sleep(1)

    async def stop(self) -> None:
        if self.producer is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self.producer.stop(), 15)

    async def send(self, messages: list[OutgoingMessage]) -> None:
        pending = messages
        while pending:
            assert self.producer is not None
            results: list[Any]
            try:
                futures = [
                    await self.producer.send(m.topic, m.value, key=m.key, headers=m.headers)
                    for m in pending
                ]
                results = await asyncio.gather(*futures, return_exceptions=True)
            except Exception as exc:
                results = [exc] * len(pending)
            failed = [m for m, r in zip(pending, results, strict=True) if isinstance(r, Exception)]
            self.acknowledged += len(pending) - len(failed)
            if failed:
                self.resent += len(failed)
                await self.stop()
                await asyncio.sleep(0.5)
                await self.start()
            pending = failed


# ------------------------------------------------------------------------------- the run


@dataclass
class Fault:
    what: str
    at: float


@dataclass
class Chaos:
    shop: Shop
    sender: AcknowledgedSender
    stack: LocalStack
    instances: dict[str, list[Any]]
    start_service: Callable[..., Any]
    mongo: AsyncMongoClient[dict[str, Any]]
    faults: list[Fault] = field(default_factory=list)
    began: float = field(default_factory=time.monotonic)
    restarting: set[int] = field(default_factory=set)  # pids killed here, being restarted
    stopped: asyncio.Event = field(default_factory=asyncio.Event)
    copies: int = 0  # events sent again on purpose (the shop records each event once)
    random: random.Random = field(default_factory=lambda: random.Random(7))

    async def publish(self, events: list[EventData]) -> None:
        await self.sender.send([encode(e, source="chaos") for e in events])

    async def stream(self) -> None:
        """The steady stream: a tick of events every `tick_s` until stopped."""
        while not self.stopped.is_set():
            self.check_alive()
            await self.publish(self.shop.next_events(CHAOS.tick_events))
            await asyncio.sleep(CHAOS.tick_s)

    def check_alive(self) -> None:
        """A service that exited without being killed here fails the run at once, saying how."""
        for name, running in self.instances.items():
            for instance in running:
                code = instance.process.poll()
                if code is not None and instance.process.pid not in self.restarting:
                    raise RuntimeError(
                        f"{name} (pid {instance.process.pid}) exited on its own with {code}:\n"
                        f"{instance.log_tail()}"
                    )

    def url(self, service: str) -> str:
        return str(self.instances[service][-1].url)

    def fault(self, what: str) -> None:
        self.faults.append(Fault(what, time.monotonic()))
        elapsed = time.monotonic() - self.began
        print(f"  fault {len(self.faults):2d} at +{elapsed:5.1f} s: {what}", flush=True)

    async def kill_mid_batch(self, service: str, index: int = 0) -> None:
        """A burst, then kill -9 while it is being applied; restart a moment later."""
        instance = self.instances[service][index]
        await self.publish(self.shop.next_events(CHAOS.burst))
        await asyncio.sleep(self.random.uniform(0.1, 0.8))
        self.check_alive()
        self.restarting.add(instance.process.pid)
        await asyncio.to_thread(instance.kill)
        self.fault(f"kill -9 {service} (pid {instance.process.pid})")
        await asyncio.sleep(self.random.uniform(0.5, 2.0))
        await asyncio.to_thread(instance.start, 180.0)

    async def kill_while_logged_not_written(self, service: str) -> None:
        """A burst, then kill -9 the moment its write-ahead log holds entries not written
        out yet (logged, maybe published, documents pending): the next owner must restore
        them, publish what was not, and write them, nothing lost or doubled."""
        instance = self.instances[service][0]
        database = {"stock": "stock", "serial-registry": "serials"}[service]
        await self.publish(self.shop.next_events(CHAOS.burst))
        pending = {"p": {"$exists": True}}
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            if await self.mongo[database]["wal"].count_documents(pending):
                break
            await asyncio.sleep(0.005)
        self.check_alive()
        self.restarting.add(instance.process.pid)
        await asyncio.to_thread(instance.kill)
        left = await self.mongo[database]["wal"].count_documents(pending)
        self.fault(f"kill -9 {service} with {left} log entries not written out")
        await asyncio.sleep(self.random.uniform(0.5, 2.0))
        await asyncio.to_thread(instance.start, 180.0)

    async def kill_while_writing_out_a_receipt(self) -> None:
        """A receipt of thousands of serials, then kill -9 the registry while its writer is
        putting the units into `units` (the receipt is one log entry, its units, journal
        entries and serial fingerprints written out in the background): the next owner must
        restore the entry and write the rest, each unit once; a copy of the receipt sent
        after the restart must be recognised, not booked again nor refused."""
        instance = self.instances["serial-registry"][0]
        receipt = self.shop.big_receipt(CHAOS.big_receipt)
        assert receipt.serials is not None
        await self.publish([receipt])
        units = self.mongo["serials"]["units"]
        first = f"{receipt.sku} {receipt.serials[0]}"
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if await units.find_one({"_id": first}) is not None:
                break  # the writer has begun
            await asyncio.sleep(0.005)
        self.check_alive()
        self.restarting.add(instance.process.pid)
        await asyncio.to_thread(instance.kill)
        written = await units.count_documents({"receipt_id": receipt.receipt_id})
        self.fault(
            f"kill -9 serial-registry with {written:,} of a receipt's "
            f"{len(receipt.serials):,} units written out"
        )
        await asyncio.sleep(self.random.uniform(0.5, 2.0))
        await asyncio.to_thread(instance.start, 180.0)
        await self.publish([receipt])  # a copy: the dock scanner sent it again
        self.copies += 1

    async def restart_infra(self, name: str) -> None:
        await self.publish(self.shop.next_events(CHAOS.burst))
        await asyncio.sleep(self.random.uniform(0.1, 0.8))
        await asyncio.to_thread(self.stack.kill, name)  # type: ignore[arg-type]
        self.fault(f"kill -9 {name}")
        await asyncio.sleep(3)
        await asyncio.to_thread(self.stack.start, name)  # type: ignore[arg-type]

    async def rebalance(self, service: str) -> None:
        """A second instance joins the group; the first is killed and the other takes over."""
        second = await asyncio.to_thread(self.start_service, service, **SERVICE_ENV)
        self.instances[service].append(second)
        self.fault(f"second {service} instance joins (rebalance)")
        await asyncio.sleep(10)  # let the group settle on two members
        await self.kill_first_for_good(service)

    async def kill_first_for_good(self, service: str) -> None:
        self.check_alive()
        first = self.instances[service].pop(0)
        await self.publish(self.shop.next_events(CHAOS.burst))
        await asyncio.sleep(self.random.uniform(0.1, 0.8))
        await asyncio.to_thread(first.kill)
        self.fault(f"kill -9 one of two {service} instances (pid {first.process.pid})")


@dataclass
class RecallPlan:
    recall_id: str
    sku: str
    lot: str
    serial: bool
    # What the serial registry had when the recall was applied (the recall's answer).
    statuses: Counter[str] = field(default_factory=Counter)


# --------------------------------------------------------------------------- the checks


async def stock_lots(url: str, sku: str) -> dict[tuple[str, str | None], dict[str, Any]]:
    async with httpx.AsyncClient(base_url=url, timeout=30) as client:
        response = await client.get(f"/stock/{sku}")
    assert response.status_code == 200, response.text
    return {(lot["location"], lot["lot_code"]): lot for lot in response.json()["lots"]}


async def lot_statuses(url: str, sku: str, lot: str) -> Counter[str]:
    async with httpx.AsyncClient(base_url=url, timeout=30) as client:
        response = await client.get(f"/lots/{sku}/{lot}/units", params={"limit": 1})
    if response.status_code == 404:
        return Counter()
    assert response.status_code == 200, response.text
    return Counter({k: v for k, v in response.json()["counts"].items() if v})


async def applied_everywhere(chaos: Chaos, sku: str) -> None:
    """Stock and the serial registry have applied every event of the SKU sent so far (the
    registry: each in its unit's history)."""
    chaos.check_alive()
    shop = chaos.shop
    lots = await stock_lots(chaos.url("stock"), sku)
    for (_, location, lot), counts in shop.levels_of(sku).items():
        found = lots.get((location, lot))
        assert found is not None, (sku, location, lot)
        assert found["on_hand"] + found["quarantined"] == counts.expected_stock
    tally = Tally()
    await tally_units(shop, chaos.mongo, tally, [sku])
    assert not tally.problems, tally.problems[:5]


async def issue_recall(chaos: Chaos, plan: RecallPlan) -> None:
    """As an operator would: retried with the same Idempotency-Key until it is issued."""
    body = {
        "recall_id": plan.recall_id,
        "sku": plan.sku,
        "lot_codes": [plan.lot],
        "reason": "Chaos: contamination found at the supplier",
        "classification": "I",
    }
    while True:
        try:
            async with httpx.AsyncClient(base_url=chaos.url("recall"), timeout=30) as client:
                response = await client.post(
                    "/recalls",
                    json=body,
                    headers={"Idempotency-Key": plan.recall_id, **AS_OPERATOR},
                )
            if response.status_code in (200, 201):
                return
        except httpx.HTTPError:
            pass
        await asyncio.sleep(1)


@dataclass
class Tally:
    lost: int = 0
    doubled: int = 0
    problems: list[str] = field(default_factory=list)
    # Units whose events were applied in another order than sent (two topics).
    reordered: set[tuple[str, str]] = field(default_factory=set)

    def compare(self, what: str, expected: int, found: int) -> None:
        if found < expected:
            self.lost += expected - found
            self.problems.append(f"{what}: expected {expected}, found {found}")
        elif found > expected:
            self.doubled += found - expected
            self.problems.append(f"{what}: expected {expected}, found {found}")


async def tally_stock(shop: Shop, mongo: AsyncMongoClient[dict[str, Any]], tally: Tally) -> None:
    """Every receipt, sale and return counted once per SKU, location and lot (the levels
    keep received / sold / returned per lot)."""
    # Through the write-ahead log, as the stock service's own reads go: every committed
    # batch counts, whether its levels were written out yet or not.
    log = WriteAheadLog(mongo["stock"])
    for product in shop.products:
        found: dict[tuple[str, str | None], dict[str, Any]] = {}
        ids = {f"{product.sku} {location}" for (_, location, _) in shop.levels_of(product.sku)}
        for doc in (await log.read("levels", ids)).values():
            for lot in doc.get("lots", []):
                found[(doc["location"], lot.get("code"))] = lot
        for (sku, location, lot_code), counts in shop.levels_of(product.sku).items():
            lot = found.get((location, lot_code), {})
            for name in ("received", "sold", "returned"):
                tally.compare(
                    f"stock {sku} {location} {lot_code} {name}",
                    getattr(counts, name),
                    lot.get(name, 0),
                )


async def tally_units(
    shop: Shop,
    mongo: AsyncMongoClient[dict[str, Any]],
    tally: Tally,
    skus: list[str] | None = None,
) -> None:
    """Every event of every serial unit in its history exactly once (by business key)."""
    for product in shop.products:
        if skus is not None and product.sku not in skus:
            continue
        units = {}
        ids = [f"{product.sku} {expected.serial}" for expected in shop.units_of(product.sku)]
        # Through the write-ahead log, as the registry's reads go: written out or pending.
        for doc in (
            await WriteAheadLog(mongo["serials"], versioned=["units"]).read("units", ids)
        ).values():
            unit = unit_from_doc(doc)
            units[unit.serial] = unit
        for expected in shop.units_of(product.sku):
            unit = units.get(expected.serial)
            entries = Counter(
                (e.type.value, e.ref) for e in (unit.history if unit else ()) if e.ref
            )
            for ref in expected.refs:
                tally.compare(f"unit {product.sku} {expected.serial} {ref}", 1, entries[ref])
            # The stored history is in the order the events were applied.
            applied = [(e.type.value, e.ref) for e in (unit.history if unit else ()) if e.ref]
            if [ref for ref in applied if ref in expected.refs] != expected.refs:
                tally.reordered.add((product.sku, expected.serial))


@pytest.fixture
def local_stack(infra: Any) -> Iterator[LocalStack]:
    stack = LocalStack.from_env()
    if stack.endpoints.kafka_bootstrap != infra.kafka_bootstrap:
        pytest.skip("the chaos suite kills and restarts the local stack's own Kafka and FerretDB")
    yield stack
    # Whatever happened, leave the stack running for the next test.
    for name in ("kafka", "ferretdb"):
        if not stack.is_running(name):  # type: ignore[arg-type]
            stack.start(name)  # type: ignore[arg-type]


@pytest.mark.timeout(CHAOS.timeout_s)
async def test_every_acknowledged_event_is_applied_exactly_once_through_faults(  # type: ignore[no-untyped-def]
    infra, local_stack, start_service, run_id
) -> None:
    started = time.monotonic()
    shop = Shop.open(run_id, 11, CHAOS.quantity_skus, CHAOS.batch_skus, CHAOS.serial_skus)
    instances = {name: [start_service(name, **SERVICE_ENV)] for name in SERVICES}
    sender = AcknowledgedSender(infra.kafka_bootstrap, infra.client_options())
    await sender.start()
    mongo: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(
        infra.mongodb_url, tz_aware=True, serverSelectionTimeoutMS=30000
    )
    chaos = Chaos(shop, sender, local_stack, instances, start_service, mongo)
    print(f"\nchaos ({SCALE}): run {run_id}", flush=True)

    async with httpx.AsyncClient(base_url=chaos.url("catalog"), timeout=30) as client:
        for product in shop.products:
            response = await client.post(
                "/products",
                json={
                    "sku": product.sku,
                    "name": f"Chaos {product.sku}",
                    "tracking": product.tracking.value,
                },
                headers=AS_OPERATOR,
            )
            assert response.status_code == 201, response.text

    stream = asyncio.create_task(chaos.stream())
    plans = [
        RecallPlan(f"RC-B-{run_id}", shop.recall_batch_sku, "", serial=False),
        RecallPlan(f"RC-S-{run_id}", shop.recall_serial_sku, "", serial=True),
    ]
    try:
        await asyncio.sleep(5)
        for round_ in range(CHAOS.kill_rounds):
            for service in ("stock", "serial-registry"):
                await chaos.kill_mid_batch(service)
                await chaos.kill_while_logged_not_written(service)
            await chaos.kill_while_writing_out_a_receipt()
            if round_ == 0:
                await recall_mid_stream(chaos, plans)
            for service in ("recall", "catalog"):
                await chaos.kill_mid_batch(service)
            for _ in range(CHAOS.infra_rounds if round_ == 0 else 0):
                await chaos.restart_infra("kafka")
                if round_ == 0:
                    for plan in plans:
                        await chaos.publish(shop.recall_returns(plan.sku, plan.lot, 4))
                await chaos.restart_infra("ferretdb")
        for service in CHAOS.rebalanced:
            await chaos.rebalance(service)
        await asyncio.sleep(3)
    finally:
        chaos.stopped.set()
        await stream
    last_fault = chaos.faults[-1].at

    lags: dict[str, int] = {}

    async def caught_up() -> None:
        chaos.check_alive()
        for service in SERVICES:
            lags[service] = await consumer_lag(
                infra.kafka_bootstrap, service, infra.client_options()
            )
        assert not any(lags.values()), lags

    await eventually(caught_up, timeout=LAG_DEADLINE_S + 120, interval=1)
    lag_zero_after = time.monotonic() - last_fault

    # Nothing crash-looping: every instance still up, ready, and serving.
    for name, running in instances.items():
        for instance in running:
            assert instance.process.poll() is None, f"{name} died:\n{instance.log_tail()}"
            async with httpx.AsyncClient(timeout=10) as client:
                ready = await client.get(f"{instance.url}/health/ready")
            assert ready.status_code == 200, ready.text

    tally = Tally()
    await tally_stock(shop, mongo, tally)
    await tally_units(shop, mongo, tally)
    await mongo.close()
    figures = {
        "events sent (acknowledged)": sender.acknowledged,
        "events resent after a failed send": sender.resent,
        "faults injected": len(chaos.faults),
        "effects lost": tally.lost,
        "effects doubled": tally.doubled,
        "lag back to 0 after the last fault (s)": round(lag_zero_after, 1),
        "run (s)": round(time.monotonic() - started, 1),
    }
    print(f"chaos ({SCALE}) figures:", flush=True)
    print(f"  events by type: {dict(shop.events_sent)}")
    for name, value in figures.items():
        print(f"  {name}: {value}", flush=True)
    for problem in tally.problems[:30]:
        print(f"  ! {problem}", flush=True)

    assert sender.acknowledged == sum(shop.events_sent.values()) + chaos.copies
    assert (tally.lost, tally.doubled) == (0, 0), tally.problems[:30]
    assert lag_zero_after <= LAG_DEADLINE_S, lags
    stale = await check_stock_and_units(chaos, plans, tally.reordered)
    await check_recalls(chaos, plans)
    await check_catalog(chaos)
    print(f"  units whose sale and return were applied out of order: {len(tally.reordered)}")
    print(f"  units left in the wrong status: {len(stale)}", flush=True)
    for line in stale[:10]:
        print(f"    {line}")
    # Applied out of order or not, every unit ends as its last event (in time) left it.
    assert stale == [], stale[:10]


async def recall_mid_stream(chaos: Chaos, plans: list[RecallPlan]) -> None:
    """Quiet the recalled SKUs, wait until both services show all their events, then issue
    the recalls (as the stream of the other SKUs and the faults go on)."""
    shop = chaos.shop
    for plan in plans:
        shop.quiet.add(plan.sku)
    for plan in plans:
        by_lot = Counter(
            {lot: c.received for (_, _, lot), c in shop.levels_of(plan.sku).items() if lot}
        )
        plan.lot = by_lot.most_common(1)[0][0]
        await eventually(lambda plan=plan: applied_everywhere(chaos, plan.sku), timeout=180)
        # The recall's answer is the registry's state now: what its statuses say.
        plan.statuses = await lot_statuses(chaos.url("serial-registry"), plan.sku, plan.lot)
        await issue_recall(chaos, plan)
        chaos.fault(f"recall {plan.recall_id} of {plan.sku} lot {plan.lot} issued mid-stream")


async def check_stock_and_units(
    chaos: Chaos, plans: list[RecallPlan], reordered: set[tuple[str, str]]
) -> list[str]:
    """From the HTTP APIs: stock = receipts - sales + returns everywhere, the recalled lots
    all in quarantine; every unit's status that of its last event. Returns the units whose
    status is not, each of which had its events applied out of order (else it fails)."""
    stale = []
    shop = chaos.shop
    recalled = {(p.sku, p.lot) for p in plans}
    for product in shop.products:
        lots = await stock_lots(chaos.url("stock"), product.sku)
        for (sku, location, lot), counts in shop.levels_of(product.sku).items():
            found = lots[(location, lot)]
            if (sku, lot) in recalled:
                assert (found["on_hand"], found["quarantined"]) == (0, counts.expected_stock)
            else:
                assert (found["on_hand"], found["quarantined"]) == (counts.expected_stock, 0)
    # Each unit the stream touched; of the big receipts' units (every one is tallied through
    # the log already), those sold or returned since, and one in fifty of the rest.
    checked = [
        unit
        for n, unit in enumerate(shop.units.values())
        if (unit.sku, unit.serial) not in shop.bulk
        or unit.status is not UnitStatus.IN_STOCK
        or n % 50 == 0
    ]
    async with httpx.AsyncClient(base_url=chaos.url("serial-registry"), timeout=30) as client:
        for unit in checked:
            response = await client.get(f"/units/{unit.sku}/{unit.serial}")
            assert response.status_code == 200, response.text
            found = response.json()
            assert found["recalled"] == ((unit.sku, unit.lot) in recalled), unit
            if found["status"] != unit.status.value:
                assert (unit.sku, unit.serial) in reordered, (unit, found["history"])
                stale.append(f"{unit.sku} {unit.serial}: {found['status']}, not {unit.status}")
    return stale


async def check_recalls(chaos: Chaos, plans: list[RecallPlan]) -> None:
    shop = chaos.shop
    async with httpx.AsyncClient(base_url=chaos.url("recall"), timeout=30) as client:
        for plan in plans:
            response = await client.get(f"/recalls/{plan.recall_id}")
            assert response.status_code == 200, response.text
            progress = response.json()["progress"]
            levels = [c for (_, _, lot), c in shop.levels_of(plan.sku).items() if lot == plan.lot]
            answer = progress["units_answer"]
            assert answer["complete"], answer
            assert progress["quarantined_units"] == sum(c.expected_stock for c in levels)
            assert progress["units_returned"] == sum(c.recall_returned for c in levels)
            assert progress["units_to_contact"] == plan.statuses[UnitStatus.SOLD.value]
            assert {k: v for k, v in answer["counts"].items() if v} == dict(plan.statuses)


async def check_catalog(chaos: Chaos) -> None:
    async with httpx.AsyncClient(base_url=chaos.url("catalog"), timeout=30) as client:
        for product in chaos.shop.products:
            response = await client.get(f"/products/{product.sku}")
            assert response.json()["has_receipts"] is True, response.text


async def test_a_sale_applied_after_its_return_leaves_the_unit_returned(  # type: ignore[no-untyped-def]
    bus, start_service, run_id
) -> None:
    """What the chaos run saw after a Kafka restart, made deterministic."""
    registry = start_service("serial-registry")
    sku, serial = f"CPH-{run_id}", f"SN-{run_id}"
    now = datetime.now(UTC)
    await bus.publish(
        ProductRegistered(sku=sku, name="Phone", tracking=Tracking.SERIAL),
        ItemReceived(
            sku=sku, receipt_id=f"R-{run_id}", location="S1", quantity=1, serials=[serial]
        ),
    )

    async def unit(events: int) -> dict[str, Any]:
        async with httpx.AsyncClient(base_url=registry.url) as client:
            response = await client.get(f"/units/{sku}/{serial}")
        assert response.status_code == 200
        assert len(response.json()["history"]) == events
        return dict(response.json())

    await eventually(lambda: unit(1), timeout=60)
    await bus.publish(
        ItemReturned(
            sku=sku,
            return_id=f"RT-{run_id}",
            sale_id=f"T-{run_id}",
            location="S1",
            quantity=1,
            serial=serial,
            reason=ReturnReason.CUSTOMER,
            returned_at=now,
        )
    )
    await eventually(lambda: unit(2), timeout=60)
    await bus.publish(
        ItemSold(
            sku=sku,
            sale_id=f"T-{run_id}",
            line=1,
            location="S1",
            quantity=1,
            serial=serial,
            sold_at=now - timedelta(minutes=5),
        )
    )
    found = await eventually(lambda: unit(3), timeout=60)
    assert found["status"] == "returned", found["history"]
