"""Wires one Lotline service: settings, Kafka, MongoDB, consumers, HTTP with health checks,
metrics on /metrics, traces and JSON logs."""

from __future__ import annotations

import asyncio
import gc
import logging
import sys
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine
from contextlib import asynccontextmanager
from typing import Any

import structlog
import uvicorn
from fastapi import FastAPI
from fastapi.responses import JSONResponse, Response
from faststream.kafka import KafkaBroker
from faststream.kafka.prometheus import KafkaPrometheusMiddleware
from faststream.security import BaseSecurity, SASLPlaintext, SASLScram256, SASLScram512
from prometheus_client import REGISTRY
from pymongo import AsyncMongoClient
from pymongo.asynchronous.database import AsyncDatabase

from lotline.events import EventType
from lotline.runtime import telemetry
from lotline.runtime.consumer import (
    BatchHandler,
    EventConsumer,
    GiveUp,
    Progress,
    Publisher,
    ServiceConsumer,
)
from lotline.runtime.http import BodyLimit, OutageGuard, RequestMetrics, install_error_handlers
from lotline.runtime.mongo import Reachability
from lotline.runtime.outbox import Relay, SavedEvents
from lotline.runtime.owned import OwnedState
from lotline.runtime.settings import Settings, get_settings
from lotline.runtime.wal import WriteAheadLog

Hook = Callable[[], Awaitable[None]]


def configure_logging(settings: Settings, service: str) -> None:
    """Structured logs on stderr, one line each: JSON for machines, or key=value for a
    terminal. The libraries' lines (aiokafka, uvicorn, PyMongo, asyncio, warnings) go
    through the same processors, by structlog's `ProcessorFormatter`, so they are JSON
    too; a line written inside a span carries its trace and span ids."""
    level = logging.getLevelName(settings.log_level.upper())
    renderer: Any = (
        structlog.processors.JSONRenderer()
        if settings.log_json
        else structlog.dev.ConsoleRenderer(colors=False)
    )
    stamped: list[Any] = [
        structlog.contextvars.merge_contextvars,
        structlog.processors.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        telemetry.add_trace_ids,
    ]
    # Lotline's own lines stay on structlog's direct path (no logging.LogRecord per line).
    structlog.configure(
        processors=[*stamped, structlog.processors.format_exc_info, renderer],
        wrapper_class=structlog.make_filtering_bound_logger(level),
        logger_factory=structlog.PrintLoggerFactory(file=sys.stderr),
        cache_logger_on_first_use=True,
    )
    structlog.contextvars.bind_contextvars(service=service)
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(
        structlog.stdlib.ProcessorFormatter(
            foreign_pre_chain=[*stamped, structlog.stdlib.add_logger_name],
            processors=[
                structlog.stdlib.ProcessorFormatter.remove_processors_meta,
                structlog.processors.format_exc_info,
                renderer,
            ],
        )
    )
    root = logging.getLogger()
    root.handlers = [handler]
    root.setLevel(logging.WARNING)
    logging.captureWarnings(True)
    # A crash's traceback is one line too.
    sys.excepthook = _log_uncaught


def _log_uncaught(kind: type[BaseException], error: BaseException, tb: Any) -> None:
    structlog.get_logger("lotline").critical("uncaught_exception", exc_info=(kind, error, tb))


def kafka_security(settings: Settings) -> BaseSecurity | None:
    """FastStream's form of the same login `Settings.kafka_client_options` gives aiokafka."""
    protocol = settings.kafka_security_protocol
    if not protocol.startswith("SASL"):
        return BaseSecurity(use_ssl=True) if protocol == "SSL" else None
    # Settings refuses SASL without both halves of the login.
    assert settings.kafka_username is not None
    assert settings.kafka_password is not None
    mechanism = {
        "SCRAM-SHA-512": SASLScram512,
        "SCRAM-SHA-256": SASLScram256,
        "PLAIN": SASLPlaintext,
    }[settings.kafka_sasl_mechanism]
    return mechanism(
        settings.kafka_username,
        settings.kafka_password.get_secret_value(),
        use_ssl=protocol == "SASL_SSL",
    )


