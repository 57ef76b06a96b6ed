"""A service's /metrics, scraped after events flow: the named series and their values."""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import httpx
import pytest
from conftest import EventBus, Infra, ServiceProcess
from prometheus_client.parser import text_string_to_metric_families

from lotline.events import ItemReceived, ItemSold, ProductRegistered, Tracking

from support import consumer_lag, eventually

pytestmark = pytest.mark.infra

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]
DASHBOARD = Path(__file__).resolve().parents[2] / "ops" / "grafana" / "lotline.json"


async def scrape(service: ServiceProcess) -> Samples:
    async with httpx.AsyncClient(base_url=service.url) as http:
        response = await http.get("/metrics")
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("text/plain; version=")
    samples: Samples = {}
    for family in text_string_to_metric_families(response.text):
        for sample in family.samples:
            samples[(sample.name, frozenset(sample.labels.items()))] = sample.value
    return samples


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples.get((name, frozenset(labels.items())), 0.0)


def series(samples: Samples, name: str) -> dict[frozenset[tuple[str, str]], float]:
    return {labels: v for (n, labels), v in samples.items() if n == name}


def lag(samples: Samples) -> dict[tuple[str, str], float]:
    return {
        (dict(labels)["topic"], dict(labels)["partition"]): v
        for labels, v in series(samples, "lotline_consumer_lag").items()
    }


def sale(sku: str, sale_id: str, quantity: int) -> ItemSold:
    return ItemSold(
        sku=sku,
        sale_id=sale_id,
        line=1,
        location="S1",
        quantity=quantity,
        sold_at=datetime.now(UTC),
    )


async def test_stock_metrics_count_what_flowed(
    infra: Infra, bus: EventBus, start_service: Callable[..., ServiceProcess], run_id: str
) -> None:
    stock = start_service("stock")
    sku = f"METRICS-{run_id}"

    async def caught_up() -> Samples:
        # Whatever earlier runs left on the topics is applied (or dead-lettered, if it waits
        # for a product that never comes) first; counts start after.
        assert await consumer_lag(infra.kafka_bootstrap, "stock", infra.client_options()) == 0
        samples = await scrape(stock)
        assert all(v == 0 for v in lag(samples).values()), lag(samples)
        return samples

    before = await eventually(caught_up, timeout=120)

    def delta(now: Samples, name: str, **labels: str) -> float:
        return value(now, name, **labels) - value(before, name, **labels)

    # A sale of a product stock has not heard of yet is put off until it has.
    await bus.publish(sale(sku, f"T0-{run_id}", 2))

    async def deferred() -> None:
        now = await scrape(stock)
        assert delta(now, "lotline_events_deferred_total", topic="item-sold") >= 1

    await eventually(deferred)
    await bus.publish(ProductRegistered(sku=sku, name="Metrics soap", tracking=Tracking.QUANTITY))
    await bus.publish(ItemReceived(receipt_id=f"R-{run_id}", location="S1", sku=sku, quantity=10))
    await bus.publish(*(sale(sku, f"T{n}-{run_id}", 1) for n in (1, 2, 3)))
    # One record no codec can read: dead-lettered, never applied.
    await bus.send_raw("item-sold", b"\xff not an event", key=sku.encode())

    async def applied() -> Samples:
        now = await scrape(stock)
        assert delta(now, "lotline_events_applied_total", topic="item-sold") == 4
        assert delta(now, "lotline_events_applied_total", topic="item-received") == 1
        assert delta(now, "lotline_events_applied_total", topic="product-registered") == 1
        assert delta(now, "lotline_events_dead_lettered_total", topic="item-sold") == 1
        assert lag(now), "no partition's lag is reported"
        assert all(v == 0 for v in lag(now).values()), lag(now)
        # The levels it changed are written out of the log in the background.
        assert value(now, "lotline_wal_pending_docs") == 0
        return now

    after = await eventually(applied)
    # Every record read is applied, put off, dead-lettered or a duplicate (a partition is
    # read again from a deferred event, so the sales after it come again, and are dropped).
    accounted = sum(
        delta(after, f"lotline_events_{kind}_total", topic="item-sold")
        for kind in ("applied", "deferred", "dead_lettered", "duplicate", "misrouted")
    )
    assert delta(after, "lotline_events_consumed_total", topic="item-sold") == accounted
    assert accounted >= 4 + 1 + 1
    assert any(topic == "item-sold" for topic, _ in lag(after))
    batches = delta(after, "lotline_batch_size_events_count", topic="item-sold")
    assert batches >= 1
    assert delta(after, "lotline_batch_duration_seconds_count", topic="item-sold") == batches
    assert delta(after, "lotline_batch_size_events_sum", topic="item-sold") >= 4 + 1 + 1
    assert delta(after, "lotline_batch_duration_seconds_sum", topic="item-sold") > 0
    # The write-ahead log took the levels and the materializer wrote them.
    assert delta(after, "lotline_wal_entries_total") >= 1
    assert delta(after, "lotline_wal_materialized_docs_total") >= 1
    rounds = delta(after, "lotline_wal_rounds_total")
    assert rounds >= 1
    assert delta(after, "lotline_wal_round_duration_seconds_count") == rounds
    # FastStream's middleware counts what went out, the dead letter included.
    published = series(after, "faststream_published_messages_total")
    assert any(dict(labels).get("destination") == "item-sold.dlq" for labels in published)
    # The process's own series.
    assert value(after, "process_cpu_seconds_total") > 0
    assert value(after, "process_resident_memory_bytes") > 0
    assert series(after, "python_info")

    # HTTP requests by route template and status.
    async with httpx.AsyncClient(base_url=stock.url) as http:
        for _ in range(3):
            assert (await http.get(f"/stock/{sku}")).json()["on_hand"] == 10 - 2 - 3
        missing = await http.get("/no-such-page")
    assert missing.status_code == 404
    now = await scrape(stock)
    labels = {"method": "GET", "route": "/stock/{sku}", "status": "200"}
    assert delta(now, "lotline_http_requests_total", **labels) == 3
    assert (
        delta(
            now,
            "lotline_http_request_duration_seconds_count",
            method="GET",
            route="/stock/{sku}",
        )
        == 3
    )
    unmatched = {"method": "GET", "route": "(unmatched)", "status": "404"}
    assert delta(now, "lotline_http_requests_total", **unmatched) == 1

    # Every series the Grafana dashboard draws is one the service serves.
    panels = json.loads(DASHBOARD.read_text())["panels"]
    exprs = [t["expr"] for panel in panels for t in panel.get("targets", [])]
    drawn = {name for expr in exprs for name in re.findall(r"([a-zA-Z_:][\w:]*)\{", expr)}
    served = {name for name, _ in now}
    assert drawn, "the dashboard draws nothing"
    assert drawn <= served, sorted(drawn - served)
