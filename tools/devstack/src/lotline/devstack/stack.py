"""The local stack as a whole: its settings, bringing Kafka and FerretDB up and down, and topics."""

from __future__ import annotations

import fcntl
import logging
import shutil
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from pydantic import field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from lotline.devstack import ferretdb, kafka, process
from lotline.devstack.process import ProcessSpec, StackError
from lotline.devstack.security import Credentials, StackSecrets, apply_acls
from lotline.events.topics import topic_specs
from lotline.runtime.settings import Settings

log = logging.getLogger("lotline.devstack")

ServiceName = Literal["kafka", "ferretdb"]
SERVICES: tuple[ServiceName, ...] = ("kafka", "ferretdb")
READY_TIMEOUT: dict[ServiceName, float] = {"kafka": 60.0, "ferretdb": 30.0}
STOP_TIMEOUT: dict[ServiceName, float] = {"kafka": 30.0, "ferretdb": 10.0}
# What reset deletes from the stack dir: only what the stack itself put there.
STACK_CONTENTS = ("kafka", "ferretdb", "logs", "run", "secrets.json", ".lock")


class StackSettings(BaseSettings):
    """Where the local stack listens and keeps its files (environment: LOTLINE_*)."""

    model_config = SettingsConfigDict(env_prefix="LOTLINE_", extra="ignore")

    kafka_port: int = 9092
    kafka_controller_port: int = 9093
    mongo_port: int = 27017
    cache_dir: Path = Path("~/.cache/lotline")
    # Data, pid files and logs; defaults to <cache_dir>/stack.
    stack_dir: Path | None = None

    @field_validator("cache_dir", "stack_dir")
    @classmethod
    def _expand_home(cls, value: Path | None) -> Path | None:
        return value.expanduser().absolute() if value is not None else None

    @field_validator("kafka_port", "kafka_controller_port", "mongo_port")
    @classmethod
    def _valid_port(cls, value: int) -> int:
        if not 1 <= value <= 65535:
            raise ValueError(f"{value} is not a TCP port")
        return value

    @model_validator(mode="after")
    def _distinct_ports(self) -> StackSettings:
        ports = (self.kafka_port, self.kafka_controller_port, self.mongo_port)
        if len(set(ports)) != len(ports):
            raise ValueError(
                "LOTLINE_KAFKA_PORT, LOTLINE_KAFKA_CONTROLLER_PORT and LOTLINE_MONGO_PORT "
                f"must differ, got {ports}"
            )
        return self

    @property
    def data_dir(self) -> Path:
        return self.stack_dir if self.stack_dir is not None else self.cache_dir / "stack"


@dataclass(frozen=True)
class StackEndpoints:
    kafka_bootstrap: str
    mongodb_url: str


@dataclass(frozen=True)
class ServiceStatus:
    name: ServiceName
    pid: int | None
    ready: bool
    endpoint: str
    log_file: Path
    # Running, but started with other ports than the current settings name.
    other_ports: bool = False

    @property
    def running(self) -> bool:
        return self.pid is not None


