"""The scenarios: set up (not timed), publish, time until every effect is durable, verify.

"Durable" is read from Kafka: each service commits a batch's offsets only after its
effects are written, so a record is applied once every consuming group's committed
offset has passed it. The timing never relies on the services' logs or internals.
"""

from __future__ import annotations

import asyncio
import gc
import statistics
import time
import uuid
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
from aiokafka import AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient
from pymongo import AsyncMongoClient

from lotline.bench import verify
from lotline.bench.ceilings import DatabaseCeiling, KafkaCeiling
from lotline.bench.infra import Infrastructure, Services
from lotline.bench.kafka_io import (
    CommitWatcher,
    Offsets,
    Sent,
    TopicReader,
    group_members,
    publish,
    publish_paced,
)
from lotline.bench.workload import (
    RecallWorkload,
    SalesWorkload,
    recall_workload,
    receipt_workload,
    sales_workload,
)
from lotline.events import EventData, EventType, OutgoingMessage, consumer_group, encode

SOURCE = "lotline/bench"
WORKERS = ("stock", "serial-registry")
GROUPS = tuple(consumer_group(service) for service in WORKERS)
# Where a run's mistakes would show up: flags, rejections, dead letters.
TROUBLE_TOPICS = (
    EventType.SALE_FLAGGED.topic,
    EventType.RECEIPT_REJECTED.topic,
    EventType.ITEM_SOLD.dlq_topic,
    EventType.ITEM_RECEIVED.dlq_topic,
    EventType.PRODUCT_REGISTERED.dlq_topic,
    EventType.BATCH_RECALLED.dlq_topic,
)


@dataclass
class Sizes:
    sales_lines: int = 200_000
    sales_skus: int = 1_000
    locations: int = 10
    latency_rate: float = 1_000.0
    latency_seconds: float = 60.0
    receipt_serials: int = 100_000
    recall_units: int = 1_000_000
    recall_lots: int = 100
    recall_stores: int = 20
    # Lot pages checked after a recall, spread over the lots (each reads its lot's journal
    # and the units of the page).
    recall_pages_checked: int = 100
    kafka_records: int = 200_000
    db_levels: int = 10_000
    db_units: int = 100_000


QUICK = Sizes(
    sales_lines=2_000,
    sales_skus=51,
    locations=5,
    latency_rate=200.0,
    latency_seconds=10.0,
    receipt_serials=2_000,
    recall_units=20_000,
    # Each quarantined lot at a store is a line the recall service records: 20 lots keep
    # the smoke test short.
    recall_lots=20,
    kafka_records=20_000,
    db_levels=1_000,
    db_units=10_000,
)


@dataclass
class Outcome:
    """One scenario's figures, its verdict, and the time series the chart draws."""

    name: str
    title: str
    figures: dict[str, Any] = field(default_factory=dict)
    verdict: verify.Verdict = field(default_factory=verify.Verdict)
    series: dict[str, list[tuple[float, float]]] = field(default_factory=dict)
    latencies_ms: list[float] = field(default_factory=list)
    error: str | None = None

    @property
    def verified(self) -> bool:
        return self.error is None and self.verdict.ok

    def as_dict(self) -> dict[str, Any]:
        return {
            "title": self.title,
            "figures": self.figures,
            **self.verdict.as_dict(),
            "verified": self.verified,
            "error": self.error,
        }


def new_run() -> str:
    return uuid.uuid4().hex[:6].upper()


def encode_all(events: Iterable[EventData]) -> list[OutgoingMessage]:
    return [encode(event, source=SOURCE) for event in events]


def targets_of(sent: Sequence[Sent], topic: str) -> Offsets:
    """Per partition, the offset just past the last record sent there."""
    ends: dict[TopicPartition, int] = {}
    for record in sent:
        tp = TopicPartition(topic, record.partition)
        ends[tp] = max(ends.get(tp, 0), record.offset + 1)
    return ends


