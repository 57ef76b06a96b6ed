"""The recall console: server-rendered pages to log in, issue, follow and close recalls.

Pages are plain HTML forms that work without JavaScript; the vendored htmx only refreshes
the figures of open recalls. Changes obey the API's rule (`api.allowed_to_change`): only a
logged-in operator, and every form carries a CSRF token bound to the signed session cookie.
A login is kept in the recall database too (`RecallStore.console_sessions`): logging out
deletes it, so a copy of the cookie is worthless afterwards, on every instance. Customers to
contact are shown to a visitor logged in as staff or operator only.
"""

from __future__ import annotations

import csv
import io
import re
import secrets
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlsplit

import structlog
from fastapi import APIRouter, FastAPI, HTTPException, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from fastapi.staticfiles import StaticFiles
from fastapi.templating import Jinja2Templates
from pydantic import ValidationError
from pydantic_core import ErrorDetails

from lotline.events import Classification
from lotline.recall.api import (
    Operator,
    RecallClose,
    RecallDetail,
    RecallIssue,
    RecallView,
    allowed_to_change,
    close,
    issue,
    operators_of,
)
from lotline.recall.auth import Credential, Session, SessionSigner
from lotline.recall.store import RecallStore, now
from lotline.runtime.auth import (
    NO_STORE,
    access_of,
    address_key,
    may_read_personal_data,
    name_key,
    too_many_attempts,
)
from lotline.runtime.outbox import Relay

HERE = Path(__file__).parent
COOKIE = "lotline_console"
LIST_LIMIT = 100
# Pasted columns of serials come separated by new lines, spaces, commas or semicolons.
_SEPARATORS = re.compile(r"[\s,;]+")
SECURITY_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data:; "
        "frame-ancestors 'none'; form-action 'self'; base-uri 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
}

log = structlog.get_logger("console")
templates = Jinja2Templates(directory=HERE / "templates")
templates.env.filters["segment"] = lambda value: quote(str(value), safe="")
router = APIRouter(include_in_schema=False)


@dataclass(frozen=True)
class Visit:
    """Who is looking at the console, and whether their session cookie must be (re)set."""

    session: Session
    credential: Credential | None
    set_cookie: bool
    csrf: str

    @property
    def operator(self) -> bool:
        return self.credential is not None and self.credential.may_change_recalls

    @property
    def reader(self) -> bool:
        """May see the customers to contact (staff or operator)."""
        return may_read_personal_data(self.credential)


def _signer(request: Request) -> SessionSigner:
    signer: SessionSigner = request.app.state.sessions
    return signer


async def visit_of(request: Request) -> Visit:
    signer = _signer(request)
    session = signer.loads(request.cookies.get(COOKIE))
    set_cookie = session is None
    if session is None:
        session = Session.anonymous(signer.max_age_s)
    credential = signer.who(session, operators_of(request))
    if credential is not None and not await _still_logged_in(request, session):
        credential = None
    if session.operator is not None and credential is None:
        # Logged out, unused too long, or its token was revoked or changed: the login ends.
        session, set_cookie = Session.anonymous(signer.max_age_s), True
    return Visit(session, credential, set_cookie, signer.csrf_token(session))


async def _still_logged_in(request: Request, session: Session) -> bool:
    """Whether the server still has this login (not logged out, not idle too long)."""
    store, idle_s = _store(request), request.app.state.session_idle_s
    record = await store.login(session.key)
    if record is None or record.operator != session.operator:
        return False
    moment = now()
    if record.idle(moment, idle_s):
        await store.end_login(record.key)
        log.info("console_login_idle", operator=record.operator)
        return False
    if record.needs_touch(moment, idle_s):
        await store.touch_login(record.key, moment)
    return True


def _with_cookie(request: Request, response: Response, session: Session) -> Response:
    signer = _signer(request)
    response.set_cookie(
        COOKIE,
        signer.dumps(session),
        max_age=signer.max_age_s,
        path="/",
        httponly=True,
        samesite="strict",
        secure=request.app.state.cookie_secure,
    )
    return response


