"""What a run leaves behind: one table on the terminal, the figures as JSON, one chart."""

from __future__ import annotations

import json
import os
import platform
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from lotline.bench.ceilings import DatabaseCeiling, KafkaCeiling, as_dict
from lotline.bench.scenarios import Outcome

# The targets of issue 5, shown beside each figure (never a pass/fail of the run).
TARGETS = {
    "sales": "≥ 10,000 lines/s, ≥ 50% of DB ceiling",
    "scale-out": "2 instances each: faster than 1",
    "latency": "p99 < 100 ms",
    "receipt": "100,000 serials < 5 s",
    "recall": "1,000,000 units < 10 s",
}


def machine() -> dict[str, Any]:
    cpu = platform.processor() or ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    memory_gb = None
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal"):
                memory_gb = round(int(line.split()[1]) / 1024 / 1024, 1)
    except OSError:
        pass
    return {
        "cpus": os.cpu_count(),
        "cpu_model": cpu,
        "memory_gb": memory_gb,
        "os": platform.platform(),
        "python": platform.python_version(),
        "load_average_at_start": os.getloadavg(),
    }


def headline(outcome: Outcome) -> str:
    f = outcome.figures
    if outcome.error is not None:
        return "failed"
    if outcome.name in ("sales", "scale-out"):
        written = f"; written out at {f['written_out_s']:.1f} s" if "written_out_s" in f else ""
        return f"{f['lines_per_s']:,} lines/s ({f['lines']:,} in {f['seconds']:.1f} s{written})"
    if outcome.name == "latency":
        return f"p50 {f['p50_ms']:.0f} / p95 {f['p95_ms']:.0f} / p99 {f['p99_ms']:.0f} ms"
    if outcome.name == "receipt":
        return f"{f['seconds']:.2f} s ({f['units_per_s']:,} units/s)"
    if outcome.name == "recall":
        return (
            f"recalled in {f['seconds']:.2f} s ({f['units_per_s']:,} units/s); contact list "
            f"complete after {f['contact_list_s']:.2f} s"
        )
    return ""


COLUMNS = ("scenario", "result", "raw ceiling", "ratio", "target (issue 5)", "state")


def rows(
    outcomes: list[Outcome], ceilings: dict[str, KafkaCeiling | DatabaseCeiling]
) -> list[tuple[str, ...]]:
    """The table's rows as plain text (the terminal colours the state)."""
    found: list[tuple[str, ...]] = []
    kafka = ceilings.get("kafka")
    if isinstance(kafka, KafkaCeiling):
        java = (
            f"JVM tools {kafka.java_produce_per_s:,.0f} / {kafka.java_consume_per_s:,.0f}"
            if kafka.java_produce_per_s and kafka.java_consume_per_s
            else kafka.java_note or "JVM tools not run"
        )
        found.append(
            (
                f"Kafka alone, {kafka.message_bytes} B records",
                f"aiokafka {kafka.aiokafka_produce_per_s:,.0f} / "
                f"{kafka.aiokafka_consume_per_s:,.0f}",
                java,
                "",
                "produced / consumed per s",
                "",
            )
        )
    database = ceilings.get("database")
    if isinstance(database, DatabaseCeiling):
        found.append(
            (
                "Database alone",
                f"level replaces {database.level_replaces_per_s:,.0f}/s, unit updates "
                f"{database.unit_updates_per_s:,.0f}/s",
                f"unit inserts {database.unit_inserts_per_s:,.0f}/s, unit reads "
                f"{database.unit_reads_per_s:,.0f}/s; reference, per-unit recall update_many "
                f"(not what a lot recall does now) {database.unit_flag_update_many_per_s:,.0f}"
                " units/s",
                "",
                "raw bulk writes",
                "",
            )
        )
    for outcome in outcomes:
        f = outcome.figures
        ceiling = f.get("ceiling_per_s")
        ratio = f.get("ratio_to_ceiling")
        state = (
            "correct"
            if outcome.verified
            else f"WRONG ({outcome.verdict.problem_count})"
            if outcome.error is None
            else "error"
        )
        ceiling_text = f"{ceiling:,}/s" if ceiling else ""
        if outcome.name == "recall" and (reads := f.get("contact_list_read_ceiling_per_s")):
            # A lot recall writes one document: the read of its units (the contact list) is
            # what a ceiling bounds.
            ceiling_text = f"{reads:,} unit reads/s (contact list)"
            ratio = f.get("contact_list_ratio_to_read_ceiling")
        found.append(
            (
                outcome.title,
                headline(outcome),
                ceiling_text,
                f"{ratio:.0%}" if ratio else "",
                TARGETS.get(outcome.name, ""),
                state,
            )
        )
    return found


def table(outcomes: list[Outcome], ceilings: dict[str, KafkaCeiling | DatabaseCeiling]) -> Table:
    grid = Table(title="Lotline benchmark", show_lines=False)
    for name in COLUMNS:
        grid.add_column(name, justify="right" if name in ("result", "ratio") else "left")
    colours = {"correct": "green", "": ""}
    for row in rows(outcomes, ceilings):
        colour = colours.get(row[-1], "red")
        grid.add_row(*row[:-1], f"[{colour}]{row[-1]}[/{colour}]" if colour else row[-1])
    return grid


