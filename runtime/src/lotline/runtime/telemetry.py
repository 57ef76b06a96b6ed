"""What an operator sees of a service: its Prometheus metrics, its OpenTelemetry spans (carried
across Kafka as W3C `traceparent` headers), and the trace id on its log lines.

Metrics live in prometheus_client's default registry, beside its process and platform
collectors; each service serves them on `/metrics`. Tracing is off unless an exporter is
configured by the standard variables (`OTEL_TRACES_EXPORTER`, `OTEL_EXPORTER_OTLP_ENDPOINT`,
...): then no span is made and no header is read, and the helpers here cost a flag check.
"""

from __future__ import annotations

import gc
import os
import sys
import time
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any, Protocol

from opentelemetry import propagate, trace
from opentelemetry.trace import Link, NonRecordingSpan, SpanContext, SpanKind
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    REGISTRY,
    Counter,
    Histogram,
    disable_created_metrics,
    generate_latest,
)
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from lotline.events import codec

if TYPE_CHECKING:
    from aiokafka import AIOKafkaConsumer, ConsumerRecord, TopicPartition
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SpanExporter

    from lotline.events.codec import OutgoingMessage
    from lotline.events.envelope import CloudEvent

# A `_created` sample beside every counter doubles the page and no dashboard reads it.
disable_created_metrics()  # type: ignore[no-untyped-call]

METRICS_CONTENT_TYPE = CONTENT_TYPE_LATEST

# --- metrics ------------------------------------------------------------------------------------

