"""Lotline's local Kafka and FerretDB, started without Docker, for development and tests."""

from lotline.devstack.process import StackError
from lotline.devstack.stack import (
    LocalStack,
    ServiceName,
    ServiceStatus,
    StackEndpoints,
    StackSettings,
    ensure_topics,
)

__all__ = [
    "LocalStack",
    "ServiceName",
    "ServiceStatus",
    "StackEndpoints",
    "StackError",
    "StackSettings",
    "ensure_topics",
]
