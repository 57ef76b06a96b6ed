"""The HTTP side's limits, on real service processes: a body over the limit is refused (413)
without being read, an anonymous recall is refused (401) before its body is read, and a
database that stops answering gets a 503 with Retry-After within about two seconds.

"Without being read" is observed on the wire: a client that sends `Expect: 100-continue`
gets `100 Continue` only once the application asks for the body, so a final answer with no
`100 Continue` before it was given without a byte of the body; and the service's peak memory
stays where it was while clients push hundreds of megabytes at it."""

from __future__ import annotations

import asyncio
import contextlib
import json
import socket
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest
from fastapi import FastAPI
from pymongo import AsyncMongoClient

from lotline.runtime.http import OutageGuard
from lotline.runtime.mongo import Reachability

from support import AS_OPERATOR, OPERATOR_ENV, OPERATOR_TOKEN, eventually

pytestmark = pytest.mark.infra

MIB = 1024 * 1024
LIMIT = 64 * 1024


@dataclass
class Answer:
    interim: list[int]
    status: int
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


def read_answer(sock: socket.socket, until_interim: bool = False) -> Answer:
    """The interim (1xx) statuses and the final response on a raw HTTP/1.1 connection (or
    only the first interim one, `until_interim`)."""
    buffer = b""
    interim: list[int] = []
    while True:
        while b"\r\n\r\n" not in buffer:
            chunk = sock.recv(65536)
            assert chunk, f"the connection closed before a response: {buffer!r}"
            buffer += chunk
        head, buffer = buffer.split(b"\r\n\r\n", 1)
        status_line, *header_lines = head.decode("latin-1").split("\r\n")
        status = int(status_line.split()[1])
        headers = {
            name.strip().lower(): value.strip()
            for name, value in (line.split(":", 1) for line in header_lines)
        }
        if 100 <= status < 200:
            interim.append(status)
            if until_interim:
                return Answer(interim, status, headers, b"")
            continue
        length = int(headers.get("content-length", "0"))
        while len(buffer) < length:
            chunk = sock.recv(65536)
            assert chunk, "the connection closed in the middle of the response body"
            buffer += chunk
        return Answer(interim, status, headers, buffer[:length])


def send_headers(url: str, lines: list[str]) -> socket.socket:
    """Open a connection and send a request's head (no body yet)."""
    address = urlsplit(url)
    assert address.hostname is not None
    assert address.port is not None
    sock = socket.create_connection((address.hostname, address.port), timeout=30)
    head = "\r\n".join([*lines, f"Host: {address.hostname}:{address.port}", "", ""])
    sock.sendall(head.encode("latin-1"))
    return sock


def announce(
    url: str, method: str, path: str, length: int, *extra: str, until_interim: bool = False
) -> Answer:
    """A request that announces a body of `length` bytes and waits for leave to send it."""
    lines = [
        f"{method} {path} HTTP/1.1",
        "Content-Type: application/json",
        f"Content-Length: {length}",
        "Expect: 100-continue",
        *extra,
    ]
    with send_headers(url, lines) as sock:
        return read_answer(sock, until_interim)


def chunked(url: str, path: str, size: int, *extra: str, end: bool = True) -> Answer:
    """A body with no Content-Length, `size` bytes in one chunk (and, if `end`, the last
    chunk); the answer that follows."""
    lines = [
        f"POST {path} HTTP/1.1",
        "Content-Type: application/json",
        "Transfer-Encoding: chunked",
        *extra,
    ]
    with send_headers(url, lines) as sock:
        sock.sendall(f"{size:x}\r\n".encode() + b" " * size + b"\r\n")
        if end:
            sock.sendall(b"0\r\n\r\n")
        return read_answer(sock)