def render(
    request: Request, visit: Visit, template: str, status_code: int = 200, **context: Any
) -> Response:
    response = templates.TemplateResponse(
        request,
        template,
        {"visit": visit, "classifications": [c.value for c in Classification], **context},
        status_code=status_code,
        headers=SECURITY_HEADERS,
    )
    if visit.set_cookie:
        _with_cookie(request, response, visit.session)
    return response


def refused(request: Request, visit: Visit, error: HTTPException) -> Response:
    response = render(
        request, visit, "refused.html", status_code=error.status_code, message=error.detail
    )
    response.headers.update(error.headers or {})
    return response


def _guard(request: Request, visit: Visit, csrf_token: Any) -> Operator:
    """The API's rule first (anonymous 401, staff 403), then the form's CSRF token."""
    acting = allowed_to_change(access_of(request), visit.credential, "log in at /console/login")
    if not isinstance(csrf_token, str) or not _signer(request).csrf_ok(visit.session, csrf_token):
        raise HTTPException(
            403, "this form has expired or did not come from the console: reload it and send again"
        )
    return acting


def _store(request: Request) -> RecallStore:
    store: RecallStore = request.app.state.recall_store
    return store


def _outbox(request: Request) -> Relay:
    outbox: Relay = request.app.state.recall_outbox
    return outbox


def _recall_url(recall_id: str) -> str:
    return "/console/recalls/" + quote(recall_id, safe="")


def _is_htmx(request: Request) -> bool:
    return request.headers.get("HX-Request") == "true"


# --- the list and the issue form ------------------------------------------------------------


async def _recent(request: Request) -> list[RecallView]:
    store = _store(request)
    records = await store.page(state=None, sku=None, after=None, limit=LIST_LIMIT)
    progress = await store.progress([r.recall.recall_id for r in records])
    return [RecallView.of(r, progress[r.recall.recall_id]) for r in records]


def _blank_form() -> dict[str, str]:
    return {
        "sku": "",
        "lot_codes": "",
        "serials": "",
        "reason": "",
        "classification": "",
        "idempotency_key": secrets.token_urlsafe(16),
    }


@router.get("/")
async def home() -> RedirectResponse:
    return RedirectResponse("/console", status_code=307)


@router.get("/console", response_class=HTMLResponse)
async def recall_list(request: Request) -> Response:
    visit = await visit_of(request)
    recalls = await _recent(request)
    if _is_htmx(request):
        return render(request, visit, "_recalls.html", recalls=recalls)
    return render(request, visit, "index.html", recalls=recalls, form=_blank_form(), errors={})


def split_codes(text: str) -> list[str]:
    """Lot codes or serials as typed or pasted: one a line, or separated by , ; or spaces."""
    return [part for part in _SEPARATORS.split(text) if part]


def recall_fields(typed: dict[str, str]) -> dict[str, Any]:
    """The recall a person typed in the form: each field without the spaces around it (the
    contract takes identifiers as sent, and refuses a padded one); a blank one left out."""
    fields: dict[str, Any] = {
        "lot_codes": split_codes(typed["lot_codes"]),
        "serials": split_codes(typed["serials"]),
    }
    for name in ("sku", "reason", "classification"):
        if typed[name].strip():
            fields[name] = typed[name].strip()
    return fields


def field_problems(errors: list[ErrorDetails] | list[Any]) -> dict[str, list[str]]:
    """The API's 422 problems by form field: what is wrong, naming the bad item."""
    problems: dict[str, list[str]] = {}
    for error in errors:
        loc = [str(part) for part in error.get("loc", ())]
        if loc and loc[0] in ("body", "header", "query"):
            loc = loc[1:]
        field = loc[0] if loc else "form"
        if field not in ("sku", "lot_codes", "serials", "reason", "classification"):
            field = "form"
        problem = str(error.get("msg", "invalid")).removeprefix("Value error, ")
        if error.get("type") == "missing":
            problem = "required"
        elif len(loc) > 1 and "input" in error:
            problem = f"{error['input']!r}: {problem}"
        problems.setdefault(field, []).append(problem)
    return problems