@dataclass
class Bench:
    infra: Infrastructure
    services: Services
    sizes: Sizes
    admin: AIOKafkaAdminClient
    reader: TopicReader
    producer: AIOKafkaProducer
    latency_producer: AIOKafkaProducer
    mongo: AsyncMongoClient[dict[str, Any]]
    poll_s: float
    log_dir: Path
    ceilings: dict[str, KafkaCeiling | DatabaseCeiling] = field(default_factory=dict)

    @property
    def units(self) -> Any:
        return self.mongo["serials"]["units"]

    # ------------------------------------------------------------------------ plumbing

    async def settle(self, topics: Sequence[str], what: str, within_s: float) -> None:
        """Wait until both services have applied everything now on these topics."""
        ends = await self.reader.ends(topics)
        async with CommitWatcher(self.admin, GROUPS, list(ends), interval_s=0.1) as watcher:
            await watcher.wait(ends, within_s, what)

    async def publish_and_settle(
        self, messages: Sequence[OutgoingMessage], what: str, within_s: float
    ) -> None:
        if not messages:
            return
        await publish(self.producer, messages)
        await self.settle(sorted({m.topic for m in messages}), what, within_s)

    async def written_out(self, within_s: float) -> float:
        """When no service's write-ahead log holds an entry not written out (monotonic)."""
        deadline = time.monotonic() + within_s
        pending = {"p": {"$exists": True}}
        while time.monotonic() < deadline:
            counts = [
                await self.mongo[db]["wal"].count_documents(pending) for db in ("stock", "serials")
            ]
            if not any(counts):
                return time.monotonic()
            await asyncio.sleep(0.05)
        raise TimeoutError(f"the write-ahead logs were not written out within {within_s:.0f} s")

    async def ready_groups(self, within_s: float = 120.0) -> None:
        """Both groups have exactly the instances the bench started, and nothing pending:
        a stray consumer (say, `make run`) would share the partitions and the work."""
        self.services.check_alive()
        deadline = time.monotonic() + within_s
        for service, group in zip(WORKERS, GROUPS, strict=True):
            wanted = self.services.count(service)
            while (members := await group_members(self.admin, group)) != wanted:
                if time.monotonic() > deadline:
                    raise RuntimeError(
                        f"consumer group {group} has {members} members, the bench started "
                        f"{wanted}: stop other instances (`make stop`) or use the fresh stack"
                    )
                await asyncio.sleep(0.5)
        topics = [t.topic for t in (EventType.PRODUCT_REGISTERED, EventType.ITEM_RECEIVED,
                                    EventType.ITEM_SOLD, EventType.ITEM_RETURNED,
                                    EventType.BATCH_RECALLED)]  # fmt: skip
        await self.settle(topics, "backlog before the scenario", within_s=max(60.0, within_s))
        # And nothing of an earlier scenario still being written out in the background: each
        # scenario starts from a quiet system, whatever ran before it.
        await self.written_out(max(300.0, within_s))

    async def trouble(self, since: Offsets, run: str) -> list[Any]:
        return await self.reader.records(since, f"B{run}-".encode())

    def setup_timeout(self, events: int) -> float:
        """Generous: a slow or loaded machine is measured, not failed (FerretDB flags a
        recall at a few hundred units a second under load)."""
        return max(300.0, events / 50)

    # ------------------------------------------------------------------ sales scenarios

    async def prepare_sales(self, workload: SalesWorkload) -> None:
        await self.publish_and_settle(
            encode_all(workload.products), "products registered", self.setup_timeout(1000)
        )
        await self.publish_and_settle(
            encode_all(workload.receipts),
            "stock received",
            self.setup_timeout(len(workload.receipts) * 10 + len(workload.units)),
        )
        # The receipts' units are written out in the background (a third of the lines are
        # serial units): the sales are measured once that is done, not while it goes on.
        await self.written_out(self.setup_timeout(len(workload.units)))

    async def verify_sales(self, outcome: Outcome, workload: SalesWorkload, since: Offsets) -> None:
        await verify.stock_levels(outcome.verdict, self.services.url("stock"), workload.levels)
        await verify.sold_units(outcome.verdict, self.units, workload)
        verify.no_flags(outcome.verdict, await self.trouble(since, workload.run))

    async def sales_throughput(self, name: str, title: str, instances: int) -> Outcome:
        """Scenario 1 (and 5): every sale line published as fast as possible."""
        outcome = Outcome(name, title)
        sizes = self.sizes
        self.services.scale(dict.fromkeys(WORKERS, instances))
        await self.ready_groups()
        workload = sales_workload(new_run(), sizes.sales_lines, sizes.sales_skus, sizes.locations)
        await self.prepare_sales(workload)
        messages = encode_all(workload.sales)
        since = await self.reader.ends(TROUBLE_TOPICS)
        topic = EventType.ITEM_SOLD.topic
        partitions = await self.reader.partitions([topic])
        base = await self.reader.ends([topic])
        async with CommitWatcher(self.admin, GROUPS, partitions, self.poll_s) as watcher:
            started = time.monotonic()
            sent = await publish(self.producer, messages)
            published = time.monotonic()
            targets = targets_of(sent, topic)
            await watcher.wait(targets, self.setup_timeout(len(messages) * 5), "sales applied")
        self.services.check_alive()
        # Committed is durable and visible to every read; the documents themselves are
        # written out from the write-ahead log in the background: when that is done too.
        written_out = await self.written_out(self.setup_timeout(len(messages) * 5)) - started
        done = {g: watcher.done_at(targets, g) or published for g in GROUPS}
        elapsed = max(done.values()) - started
        lines = len(messages)
        serial_share = sum(1 for s in workload.sales if s.serial) / lines
        outcome.figures = {
            "instances": instances,
            "lines": lines,
            "skus": sizes.sales_skus,
            "locations": sizes.locations,
            "serial_share": round(serial_share, 3),
            "message_bytes": round(sum(len(m.value) for m in messages) / lines),
            "publish_s": round(published - started, 3),
            "publish_per_s": round(lines / (published - started)),
            "stock_done_s": round(done[GROUPS[0]] - started, 3),
            "serials_done_s": round(done[GROUPS[1]] - started, 3),
            "seconds": round(elapsed, 3),
            "lines_per_s": round(lines / elapsed),
            "written_out_s": round(written_out, 3),
            "poll_ms": round(self.poll_s * 1000, 1),
        }
        self._ratios(outcome, lines / elapsed, serial_share)
        outcome.series = _sales_series(sent, watcher, base, started)
        await self.verify_sales(outcome, workload, since)
        return outcome

    def _ratios(self, outcome: Outcome, per_s: float, serial_share: float) -> None:
        kafka = self.ceilings.get("kafka")
        database = self.ceilings.get("database")
        if isinstance(kafka, KafkaCeiling):
            outcome.figures["kafka_ceiling_per_s"] = round(kafka.per_s)
        if isinstance(database, DatabaseCeiling):
            outcome.figures["database_ceiling_per_s"] = round(
                database.sale_lines_per_s(serial_share)
            )
        ceilings = [
            outcome.figures[k] for k in ("kafka_ceiling_per_s", "database_ceiling_per_s")
            if k in outcome.figures
        ]  # fmt: skip
        if ceilings:
            outcome.figures["ceiling_per_s"] = min(ceilings)
            outcome.figures["ratio_to_ceiling"] = round(per_s / min(ceilings), 3)

    async def latency(self) -> Outcome:
        """Scenario 2: a steady rate of sale lines; publish -> effect durable per line."""
        sizes = self.sizes
        outcome = Outcome("latency", f"Latency at {sizes.latency_rate:,.0f} lines/s")
        self.services.scale(dict.fromkeys(WORKERS, 1))
        await self.ready_groups()
        lines = int(sizes.latency_rate * sizes.latency_seconds)
        workload = sales_workload(new_run(), lines, sizes.sales_skus, sizes.locations)
        await self.prepare_sales(workload)
        messages = encode_all(workload.sales)
        since = await self.reader.ends(TROUBLE_TOPICS)
        topic = EventType.ITEM_SOLD.topic
        partitions = await self.reader.partitions([topic])
        pauses_before = await self.full_collections()
        with collector_out_of_the_way() as own:
            async with CommitWatcher(self.admin, GROUPS, partitions, self.poll_s) as watcher:
                started = time.monotonic()
                sent = await publish_paced(self.latency_producer, messages, sizes.latency_rate)
                published = time.monotonic()
                targets = targets_of(sent, topic)
                await watcher.wait(targets, self.setup_timeout(len(messages) * 5), "sales applied")
        self.services.check_alive()
        pauses = (await self.full_collections()) - pauses_before
        latencies = []
        # Per service too: which one makes the tail.
        by_service: dict[str, list[float]] = {service: [] for service in WORKERS}
        for record in sent:
            tp = TopicPartition(topic, record.partition)
            applied = watcher.applied_at(tp, record.offset)
            assert applied is not None  # the wait above saw every record applied
            latencies.append(1000 * (applied - record.at))
            for service, group in zip(WORKERS, GROUPS, strict=True):
                passed = watcher.passed_at(group, tp, record.offset)
                assert passed is not None
                by_service[service].append(1000 * (passed - record.at))
        quantiles = statistics.quantiles(latencies, n=100, method="inclusive")
        outcome.latencies_ms = latencies
        outcome.figures = {
            "lines": lines,
            "rate_per_s": sizes.latency_rate,
            "achieved_publish_per_s": round(lines / (published - started)),
            "p50_ms": round(quantiles[49], 1),
            "p95_ms": round(quantiles[94], 1),
            "p99_ms": round(quantiles[98], 1),
            "max_ms": round(max(latencies), 1),
            "mean_ms": round(statistics.fmean(latencies), 1),
            "poll_interval_ms": round(self.poll_s * 1000, 1),
            "mean_poll_round_trip_ms": round(watcher.mean_poll_ms, 2),
            **{
                f"{service}_p99_ms": round(
                    statistics.quantiles(values, n=100, method="inclusive")[98], 1
                )
                for service, values in by_service.items()
            },
            # Python's full collections during the run: each stops the service (its batch
            # waits it out), so they show in the tail.
            **{
                f"{service}_full_gc": f"{pauses.count(service)} ({pauses.seconds(service):.2f} s)"
                for service in WORKERS
            },
            "bench_full_gc": f"{own.count} ({own.seconds:.2f} s)",
        }
        outcome.series = _latency_series(sent, latencies, started)
        await self.verify_sales(outcome, workload, since)
        return outcome

    async def full_collections(self) -> ServiceCollections:
        """Each worker's full garbage collections so far (`lotline_gc_pause_seconds`)."""
        pauses = ServiceCollections()
        async with httpx.AsyncClient(timeout=10) as http:
            for service in WORKERS:
                response = await http.get(f"{self.services.url(service)}/metrics")
                response.raise_for_status()
                pauses.read(service, response.text)
        return pauses

    # ------------------------------------------------------------------------- receipt

    async def big_receipt(self) -> Outcome:
        """Scenario 3: one receipt with every serial of a container."""
        sizes = self.sizes
        outcome = Outcome("receipt", f"Big receipt of {sizes.receipt_serials:,} serials")
        self.services.scale(dict.fromkeys(WORKERS, 1))
        await self.ready_groups()
        run = new_run()
        workload = receipt_workload(run, sizes.receipt_serials)
        await self.publish_and_settle(
            encode_all([workload.product]), "product registered", self.setup_timeout(100)
        )
        (message,) = encode_all([workload.receipt])
        since = await self.reader.ends(TROUBLE_TOPICS)
        topic = EventType.ITEM_RECEIVED.topic
        partitions = await self.reader.partitions([topic])
        async with CommitWatcher(self.admin, GROUPS, partitions, self.poll_s) as watcher:
            started = time.monotonic()
            sent = await publish(self.producer, [message])
            targets = targets_of(sent, topic)
            await watcher.wait(
                targets, self.setup_timeout(sizes.receipt_serials), "receipt registered"
            )
        self.services.check_alive()
        serials_done = (watcher.done_at(targets, GROUPS[1]) or started) - started
        stock_done = (watcher.done_at(targets, GROUPS[0]) or started) - started
        outcome.figures = {
            "serials": sizes.receipt_serials,
            "message_bytes": len(message.value),
            "seconds": round(serials_done, 3),
            "stock_done_s": round(stock_done, 3),
            "units_per_s": round(sizes.receipt_serials / serials_done),
        }
        database = self.ceilings.get("database")
        if isinstance(database, DatabaseCeiling):
            outcome.figures["ceiling_per_s"] = round(database.unit_inserts_per_s)
            outcome.figures["ratio_to_ceiling"] = round(
                sizes.receipt_serials / serials_done / database.unit_inserts_per_s, 3
            )
        await verify.registered_receipt(
            outcome.verdict,
            self.services.url("serial-registry"),
            self.services.url("stock"),
            workload.product.sku,
            workload.lot_code,
            sizes.receipt_serials,
        )
        verify.no_flags(outcome.verdict, await self.trouble(since, run))
        return outcome

    # -------------------------------------------------------------------------- recall

    async def recall_at_scale(self) -> Outcome:
        """Scenario 4: receive many serialized units (not timed), then recall every lot
        through the recall service's API, as an operator does.

        Three moments, from the POST: stock has quarantined every lot (its committed offset
        past the broadcast); the units are recalled (the serial registry saved the recall's
        scope, which every reader applies, and its HTTP API shows a unit of every lot
        recalled); and the contact list is complete (the recall service holds the registry's
        whole `units-recalled` answer, which needs a pass over the units)."""
        sizes = self.sizes
        outcome = Outcome(
            "recall",
            f"Recall of {sizes.recall_units:,} units in {sizes.recall_lots} lots, "
            f"{sizes.recall_stores} stores",
        )
        self.services.scale({**dict.fromkeys(WORKERS, 1), "recall": 1})
        await self.ready_groups()
        run = new_run()
        workload = recall_workload(run, sizes.recall_units, sizes.recall_lots, sizes.recall_stores)
        await self.publish_and_settle(
            encode_all([workload.product]), "product registered", self.setup_timeout(100)
        )
        received = time.monotonic()
        for part in _parts(workload.receipts(), 50):
            await publish(self.producer, encode_all(part))
        await self.settle(
            [EventType.ITEM_RECEIVED.topic],
            "recalled units received",
            self.setup_timeout(sizes.recall_units),
        )
        outcome.figures["setup_receive_s"] = round(time.monotonic() - received, 1)
        # The units are written out in the background (about a minute for a million): the
        # recall is issued once that is done (issued while it goes on, it shares the
        # database with it: the contact list took 91 s instead of about 8).
        await self.written_out(self.setup_timeout(sizes.recall_units))
        outcome.figures["setup_written_out_s"] = round(time.monotonic() - received, 1)
        since = await self.reader.ends(TROUBLE_TOPICS)
        topic = EventType.BATCH_RECALLED.topic
        partitions = await self.reader.partitions([topic])
        before = await self.reader.ends([topic])
        recall_id = f"RC-B{run}"
        serials_url = self.services.url("serial-registry")
        recall_url = self.services.url("recall")
        within = self.setup_timeout(sizes.recall_units)
        async with (
            CommitWatcher(self.admin, GROUPS, partitions, self.poll_s) as watcher,
            httpx.AsyncClient(timeout=120) as http,
        ):
            started = time.monotonic()
            flagged = asyncio.create_task(
                self._recalled_visible(http, serials_url, workload, recall_id, within)
            )
            # The recall service records every quarantined lot at every store before it gets
            # to the registry's answer (one subscriber): allow for those lines too.
            lines = sizes.recall_lots * sizes.recall_stores
            contacts = asyncio.create_task(
                self._contact_list_complete(
                    http, recall_url, workload, recall_id, within + lines / 4
                )
            )
            try:
                token = self.services.operator_token
                await issue_recall(http, recall_url, token, workload, recall_id)
                targets = await self._new_records(topic, before, within_s=60)
                await watcher.wait(targets, within, "recall applied")
                scope_saved, units_visible = await flagged
                contact_list = await contacts
            finally:
                for task in (flagged, contacts):
                    task.cancel()
                await asyncio.gather(flagged, contacts, return_exceptions=True)
        self.services.check_alive()
        stock_done = (watcher.done_at(targets, GROUPS[0]) or started) - started
        serials_committed = (watcher.done_at(targets, GROUPS[1]) or started) - started
        serials_flagged = max(scope_saved, units_visible) - started
        elapsed = max(stock_done, serials_flagged)
        contact_s = contact_list - started
        outcome.figures.update(
            {
                "units": sizes.recall_units,
                "lots": sizes.recall_lots,
                "stores": sizes.recall_stores,
                "issued_via": "POST /recalls (operator token)",
                "stock_quarantined_s": round(stock_done, 3),
                "scope_saved_s": round(scope_saved - started, 3),
                "serials_flagged_s": round(serials_flagged, 3),
                "seconds": round(elapsed, 3),
                "units_per_s": round(sizes.recall_units / elapsed),
                "contact_list_s": round(contact_s, 3),
                "contact_list_units_per_s": round(sizes.recall_units / contact_s),
                "serials_committed_s": round(serials_committed, 3),
            }
        )
        database = self.ceilings.get("database")
        if isinstance(database, DatabaseCeiling):
            # A lot recall writes one document now: no write ceiling bounds it. The contact
            # list reads every recalled unit's journal entry; the raw streamed read of unit
            # documents is the reference.
            outcome.figures["contact_list_read_ceiling_per_s"] = round(database.unit_reads_per_s)
            outcome.figures["contact_list_ratio_to_read_ceiling"] = round(
                sizes.recall_units / contact_s / database.unit_reads_per_s, 3
            )
        checks_started = time.monotonic()
        await verify.recalled(
            outcome.verdict,
            self.services.url("stock"),
            serials_url,
            recall_url,
            self.mongo["serials"]["recalls"],
            workload,
            recall_id,
            pages=sizes.recall_pages_checked,
        )
        outcome.figures["lot_pages_checked"] = min(
            sizes.recall_pages_checked, len(workload.lot_codes)
        )
        outcome.figures["verify_s"] = round(time.monotonic() - checks_started, 1)
        verify.no_flags(outcome.verdict, await self.trouble(since, run))
        self.services.scale({"recall": 0})
        return outcome

    async def _recalled_visible(
        self,
        http: httpx.AsyncClient,
        serials_url: str,
        workload: RecallWorkload,
        recall_id: str,
        within_s: float,
    ) -> tuple[float, float]:
        """When the recall's scope covering every lot was saved (polled by _id in the serial
        registry's database), and when its HTTP API then showed a unit of every lot recalled
        by it (`GET /units/...`, which applies the scopes as the lot pages do; a lot page
        reads the whole lot's journal, so polling them would time the reads, not the recall:
        the lot pages are checked afterwards)."""
        recalls = self.mongo["serials"]["recalls"]
        deadline = time.monotonic() + within_s
        while not verify.scope_of(
            await recalls.find_one({"_id": workload.sku}), recall_id, workload.lot_codes
        ):
            if time.monotonic() > deadline:
                raise TimeoutError(f"the scope of {recall_id} was not saved within {within_s} s")
            await asyncio.sleep(self.poll_s)
        scope_saved = time.monotonic()
        pending = {code: workload.sample_serial(code) for code in workload.lot_codes}
        gate = asyncio.Semaphore(verify.READ_CONCURRENCY)

        async def shows(code: str, serial: str) -> bool:
            async with gate:
                unit = await verify.get_json(http, f"{serials_url}/units/{workload.sku}/{serial}")
            return bool(unit["recalled"]) and recall_id in unit["recall_ids"]

        while pending:
            if time.monotonic() > deadline:
                raise TimeoutError(f"lots {sorted(pending)[:5]} not shown recalled by the API")
            answers = await asyncio.gather(*(shows(c, s) for c, s in pending.items()))
            pending = {c: s for (c, s), ok in zip(pending.items(), answers, strict=True) if not ok}
            if pending:
                await asyncio.sleep(self.poll_s)
        return scope_saved, time.monotonic()

    async def _contact_list_complete(
        self,
        http: httpx.AsyncClient,
        recall_url: str,
        workload: RecallWorkload,
        recall_id: str,
        within_s: float,
    ) -> float:
        """When the recall service had the serial registry's whole answer for the recall
        (its progress: `units_answer.complete`), so its customers to contact are all known.
        Polled through the list of the SKU's recalls, which carries the progress without the
        detail's lists, every 100 ms: one request at a time, not to load what it measures."""
        deadline = time.monotonic() + within_s
        interval = max(self.poll_s, 0.1)
        url = f"{recall_url}/recalls"
        while time.monotonic() < deadline:
            response = await http.get(url, params={"sku": workload.sku, "limit": 10})
            if response.status_code == 200 and any(
                item["recall_id"] == recall_id and item["progress"]["units_answer"]["complete"]
                for item in response.json()["items"]
            ):
                return time.monotonic()
            await asyncio.sleep(interval)
        raise TimeoutError(f"the contact list of {recall_id} was not complete within {within_s} s")

    async def _new_records(self, topic: str, before: Offsets, within_s: float) -> Offsets:
        """The end offsets once something new landed on the topic (the recall's broadcast)."""
        deadline = time.monotonic() + within_s
        while time.monotonic() < deadline:
            now = await self.reader.ends([topic])
            if any(now[tp] > before.get(tp, 0) for tp in now):
                return {tp: end for tp, end in now.items() if end > before.get(tp, 0)}
            await asyncio.sleep(0.005)
        raise TimeoutError(f"nothing was published on {topic} within {within_s:.0f} s")


