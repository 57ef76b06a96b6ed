"""Small helpers the tests share (fixtures live in conftest.py)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any


async def eventually(
    check: Callable[[], Any], timeout: float = 30.0, interval: float = 0.25
) -> Any:
    """Poll an (async) check until it stops raising AssertionError, then return its value."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            result = check()
            if asyncio.iscoroutine(result):
                result = await result
            return result
        except AssertionError:
            if time.monotonic() > deadline:
                raise
            await asyncio.sleep(interval)