class LocalStack:
    """Kafka (KRaft) and FerretDB as local processes, started detached and found again by
    their pid files, so one command can start them and another stop them."""

    def __init__(self, settings: StackSettings, partitions: int = 6) -> None:
        self.settings = settings
        self.partitions = partitions
        self.dir = settings.data_dir
        self.kafka = kafka.KafkaLayout(
            cache_dir=settings.cache_dir,
            stack_dir=self.dir,
            port=settings.kafka_port,
            controller_port=settings.kafka_controller_port,
        )
        self.ferretdb = ferretdb.FerretDBLayout(
            cache_dir=settings.cache_dir, stack_dir=self.dir, port=settings.mongo_port
        )

    @classmethod
    def from_env(cls) -> LocalStack:
        """Settings from LOTLINE_* variables; partitions from KAFKA_PARTITIONS (default 6)."""
        return cls(StackSettings(), partitions=Settings().kafka_partitions)

    @property
    def endpoints(self) -> StackEndpoints:
        return StackEndpoints(kafka_bootstrap=self.kafka.bootstrap, mongodb_url=self.ferretdb.url)

    def up(self) -> StackEndpoints:
        """Start whatever is not running yet, wait until both answer, then make the broker's
        users, topics and ACLs match the contract. Running it again while the stack is up only
        checks it (and applies what the contract added since)."""
        with self._lock():
            self.make_private()
            started: dict[ServiceName, int | None] = {}
            for name in SERVICES:
                pid = process.running_pid(self._spec(name))
                if pid is not None and name == "kafka" and not self._kafka_secured():
                    log.info("kafka: restarting it with SASL and ACLs (it ran without)")
                    process.stop(self._spec(name), STOP_TIMEOUT[name])
                    pid = None
                if pid is not None:
                    self._check_same_ports(name, pid)
                    log.info("%s: already running (pid %d)", name, pid)
                    started[name] = None
            to_start = [name for name in SERVICES if name not in started]
            # Ports first: a taken port should fail the command before a long download.
            for name in to_start:
                self._check_ports(name)
            for name in to_start:
                self._prepare(name)
            # Both start at once: Kafka's JVM takes the longest, FerretDB comes up meanwhile.
            try:
                for name in to_start:
                    started[name] = self._launch(name)
                for name in SERVICES:
                    self._await_ready(name, started[name])
            except StackError:
                # A failed `up` leaves nothing it started behind, so the next one starts clean.
                for name in to_start:
                    process.stop(self._spec(name), STOP_TIMEOUT[name])
                raise
            added = kafka.add_users(self.kafka, self.secrets)
            if added:
                log.info("kafka: added the users %s", ", ".join(added))
            created = self.ensure_topics()
            if created:
                log.info("kafka: created %d topics", len(created))
            acls = kafka.run_async(
                apply_acls(self.kafka.bootstrap, self.secrets.admin.client_options())
            )
            if acls.created or acls.deleted:
                log.info(
                    "kafka: ACLs created %d, deleted %d, kept %d",
                    acls.created,
                    acls.deleted,
                    acls.kept,
                )
            return self.endpoints

    def make_private(self) -> None:
        """The stack dir and what the stack keeps there (data, logs, config, secrets) are the
        owner's alone: directories 0700, files without group or other rights. `up` and
        `start` run it, so a stack made before this rule is tightened too."""
        process.private_dir(self.dir)
        for entry in STACK_CONTENTS:
            process.make_private(self.dir / entry)

    @property
    def secrets(self) -> StackSecrets:
        """The stack's passwords, generated on first use (mode 0600 in the stack dir)."""
        return StackSecrets.ensure(self.dir)

    def credentials(self, principal: str) -> Credentials:
        """How `principal` (a service, `pos`, `receiving` or `admin`) logs in to this broker."""
        return self.secrets.credentials(principal)

    def down(self) -> list[ServiceName]:
        """Stop the processes this stack started; returns the names of those that ran."""
        stopped: list[ServiceName] = []
        with self._lock():
            # FerretDB first: it holds no Kafka state, and Kafka takes longest to stop.
            for name in reversed(SERVICES):
                if process.stop(self._spec(name), STOP_TIMEOUT[name]):
                    log.info("%s: stopped", name)
                    stopped.append(name)
        return stopped

    def reset(self) -> None:
        """Stop everything and delete the stack's data, logs and pid files."""
        self.down()
        for entry in STACK_CONTENTS:
            path = self.dir / entry
            if path.is_dir():
                shutil.rmtree(path)
            else:
                path.unlink(missing_ok=True)
        if self.dir.exists() and not any(self.dir.iterdir()):
            self.dir.rmdir()
        log.info("stack data deleted from %s", self.dir)

    def status(self) -> list[ServiceStatus]:
        statuses = []
        for name in SERVICES:
            spec = self._spec(name)
            pid = process.running_pid(spec)
            other_ports = pid is not None and not self._listens_where_configured(name, pid)
            statuses.append(
                ServiceStatus(
                    name=name,
                    pid=pid,
                    ready=pid is not None and not other_ports and self._is_ready(name),
                    endpoint=self.kafka.bootstrap if name == "kafka" else self.ferretdb.url,
                    log_file=spec.log_file,
                    other_ports=other_ports,
                )
            )
        return statuses

    def start(self, name: ServiceName) -> None:
        """Start one service, if it is not running, and wait until it answers (e.g. after kill)."""
        with self._lock():
            self.make_private()
            launched = None
            pid = process.running_pid(self._spec(name))
            if pid is None:
                self._check_ports(name)
                self._prepare(name)
                launched = self._launch(name)
            else:
                self._check_same_ports(name, pid)
            self._await_ready(name, launched)

    def stop(self, name: ServiceName) -> bool:
        """Stop one service gracefully; returns whether it was running."""
        with self._lock():
            return process.stop(self._spec(name), STOP_TIMEOUT[name])

    def kill(self, name: ServiceName) -> bool:
        """SIGKILL one service, as a crash would; returns whether it was running."""
        with self._lock():
            return process.kill(self._spec(name))

    def is_running(self, name: ServiceName) -> bool:
        return process.running_pid(self._spec(name)) is not None

    def ensure_topics(
        self, bootstrap: str | None = None, partitions: int | None = None
    ) -> list[str]:
        """Create Lotline's topics on this stack's broker (or on bootstrap) where missing."""
        return ensure_topics(
            bootstrap or self.kafka.bootstrap,
            partitions or self.partitions,
            replication_factor=1 if bootstrap is None else None,
            client_options=self.secrets.admin.client_options() if bootstrap is None else None,
        )

    def _spec(self, name: ServiceName) -> ProcessSpec:
        log_file = self.dir / "logs" / f"{name}.log"
        pid_file = self.dir / "run" / f"{name}.pid"
        if name == "kafka":
            return kafka.process_spec(self.kafka, log_file, pid_file)
        return ferretdb.process_spec(self.ferretdb, log_file, pid_file)

    def _check_ports(self, name: ServiceName) -> None:
        if name == "kafka":
            process.ensure_port_free(self.settings.kafka_port, "Kafka", "LOTLINE_KAFKA_PORT")
            process.ensure_port_free(
                self.settings.kafka_controller_port,
                "Kafka's controller",
                "LOTLINE_KAFKA_CONTROLLER_PORT",
            )
        else:
            process.ensure_port_free(self.settings.mongo_port, "FerretDB", "LOTLINE_MONGO_PORT")

    def _listens_where_configured(self, name: ServiceName, pid: int) -> bool:
        """Whether a running service was started with the ports the settings ask for now."""
        if name == "kafka":
            # The config is only rewritten when Kafka starts, so it is the running one's.
            try:
                config = self.kafka.server_properties.read_text()
            except FileNotFoundError:
                return False
            return f"listeners={kafka.listeners(self.kafka)}\n" in config
        return process.owns(pid, [f"--listen-addr=127.0.0.1:{self.ferretdb.port}"])

    def _kafka_secured(self) -> bool:
        """Whether the running broker's config (written when it started) asks for SASL."""
        try:
            config = self.kafka.server_properties.read_text()
        except FileNotFoundError:
            return False
        return "allow.everyone.if.no.acl.found=false\n" in config and self.kafka.users_file.exists()

    def _check_same_ports(self, name: ServiceName, pid: int) -> None:
        if not self._listens_where_configured(name, pid):
            raise StackError(
                f"{name} (pid {pid}) runs on other ports than LOTLINE_* now ask for; "
                "run `down` with the settings it was started with, then `up` again"
            )

    def _prepare(self, name: ServiceName) -> None:
        started = time.monotonic()
        if name == "kafka":
            if not self.kafka.installed_marker.exists():
                log.info("kafka: fetching Kafka %s jars with Maven (once)", kafka.KAFKA_VERSION)
            kafka.prepare(self.kafka, self.secrets)
        else:
            if not self.ferretdb.built_marker.exists():
                log.info("ferretdb: building FerretDB %s with Go (once)", ferretdb.FERRETDB_VERSION)
            ferretdb.prepare(self.ferretdb)
        elapsed = time.monotonic() - started
        if elapsed > 1:
            log.info("%s: prepared in %.1f s", name, elapsed)

    def _launch(self, name: ServiceName) -> int:
        return process.launch(self._spec(name))

    def _is_ready(self, name: ServiceName) -> bool:
        if name == "kafka":
            found = StackSecrets.read(self.dir)
            if found is None:
                return False
            return kafka.is_ready(self.kafka.bootstrap, found.admin.client_options())
        return ferretdb.is_ready(self.settings.mongo_port)

    def _await_ready(self, name: ServiceName, launched: int | None) -> None:
        """Wait for a service: one we just launched (its pid), or one found running (None)."""
        spec = self._spec(name)
        pid = launched if launched is not None else process.running_pid(spec)
        if pid is None:
            raise StackError(f"{name} is not running")
        started = time.monotonic()
        try:
            process.wait_ready(spec, pid, lambda: self._is_ready(name), READY_TIMEOUT[name])
        except StackError:
            # Leave nothing half-started behind: the next `up` starts from scratch.
            if launched is not None:
                process.stop(spec, STOP_TIMEOUT[name])
            raise
        if launched is not None:
            log.info(
                "%s: ready at %s (pid %d, %.1f s)",
                name,
                self.kafka.bootstrap if name == "kafka" else self.ferretdb.url,
                pid,
                time.monotonic() - started,
            )

    @contextmanager
    def _lock(self) -> Iterator[None]:
        """One stack command at a time per stack dir, e.g. for parallel test workers."""
        process.private_dir(self.dir)
        with (self.dir / ".lock").open("a") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(lock, fcntl.LOCK_UN)


def ensure_topics(
    bootstrap: str,
    partitions: int = 6,
    replication_factor: int | None = None,
    client_options: dict[str, Any] | None = None,
) -> list[str]:
    """Create Lotline's topics on any broker where missing; returns the names created.
    Replication defaults to min(3, brokers); client_options go to aiokafka (security)."""
    return kafka.run_async(
        kafka.create_topics(bootstrap, topic_specs(partitions), replication_factor, client_options)
    )
