"""What every service's HTTP side shares: errors that name the field, database outages that
answer at once, request bodies bounded before they are read, requests counted, and OpenAPI
documents that say which errors each route gives and what their bodies are."""

from __future__ import annotations

import asyncio
import contextlib
import email.message
import json
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any, TypeVar

from fastapi import FastAPI, HTTPException
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from fastapi.routing import APIRoute
from pydantic import BaseModel, Field, ValidationError
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
    document_errors(app)


# --- what the OpenAPI documents say about errors ------------------------------------------------


class Error(BaseModel):
    """The body of every error but a 422 (FastAPI's HTTPException, the 413, the 503)."""

    detail: str = Field(description="What went wrong, in one sentence")


class Problem(BaseModel):
    """One field at fault in a 422."""

    field: str = Field(description="The field, dotted (`serials.3`); `(body)` for the body")
    problem: str = Field(description="What is wrong with it")
    loc: list[str | int] = Field(description="Where the value came from, then its path")
    msg: str = Field(description="The validator's own message")
    type: str = Field(description="The validator's error type (`missing`, `int_parsing`, ...)")


class ValidationProblem(BaseModel):
    """The body of a 422, as `validation_problem` sends it."""

    detail: list[Problem]
    message: str = Field(description="Every problem in one sentence: `field: problem; ...`")


_SCHEMAS = "#/components/schemas/"
_RETRY_AFTER = {"Retry-After": {"description": "Seconds to wait", "schema": {"type": "integer"}}}

# Why each error is given, unless a route says more; and the headers that come with it.
ERRORS: dict[int, tuple[str, dict[str, Any]]] = {
    401: (
        "No token where one is needed, or a token that is not valid",
        {
            "WWW-Authenticate": {
                "description": "Bearer, with the realm",
                "schema": {"type": "string"},
            }
        },
    ),
    403: ("The token's role may not do this", {}),
    404: ("Nothing is recorded under this path", {}),
    409: ("It conflicts with what is recorded", {}),
    413: (
        "The request body is over HTTP_MAX_BODY_BYTES; the connection is closed",
        {"Connection": {"description": "close", "schema": {"type": "string"}}},
    ),
    429: ("Too many failed tokens from this address: wait Retry-After seconds", _RETRY_AFTER),
    502: ("A service this one assembles its answer from answered with an error", {}),
    503: (
        "The database, or a service this one asks, is not answering (retry after Retry-After), "
        "or no tokens are configured for a change",
        _RETRY_AFTER,
    ),
}


def errors(*statuses: int, why: Mapping[int, str] | None = None) -> dict[int | str, Any]:
    """The `responses=` of a route for the errors it gives itself (404, 409, 401/403 of a
    change, ...), each with the `Error` body; `why` overrides a status's description. The
    errors every route can give (413, 422, 503; 401 and 429 with a Bearer token) are added
    to every operation by `document_errors`."""
    responses: dict[int | str, Any] = {}
    for status in statuses:
        description, headers = ERRORS[status]
        responses[status] = _error_response((why or {}).get(status, description), headers)
    return responses


# The errors of a change: the token's (401, 403) and a service with no tokens (503).
CHANGE_ERRORS = (401, 403, 503)


def _error_response(description: str, headers: dict[str, Any], model: str = "Error") -> Any:
    response: dict[str, Any] = {
        "description": description,
        "content": {"application/json": {"schema": {"$ref": f"{_SCHEMAS}{model}"}}},
    }
    if headers:
        response["headers"] = headers
    return response


def operation_name(route: APIRoute) -> str:
    """An operationId for a route that names none: its function's name in camelCase, a GET
    read as `get...` (`lot_epcis` -> `getLotEpcis`), never FastAPI's path-derived name."""
    words = [word for word in route.name.split("_") if word]
    if "GET" in (route.methods or ()) and words[:1] not in (["get"], ["list"]):
        words = ["get", *words]
    return words[0].lower() + "".join(word[:1].upper() + word[1:] for word in words[1:])


def document_errors(app: FastAPI) -> None:
    """Makes the app's OpenAPI document tell the truth about errors: its 422 is the body
    `validation_problem` sends (not FastAPI's HTTPValidationError), every operation has the
    413 of the body limit and the 503 of the outage guard (the health checks answer for
    themselves), one that takes a Bearer token its 401 and 429, and every operation a name.

    Called before the service's routers are included: they take their default names from
    the app's router; the routes already added (the health checks) are named here."""
    app.router.generate_unique_id_function = operation_name
    for route in app.routes:
        if isinstance(route, APIRoute) and route.operation_id is None:
            route.operation_id = route.unique_id = operation_name(route)
    generate = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            app.openapi_schema = with_errors(generate())
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]


_FASTAPI_422 = {"$ref": f"{_SCHEMAS}HTTPValidationError"}
_METHODS = {"get", "put", "post", "delete", "patch", "head", "options", "trace"}


def with_errors(document: dict[str, Any]) -> dict[str, Any]:
    """`document` with the errors every operation can give, and the real 422 body."""
    schemas = document.setdefault("components", {}).setdefault("schemas", {})
    for model in (Error, ValidationProblem):
        schema = model.model_json_schema(ref_template=f"{_SCHEMAS}{{model}}")
        schemas.update(schema.pop("$defs", {}))
        schemas[model.__name__] = schema
    for path, item in document.get("paths", {}).items():
        for method, operation in item.items():
            if method not in _METHODS:
                continue
            responses = operation.setdefault("responses", {})
            invalid = responses.get("422", {}).get("content", {}).get("application/json", {})
            if invalid.get("schema") == _FASTAPI_422:
                responses["422"] = _error_response(
                    "A parameter or the body is not valid: each problem names its field",
                    {},
                    model="ValidationProblem",
                )
            if operation.get("security"):
                for status in (401, 429):
                    responses.setdefault(str(status), _error_response(*ERRORS[status]))
            responses.setdefault("413", _error_response(*ERRORS[413]))
            if not path.startswith("/health/"):
                responses.setdefault("503", _error_response(*ERRORS[503]))
            operation["responses"] = dict(sorted(responses.items()))
    if _FASTAPI_422["$ref"] not in json.dumps(document):
        schemas.pop("HTTPValidationError", None)
        schemas.pop("ValidationError", None)
    return document


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


# --- pagination --------------------------------------------------------------------------------

# One style for every list that pages: a cursor, the key of the last item of a page (a SKU, a
# serial, a recall id), so a page is found by an index and an item added while a client pages
# neither repeats nor hides another, as an offset over a changing collection would.
AFTER = "The `next_after` of the previous page (its last item's key); omitted: the first page"
NEXT_AFTER = "Pass as `after` for the next page; null on the last page"


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