def make_broker(settings: Settings, client_id: str) -> KafkaBroker:
    return KafkaBroker(
        settings.kafka_bootstrap_servers,
        client_id=client_id,
        security=kafka_security(settings),
        acks="all",
        enable_idempotence=True,
        linger_ms=2,
        max_request_size=16 * 1024 * 1024,
        graceful_timeout=30.0,
        logger=None,
        # Published and received messages by topic, beside Lotline's own series.
        middlewares=[KafkaPrometheusMiddleware(registry=REGISTRY, app_name=client_id)],
    )


class Service:
    """One deployable: construct it in `app.py`, register consumers and routes, then `run()`."""

    def __init__(
        self,
        name: str,
        *,
        database: str,
        http_port: int,
        title: str,
        settings: Settings | None = None,
    ) -> None:
        self.name = name
        self.settings = settings or get_settings()
        self.http_port = self.settings.http_port or http_port
        configure_logging(self.settings, name)
        self.log = structlog.get_logger(name)
        # Off unless the OTEL_* variables name an exporter.
        tracing = telemetry.setup_tracing(name)
        self.broker = make_broker(self.settings, client_id=f"lotline-{name}")
        self.publisher = Publisher(self.broker)
        self.mongo: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(
            self.settings.mongodb_url.get_secret_value(),
            tz_aware=True,
            serverSelectionTimeoutMS=5000,
            appname=f"lotline-{name}",
        )
        self.db: AsyncDatabase[dict[str, Any]] = self.mongo[database]
        # What this instance may keep in memory while it owns its partitions.
        self.owned = OwnedState()
        # Whether the consumer commits: a stall turns readiness off.
        self.progress = Progress(self.settings.consumer_stall_after_s)
        # A batch's changed documents and events: one insert, written out in the background.
        self.wal = WriteAheadLog(
            self.db,
            self.publisher,
            max_pending_docs=self.settings.wal_max_pending_docs,
            known_docs=self.settings.wal_known_docs,
            round_docs=self.settings.wal_round_docs,
            flush_after_s=self.settings.wal_flush_after_s,
            give_way_s=self.settings.wal_give_way_s,
            recent_max=self.settings.dedupe_recent_max,
            window_s=self.settings.dedupe_window_hours * 3600,
        )
        self.consumer = ServiceConsumer(name, self.settings, self.owned, self.progress, self.wal)
        self._startup: list[Hook] = []
        self._background: list[Callable[[], Coroutine[Any, Any, None]]] = []
        self._tasks: list[asyncio.Task[None]] = []
        self.in_background(self.wal.run)
        telemetry.WAL.watch(self.wal)
        telemetry.time_rounds(self.wal)
        self.http = FastAPI(title=title, lifespan=self._lifespan)
        self.http.add_api_route("/health/live", self._live, methods=["GET"], tags=["health"])
        self.http.add_api_route("/health/ready", self._ready, methods=["GET"], tags=["health"])
        self.http.add_api_route("/metrics", self._metrics, methods=["GET"], include_in_schema=False)
        install_error_handlers(self.http)
        # A request that waits on the database has its 503 within HTTP_DATABASE_WAIT_S: a
        # quarter of it before the database is pinged, the rest for the ping's answer.
        wait = self.settings.http_database_wait_s
        reachability = Reachability(self.mongo, timeout_s=wait * 3 / 4)
        self.http.add_middleware(
            OutageGuard,
            probe=reachability.problem,
            check_after_s=wait / 4,
            skip=("/health/", "/metrics"),
        )
        # A body over the limit is refused before anything else looks at it.
        self.http.add_middleware(BodyLimit, limit=self.settings.http_max_body_bytes)
        # Outermost: every answer is counted, a refused body's too.
        self.http.add_middleware(RequestMetrics, routes=self.http.routes)
        if tracing:
            from opentelemetry.instrumentation.fastapi import FastAPIInstrumentor

            FastAPIInstrumentor.instrument_app(
                self.http, excluded_urls="/health/,/metrics", exclude_spans=["receive", "send"]
            )

    def consume(
        self,
        event_type: EventType,
        handler: BatchHandler,
        *,
        give_up: GiveUp | None = None,
    ) -> EventConsumer:
        consumer = EventConsumer(
            service=self.name,
            event_type=event_type,
            handler=handler,
            publisher=self.publisher,
            settings=self.settings,
            owned=self.owned,
            progress=self.progress,
            wal=self.wal,
            give_up=give_up,
        )
        self.consumer.add(consumer)
        return consumer

    def relay(self, saved: SavedEvents, name: str) -> Relay:
        """The outbox of the changes this service's requests make (`lotline.runtime.outbox`):
        published right after each (`Relay.try_publish`), and by a loop on every instance for
        whatever waited longer than `OUTBOX_RELAY_GRACE_S`."""
        relay = Relay(saved, self.publisher, grace_s=self.settings.outbox_relay_grace_s, name=name)
        self.periodically(relay.relay, self.settings.outbox_relay_interval_s, f"{name}_relay")
        return relay

    def on_startup(self, hook: Hook) -> None:
        """Run before consuming starts (e.g. create indexes)."""
        self._startup.append(hook)

    def periodically(
        self, step: Callable[[], Coroutine[Any, Any, None]], every_s: float, name: str
    ) -> None:
        """Run `step` every `every_s` seconds for the life of the service (e.g. an outbox
        relay); a failing step is logged and tried again next time, never ends the loop."""

        async def loop() -> None:
            while True:
                try:
                    await step()
                except asyncio.CancelledError:
                    raise
                except Exception as exc:
                    self.log.warning(f"{name}_failed", error=repr(exc))
                await asyncio.sleep(every_s)

        self.in_background(loop)

    def in_background(self, loop: Callable[[], Coroutine[Any, Any, None]]) -> None:
        """A long-running task (e.g. an outbox relay), cancelled at shutdown."""
        self._background.append(loop)

    @asynccontextmanager
    async def _lifespan(self, _: FastAPI) -> AsyncIterator[None]:
        for hook in self._startup:
            await hook()
        self.consumer.subscribe(self.broker)
        await self.broker.start()
        self._tasks = [asyncio.create_task(loop()) for loop in self._background]
        tune_gc()
        self.log.info("started", http_port=self.http_port, topics=list(self.consumer.topics))
        try:
            yield
        finally:
            for task in self._tasks:
                task.cancel()
            await asyncio.gather(*self._tasks, return_exceptions=True)
            # Stops fetching, lets the batch in hand finish and commit, then leaves the group.
            await self.broker.stop()
            await self.mongo.close()
            telemetry.shutdown_tracing()
            self.log.info("stopped")

    async def _metrics(self) -> Response:
        # Async, so a scrape reads the consumer's state on the event loop that changes it.
        return Response(telemetry.exposition(), media_type=telemetry.METRICS_CONTENT_TYPE)

    async def _live(self) -> dict[str, str]:
        return {"status": "live"}

    async def _ready(self) -> JSONResponse:
        stalled = self.progress.stalled()
        checks = {
            "database": await self._database_ok(),
            "broker": await self.broker.ping(2.0),
            "consumer": stalled is None,
        }
        ok = all(checks.values())
        body: dict[str, Any] = {"status": "ready" if ok else "not ready", "checks": checks}
        if stalled is not None:
            body["stalled_on"] = stalled
        return JSONResponse(body, status_code=200 if ok else 503)

    async def _database_ok(self) -> bool:
        try:
            await asyncio.wait_for(self.mongo.admin.command("ping"), timeout=2.0)
        except Exception:
            return False
        return True

    def run(self) -> None:
        """Serve until SIGTERM/SIGINT, then shut down gracefully."""
        uvicorn.run(
            self.http,
            host=self.settings.http_host,
            port=self.http_port,
            log_level=self.settings.log_level.lower(),
            # uvicorn's loggers propagate to the root's JSON handler (`configure_logging`).
            log_config=None,
            access_log=False,
            timeout_graceful_shutdown=30,
        )


# Objects allocated between young collections. A full collection walks every object the
# process holds: an owner's levels, pending documents and caches, 0.1-0.5 s each on two
# busy cores, and with Python's default (700) stock ran 24 of them a minute at a steady
# 1,000 lines/s, each one a stalled batch (`lotline_gc_pause_seconds`).
GC_YOUNG_THRESHOLD = 50_000


def tune_gc() -> None:
    """What is allocated by the time the service runs (modules, schemas, clients) is never
    garbage: keep it out of every later collection; and collect the young generation less
    often, so that fewer objects that live a batch or a window are promoted, and the full
    collections their promotion triggers are rarer."""
    gc.freeze()
    _, middle, old = gc.get_threshold()
    gc.set_threshold(GC_YOUNG_THRESHOLD, middle, old)
