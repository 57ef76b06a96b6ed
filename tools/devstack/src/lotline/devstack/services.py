"""Runs Lotline's four services as background processes beside the local stack (`make run`)."""

from __future__ import annotations

import sys
import urllib.error
import urllib.request
from dataclasses import dataclass
from functools import partial
from pathlib import Path

from lotline.devstack.process import (
    ProcessSpec,
    StackError,
    launch,
    running_pid,
    stop,
    wait_ready,
)
from lotline.devstack.security import StackSecrets


@dataclass(frozen=True)
class LotlineService:
    name: str
    module: str
    port: int

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"


SERVICES = (
    LotlineService("catalog", "lotline.catalog", 8001),
    LotlineService("stock", "lotline.stock", 8002),
    LotlineService("serial-registry", "lotline.serials", 8003),
    LotlineService("recall", "lotline.recall", 8004),
)


class LocalServices:
    """Start, stop and report the services; pid files and logs live in the stack dir."""

    def __init__(self, stack_dir: Path) -> None:
        self.dir = stack_dir

    def _spec(self, service: LotlineService, secrets: StackSecrets | None = None) -> ProcessSpec:
        # Each service logs in to Kafka as itself, so the ACLs hold it to its part of the
        # contract; the password reaches it in its environment, never on its command line.
        login = secrets.credentials(service.name).env() if secrets else {}
        return ProcessSpec(
            name=service.name,
            argv=(sys.executable, "-m", service.module),
            pid_file=self.dir / "run" / f"{service.name}.pid",
            log_file=self.dir / "logs" / f"{service.name}.log",
            cmdline_markers=("-m", service.module),
            env={"HTTP_PORT": str(service.port), **login},
        )

    def up(self, timeout: float = 60.0) -> list[tuple[LotlineService, str]]:
        """Start what is not running; wait until each answers /health/ready."""
        secrets = StackSecrets.read(self.dir)
        if secrets is None:
            raise StackError(f"no local stack in {self.dir} yet: run `lotline-devstack up` first")
        report = []
        for service in SERVICES:
            spec = self._spec(service, secrets)
            pid = running_pid(spec)
            if pid is None:
                pid = launch(spec)
                state = f"started (pid {pid})"
            else:
                state = f"already running (pid {pid})"
            wait_ready(spec, pid, partial(_ready, service), timeout)
            report.append((service, f"{state}, log {spec.log_file}"))
        return report

    def down(self) -> list[str]:
        return [s.name for s in SERVICES if stop(self._spec(s), timeout=30.0)]


def _ready(service: LotlineService) -> bool:
    try:
        with urllib.request.urlopen(f"{service.url}/health/ready", timeout=2) as response:
            return bool(response.status == 200)
    except (urllib.error.URLError, OSError):
        return False