EVENTS_CONSUMED = Counter(
    "lotline_events_consumed", "Records read from a topic (a redelivery counts again)", ["topic"]
)
EVENTS_APPLIED = Counter(
    "lotline_events_applied", "Events whose effects this instance made durable", ["topic"]
)
EVENTS_DUPLICATE = Counter(
    "lotline_events_duplicate", "Copies of events applied before, dropped", ["topic"]
)
EVENTS_MISROUTED = Counter(
    "lotline_events_misrouted",
    "Events found on another partition than their SKU's (the producer's partitioner is not "
    "murmur2): never applied there; the topic's router moves them",
    ["topic"],
)
EVENTS_DEFERRED = Counter(
    "lotline_events_deferred",
    "Deferrals: events put off to a later batch (e.g. a product not known yet); one event "
    "read again and put off again counts each time",
    ["topic"],
)
EVENTS_DEAD_LETTERED = Counter(
    "lotline_events_dead_lettered", "Records sent to the topic's .dlq", ["topic"]
)
BATCH_SIZE = Histogram(
    "lotline_batch_size_events",
    "Records of one topic in one consumed batch",
    ["topic"],
    buckets=(1, 2, 5, 10, 25, 50, 100, 250, 500, 1000, 2500, 5000, 10000),
)
BATCH_SECONDS = Histogram(
    "lotline_batch_duration_seconds",
    "Time to apply one topic's share of a batch: decode, dedupe, handler, remember",
    ["topic"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300),
)
HTTP_REQUESTS = Counter(
    "lotline_http_requests", "HTTP requests answered", ["method", "route", "status"]
)
HTTP_SECONDS = Histogram(
    "lotline_http_request_duration_seconds",
    "Time from a request's arrival to the end of its answer",
    ["method", "route"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
)
WAL_ROUND_SECONDS = Histogram(
    "lotline_wal_round_duration_seconds",
    "One materializer round of the write-ahead log that wrote documents",
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
)

GC_PAUSE_SECONDS = Histogram(
    "lotline_gc_pause_seconds",
    "Python's garbage collector stopping the service, by generation: a full collection walks "
    "every object the process holds (its caches and pending log entries included)",
    ["generation"],
    buckets=(0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1),
)


class GcPauses:
    """Times each collection (`gc.callbacks`) into GC_PAUSE_SECONDS."""

    def __init__(self) -> None:
        self._started = 0.0
        self._series = [GC_PAUSE_SECONDS.labels(str(g)) for g in range(3)]

    def __call__(self, phase: str, info: dict[str, int]) -> None:
        if phase == "start":
            self._started = time.perf_counter()
        else:
            self._series[min(info.get("generation", 2), 2)].observe(
                time.perf_counter() - self._started
            )


gc.callbacks.append(GcPauses())


class TopicMetrics:
    """One topic's consumer series, bound once (a label lookup per event would cost more)."""

    def __init__(self, topic: str) -> None:
        self.consumed = EVENTS_CONSUMED.labels(topic)
        self.applied = EVENTS_APPLIED.labels(topic)
        self.duplicate = EVENTS_DUPLICATE.labels(topic)
        self.deferred = EVENTS_DEFERRED.labels(topic)
        self.misrouted = EVENTS_MISROUTED.labels(topic)
        self.dead_lettered = EVENTS_DEAD_LETTERED.labels(topic)
        self.batch_size = BATCH_SIZE.labels(topic)
        self.batch_seconds = BATCH_SECONDS.labels(topic)


class ConsumerLag(Collector):
    """Records each assigned partition holds beyond what this instance has applied: the
    highwater Kafka reported on its last fetch less the next offset to apply, as of the end
    of the last batch. A batch that is stuck leaves the position where it was, so while
    records keep arriving the lag grows, as an alert on it needs."""

    def __init__(self) -> None:
        self._consumer: AIOKafkaConsumer | None = None
        self._next: dict[TopicPartition, int] = {}

    def applied(self, consumer: AIOKafkaConsumer, positions: Mapping[TopicPartition, int]) -> None:
        """A batch is done: the next offset to apply on each partition it read from
        (`lotline.runtime.consumer.next_positions`)."""
        self._consumer = consumer
        self._next.update(positions)

    def collect(self) -> Iterator[Metric]:
        family = GaugeMetricFamily(
            "lotline_consumer_lag",
            "Records on an assigned partition not applied yet by this instance",
            labels=["topic", "partition"],
        )
        consumer = self._consumer
        if consumer is not None:
            assigned = consumer.assignment()
            for tp, position in sorted(self._next.items()):
                if tp not in assigned:
                    continue
                highwater = consumer.highwater(tp)
                if highwater is not None:
                    family.add_metric([tp.topic, str(tp.partition)], max(0, highwater - position))
        yield family


# One consumer per process: the service's (`ServiceConsumer`) reports to it.
CONSUMER_LAG = ConsumerLag()
REGISTRY.register(CONSUMER_LAG)


class LogStats(Protocol):
    """What the write-ahead log tells of itself (`lotline.runtime.wal.WriteAheadLog`)."""

    @property
    def pending_docs(self) -> int: ...

    stats: dict[str, int]


class WalMetrics(Collector):
    """The write-ahead log's backlog and its materializer's work, read at scrape time."""

    def __init__(self) -> None:
        self.wal: LogStats | None = None

    def watch(self, wal: LogStats) -> None:
        self.wal = wal

    def collect(self) -> Iterator[Metric]:
        pending = self.wal.pending_docs if self.wal is not None else 0
        stats = self.wal.stats if self.wal is not None else {}
        yield GaugeMetricFamily(
            "lotline_wal_pending_docs",
            "Documents logged but not yet written to their collections (the outbox backlog)",
            value=pending,
        )
        yield CounterMetricFamily(
            "lotline_wal_entries", "Log entries inserted", value=stats.get("entries", 0)
        )
        yield CounterMetricFamily(
            "lotline_wal_materialized_docs",
            "Documents the materializer wrote",
            value=stats.get("materialized_docs", 0),
        )
        yield CounterMetricFamily(
            "lotline_wal_rounds",
            "Materializer rounds that wrote documents",
            value=stats.get("rounds", 0),
        )


# The service's write-ahead log (`Service.wal`), one per process.
WAL = WalMetrics()
REGISTRY.register(WAL)


def time_rounds(wal: Any) -> None:
    """Time each materializer round of `wal` that writes documents. The log's own loop
    (`WriteAheadLog.run`) calls `materialize`; wrapping it here keeps the log free of
    metrics."""
    materialize = wal.materialize

    async def timed() -> int:
        started = time.perf_counter()
        written: int = await materialize()
        if written:
            WAL_ROUND_SECONDS.observe(time.perf_counter() - started)
        return written

    wal.materialize = timed


def exposition() -> bytes:
    """Every series of this process, in Prometheus' text format."""
    return generate_latest(REGISTRY)


def observe_request(method: str, route: str, status: int, seconds: float) -> None:
    HTTP_REQUESTS.labels(method, route, str(status)).inc()
    HTTP_SECONDS.labels(method, route).observe(seconds)


# --- tracing ------------------------------------------------------------------------------------

TRACER = trace.get_tracer("lotline")
# Only these carry a trace on Kafka; every other header is left unread.
TRACE_HEADERS = ("traceparent", "tracestate")

_provider: TracerProvider | None = None


def tracing_configured(environ: Mapping[str, str] = os.environ) -> bool:
    """Whether the OTEL_* variables ask for spans: an exporter named (other than `none`), or
    an OTLP endpoint given; never with OTEL_SDK_DISABLED=true."""
    if environ.get("OTEL_SDK_DISABLED", "").strip().lower() == "true":
        return False
    exporters = environ.get("OTEL_TRACES_EXPORTER")
    if exporters is not None:
        return any(name.strip() not in ("", "none") for name in exporters.split(","))
    return bool(
        environ.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")
        or environ.get("OTEL_EXPORTER_OTLP_ENDPOINT")
    )


def tracing() -> bool:
    return _provider is not None


def setup_tracing(service: str, exporters: Sequence[SpanExporter] | None = None) -> bool:
    """Export this process's spans as the OTEL_* variables say (OTLP over HTTP by default),
    or to `exporters`; returns whether tracing is on. `service` names the resource unless
    OTEL_SERVICE_NAME does. Once per process: a second call changes nothing."""
    global _provider
    if _provider is not None:
        return True
    if exporters is None and not tracing_configured():
        return False
    # The SDK is imported only when it is used: a service without tracing never loads it.
    from opentelemetry.sdk.resources import SERVICE_NAME, SERVICE_NAMESPACE, Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor

    attributes: dict[str, str] = {SERVICE_NAMESPACE: "lotline"}
    if not os.environ.get("OTEL_SERVICE_NAME"):
        attributes[SERVICE_NAME] = service
    # Sampler (OTEL_TRACES_SAMPLER), limits and batching (OTEL_BSP_*) come from the variables.
    provider = TracerProvider(resource=Resource.create(attributes))
    for exporter in exporters if exporters is not None else _configured_exporters():
        provider.add_span_processor(BatchSpanProcessor(exporter))
    trace.set_tracer_provider(provider)
    _provider = provider
    return True


def _configured_exporters() -> list[SpanExporter]:
    names = [
        name.strip()
        for name in os.environ.get("OTEL_TRACES_EXPORTER", "otlp").split(",")
        if name.strip() not in ("", "none")
    ]
    return [_exporter(name) for name in names]


def _exporter(name: str) -> SpanExporter:
    if name == "otlp":
        protocol = os.environ.get(
            "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL",
            os.environ.get("OTEL_EXPORTER_OTLP_PROTOCOL", "http/protobuf"),
        )
        if protocol != "http/protobuf":
            raise ValueError(
                f"OTEL_EXPORTER_OTLP_PROTOCOL={protocol!r}: Lotline exports OTLP over "
                "http/protobuf only (a collector takes it on port 4318)"
            )
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

        return OTLPSpanExporter()
    if name == "console":
        from opentelemetry.sdk.trace.export import ConsoleSpanExporter

        # One JSON object per line on stderr, like the log lines around it.
        return ConsoleSpanExporter(
            out=sys.stderr, formatter=lambda span: span.to_json(indent=None) + "\n"
        )
    raise ValueError(f"OTEL_TRACES_EXPORTER={name!r}: Lotline knows otlp, console and none")


def shutdown_tracing() -> None:
    """Send the spans still buffered, then stop exporting (at a service's shutdown)."""
    global _provider
    if _provider is not None:
        _provider.shutdown()
        _provider = None


def remote_context(headers: Iterable[tuple[str, bytes]]) -> SpanContext | None:
    """The span a Kafka record's `traceparent` names, if it carries a valid one."""
    carrier = {name: value.decode("latin-1") for name, value in headers if name in TRACE_HEADERS}
    if not carrier:
        return None
    context = trace.get_current_span(propagate.extract(carrier)).get_span_context()
    return context if context.is_valid else None


@contextmanager
def consuming(
    topic: str, group: str, records: Sequence[ConsumerRecord[Any, Any]], metrics: TopicMetrics
) -> Iterator[None]:
    """One topic's share of a batch: counted, sized and timed, and with tracing on, one
    `process <topic>` span. A batch applies many events at once, and the events it emits
    are encoded inside it, so they are children of this span: its parent is the first
    traced record's creation, and every other traced record is a link (OpenTelemetry's
    messaging conventions for batches). A batch of one sale continues that sale's trace."""
    metrics.consumed.inc(len(records))
    metrics.batch_size.observe(len(records))
    started = time.perf_counter()
    try:
        if _provider is None:
            yield
            return
        causes = [c for c in (remote_context(r.headers or ()) for r in records) if c is not None]
        parent = trace.set_span_in_context(NonRecordingSpan(causes[0])) if causes else None
        with TRACER.start_as_current_span(
            f"process {topic}",
            context=parent,
            kind=SpanKind.CONSUMER,
            links=[Link(cause) for cause in causes[1:]],
            attributes={
                "messaging.system": "kafka",
                "messaging.operation.type": "process",
                "messaging.destination.name": topic,
                "messaging.consumer.group.name": group,
                "messaging.batch.message_count": len(records),
            },
        ):
            yield
    finally:
        metrics.batch_seconds.observe(time.perf_counter() - started)


def creation_headers(event: CloudEvent[Any]) -> list[tuple[str, bytes]]:
    """The trace context of an event made inside a trace (a consumer's batch, an HTTP
    request): a `create <topic>` span, child of the current one, whose W3C `traceparent`
    the event carries to its consumers. That is the creation context CloudEvents'
    distributed-tracing extension names; it rides in the Kafka headers, so the event's
    bytes are the same with tracing on or off. Nothing outside a trace."""
    if not trace.get_current_span().get_span_context().is_valid:
        return []
    carrier: dict[str, str] = {}
    topic = event.type.topic
    with TRACER.start_as_current_span(
        f"create {topic}",
        kind=SpanKind.PRODUCER,
        attributes={
            "messaging.system": "kafka",
            "messaging.operation.type": "create",
            "messaging.destination.name": topic,
            "messaging.message.id": str(event.id),
            "cloudevents.event_id": str(event.id),
            "cloudevents.event_source": event.source,
            "cloudevents.event_type": event.type.value,
            "cloudevents.event_subject": event.subject,
        },
    ):
        propagate.inject(carrier)
    return [(name, value.encode()) for name, value in carrier.items()]


# Every event this process encodes carries its creation context (the contract itself knows
# nothing of tracing: a producer with the contract alone sends no traceparent).
if creation_headers not in codec.HEADER_SOURCES:
    codec.HEADER_SOURCES.append(creation_headers)


def sending_headers(message: OutgoingMessage) -> list[tuple[str, bytes]]:
    """A producer's message (a till, the CLI, the bench) with the context of a new `send
    <topic>` span, the root of the event's trace unless a span is current; unchanged when
    tracing is off."""
    if _provider is None:
        return message.headers
    carrier: dict[str, str] = {}
    with TRACER.start_as_current_span(
        f"send {message.topic}",
        kind=SpanKind.PRODUCER,
        attributes={
            "messaging.system": "kafka",
            "messaging.operation.type": "send",
            "messaging.destination.name": message.topic,
            "messaging.message.id": str(message.event.id),
            "cloudevents.event_type": message.event.type.value,
        },
    ):
        propagate.inject(carrier)
    kept = [(name, value) for name, value in message.headers if name not in TRACE_HEADERS]
    return [*kept, *((name, value.encode()) for name, value in carrier.items())]


def add_trace_ids(_: Any, __: str, event_dict: dict[str, Any]) -> dict[str, Any]:
    """structlog processor: the current span's trace and span ids on the line, if any."""
    context = trace.get_current_span().get_span_context()
    if context.is_valid:
        event_dict["trace_id"] = format(context.trace_id, "032x")
        event_dict["span_id"] = format(context.span_id, "016x")
    return event_dict
