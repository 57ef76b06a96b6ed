"""One trace from a till's sale through stock and the serial registry to the `sale-flagged` it
causes and the recall service that reads that: spans carried on Kafka as W3C `traceparent`.
The CLI and the bench, as producers, start a trace with each event they send.

The till is this test: its spans go to the SDK's in-memory exporter. The services run as
their own processes with the real OTLP/HTTP exporter, pointed at a small OTLP receiver in
this process that decodes what they send."""

from __future__ import annotations

import asyncio
import gzip
import json
import os
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import httpx
import pytest
from conftest import EventBus, ServiceProcess
from opentelemetry import propagate
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)
from opentelemetry.proto.trace.v1.trace_pb2 import Span as ProtoSpan
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, get_tracer_provider

from lotline.bench import kafka_io
from lotline.events import ItemSold, ProductRegistered, Tracking, encode
from lotline.runtime import telemetry

from support import eventually

pytestmark = pytest.mark.infra


@dataclass(frozen=True)
class ReceivedSpan:
    service: str
    name: str
    kind: int
    trace_id: str
    span_id: str
    parent_id: str
    # The spans it links to, as (trace id, span id): a batch's other records.
    links: tuple[tuple[str, str], ...] = ()


class OtlpReceiver:
    """What an OpenTelemetry collector's OTLP/HTTP receiver does with traces, in-process."""

    def __init__(self) -> None:
        self.spans: list[ReceivedSpan] = []
        self.lock = threading.Lock()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                if self.headers.get("Content-Encoding") == "gzip":
                    body = gzip.decompress(body)
                request = ExportTraceServiceRequest()
                request.ParseFromString(body)
                receiver.take(request)
                answer = ExportTraceServiceResponse().SerializeToString()
                self.send_response(200)
                self.send_header("Content-Type", "application/x-protobuf")
                self.send_header("Content-Length", str(len(answer)))
                self.end_headers()
                self.wfile.write(answer)

            def log_message(self, *_: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}/v1/traces"

    def take(self, request: ExportTraceServiceRequest) -> None:
        for resource_spans in request.resource_spans:
            attributes = {a.key: a.value.string_value for a in resource_spans.resource.attributes}
            for scope_spans in resource_spans.scope_spans:
                for span in scope_spans.spans:
                    with self.lock:
                        self.spans.append(
                            ReceivedSpan(
                                service=attributes.get("service.name", "?"),
                                name=span.name,
                                kind=span.kind,
                                trace_id=span.trace_id.hex(),
                                span_id=span.span_id.hex(),
                                parent_id=span.parent_span_id.hex(),
                                links=tuple(
                                    (link.trace_id.hex(), link.span_id.hex()) for link in span.links
                                ),
                            )
                        )

    def of_trace(self, trace_id: str) -> list[ReceivedSpan]:
        with self.lock:
            return [span for span in self.spans if span.trace_id == trace_id]


@pytest.fixture
def receiver() -> Iterator[OtlpReceiver]:
    found = OtlpReceiver()
    found.thread.start()
    yield found
    found.server.shutdown()


@pytest.fixture(scope="module")
def traced_here() -> Iterator[InMemorySpanExporter]:
    # A process sets its tracer provider once (OpenTelemetry refuses a second); it is off
    # again after this module, so the tests that follow in the session trace nothing.
    exporter = InMemorySpanExporter()
    assert telemetry.setup_tracing("till", [exporter])
    yield exporter
    telemetry.shutdown_tracing()


@pytest.fixture
def till(traced_here: InMemorySpanExporter) -> InMemorySpanExporter:
    """This process traces like a till: its spans are kept in memory."""
    traced_here.clear()
    return traced_here


def flush() -> None:
    provider: Any = get_tracer_provider()
    provider.force_flush()


def traceparent(headers: list[tuple[str, bytes]] | tuple[tuple[str, bytes], ...]) -> list[str]:
    """(trace id, span id) of a record's `traceparent` header."""
    value = dict(headers)["traceparent"].decode()
    _, trace_id, span_id, _ = value.split("-")
    return [trace_id, span_id]