@router.post("/console/recalls", response_class=HTMLResponse)
async def issue_from_form(request: Request) -> Response:
    visit = await visit_of(request)
    form = await request.form()
    try:
        acting = _guard(request, visit, form.get("csrf_token"))
    except HTTPException as error:
        return refused(request, visit, error)
    typed = {name: str(form.get(name) or "") for name in _blank_form()}
    typed["idempotency_key"] = typed["idempotency_key"] or secrets.token_urlsafe(16)
    fields = recall_fields(typed)
    try:
        body = RecallIssue.model_validate(fields)
        _, view = await issue(
            body, acting, _store(request), _outbox(request), typed["idempotency_key"]
        )
    except (ValidationError, RequestValidationError) as error:
        errors = field_problems(list(error.errors()))
    except HTTPException as error:
        errors = {"form": [str(error.detail)]}
    else:
        return RedirectResponse(_recall_url(view.recall_id), status_code=303)
    recalls = await _recent(request)
    return render(
        request, visit, "index.html", status_code=422, recalls=recalls, form=typed, errors=errors
    )


# --- one recall -------------------------------------------------------------------------------


async def _detail(request: Request, recall_id: str, customers: bool) -> RecallDetail | None:
    store = _store(request)
    record = await store.load(recall_id)
    if record is None:
        return None
    return RecallDetail.detail_of(record, await store.facts(recall_id), customers)


def _not_found(request: Request, visit: Visit, recall_id: str) -> Response:
    error = HTTPException(404, f"no recall with recall_id {recall_id!r}")
    return refused(request, visit, error)


CSV_COLUMNS = ("serial", "lot_code", "sale_id", "store", "sold_at", "customer_ref")


def contacts_csv(detail: RecallDetail) -> str:
    """One row per customer to contact; the csv module quotes what needs quoting, and every
    cell goes through `safe_cell`, so no value a till sent runs as a formula."""
    from lotline.recall.spreadsheet import safe_row

    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\r\n")
    writer.writerow(CSV_COLUMNS)
    for c in detail.contacts:
        sold_at = c.sold_at.isoformat() if c.sold_at else ""
        writer.writerow(
            safe_row([c.serial, c.lot_code, c.sale_id, c.location, sold_at, c.customer_ref])
        )
    return out.getvalue()


@router.get("/console/recalls/{recall_id:path}/contacts.csv")
async def contacts_download(recall_id: str, request: Request) -> Response:
    visit = await visit_of(request)
    if not visit.reader:
        refusal = HTTPException(
            401 if visit.credential is None else 403,
            "the contact list names customers: log in as staff or an operator to download it",
        )
        response = refused(request, visit, refusal)
        response.headers.update(NO_STORE)
        return response
    detail = await _detail(request, recall_id, customers=True)
    if detail is None:
        return _not_found(request, visit, recall_id)
    filename = re.sub(r"[^A-Za-z0-9._-]", "_", recall_id)
    return Response(
        contacts_csv(detail),
        media_type="text/csv; charset=utf-8",
        headers={
            "Content-Disposition": f'attachment; filename="{filename}-contacts.csv"',
            **NO_STORE,
        },
    )


@router.post("/console/recalls/{recall_id:path}/close", response_class=HTMLResponse)
async def close_from_form(recall_id: str, request: Request) -> Response:
    visit = await visit_of(request)
    form = await request.form()
    try:
        acting = _guard(request, visit, form.get("csrf_token"))
    except HTTPException as error:
        return refused(request, visit, error)
    try:
        body = RecallClose.model_validate({"reason": str(form.get("reason") or "").strip() or None})
        await close(recall_id, body.reason, acting, _store(request))
    except HTTPException as error:
        if error.status_code == 404:
            return _not_found(request, visit, recall_id)
        return refused(request, visit, error)
    except (RequestValidationError, ValidationError) as error:
        # Not fully accounted for and no reason given: the page again, asking for one.
        detail = await _detail(request, recall_id, customers=visit.reader)
        if detail is None:
            return _not_found(request, visit, recall_id)
        problems = field_problems(list(error.errors()))
        response = render(
            request, visit, "recall.html", status_code=422, recall=detail, errors=problems
        )
        response.headers.update(NO_STORE)
        return response
    return RedirectResponse(_recall_url(recall_id), status_code=303)


