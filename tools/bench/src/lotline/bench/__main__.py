"""`python -m lotline.bench`: bring up a stack, start the services, measure, verify, report.

Exit status: 0 when every scenario run ended in exactly the right state, 1 when one did
not (or failed), 2 on bad arguments. Timing never decides the exit status.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys
import time
import traceback
from collections.abc import Awaitable, Callable
from dataclasses import fields, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from pymongo import AsyncMongoClient
from rich.console import Console

from lotline.bench import report
from lotline.bench.ceilings import measure_database, measure_kafka
from lotline.bench.infra import Infrastructure, Services
from lotline.bench.kafka_io import TopicReader, admin_client, producer
from lotline.bench.scenarios import QUICK, Bench, Outcome, Sizes, encode_all
from lotline.bench.workload import sales_workload

SCENARIOS = ("ceilings", "sales", "latency", "receipt", "recall", "scale-out")


def parse(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="lotline-bench",
        description="Measure Lotline end to end against this machine's own Kafka and "
        "database ceilings, verifying every scenario's final state.",
    )
    parser.add_argument(
        "--quick", action="store_true", help="small sizes (about two minutes): a smoke test"
    )
    parser.add_argument(
        "--scenario",
        action="append",
        choices=SCENARIOS,
        help="run only these (repeatable); default: all",
    )
    parser.add_argument(
        "--out", type=Path, default=Path("bench-results"), help="where results.json, chart.png "
        "and the services' logs go (default: bench-results/)"
    )  # fmt: skip
    parser.add_argument(
        "--infra",
        choices=("fresh", "env"),
        default="fresh",
        help="fresh: a new local stack on free ports, deleted afterwards (default); env: the "
        "Kafka and database named by KAFKA_BOOTSTRAP_SERVERS and MONGODB_URL",
    )
    parser.add_argument(
        "--keep-stack", action="store_true", help="keep the fresh stack's data afterwards"
    )
    parser.add_argument(
        "--poll-ms",
        type=float,
        default=5.0,
        help="how often committed offsets are polled while timing (default 5 ms)",
    )
    for size in fields(Sizes):
        parser.add_argument(
            f"--{size.name.replace('_', '-')}",
            type=type(size.default),
            default=None,
            metavar="N",
            help=f"size override (full: {size.default:,})",
        )
    return parser.parse_args(argv)


def overrides_of(args: argparse.Namespace) -> dict[str, Any]:
    return {
        f.name: getattr(args, f.name) for f in fields(Sizes) if getattr(args, f.name) is not None
    }


def sizes_of(args: argparse.Namespace) -> Sizes:
    return replace(QUICK if args.quick else Sizes(), **overrides_of(args))


async def run(args: argparse.Namespace, console: Console) -> int:
    sizes = sizes_of(args)
    chosen = [s for s in SCENARIOS if s in (args.scenario or SCENARIOS)]
    out: Path = args.out
    log_dir = out / "logs"
    started_at = datetime.now(UTC)
    mode = "quick" if args.quick else "full"
    if overrides := overrides_of(args):
        mode += f", sizes overridden: {overrides}"
    console.print(f"[bold]Lotline bench[/bold] {mode}: {chosen}")
    infra = (
        await asyncio.to_thread(Infrastructure.fresh, args.keep_stack)
        if args.infra == "fresh"
        else await asyncio.to_thread(Infrastructure.from_env)
    )
    console.print(f"infrastructure: {infra.how} (Kafka {infra.kafka_bootstrap})")
    services = Services(infra, log_dir)
    outcomes: list[Outcome] = []
    context: dict[str, Any] = {
        "started_at": started_at.isoformat(),
        "mode": mode,
        "scenarios_run": chosen,
        "sizes": sizes.__dict__,
        "infrastructure": infra.how,
        "machine": report.machine(),
        "commit_poll_ms": args.poll_ms,
    }
    login = infra.client_options
    admin = await admin_client(infra.kafka_bootstrap, login)
    reader = TopicReader(infra.kafka_bootstrap, login)
    fast = producer(infra.kafka_bootstrap, login, linger_ms=20)
    prompt = producer(infra.kafka_bootstrap, login, linger_ms=1)
    mongo: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(infra.mongodb_url, tz_aware=True)
    bench = Bench(
        infra, services, sizes, admin, reader, fast, prompt, mongo, args.poll_ms / 1000, log_dir
    )
    try:
        await reader.start()
        await fast.start()
        await prompt.start()
        if "ceilings" in chosen:
            await measure_ceilings(bench, console)
        plan: dict[str, Callable[[], Awaitable[Outcome]]] = {
            "sales": lambda: bench.sales_throughput("sales", "Sales, 1 instance each", 1),
            "latency": bench.latency,
            "receipt": bench.big_receipt,
            "recall": bench.recall_at_scale,
            "scale-out": lambda: bench.sales_throughput("scale-out", "Sales, 2 instances each", 2),
        }
        if "scale-out" in chosen and "sales" not in chosen:
            chosen.insert(chosen.index("scale-out"), "sales")
        for name in chosen:
            if name == "ceilings":
                continue
            step = time.monotonic()
            console.print(f"[bold]{name}[/bold] ...")
            try:
                outcome = await plan[name]()
            except Exception as exc:
                outcome = Outcome(name, name, error=f"{type(exc).__name__}: {exc}")
                console.print(traceback.format_exc())
            outcomes.append(outcome)
            console.print(
                f"  {report.headline(outcome)}; "
                f"{'correct' if outcome.verified else 'NOT correct'} "
                f"({time.monotonic() - step:.0f} s with setup and checks)"
            )
            _compare_scale_out(outcomes)
            # After each scenario, so a long run that is stopped still leaves its figures.
            report.write_json(out / "results.json", outcomes, bench.ceilings, context)
        report.write_json(out / "results.json", outcomes, bench.ceilings, context)
        report.write_chart(out / "chart.png", outcomes)
        (out / "results.md").write_text(
            report.markdown(outcomes, bench.ceilings, mode, context["machine"])
        )
        report.print_report(outcomes, bench.ceilings, console)
        console.print(
            f"figures: {out / 'results.json'}, chart: {out / 'chart.png'}, "
            f"table for BENCHMARKS.md: {out / 'results.md'}"
        )
    finally:
        services.stop_all()
        for closing in (fast.stop(), prompt.stop(), reader.stop(), admin.close(), mongo.close()):
            try:
                await closing
            except Exception as exc:  # a close that fails must not hide the run's result
                console.print(f"[yellow]while closing: {exc!r}[/yellow]")
        await asyncio.to_thread(infra.close, args.keep_stack)
    return 0 if all(o.verified for o in outcomes) else 1


async def measure_ceilings(bench: Bench, console: Console) -> None:
    sizes = bench.sizes
    # The same record size as a sale line of the sales scenario.
    sample = encode_all(sales_workload("SIZE00", 300, 30, 1).sales)
    size = round(sum(len(m.value) for m in sample) / len(sample))
    console.print(f"[bold]ceilings[/bold]: Kafka alone ({sizes.kafka_records:,} x {size} B) ...")
    kafka = await measure_kafka(
        bench.infra.kafka_bootstrap,
        bench.infra.client_options,
        bench.infra.kafka_libs,
        size,
        sizes.kafka_records,
    )
    bench.ceilings["kafka"] = kafka
    console.print(
        f"  aiokafka {kafka.aiokafka_produce_per_s:,.0f} produced/s, "
        f"{kafka.aiokafka_consume_per_s:,.0f} consumed/s; JVM tools "
        f"{kafka.java_produce_per_s or 0:,.0f} / {kafka.java_consume_per_s or 0:,.0f} "
        f"{kafka.java_note}"
    )
    console.print("[bold]ceilings[/bold]: the database alone ...")
    database = await measure_database(bench.infra.mongodb_url, sizes.db_levels, sizes.db_units)
    bench.ceilings["database"] = database
    console.print(
        f"  level replaces {database.level_replaces_per_s:,.0f}/s, unit inserts "
        f"{database.unit_inserts_per_s:,.0f}/s, unit updates {database.unit_updates_per_s:,.0f}/s"
        f", unit reads {database.unit_reads_per_s:,.0f}/s; reference only (a lot recall no "
        f"longer writes each unit): update_many {database.unit_flag_update_many_per_s:,.0f}"
        " units/s"
    )


def _compare_scale_out(outcomes: list[Outcome]) -> None:
    one = next((o for o in outcomes if o.name == "sales" and o.verified), None)
    two = next((o for o in outcomes if o.name == "scale-out" and o.verified), None)
    if one and two:
        two.figures["speedup_vs_one_instance"] = round(
            two.figures["lines_per_s"] / one.figures["lines_per_s"], 2
        )


def main(argv: list[str] | None = None) -> int:
    args = parse(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    logging.basicConfig(level=logging.WARNING, format="%(name)s %(message)s")
    # Topics the bench creates are unknown to a client for a moment; aiokafka logs that
    # as an error, though it only waits for the metadata.
    logging.getLogger("aiokafka.cluster").setLevel(logging.CRITICAL)
    console = Console()
    try:
        return asyncio.run(run(args, console))
    except KeyboardInterrupt:
        console.print("[red]interrupted[/red]")
        return 1


if __name__ == "__main__":
    sys.exit(main())
