"""What every service's HTTP side shares: errors that name the field, and database outages."""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pymongo.errors import ConnectionFailure
from starlette.requests import Request

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
    return JSONResponse(
        {"detail": f"database unavailable, retry shortly: {exc}"},
        status_code=503,
        headers={"Retry-After": "1"},
    )


def install_error_handlers(app: FastAPI) -> None:
    app.add_exception_handler(RequestValidationError, validation_problem)
    app.add_exception_handler(ConnectionFailure, database_unavailable)