@router.get("/console/recalls/{recall_id:path}", response_class=HTMLResponse)
async def recall_page(recall_id: str, request: Request) -> Response:
    visit = await visit_of(request)
    detail = await _detail(request, recall_id, customers=visit.reader)
    if detail is None:
        return _not_found(request, visit, recall_id)
    template = "_recall_live.html" if _is_htmx(request) else "recall.html"
    response = render(request, visit, template, recall=detail)
    response.headers.update(NO_STORE)
    return response


# --- logging in and out -----------------------------------------------------------------------


def _safe_next(target: str | None) -> str:
    """Only a path of this console: a login link must not send anyone elsewhere."""
    if not target or not target.startswith("/console") or urlsplit(target).netloc:
        return "/console"
    return target


@router.get("/console/login", response_class=HTMLResponse)
async def login_page(request: Request, next: str | None = None) -> Response:
    visit = await visit_of(request)
    return render(request, visit, "login.html", next=_safe_next(next), name="", problem=None)


@router.post("/console/login", response_class=HTMLResponse)
async def log_in(request: Request) -> Response:
    visit = await visit_of(request)
    form = await request.form()
    name, token = str(form.get("name") or "").strip(), str(form.get("token") or "")
    target = _safe_next(str(form.get("next") or ""))
    access = access_of(request)
    signer = _signer(request)

    def again(status: int, problem: str, headers: dict[str, str] | None = None) -> Response:
        response = render(
            request,
            visit,
            "login.html",
            status_code=status,
            next=target,
            name=name,
            problem=problem,
        )
        response.headers.update(headers or {})
        return response

    if not signer.csrf_ok(visit.session, str(form.get("csrf_token") or "")):
        return again(403, "This form has expired: please log in again.")
    if not access.people.configured:
        return again(503, "Nobody can log in: the recall service has no operator tokens set.")
    # Throttled by the name tried and by the address trying, before the token is looked at.
    keys = [name_key(name[:64]), address_key(request)]
    if (wait := access.throttle.retry_after(keys)) > 0:
        refusal = too_many_attempts(wait, "logins")
        log.warning(
            "console_login_throttled",
            operator=name[:64],
            address=keys[1],
            retry_after_s=round(wait, 1),
        )
        return again(429, f"{str(refusal.detail).capitalize()}.", dict(refusal.headers or {}))
    credential = access.people.authenticate(token, name) if name and token else None
    if credential is None:
        wait = access.throttle.failed(keys)
        log.warning(
            "console_login_failed",
            operator=name[:64],
            address=keys[1],
            failures=access.throttle.failures(keys[0]),
            retry_after_s=round(wait, 1),
        )
        later = f" Wait {max(1, round(wait))} s before trying again." if wait > 0 else ""
        return again(401, f"Unknown operator name or wrong token.{later}")
    access.throttle.succeeded(keys[0])
    session = signer.login(credential)
    await _store(request).start_login(session.key, credential.name)
    log.info("console_login", operator=credential.name, role=credential.role.value)
    response = RedirectResponse(target, status_code=303)
    return _with_cookie(request, response, session)


@router.post("/console/logout")
async def log_out(request: Request) -> Response:
    visit = await visit_of(request)
    form = await request.form()
    if not _signer(request).csrf_ok(visit.session, str(form.get("csrf_token") or "")):
        return refused(request, visit, HTTPException(403, "this form has expired: reload it"))
    if visit.session.operator is not None:
        # Deleted server-side: a copy of this cookie is worthless from now on, everywhere.
        await _store(request).end_login(visit.session.key)
        log.info("console_logout", operator=visit.session.operator)
    response = RedirectResponse("/console", status_code=303)
    return _with_cookie(request, response, Session.anonymous(_signer(request).max_age_s))


def install(app: FastAPI) -> None:
    app.include_router(router)
    app.mount("/console/static", StaticFiles(directory=HERE / "static"), name="console-static")