async def issue_recall(
    http: httpx.AsyncClient,
    recall_url: str,
    operator_token: str,
    workload: RecallWorkload,
    recall_id: str,
) -> None:
    """Issue the recall as an operator does: POST /recalls with the operator's token (the
    recall service names the operator from it) and an idempotency key."""
    headers = {"Authorization": f"Bearer {operator_token}", "Idempotency-Key": recall_id}
    response = await http.post(
        f"{recall_url}/recalls", json=workload.recall_request(recall_id), headers=headers
    )
    if response.status_code != 201:
        raise RuntimeError(f"POST /recalls answered {response.status_code}: {response.text[:500]}")


def _cumulative(times: Sequence[float]) -> list[tuple[float, float]]:
    return [(t, n + 1) for n, t in enumerate(times)]


def _sales_series(
    sent: Sequence[Sent], watcher: CommitWatcher, base: Offsets, started: float
) -> dict[str, list[tuple[float, float]]]:
    """What the chart draws of a sales run: lines published and applied by each worker."""
    return {
        "published": _cumulative([s.at - started for s in sent]),
        **{
            f"applied by {service}": [
                (t - started, n) for t, n in watcher.applied_series(group, base)
            ]
            for service, group in zip(WORKERS, GROUPS, strict=True)
        },
    }


