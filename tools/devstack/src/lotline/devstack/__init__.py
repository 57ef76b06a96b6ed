"""Lotline's local Kafka and FerretDB, started without Docker, for development and tests."""

from lotline.devstack.process import StackError, free_port, wait_until_ready
from lotline.devstack.security import ADMIN, Credentials, StackSecrets, grants, principals
from lotline.devstack.services import SERVICE_MODULES, http_ready
from lotline.devstack.stack import (
    LocalStack,
    ServiceName,
    ServiceStatus,
    StackEndpoints,
    StackSettings,
    ensure_topics,
)

__all__ = [
    "ADMIN",
    "SERVICE_MODULES",
    "Credentials",
    "LocalStack",
    "ServiceName",
    "ServiceStatus",
    "StackEndpoints",
    "StackError",
    "StackSecrets",
    "StackSettings",
    "ensure_topics",
    "free_port",
    "grants",
    "http_ready",
    "principals",
    "wait_until_ready",
]