def markdown(
    outcomes: list[Outcome],
    ceilings: dict[str, KafkaCeiling | DatabaseCeiling],
    mode: str,
    about: dict[str, Any],
) -> str:
    """The same table for BENCHMARKS.md, with the machine it ran on."""
    lines = [
        f"Run of {mode}; machine: {about['cpus']} CPUs ({about['cpu_model']}), "
        f"{about['memory_gb']} GB RAM, load average {about['load_average_at_start'][0]:.1f}.",
        "",
        "| " + " | ".join(COLUMNS) + " |",
        "|" + "---|" * len(COLUMNS),
    ]
    lines.extend("| " + " | ".join(row) + " |" for row in rows(outcomes, ceilings))
    return "\n".join(lines) + "\n"


def print_report(
    outcomes: list[Outcome],
    ceilings: dict[str, KafkaCeiling | DatabaseCeiling],
    console: Console,
) -> None:
    console.print(table(outcomes, ceilings))
    for outcome in outcomes:
        if outcome.error:
            console.print(f"[red]{outcome.title}: {outcome.error}[/red]")
        for problem in outcome.verdict.problems:
            console.print(f"[red]{outcome.title}: {problem}[/red]")


def write_json(
    path: Path,
    outcomes: list[Outcome],
    ceilings: dict[str, KafkaCeiling | DatabaseCeiling],
    context: dict[str, Any],
) -> None:
    document = {
        **context,
        "ceilings": {name: as_dict(ceiling) for name, ceiling in ceilings.items()},
        "scenarios": {outcome.name: outcome.as_dict() for outcome in outcomes},
    }
    path.write_text(json.dumps(document, indent=2, default=str) + "\n")


def _thin(points: list[tuple[float, float]], keep: int = 2000) -> list[tuple[float, float]]:
    step = max(1, len(points) // keep)
    return points[::step] + points[-1:]


def _rate(points: list[tuple[float, float]], bin_s: float = 0.5) -> tuple[list[float], list[float]]:
    """Events per second in bins, from a cumulative count series."""
    if not points:
        return [], []
    end = points[-1][0]
    bins = int(end / bin_s) + 1
    counts = [0.0] * (bins + 1)
    index = 0
    for b in range(bins + 1):
        limit = b * bin_s
        while index < len(points) and points[index][0] <= limit:
            index += 1
        counts[b] = points[index - 1][1] if index else 0.0
    xs = [b * bin_s for b in range(1, bins + 1)]
    ys = [(counts[b] - counts[b - 1]) / bin_s for b in range(1, bins + 1)]
    return xs, ys


def write_chart(path: Path, outcomes: list[Outcome]) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    throughput = [o for o in outcomes if o.name in ("sales", "scale-out") and o.series]
    latency = next((o for o in outcomes if o.name == "latency" and o.latencies_ms), None)
    fig, (left, right) = plt.subplots(1, 2, figsize=(14, 5))
    for outcome in throughput:
        for label, points in outcome.series.items():
            if not points:
                continue
            if label == "published":
                # A burst of a second or two: drawn as a rate it would flatten the rest.
                rate = points[-1][1] / max(points[-1][0], 1e-3)
                left.plot([], [], " ", label=f"{outcome.title}: published at {rate:,.0f}/s")
                continue
            # About 60 bins over the run: batches of hundreds make finer bins all spikes.
            xs, ys = _rate(_thin(points, 20_000), bin_s=max(1.0, points[-1][0] / 60))
            left.plot(xs, ys, label=f"{outcome.title}: {label}", linewidth=1)
    left.set_xlabel("seconds since the first sale line was published")
    left.set_ylabel("sale lines per second")
    left.set_title("Throughput over time")
    if throughput:
        left.legend(fontsize=7)
    elif latency is not None and latency.series:
        # No throughput run: the left panel shows when the slow lines were published.
        for label, points in latency.series.items():
            left.plot([x for x, _ in points], [y for _, y in points], label=label, linewidth=1)
        left.set_ylabel("publish -> effect durable, ms")
        left.set_title(f"{latency.title}: over time")
        left.legend(fontsize=7)
    left.grid(alpha=0.3)
    if latency is not None:
        values = sorted(latency.latencies_ms)
        right.hist(values, bins=100, color="tab:blue", alpha=0.8)
        for q, style in (("p50_ms", "-"), ("p95_ms", "--"), ("p99_ms", ":")):
            value = latency.figures[q]
            right.axvline(value, color="black", linestyle=style, label=f"{q[:3]} {value:.0f} ms")
        right.set_xlabel(
            f"publish -> effect durable, ms (commit polled every "
            f"{latency.figures['poll_interval_ms']} ms)"
        )
        right.set_ylabel("sale lines")
        right.set_title(latency.title)
        right.legend()
    else:
        right.set_title("Latency (scenario not run)")
    right.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