async def test_one_trace_from_a_till_to_a_sale_flagged(
    bus: EventBus,
    start_service: Callable[..., ServiceProcess],
    receiver: OtlpReceiver,
    till: InMemorySpanExporter,
    run_id: str,
) -> None:
    tracing = {
        "OTEL_TRACES_EXPORTER": "otlp",
        "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": receiver.endpoint,
        "OTEL_BSP_SCHEDULE_DELAY": "100",
    }
    stock = start_service("stock", **tracing)
    start_service("serial-registry", **tracing)
    start_service("recall", **tracing)
    sku = f"TRACED-{run_id}"
    await bus.publish(ProductRegistered(sku=sku, name="Traced drill", tracking=Tracking.SERIAL))

    with telemetry.TRACER.start_as_current_span("till sale", kind=SpanKind.PRODUCER) as span:
        trace_id = format(span.get_span_context().trace_id, "032x")
        # A serial nobody received: the registry flags the sale.
        [sold] = await bus.publish(
            ItemSold(
                sku=sku,
                sale_id=f"T-{run_id}",
                line=1,
                location="S1",
                quantity=1,
                serial=f"NEVER-{run_id}",
                sold_at=datetime.now(UTC),
            )
        )
        asked: dict[str, str] = {}
        propagate.inject(asked)
        async with httpx.AsyncClient(base_url=stock.url) as http:
            await http.get(f"/stock/{sku}", headers=asked)
    flush()
    till_spans = {s.name: s for s in till.get_finished_spans()}
    created = till_spans["create item-sold"]
    assert created.parent is not None
    assert created.parent.span_id == till_spans["till sale"].context.span_id
    sale_span = format(created.context.span_id, "016x")
    assert traceparent(sold.headers) == [trace_id, sale_span]

    async def flagged() -> dict[str, list[str]]:
        records = [r for r in await bus.read_all("sale-flagged") if r.key == sku.encode()]
        # The registry flags the unknown serial, stock the sale of a unit it never had.
        by_source = {json.loads(r.value)["source"]: traceparent(r.headers) for r in records}
        assert set(by_source) == {"lotline/serial-registry", "lotline/stock"}, by_source
        return by_source

    flags = await eventually(flagged)
    assert {trace for trace, _ in flags.values()} == {trace_id}

    def spans(service: str, name: str) -> list[ReceivedSpan]:
        return [s for s in receiver.of_trace(trace_id) if s.service == service and s.name == name]

    async def traced_through() -> None:
        for service in ("stock", "serial-registry"):
            processed = spans(service, "process item-sold")
            assert processed, f"no span of {service} in the trace: {receiver.of_trace(trace_id)}"
            assert {s.parent_id for s in processed} == {sale_span}
            # Each flag was created inside the service's handling of the sale.
            [creation] = spans(service, "create sale-flagged")
            assert creation.span_id == flags[f"lotline/{service}"][1]
            assert creation.parent_id in {s.span_id for s in processed}
        # The recall service read both flags: each is the parent of its batch's span, or, in
        # a batch that another traced record leads, a link of it.
        with receiver.lock:
            recalled = [s for s in receiver.spans if s.name == "process sale-flagged"]
        read = {s.parent_id for s in recalled if s.trace_id == trace_id} | {
            span for s in recalled for trace, span in s.links if trace == trace_id
        }
        assert {span for _, span in flags.values()} <= read
        # The HTTP request the till made inside its span is the stock service's span too.
        [request] = spans("stock", "GET /stock/{sku}")
        assert request.parent_id == format(till_spans["till sale"].context.span_id, "016x")

    await eventually(traced_through)

    # And the registry's log lines written while it handled the sale carry the trace id.
    registry_log = next(p for p in stock.log_path.parent.glob("serial-registry-*.log"))
    handled = [
        json.loads(line) for line in registry_log.read_text().splitlines() if trace_id in line
    ]
    assert any(line["event"] == "sales_applied" for line in handled), handled
    assert all(line["trace_id"] == trace_id for line in handled)


async def records_of(bus: EventBus, topic: str, sku: str) -> list[Any]:
    records = [r for r in await bus.read_all(topic) if r.key == sku.encode()]
    assert records, f"nothing of {sku} on {topic} yet"
    return records


async def test_the_cli_starts_a_trace_with_each_event_it_sends(
    infra: Any, bus: EventBus, receiver: OtlpReceiver, run_id: str
) -> None:
    sku = f"CLI-TRACED-{run_id}"
    # Known, so that the stock service a later test runs applies the sale (no dead letter).
    await bus.publish(ProductRegistered(sku=sku, name="Traced soap", tracking=Tracking.QUANTITY))
    env = {
        **os.environ,
        "KAFKA_BOOTSTRAP_SERVERS": infra.kafka_bootstrap,
        "OTEL_TRACES_EXPORTER": "otlp",
        "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": receiver.endpoint,
    }
    sold = await asyncio.to_thread(
        subprocess.run,
        [sys.executable, "-m", "lotline.cli", "sell", sku, "--location", "S1"],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert sold.returncode == 0, sold.stderr
    [record] = await eventually(lambda: records_of(bus, "item-sold", sku))
    trace_id, span_id = traceparent(record.headers)
    # The CLI flushed its span before it exited.
    [sent] = receiver.of_trace(trace_id)
    assert (sent.service, sent.name, sent.span_id, sent.parent_id) == (
        "cli",
        "send item-sold",
        span_id,
        "",
    )
    assert sent.kind == ProtoSpan.SpanKind.SPAN_KIND_PRODUCER


async def test_the_bench_starts_a_trace_with_each_event_it_sends(
    infra: Any, bus: EventBus, till: InMemorySpanExporter, run_id: str
) -> None:
    sku = f"BENCH-TRACED-{run_id}"
    await bus.publish(ProductRegistered(sku=sku, name="Traced soap", tracking=Tracking.QUANTITY))
    message = encode(
        ItemSold(
            sku=sku,
            sale_id=f"B-{run_id}",
            line=1,
            location="S1",
            quantity=1,
            sold_at=datetime.now(UTC),
        ),
        source="lotline/bench",
    )
    assert "traceparent" not in dict(message.headers)
    producer = kafka_io.producer(infra.kafka_bootstrap, infra.client_options("pos"))
    await producer.start()
    try:
        await kafka_io.publish(producer, [message])
    finally:
        await producer.stop()
    flush()
    [sent] = [s for s in till.get_finished_spans() if s.name == "send item-sold"]
    assert sent.parent is None
    [record] = await eventually(lambda: records_of(bus, "item-sold", sku))
    assert traceparent(record.headers) == [
        format(sent.context.trace_id, "032x"),
        format(sent.context.span_id, "016x"),
    ]
