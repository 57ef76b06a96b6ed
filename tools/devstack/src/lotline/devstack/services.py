"""Runs Lotline's four services as background processes beside the local stack (`make run`)."""

from __future__ import annotations

import hashlib
import os
import secrets
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
# Each service's Python module, by service name (what `python -m` runs).
SERVICE_MODULES = {service.name: service.module for service in SERVICES}


DEV_OPERATOR = "dev-operator"


def _write_private(path: Path, text: str) -> None:
    """Create (or replace) a file only its owner can read: it holds a secret."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as out:
        out.write(text)
    path.chmod(0o600)


class LocalServices:
    """Start, stop and report the services; pid files, logs and the dev operator's token
    live in the stack dir."""

    def __init__(self, stack_dir: Path) -> None:
        self.dir = stack_dir

    @property
    def operator_token_file(self) -> Path:
        """The dev operator's token, which the `lotline` command and the console login use."""
        return self.dir / "run" / "operator-token"

    @property
    def operator_tokens_file(self) -> Path:
        """What every service is given (LOTLINE_TOKENS_FILE): the token's hash, never the
        token. The dev operator's role, `operator`, may change recalls and products and read
        customer references."""
        return self.dir / "run" / "tokens"

    def ensure_operator_token(self) -> str:
        """The dev operator's token, made once (random) and kept across restarts."""
        path = self.operator_token_file
        token = path.read_text().strip() if path.exists() else ""
        if not token:
            token = secrets.token_urlsafe(24)
            _write_private(path, token + "\n")
        digest = hashlib.sha256(token.encode()).hexdigest()
        _write_private(
            self.operator_tokens_file,
            "# Written by `lotline-devstack services up` for local runs; name:role:hash\n"
            f"{DEV_OPERATOR}:operator:sha256:{digest}\n",
        )
        return token

    def _spec(self, service: LotlineService, stack: StackSecrets | None = None) -> ProcessSpec:
        # Each service logs in to Kafka as itself, so the ACLs hold it to its part of the
        # contract; the password reaches it in its environment, never on its command line.
        env = {
            "HTTP_PORT": str(service.port),
            **(stack.credentials(service.name).env() if stack else {}),
        }
        env["LOTLINE_TOKENS_FILE"] = str(self.operator_tokens_file)
        return ProcessSpec(
            name=service.name,
            argv=(sys.executable, "-m", service.module),
            pid_file=self.dir / "run" / f"{service.name}.pid",
            log_file=self.dir / "logs" / f"{service.name}.log",
            cmdline_markers=("-m", service.module),
            env=env,
        )

    def up(self, timeout: float = 60.0) -> list[tuple[LotlineService, str]]:
        """Start what is not running; wait until each answers /health/ready."""
        secrets = StackSecrets.read(self.dir)
        if secrets is None:
            raise StackError(f"no local stack in {self.dir} yet: run `lotline-devstack up` first")
        report = []
        self.ensure_operator_token()
        for service in SERVICES:
            spec = self._spec(service, secrets)
            pid = running_pid(spec)
            if pid is None:
                pid = launch(spec)
                state = f"started (pid {pid})"
            else:
                state = f"already running (pid {pid})"
            wait_ready(spec, pid, partial(http_ready, service.url), timeout)
            detail = f"{state}, log {spec.log_file}"
            if service.name == "recall":
                detail += (
                    f"\n    console {service.url}/console: log in as {DEV_OPERATOR!r} with the "
                    f"token in {self.operator_token_file} (the `lotline` command reads it too)"
                )
            report.append((service, detail))
        return report

    def down(self) -> list[str]:
        return [s.name for s in SERVICES if stop(self._spec(s), timeout=30.0)]


def http_ready(url: str) -> bool:
    """Whether the Lotline service at `url` answers its readiness check."""
    try:
        with urllib.request.urlopen(f"{url}/health/ready", timeout=2) as response:
            return bool(response.status == 200)
    except (urllib.error.URLError, OSError):
        return False
