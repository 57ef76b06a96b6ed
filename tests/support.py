"""Small helpers the tests share (fixtures live in conftest.py)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any

import httpx


async def eventually(
    check: Callable[[], Any], timeout: float = 30.0, interval: float = 0.25
) -> Any:
    """Poll an (async) check until it stops raising AssertionError, then return its value.

    A dropped HTTP connection is polled through too: uvicorn closes idle keep-alive
    connections, and a client may reuse one at the moment it is closed."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            result = check()
            if asyncio.iscoroutine(result):
                result = await result
            return result
        except (AssertionError, httpx.TransportError):
            if time.monotonic() > deadline:
                raise
            await asyncio.sleep(interval)
