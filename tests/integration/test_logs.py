"""Every line a service writes is one JSON object, the libraries' lines included."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from typing import Any

import pytest
from conftest import ServiceProcess

pytestmark = pytest.mark.infra


def log_lines(service: ServiceProcess) -> list[dict[str, Any]]:
    lines = [line for line in service.log_path.read_text().splitlines() if line.strip()]
    parsed = []
    for number, line in enumerate(lines, 1):
        try:
            entry = json.loads(line)
        except json.JSONDecodeError:
            pytest.fail(f"{service.log_path.name} line {number} is not JSON: {line!r}")
        assert isinstance(entry, dict), f"line {number} is JSON but not an object: {line!r}"
        parsed.append(entry)
    return parsed


async def test_every_line_of_a_service_log_is_json(
    start_service: Callable[..., ServiceProcess],
) -> None:
    stock = start_service("stock")
    # Something only a library logs: uvicorn's warning about a request that is not HTTP.
    host, port = stock.url.removeprefix("http://").split(":")
    reader, writer = await asyncio.open_connection(host, int(port))
    writer.write(b"\x16\x03\x01 this is not HTTP\r\n\r\n")
    await writer.drain()
    await reader.read()
    writer.close()
    await writer.wait_closed()
    # SIGTERM: the shutdown's lines are in the log too (uvicorn re-raises the signal).
    stock.stop()

    lines = log_lines(stock)
    assert all({"event", "level", "timestamp"} <= line.keys() for line in lines), lines
    assert all(line.get("service") == "stock" for line in lines), lines
    events = [(line.get("logger"), line["event"]) for line in lines]
    # Lotline's own lines and uvicorn's, from start to shutdown.
    assert (None, "started") in events
    assert (None, "stopped") in events
    assert any(logger == "uvicorn.error" and "Started server" in e for logger, e in events)
    assert ("uvicorn.error", "Invalid HTTP request received.") in events
    assert any(logger == "uvicorn.error" and "Finished server" in e for logger, e in events)