@contextmanager
def collector_out_of_the_way() -> Iterator[OwnCollections]:
    """While the bench measures latency, its own collector must not stop it: the 60,000
    encoded lines it holds made each of its full collections a pause of 0.4-1 s, in which
    it neither published nor saw commits, and both services' p99 showed it (a gap in every
    consumer at the same moments, then one burst of 700-900 lines into both). Freezing what
    it allocated before was not enough: the records of the lines it sends during the run
    still made three full collections of 0.1 s each. So the collector is off until the
    measurement ends (as `timeit` does); the bench's garbage is freed by reference counts
    meanwhile, and what is cyclic waits a minute. Any full collection still taken is
    counted and reported (`bench_full_gc`)."""
    own = OwnCollections()
    gc.collect()
    gc.freeze()
    gc.callbacks.append(own)
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield own
    finally:
        if enabled:
            gc.enable()
        gc.callbacks.remove(own)
        gc.unfreeze()


@dataclass
class OwnCollections:
    """The bench's own full collections while it measures (a `gc.callbacks` hook)."""

    count: int = 0
    seconds: float = 0.0
    _started: float = 0.0

    def __call__(self, phase: str, info: dict[str, int]) -> None:
        if info.get("generation") != 2:
            return
        if phase == "start":
            self._started = time.perf_counter()
        else:
            self.count += 1
            self.seconds += time.perf_counter() - self._started


