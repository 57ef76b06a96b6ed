"""Where the bench runs: a fresh local stack (or the one the environment names) and the
service processes it starts itself, one or more instances each, on free ports.

Kafka wants a login (SASL/SCRAM, with ACLs, on the local stack): the bench's own clients log
in as the stack's admin, and every service it starts logs in as its own principal, as
`lotline-devstack services up` runs them, so the ACLs hold during the run. Off the local
stack, everything uses the environment's login (KAFKA_USERNAME, KAFKA_PASSWORD, ...).
"""

from __future__ import annotations

import os
import secrets
import signal
import subprocess
import sys
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

from lotline.devstack import (
    SERVICE_MODULES,
    LocalStack,
    StackSecrets,
    StackSettings,
    free_port,
    http_ready,
    wait_until_ready,
)
from lotline.devstack.kafka import KafkaLayout
from lotline.runtime.settings import Settings

# The name the bench's recalls are issued by (the recall service takes it from the token).
OPERATOR = "lotline-bench"


@dataclass
class Infrastructure:
    """Kafka and the database the bench measures, and the Kafka jars (for Kafka's own tools)."""

    kafka_bootstrap: str
    mongodb_url: str
    kafka_libs: Path | None
    how: str
    stack: LocalStack | None = None
    # The local stack's logins, one per principal; None on any other broker.
    secrets: StackSecrets | None = None

    @property
    def client_options(self) -> dict[str, Any]:
        """aiokafka's login options for the bench's own clients: the stack's admin (it reads
        every group's offsets, creates the ceilings' topics and publishes as every outside
        system), else the environment's login."""
        if self.secrets is not None:
            return self.secrets.admin.client_options()
        return Settings().kafka_client_options()

    def login_env(self, principal: str) -> dict[str, str]:
        """How a service process logs in: as itself on the local stack; elsewhere nothing
        extra (it inherits the environment's KAFKA_USERNAME, if any)."""
        return self.secrets.credentials(principal).env() if self.secrets is not None else {}

    @classmethod
    def fresh(cls, keep: bool = False) -> Infrastructure:
        """A stack of its own, on free ports, with empty data: no leftovers slow the
        database's scans, no other consumer shares the groups, and `make run` is untouched."""
        base = StackSettings()
        settings = StackSettings(
            kafka_port=free_port(),
            kafka_controller_port=free_port(),
            mongo_port=free_port(),
            cache_dir=base.cache_dir,
            # Beside the stack LOTLINE_STACK_DIR names, never in it.
            stack_dir=base.data_dir.with_name(base.data_dir.name + "-bench"),
        )
        stack = LocalStack(settings)
        stack.reset()  # whatever an interrupted run left
        endpoints = stack.up()
        return cls(
            endpoints.kafka_bootstrap,
            endpoints.mongodb_url,
            stack.kafka.libs,
            f"fresh local stack in {settings.data_dir}" + (" (kept)" if keep else ""),
            stack,
            stack.secrets,
        )

    @classmethod
    def from_env(cls) -> Infrastructure:
        """The Kafka and database named by KAFKA_BOOTSTRAP_SERVERS and MONGODB_URL (their
        topics are created if missing), e.g. the test stack."""
        from lotline.devstack import ensure_topics

        bootstrap = os.environ.get("KAFKA_BOOTSTRAP_SERVERS")
        mongodb_url = os.environ.get("MONGODB_URL")
        if not bootstrap or not mongodb_url:
            raise SystemExit(
                "--infra env needs KAFKA_BOOTSTRAP_SERVERS and MONGODB_URL in the environment"
            )
        settings = StackSettings()
        local = LocalStack(settings)
        # The local stack's broker (LOTLINE_* ports): its secrets file has every login.
        found = StackSecrets.read(local.dir) if bootstrap == local.kafka.bootstrap else None
        infra = cls(
            bootstrap,
            mongodb_url,
            None,
            "environment (KAFKA_BOOTSTRAP_SERVERS, MONGODB_URL)"
            + (f", logins of the local stack in {local.dir}" if found else ""),
            secrets=found,
        )
        ensure_topics(
            bootstrap,
            int(os.environ.get("KAFKA_PARTITIONS", "6")),
            client_options=infra.client_options,
        )
        layout = KafkaLayout(settings.cache_dir, settings.data_dir, 0, 0)
        infra.kafka_libs = layout.libs if layout.installed_marker.exists() else None
        return infra

    def close(self, keep: bool = False) -> None:
        if self.stack is None:
            return
        if keep:
            self.stack.down()
        else:
            self.stack.reset()

    def env(self) -> dict[str, str]:
        return {"KAFKA_BOOTSTRAP_SERVERS": self.kafka_bootstrap, "MONGODB_URL": self.mongodb_url}