def peak_rss_bytes(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
    raise AssertionError(f"no VmHWM for pid {pid}")


def push(url: str, lines: list[str], total: int, chunks: bool) -> None:
    """Send `total` bytes of body as fast as the service takes them; it may hang up."""
    block = b" " * MIB
    with contextlib.suppress(OSError), send_headers(url, lines) as sock:
        sent = 0
        while sent < total:
            sock.sendall(f"{len(block):x}\r\n".encode() + block + b"\r\n" if chunks else block)
            sent += len(block)
        if chunks:
            sock.sendall(b"0\r\n\r\n")
        sock.settimeout(10)
        sock.recv(65536)


# --- body limits ---------------------------------------------------------------------------------


def test_every_service_refuses_a_body_over_its_limit_before_reading_it(
    start_service: Callable[..., Any],
) -> None:
    limit = {"HTTP_MAX_BODY_BYTES": str(LIMIT)}
    routes = {
        "catalog": ("POST", "/products"),
        "stock": ("GET", "/stock/ANY"),
        "serial-registry": ("GET", "/units/ANY/S-1"),
        "recall": ("POST", "/recalls"),
    }
    for name, (method, path) in routes.items():
        service = start_service(name, **limit, **(OPERATOR_ENV if name == "recall" else {}))
        answer = announce(service.url, method, path, 100 * MIB, *_operator(name))
        assert answer.status == 413, (name, answer)
        assert answer.interim == [], f"{name} asked for the body: {answer}"
        assert answer.json() == {
            "detail": f"the request body is {100 * MIB} bytes; this service accepts at most "
            f"{LIMIT} (HTTP_MAX_BODY_BYTES)"
        }
        service.stop()


def _operator(name: str) -> list[str]:
    return [f"Authorization: Bearer {OPERATOR_TOKEN}"] if name == "recall" else []


def test_a_chunked_body_is_cut_off_once_it_is_over_the_limit(
    start_service: Callable[..., Any],
) -> None:
    recall = start_service("recall", HTTP_MAX_BODY_BYTES=str(LIMIT), **OPERATOR_ENV)
    auth = f"Authorization: Bearer {OPERATOR_TOKEN}"
    # The body never ends: the answer comes once the limit is passed.
    answer = chunked(recall.url, "/recalls", LIMIT + 1, auth, end=False)
    assert answer.status == 413, answer
    assert answer.json()["detail"] == (
        f"the request body is over {LIMIT} bytes; this service accepts at most {LIMIT} "
        "(HTTP_MAX_BODY_BYTES)"
    )
    assert answer.headers["connection"] == "close"
    # At the limit it is parsed (and found not to be a recall).
    answer = chunked(recall.url, "/recalls", LIMIT, auth)
    assert answer.status == 422, answer


def test_an_anonymous_recall_is_refused_before_its_body_is_read(
    start_service: Callable[..., Any],
) -> None:
    recall = start_service("recall", **OPERATOR_ENV)
    half_a_mib = 512 * 1024  # under the limit: only the login stands in the way
    for extra in ([], ["Authorization: Bearer not-a-token"]):
        answer = announce(recall.url, "POST", "/recalls", half_a_mib, *extra)
        assert answer.status == 401, answer
        assert answer.interim == [], f"the body was asked for before the 401: {answer}"
    answer = announce(recall.url, "POST", "/recalls/RC-X/close", half_a_mib)
    assert (answer.status, answer.interim) == (401, [])
    # An operator is asked for the body.
    auth = f"Authorization: Bearer {OPERATOR_TOKEN}"
    answer = announce(recall.url, "POST", "/recalls", half_a_mib, auth, until_interim=True)
    assert answer.interim == [100], answer


async def test_an_operator_still_issues_a_recall_and_bad_bodies_name_their_field(
    start_service: Callable[..., Any], run_id: str
) -> None:
    recall = start_service("recall", **OPERATOR_ENV)
    async with httpx.AsyncClient(base_url=recall.url, headers=AS_OPERATOR, timeout=30) as http:
        issue = {
            "sku": f"LIMITS-{run_id}",
            "lot_codes": ["L1"],
            "reason": "limits",
            "classification": "II",
        }
        created = await http.post("/recalls", json=issue)
        assert created.status_code == 201, created.text
        assert created.json()["issued_by"] == "tests"
        bad = await http.post("/recalls", json={**issue, "classification": "IV"})
        assert bad.status_code == 422
        assert [p["field"] for p in bad.json()["detail"]] == ["classification"]
        broken = await http.post(
            "/recalls", content=b'{"sku": ', headers={"Content-Type": "application/json"}
        )
        assert broken.status_code == 422, broken.text
        empty = await http.post("/recalls", headers={"Content-Type": "application/json"})
        assert empty.status_code == 422
        assert empty.json()["detail"][0]["problem"] == "required field is missing"
        form = await http.post("/recalls", content=b"sku=X", headers={"Content-Type": "text/plain"})
        assert form.status_code == 422
        schema = (await http.get("/openapi.json")).json()
        body = schema["paths"]["/recalls"]["post"]["requestBody"]["content"]["application/json"]
        assert set(body["schema"]["required"]) == {"sku", "reason", "classification"}
        assert "$ref" not in json.dumps(body["schema"])


def test_hundreds_of_megabytes_pushed_at_the_recall_service_cost_it_no_memory(
    start_service: Callable[..., Any],
) -> None:
    recall = start_service("recall", **OPERATOR_ENV)
    assert recall.process is not None
    before = peak_rss_bytes(recall.process.pid)
    auth = f"Authorization: Bearer {OPERATOR_TOKEN}"
    declared = ["POST /recalls HTTP/1.1", "Content-Type: application/json"]
    pushes = [
        # Anonymous, with a Content-Length: refused at once.
        ([*declared, f"Content-Length: {100 * MIB}"], 100 * MIB, False),
        # An operator's, chunked: cut off at the limit.
        ([*declared, "Transfer-Encoding: chunked", auth], 100 * MIB, True),
        # Anonymous and chunked: refused before the body is read.
        ([*declared, "Transfer-Encoding: chunked"], 100 * MIB, True),
    ]
    threads = [
        threading.Thread(target=push, args=(recall.url, lines, total, chunks))
        for lines, total, chunks in pushes
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(120)
    grown = peak_rss_bytes(recall.process.pid) - before
    assert grown < 40 * MIB, f"peak memory grew by {grown / MIB:.0f} MiB"
    with httpx.Client(base_url=recall.url, timeout=10) as http:
        assert http.get("/health/live").status_code == 200


# --- database outages ----------------------------------------------------------------------------


@dataclass
class DatabaseTap:
    """A TCP proxy between one service and the database that can stop answering, as a paused
    database server does (connections are accepted, nothing comes back), or refuse
    connections, as a stopped one does. Only the service under test sees the outage: the
    shared database goes on serving everyone else."""

    target: tuple[str, int]
    flowing: threading.Event = field(default_factory=threading.Event)
    sockets: list[socket.socket] = field(default_factory=list)
    listener: socket.socket | None = None
    port: int = 0

    def start(self) -> DatabaseTap:
        self.flowing.set()
        self.listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.listener.bind(("127.0.0.1", self.port))
        self.port = self.listener.getsockname()[1]
        self.listener.listen(64)
        threading.Thread(target=self._accept, args=(self.listener,), daemon=True).start()
        return self

    def url(self) -> str:
        return f"mongodb://127.0.0.1:{self.port}/?directConnection=true"

    def freeze(self) -> None:
        self.flowing.clear()

    def thaw(self) -> None:
        self.flowing.set()

    def refuse(self) -> None:
        """Stop listening and drop every connection: connecting is refused from now on."""
        if self.listener is not None:
            self.listener.close()
            self.listener = None
        for sock in self.sockets:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
            sock.close()
        self.sockets.clear()

    def _accept(self, listener: socket.socket) -> None:
        while True:
            try:
                client, _ = listener.accept()
            except OSError:
                return
            try:
                server = socket.create_connection(self.target)
            except OSError:
                client.close()
                continue
            self.sockets += [client, server]
            for source, sink in ((client, server), (server, client)):
                threading.Thread(target=self._pump, args=(source, sink), daemon=True).start()

    def _pump(self, source: socket.socket, sink: socket.socket) -> None:
        with contextlib.suppress(OSError):
            while data := source.recv(65536):
                self.flowing.wait()
                sink.sendall(data)
        with contextlib.suppress(OSError):
            sink.shutdown(socket.SHUT_WR)


@pytest.fixture
def tap(infra: Any) -> Iterator[DatabaseTap]:
    address = urlsplit(infra.mongodb_url)
    if address.username or "," in address.netloc or not address.port:
        pytest.skip("the tap proxies one database server without a login")
    assert address.hostname is not None
    proxy = DatabaseTap((address.hostname, address.port)).start()
    yield proxy
    proxy.thaw()
    proxy.refuse()


async def timed_get(http: httpx.AsyncClient, path: str) -> tuple[float, httpx.Response]:
    started = time.monotonic()
    response = await http.get(path)
    return time.monotonic() - started, response


async def test_a_database_that_stops_answering_gets_a_503_within_seconds(
    start_service: Callable[..., Any], tap: DatabaseTap, run_id: str
) -> None:
    catalog = start_service("catalog", MONGODB_URL=tap.url())
    path = f"/products/OUTAGE-{run_id}"
    async with httpx.AsyncClient(base_url=catalog.url, timeout=60) as http:
        assert (await http.get(path)).status_code == 404

        # Paused: the server takes connections and never answers.
        tap.freeze()
        answers = await asyncio.gather(*(timed_get(http, path) for _ in range(3)))
        for elapsed, response in answers:
            assert response.status_code == 503, response.text
            assert response.headers["Retry-After"] == "1"
            assert "database unavailable" in response.json()["detail"]
            assert elapsed < 3.0, f"the 503 took {elapsed:.1f} s"
        tap.thaw()

        async def answers_again() -> None:
            assert (await http.get(path)).status_code == 404

        await eventually(answers_again, timeout=60)

        # Stopped: connecting is refused.
        tap.refuse()
        elapsed, response = await timed_get(http, path)
        assert response.status_code == 503, response.text
        assert response.headers["Retry-After"] == "1"
        assert elapsed < 3.0, f"the 503 took {elapsed:.1f} s"
        # Readiness says so too.
        ready = await http.get("/health/ready")
        assert ready.status_code == 503
        assert ready.json()["checks"]["database"] is False
        tap.start()
        await eventually(answers_again, timeout=60)


async def test_a_slow_request_on_a_database_that_answers_is_left_to_finish(infra: Any) -> None:
    """The guard pings while a request waits; a database that answers lets it run on (an
    export of a large recall takes far longer than the guard's two seconds)."""
    client: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(infra.mongodb_url)
    app = FastAPI()

    @app.get("/slow")
    async def slow() -> dict[str, bool]:
        await asyncio.sleep(2.5)
        await client.admin.command("ping")
        return {"done": True}

    guarded = OutageGuard(app, Reachability(client, timeout_s=1.5).problem, check_after_s=0.5)
    transport = httpx.ASGITransport(app=guarded)
    try:
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as http:
            response = await http.get("/slow")
        assert (response.status_code, response.json()) == (200, {"done": True})
    finally:
        await client.close()