@dataclass
class ServiceCollections:
    """Full collections per service, from the `generation="2"` series of each exposition."""

    counts: dict[str, float] = field(default_factory=dict)
    sums: dict[str, float] = field(default_factory=dict)

    def read(self, service: str, exposition: str) -> None:
        for line in exposition.splitlines():
            if 'generation="2"' not in line:
                continue
            name, _, value = line.rpartition(" ")
            if name.startswith("lotline_gc_pause_seconds_count"):
                self.counts[service] = float(value)
            elif name.startswith("lotline_gc_pause_seconds_sum"):
                self.sums[service] = float(value)

    def count(self, service: str) -> int:
        return int(self.counts.get(service, 0))

    def seconds(self, service: str) -> float:
        return self.sums.get(service, 0.0)

    def __sub__(self, earlier: ServiceCollections) -> ServiceCollections:
        return ServiceCollections(
            {s: n - earlier.counts.get(s, 0) for s, n in self.counts.items()},
            {s: n - earlier.sums.get(s, 0) for s, n in self.sums.items()},
        )


def _latency_series(
    sent: Sequence[Sent], latencies_ms: Sequence[float], started: float
) -> dict[str, list[tuple[float, float]]]:
    """What the chart draws of a latency run: each second's p99 and worst line, by when the
    lines were published (so a slow moment shows where it was)."""
    by_second: dict[int, list[float]] = {}
    for record, latency in zip(sent, latencies_ms, strict=True):
        by_second.setdefault(int(record.at - started), []).append(latency)
    p99: list[tuple[float, float]] = []
    worst: list[tuple[float, float]] = []
    for second, values in sorted(by_second.items()):
        values.sort()
        p99.append((second + 0.5, values[min(len(values) - 1, int(len(values) * 0.99))]))
        worst.append((second + 0.5, values[-1]))
    return {"p99 of the second": p99, "worst of the second": worst}


def _parts(items: Iterable[Any], size: int) -> Iterator[list[Any]]:
    part: list[Any] = []
    for item in items:
        part.append(item)
        if len(part) == size:
            yield part
            part = []
    if part:
        yield part
