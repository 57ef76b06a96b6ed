"""What every service's HTTP side shares: errors that name the field, database outages that
answer at once, request bodies bounded before they are read, and requests counted."""

from __future__ import annotations

import asyncio
import contextlib
import email.message
import json
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, TypeVar

from fastapi import FastAPI, HTTPException
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ValidationError
from pymongo.errors import ConnectionFailure
from starlette.requests import Request
from starlette.routing import BaseRoute, Match
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from lotline.runtime import telemetry

Model = TypeVar("Model", bound=BaseModel)

# FastAPI prefixes each location with where the value came from; the field is the rest.
_SOURCES = ("body", "query", "path", "header")


def field_error(loc: tuple[str, ...], problem: str) -> RequestValidationError:
    """A 422 for one field, raised from a handler (e.g. a path and body that disagree)."""
    return RequestValidationError([{"type": "value_error", "loc": loc, "msg": problem}])


async def validation_problem(_: Request, exc: Exception) -> JSONResponse:
    """422 whose every problem names its field, plus one readable sentence of them all."""
    assert isinstance(exc, RequestValidationError)
    problems = []
    for error in exc.errors():
        loc = [str(part) for part in error.get("loc", ())]
        field = ".".join(loc[1:] if loc and loc[0] in _SOURCES else loc)
        problem = str(error.get("msg", "invalid")).removeprefix("Value error, ")
        if error.get("type") == "missing":
            problem = "required field is missing"
        problems.append({"field": field or "(body)", "problem": problem, **_jsonable(error)})
    message = "; ".join(f"{p['field']}: {p['problem']}" for p in problems)
    return JSONResponse({"detail": problems, "message": message}, status_code=422)


def _jsonable(error: Any) -> dict[str, Any]:
    return {"loc": list(error.get("loc", ())), "msg": error.get("msg"), "type": error.get("type")}


async def database_unavailable(_: Request, exc: Exception) -> JSONResponse:
    """The database is away for a moment: say so (503, retry), rather than a bare 500."""
    return unavailable(str(exc))


def unavailable(why: str) -> JSONResponse:
    return JSONResponse(
        {"detail": f"database unavailable, retry shortly: {why}"},
        status_code=503,
        headers={"Retry-After": "1"},
    )


def install_error_handlers(app: FastAPI) -> None:
    app.add_exception_handler(RequestValidationError, validation_problem)
    app.add_exception_handler(ConnectionFailure, database_unavailable)


# --- request bodies ----------------------------------------------------------------------------


class BodyTooLarge(HTTPException):
    """A request body over the limit: 413, raised while it streams in."""

    def __init__(self, limit: int, declared: int | None = None) -> None:
        size = f"{declared} bytes" if declared is not None else f"over {limit} bytes"
        super().__init__(
            413,
            f"the request body is {size}; this service accepts at most {limit} "
            "(HTTP_MAX_BODY_BYTES)",
            # The rest of the body is never read: the connection ends with the answer.
            headers={"Connection": "close"},
        )


class BodyLimit:
    """Refuses a request body over `limit` bytes with 413, without reading it whole: a
    Content-Length over the limit is answered before a byte of the body is read, and a body
    without one (chunked) is counted as the app reads it and cut off once it is over.

    A pure ASGI middleware: it holds no body itself (Starlette's BaseHTTPMiddleware would)."""

    def __init__(self, app: ASGIApp, limit: int) -> None:
        self.app = app
        self.limit = limit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = _content_length(scope)
        if declared is not None and declared > self.limit:
            await _refuse(BodyTooLarge(self.limit, declared), scope, receive, send)
            return
        received = 0
        started = False

        async def counted() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.limit:
                    raise BodyTooLarge(self.limit)
            return message

        async def watched(message: Message) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, counted, watched)
        except BodyTooLarge as refusal:
            # Routes turn it into their usual error body; this is for a reader outside one.
            if started:
                raise
            await _refuse(refusal, scope, receive, send)


def _content_length(scope: Scope) -> int | None:
    for name, value in scope["headers"]:
        if name == b"content-length":
            with contextlib.suppress(ValueError):
                return int(value)
    return None


async def _refuse(refusal: HTTPException, scope: Scope, receive: Receive, send: Send) -> None:
    response = JSONResponse(
        {"detail": refusal.detail}, status_code=refusal.status_code, headers=refusal.headers
    )
    await response(scope, receive, send)


