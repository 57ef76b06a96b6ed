"""The recall console's HTTP side: issue, list, follow and close recalls."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Annotated, Any

from fastapi import (
    APIRouter,
    Depends,
    FastAPI,
    Header,
    HTTPException,
    Path,
    Query,
    Request,
    Response,
)
from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, field_validator

from lotline.events.models import Classification, Identifier, LotCode, Serial, Sku, Text
from lotline.recall.auth import Credential, Operators
from lotline.recall.domain import (
    Accounting,
    AccountingBasis,
    CloseRefused,
    MatchedBy,
    Progress,
    Recall,
    RecallRequest,
    RecallState,
    UnitsAnswer,
    lots_matching_nothing,
    new_recall_id,
)
from lotline.recall.store import RecallFacts, RecallRecord, RecallStore, now
from lotline.runtime.auth import (
    NO_STORE,
    Access,
    Caller,
    access_of,
    may_read_personal_data,
)
from lotline.runtime.http import (
    AFTER,
    CHANGE_ERRORS,
    NEXT_AFTER,
    errors,
    field_error,
    json_body,
    json_body_openapi,
)
from lotline.runtime.outbox import Relay

router = APIRouter(tags=["recalls"])


# --- who is acting ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Operator:
    """The authenticated operator issuing or closing a recall."""

    name: str


def operators_of(request: Request) -> Operators:
    return access_of(request).people


def allowed_to_change(access: Access, credential: Credential | None, how: str) -> Operator:
    """The rule the API and the console share: only an operator changes recalls."""
    if not access.people.configured:
        raise HTTPException(503, access.no_tokens)
    if credential is None:
        raise HTTPException(
            401,
            f"an operator must log in to change recalls: {how}",
            headers={"WWW-Authenticate": 'Bearer realm="lotline-recall"'},
        )
    if not credential.may_change_recalls:
        raise HTTPException(
            403,
            f"{credential.name!r} may read recalls but not change them "
            f"(role {credential.role.value}; an operator token is needed)",
        )
    return Operator(credential.name)


async def operator(request: Request, caller: Caller) -> Operator:
    return allowed_to_change(
        access_of(request), caller, "send Authorization: Bearer <operator token>"
    )


Acting = Annotated[Operator, Depends(operator)]


def recall_store(request: Request) -> RecallStore:
    store: RecallStore = request.app.state.recall_store
    return store


def recall_outbox(request: Request) -> Relay:
    outbox: Relay = request.app.state.recall_outbox
    return outbox


Store = Annotated[RecallStore, Depends(recall_store)]
Outbox = Annotated[Relay, Depends(recall_outbox)]
RecallIdPath = Annotated[Identifier, Path(description="The recall's id")]


# --- requests --------------------------------------------------------------------------------


class RecallIssue(BaseModel):
    """A recall as an operator issues it; the types are the event contract's own."""

    model_config = ConfigDict(extra="forbid")

    recall_id: Identifier | None = Field(
        None, description="Your own id for the recall; issuing the same id again is idempotent"
    )
    sku: Sku
    lot_codes: list[LotCode] = Field(default_factory=list, max_length=1000)
    serials: list[Serial] = Field(default_factory=list, max_length=10000, validate_default=True)
    reason: Text
    classification: Classification

    @field_validator("serials")
    @classmethod
    def _names_something(cls, serials: list[str], info: ValidationInfo) -> list[str]:
        if not serials and info.data.get("lot_codes") == []:
            raise ValueError("a recall must name at least one lot code or serial")
        return serials


# --- responses -------------------------------------------------------------------------------


class UnitsAnswerView(BaseModel):
    """The serial registry's answer: sums over the chunks received so far."""

    chunks_expected: int | None
    chunks_received: list[int]
    complete: bool
    counts: dict[str, int] = Field(description="Recalled units by status (in_stock, sold, …)")
    unknown_serials: int

    @classmethod
    def of(cls, answer: UnitsAnswer) -> UnitsAnswerView:
        return cls(
            chunks_expected=answer.chunks_expected,
            chunks_received=list(answer.chunks_received),
            complete=answer.complete,
            counts=answer.counts,
            unknown_serials=len(answer.unknown_serials),
        )