@dataclass
class Instance:
    """One service process, as it runs in production: its own OS process and HTTP port."""

    service: str
    env: dict[str, str]
    log_path: Path
    port: int = field(default_factory=free_port)
    process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        env = {**os.environ, **self.env, "HTTP_PORT": str(self.port), "LOG_JSON": "true"}
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen(
                [sys.executable, "-m", SERVICE_MODULES[self.service]],
                env=env,
                stdout=log,
                stderr=log,
            )

    def wait_ready(self, timeout: float = 90.0) -> None:
        assert self.process is not None
        process = self.process
        wait_until_ready(
            self.service,
            lambda: process.poll() is None,
            partial(http_ready, self.url),
            timeout,
            self.log_path,
        )

    @property
    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def log_tail(self, lines: int = 30) -> str:
        if not self.log_path.exists():
            return "(no log)"
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])

    def stop(self, timeout: float = 30.0) -> None:
        """SIGTERM: the service finishes its batch, commits and leaves the group."""
        if self.process is None or self.process.poll() is not None:
            return
        self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


@dataclass
class Services:
    """The service instances the bench runs now; scaled by stopping and starting them."""

    infra: Infrastructure
    log_dir: Path
    running: dict[str, list[Instance]] = field(default_factory=dict)
    # The bench's own recall operator: a random token for this run only, which the recall
    # service it starts accepts (RECALL_OPERATOR_TOKENS); POST /recalls sends it.
    operator_token: str = field(default_factory=lambda: secrets.token_urlsafe(32))
    _started: int = 0

    def env_of(self, service: str) -> dict[str, str]:
        env = {**self.infra.env(), **self.infra.login_env(service)}
        if service == "recall":
            # Empty means unset to the service: no tokens file of `make run` is inherited.
            env["RECALL_OPERATOR_TOKENS_FILE"] = ""
            env["RECALL_OPERATOR_TOKENS"] = f"{OPERATOR}:operator:{self.operator_token}"
        return env

    def scale(self, counts: dict[str, int]) -> None:
        """Run exactly counts[service] instances of each named service (0 stops it). An
        instance that died since (or was stopped from outside) is replaced."""
        for service, instances in self.running.items():
            self.running[service] = [i for i in instances if i.alive]
        for service, wanted in counts.items():
            have = self.running.setdefault(service, [])
            while len(have) > wanted:
                have.pop().stop()
        new: list[Instance] = []
        for service, wanted in counts.items():
            have = self.running[service]
            while len(have) < wanted:
                self._started += 1
                instance = Instance(
                    service,
                    self.env_of(service),
                    self.log_dir / f"{service}-{self._started}.log",
                )
                instance.start()
                have.append(instance)
                new.append(instance)
        for instance in new:
            instance.wait_ready()

    def check_alive(self) -> None:
        """A scenario's figures mean nothing if an instance died during it: say so."""
        for instances in self.running.values():
            for instance in instances:
                if not instance.alive:
                    assert instance.process is not None
                    raise RuntimeError(
                        f"{instance.service} on port {instance.port} exited with "
                        f"{instance.process.returncode} during the scenario (stopped from "
                        f"outside?); its log ends:\n{instance.log_tail(10)}"
                    )

    def url(self, service: str) -> str:
        return self.running[service][0].url

    def count(self, service: str) -> int:
        return len(self.running.get(service, []))

    def stop_all(self) -> None:
        for instances in self.running.values():
            for instance in instances:
                instance.stop()
        self.running.clear()