async def json_body(request: Request, model: type[Model]) -> Model:
    """A JSON body read and validated inside a dependency, so the dependencies it follows
    (authentication) run first: FastAPI reads a declared body parameter before it runs any
    dependency. Errors are the 422 a declared body would give, located in the body."""
    media = email.message.Message()
    media["content-type"] = request.headers.get("content-type", "")
    subtype = media.get_content_subtype()
    if media.get_content_maintype() != "application" or not (
        subtype == "json" or subtype.endswith("+json")
    ):
        raise field_error(("body",), "send the body as JSON (Content-Type: application/json)")
    raw = await request.body()
    if not raw:
        raise RequestValidationError([{"type": "missing", "loc": ("body",), "msg": "missing"}])
    try:
        document = json.loads(raw)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        position = exc.pos if isinstance(exc, json.JSONDecodeError) else exc.start
        raise RequestValidationError(
            [
                {
                    "type": "json_invalid",
                    "loc": ("body", position),
                    "msg": f"JSON decode error: {exc}",
                }
            ]
        ) from None
    try:
        return model.model_validate(document)
    except ValidationError as exc:
        raise RequestValidationError(
            [{**error, "loc": ("body", *error["loc"])} for error in exc.errors()]
        ) from None


def json_body_openapi(model: type[BaseModel]) -> dict[str, Any]:
    """The `openapi_extra` that documents a body read by `json_body` (FastAPI cannot see it),
    with the model's schema inlined (its `$defs` would not resolve inside the document)."""
    schema = model.model_json_schema()
    definitions = schema.pop("$defs", {})

    def inline(node: Any) -> Any:
        if isinstance(node, dict):
            ref = node.get("$ref")
            if isinstance(ref, str) and ref.startswith("#/$defs/"):
                return inline(definitions[ref.removeprefix("#/$defs/")])
            return {key: inline(value) for key, value in node.items()}
        if isinstance(node, list):
            return [inline(item) for item in node]
        return node

    return {
        "requestBody": {
            "required": True,
            "content": {"application/json": {"schema": inline(schema)}},
        }
    }


# --- database outages ---------------------------------------------------------------------------

Probe = Callable[[], Awaitable[str | None]]


class OutageGuard:
    """Answers 503 with Retry-After once the database stops answering, instead of letting a
    request wait for the driver to give up (with a server that accepts connections but never
    replies, e.g. a paused one, that took 18-20 s).

    A request that has not finished after `check_after_s` asks `probe` (one shared ping with
    its own timeout; None means the database answered, else why not). A database that
    answers lets the request carry on, however long it takes (a large export), and it is
    asked again while the request still waits; one that does not answer ends the request
    with 503 at once, as long as no response has started. Readiness answers for itself."""

    def __init__(
        self, app: ASGIApp, probe: Probe, check_after_s: float, skip: tuple[str, ...] = ()
    ) -> None:
        self.app = app
        self.probe = probe
        self.check_after_s = check_after_s
        self.skip = skip

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"].startswith(self.skip):
            await self.app(scope, receive, send)
            return
        started = False

        async def watched(message: Message) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        request: asyncio.Future[Any] = asyncio.ensure_future(self.app(scope, receive, watched))
        try:
            while True:
                done, _ = await asyncio.wait({request}, timeout=self.check_after_s)
                if done or started:
                    break
                probe: asyncio.Future[Any] = asyncio.ensure_future(self.probe())
                either: set[asyncio.Future[Any]] = {request, probe}
                done, _ = await asyncio.wait(either, return_when=asyncio.FIRST_COMPLETED)
                if request in done:
                    probe.cancel()
                    break
                why = probe.result()
                if why is not None and not started:
                    request.cancel()
                    with contextlib.suppress(asyncio.CancelledError, Exception):
                        await request
                    if not started:
                        await unavailable(why)(scope, receive, send)
                    return
        except asyncio.CancelledError:
            request.cancel()
            raise
        await request


# --- request metrics ----------------------------------------------------------------------------

UNMATCHED = "(unmatched)"


class RequestMetrics:
    """Counts every request by method, route and status, and times it: the route is its
    template (`/stock/{sku}`), so the series stay few whatever the paths asked for. Outermost,
    so that answers given before routing (413, 503) count under their route too."""

    def __init__(self, app: ASGIApp, routes: Sequence[BaseRoute]) -> None:
        self.app = app
        self.routes = routes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500

        async def watched(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, watched)
        finally:
            telemetry.observe_request(
                scope["method"], self._route(scope), status, time.perf_counter() - started
            )

    def _route(self, scope: Scope) -> str:
        route = scope.get("route")
        if route is None:
            # Refused before the router ran: find the route it was meant for.
            route = next((r for r in self.routes if r.matches(scope)[0] is Match.FULL), None)
        path = getattr(route, "path", None)
        return path if isinstance(path, str) else UNMATCHED