class ProgressView(BaseModel):
    quarantined_units: int = Field(description="Units held in quarantine, all locations")
    units_to_contact: int = Field(description="Recalled units sold before the recall")
    units_returned: int
    sales_after_recall: int = Field(description="Sale lines of recalled units after the recall")
    units_sold_after_recall: int
    units_answer: UnitsAnswerView

    @classmethod
    def of(cls, progress: Progress) -> ProgressView:
        return cls(
            quarantined_units=progress.quarantined_units,
            units_to_contact=progress.units_to_contact,
            units_returned=progress.units_returned,
            sales_after_recall=progress.sales_after_recall,
            units_sold_after_recall=progress.units_sold_after_recall,
            units_answer=UnitsAnswerView.of(progress.units),
        )


class AccountingView(BaseModel):
    """Where every unit of the recall is (the README's Recall console says how it counts)."""

    basis: AccountingBasis = Field(
        description="lots: stock's account of the recalled lots; serials: the registry's"
    )
    expected: int = Field(description="M: units received of the recalled lots, or serials named")
    accounted: int = Field(description="N: units whose whereabouts are known")
    complete: bool = Field(description="N = M > 0: closing needs no reason")
    summary: str = Field(description='"accounted for: N of M"')
    quarantined: int
    disposed: int = Field(description="Destroyed or returned to the supplier")
    sold_before_recall: int = Field(description="With customers to contact")
    sold_after_recall: int
    returned: int = Field(description="Brought back by customers")

    @classmethod
    def of(cls, accounting: Accounting) -> AccountingView:
        return cls(
            basis=accounting.basis,
            expected=accounting.expected,
            accounted=accounting.accounted,
            complete=accounting.complete,
            summary=f"accounted for: {accounting.accounted} of {accounting.expected}",
            quarantined=accounting.quarantined,
            disposed=accounting.disposed,
            sold_before_recall=accounting.sold_before_recall,
            sold_after_recall=accounting.sold_after_recall,
            returned=accounting.returned,
        )


class RecallView(BaseModel):
    recall_id: str
    sku: str
    lot_codes: list[str]
    serials: list[str]
    reason: str
    classification: Classification
    issued_by: str
    issued_at: datetime
    state: RecallState
    closed_at: datetime | None
    closed_by: str | None
    close_reason: str | None = Field(
        None, description="Why it was closed though not fully accounted for"
    )
    event_id: str = Field(description="Id of its batch-recalled event")
    published: bool = Field(description="batch-recalled is on the topic")
    published_at: datetime | None
    progress: ProgressView
    accounting: AccountingView

    @classmethod
    def fields_of(cls, record: RecallRecord, progress: Progress) -> dict[str, Any]:
        recall = record.recall
        return {
            "recall_id": recall.recall_id,
            "sku": recall.sku,
            "lot_codes": list(recall.lot_codes),
            "serials": list(recall.serials),
            "reason": recall.reason,
            "classification": recall.classification,
            "issued_by": recall.issued_by,
            "issued_at": recall.issued_at,
            "state": recall.state,
            "closed_at": recall.closed_at,
            "closed_by": recall.closed_by,
            "close_reason": recall.close_reason,
            "event_id": str(recall.event_id),
            "published": not record.broadcast_pending,
            "published_at": record.published_at,
            "progress": ProgressView.of(progress),
            "accounting": AccountingView.of(Accounting.of(recall, progress)),
        }

    @classmethod
    def of(cls, record: RecallRecord, progress: Progress) -> RecallView:
        return cls(**cls.fields_of(record, progress))


class QuarantineView(BaseModel):
    location: str
    lot_code: str | None
    quantity: int
    reported_at: datetime | None


class LocationQuarantineView(BaseModel):
    location: str
    quantity: int


class ContactView(BaseModel):
    serial: str
    lot_code: str | None
    sale_id: str | None
    location: str | None
    sold_at: datetime | None
    customer_ref: str | None


class ReturnView(BaseModel):
    return_id: str
    line: int
    sale_id: str | None
    location: str
    quantity: int
    serial: str | None
    lot_code: str | None
    returned_at: datetime | None
    matched_by: MatchedBy


class FlaggedSaleView(BaseModel):
    sale_id: str
    line: int
    location: str
    quantity: int
    serial: str | None
    lot_code: str | None
    customer_ref: str | None
    sold_at: datetime | None
    detail: str
    flagged_by: str = Field(description="The service that flagged the sale")
    matched_by: MatchedBy


