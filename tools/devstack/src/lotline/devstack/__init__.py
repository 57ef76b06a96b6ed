"""Lotline's local Kafka and FerretDB, started without Docker, for development and tests."""

from lotline.devstack.process import StackError
from lotline.devstack.security import ADMIN, Credentials, StackSecrets, grants, principals
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
    "Credentials",
    "LocalStack",
    "ServiceName",
    "ServiceStatus",
    "StackEndpoints",
    "StackError",
    "StackSecrets",
    "StackSettings",
    "ensure_topics",
    "grants",
    "principals",
]