class RecallDetail(RecallView):
    quarantine: list[QuarantineView] = Field(description="Per location and lot")
    quarantine_by_location: list[LocationQuarantineView]
    contacts: list[ContactView] = Field(description="Customers to contact, one per serial")
    returns: list[ReturnView]
    flagged_sales: list[FlaggedSaleView]
    unknown_serials: list[str] = Field(description="Recalled serials the registry never saw")
    unmatched_lots: list[str] = Field(
        default_factory=list,
        description="Recalled lots no store, sale or return has been reported of yet: kept by "
        "stock and the serial registry, and applied the moment they arrive",
    )
    customers_shown: bool = Field(
        True,
        description="False for a reader who is not logged in as staff or operator: contacts "
        "and flagged_sales are then left out (their counts are in progress)",
    )

    @classmethod
    def detail_of(
        cls, record: RecallRecord, facts: RecallFacts, customers: bool = True
    ) -> RecallDetail:
        """The recall's detail; without `customers`, nothing that names a customer's purchase
        (who may see it: `Credential.may_read_personal_data`)."""
        progress = facts.progress()
        by_location: dict[str, int] = {}
        for line in facts.quarantine:
            by_location[line.location] = by_location.get(line.location, 0) + line.quantity
        return cls(
            **cls.fields_of(record, progress),
            quarantine=[
                QuarantineView(
                    location=q.location,
                    lot_code=q.lot_code,
                    quantity=q.quantity,
                    reported_at=q.reported_at,
                )
                for q in facts.quarantine
            ],
            quarantine_by_location=[
                LocationQuarantineView(location=location, quantity=quantity)
                for location, quantity in sorted(by_location.items())
            ],
            contacts=[ContactView.model_validate(c, from_attributes=True) for c in facts.contacts]
            if customers
            else [],
            returns=[ReturnView.model_validate(r, from_attributes=True) for r in facts.returns],
            flagged_sales=[
                FlaggedSaleView.model_validate(f, from_attributes=True) for f in facts.flagged
            ]
            if customers
            else [],
            unknown_serials=list(progress.units.unknown_serials),
            unmatched_lots=list(
                lots_matching_nothing(
                    record.recall.lot_codes,
                    quarantine=facts.quarantine,
                    contacts=facts.contacts,
                    returns=facts.returns,
                    flagged=facts.flagged,
                )
            ),
            customers_shown=customers,
        )


class RecallPage(BaseModel):
    items: list[RecallView]
    next_after: str | None = Field(description=NEXT_AFTER)


# --- routes ----------------------------------------------------------------------------------


async def recall_issue_body(request: Request, _: Acting) -> RecallIssue:
    """The body of `POST /recalls`, read once the operator is known: FastAPI reads a declared
    body before it runs any dependency, so an anonymous body was read and parsed before its
    401 (100 MB raised the service from 94 MB to 731 MB)."""
    return await json_body(request, RecallIssue)


@router.post(
    "/recalls",
    status_code=201,
    response_model=RecallView,
    operation_id="issueRecall",
    responses={
        200: {"model": RecallView, "description": "Issued before: the same recall"},
        **errors(
            *CHANGE_ERRORS,
            409,
            why={409: "The recall_id was issued before with a different request"},
        ),
    },
    openapi_extra=json_body_openapi(RecallIssue),
)
async def issue_recall(
    body: Annotated[RecallIssue, Depends(recall_issue_body)],
    response: Response,
    store: Store,
    outbox: Outbox,
    acting: Acting,
    idempotency_key: Annotated[
        str | None,
        Header(alias="Idempotency-Key", min_length=1, max_length=200, pattern=r"^[!-~]+$"),
    ] = None,
) -> RecallView:
    """Issue a recall and broadcast it (`batch-recalled`); the authenticated operator is its
    `issued_by`. Issuing it again — same `Idempotency-Key`, or same `recall_id` — returns the
    recall already issued (200)."""
    created, view = await issue(body, acting, store, outbox, idempotency_key)
    response.status_code = 201 if created else 200
    return view


async def issue(
    body: RecallIssue,
    acting: Operator,
    store: RecallStore,
    outbox: Relay,
    idempotency_key: str | None,
) -> tuple[bool, RecallView]:
    """Issue a recall (the API's and the console's one way); True if it is new."""
    issued_by = acting.name
    request = RecallRequest(
        sku=body.sku,
        lot_codes=tuple(body.lot_codes),
        serials=tuple(body.serials),
        reason=body.reason,
        classification=body.classification,
        issued_by=issued_by,
        recall_id=body.recall_id,
    )
    issued_at = now()
    recall_id = body.recall_id or new_recall_id(issued_at)
    if idempotency_key is not None:
        recall_id, fingerprint = await store.reserve_idempotency_key(
            idempotency_key, recall_id, request.fingerprint()
        )
        if fingerprint != request.fingerprint():
            raise field_error(
                ("header", "Idempotency-Key"),
                f"Idempotency-Key {idempotency_key!r} was already used for a different request "
                f"(recall {recall_id})",
            )
    created, record = await store.insert(
        Recall.issue(recall_id, request, issued_at), idempotency_key
    )
    if not created and (differing := request.differences(record.recall)):
        raise HTTPException(
            409,
            f"recall {recall_id} was already issued with a different {', '.join(differing)}",
        )
    if record.broadcast_pending:
        await outbox.try_publish(recall_id)
        record = await store.load(recall_id) or record
    progress = await store.progress([recall_id])
    return created, RecallView.of(record, progress[recall_id])


@router.get("/recalls", response_model=RecallPage, operation_id="listRecalls")
async def list_recalls(
    store: Store,
    state: RecallState | None = None,
    sku: Sku | None = None,
    after: Annotated[Identifier | None, Query(description=AFTER + " (a recall id)")] = None,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
) -> RecallPage:
    """Recalls, newest first, each with its progress figures."""
    last = None
    if after is not None and (last := await store.load(after)) is None:
        raise field_error(("query", "after"), f"no recall with recall_id {after!r}")
    records = await store.page(state=state, sku=sku, after=last, limit=limit + 1)
    more = len(records) > limit
    records = records[:limit]
    progress = await store.progress([r.recall.recall_id for r in records])
    return RecallPage(
        items=[RecallView.of(r, progress[r.recall.recall_id]) for r in records],
        next_after=records[-1].recall.recall_id if more and records else None,
    )


@router.get(
    "/recalls/{recall_id:path}",
    response_model=RecallDetail,
    operation_id="getRecall",
    responses=errors(404, why={404: "No recall has this id"}),
)
async def get_recall(
    recall_id: RecallIdPath, store: Store, caller: Caller, response: Response
) -> RecallDetail:
    """A recall with its full progress: quarantine, customers to contact, returns, sales.
    The customers (contacts, flagged sales) only with a staff or operator token."""
    response.headers.update(NO_STORE)
    record = await store.load(recall_id)
    if record is None:
        raise HTTPException(404, f"no recall with recall_id {recall_id!r}")
    return RecallDetail.detail_of(
        record, await store.facts(recall_id), may_read_personal_data(caller)
    )


class RecallClose(BaseModel):
    """Closing a recall; the body may be left out when every unit is accounted for."""

    model_config = ConfigDict(extra="forbid")

    reason: Text | None = Field(
        None, description="Required when the recall is not fully accounted for; kept with it"
    )


async def recall_close_body(request: Request, _: Acting) -> RecallClose:
    """The optional body of a close, read once the operator is known (as `POST /recalls`)."""
    if not await request.body():
        return RecallClose()
    return await json_body(request, RecallClose)


def _close_body_openapi() -> dict[str, Any]:
    extra = json_body_openapi(RecallClose)
    extra["requestBody"]["required"] = False
    return extra


@router.post(
    "/recalls/{recall_id:path}/close",
    response_model=RecallView,
    operation_id="closeRecall",
    responses=errors(*CHANGE_ERRORS, 404, why={404: "No recall has this id"}),
    openapi_extra=_close_body_openapi(),
)
async def close_recall(
    recall_id: RecallIdPath,
    body: Annotated[RecallClose, Depends(recall_close_body)],
    store: Store,
    acting: Acting,
) -> RecallView:
    """Close a recall (closing a closed one changes nothing); the authenticated operator is
    its `closed_by`. One not fully accounted for (`accounting.complete` false) needs a
    `reason`, a 422 naming `reason` without it. A closed recall still records events."""
    return await close(recall_id, body.reason, acting, store)


async def close(
    recall_id: str, reason: str | None, acting: Operator, store: RecallStore
) -> RecallView:
    """Close a recall (the API's and the console's one way)."""
    record = await store.load(recall_id)
    if record is None:
        raise HTTPException(404, f"no recall with recall_id {recall_id!r}")
    if record.recall.is_open:
        progress = (await store.facts(recall_id)).progress()
        try:
            Accounting.of(record.recall, progress).check_close(recall_id, reason)
        except CloseRefused as refused:
            raise field_error(("body", "reason"), str(refused)) from None
        record = await store.close(recall_id, acting.name, reason) or record
    progress = (await store.progress([recall_id]))[recall_id]
    return RecallView.of(record, progress)


def install(app: FastAPI) -> None:
    app.include_router(router)
