"""The recall database: recalls with their outbox, and the facts reported about each recall.

`recalls` holds one document per recall (`_id` = recall id) with its `batch-recalled` event
(field `outbox`), written by one insert: a crash after it never loses the broadcast. Once
the event is on the topic (`flush`, run by the runtime's relay), a marker is inserted into
`broadcasts` (same `_id`).
The facts reported by stock and the serial registry live in one collection each, one
document per natural key, so a fact reported again is the same single-document upsert:

    quarantine     recall + location + lot   latest total, guarded by stream offset
    unit_chunks    recall + chunk            counts by status, unknown serials
    contacts       recall + serial           a sold unit's customer to contact
    returns        recall + return + line    units returned for the recall
    flagged_sales  recall + sale + line      a recalled unit sold after the recall

`console_sessions` holds the console's logged-in sessions (`_id` = the hash of the cookie's
nonce): inserted at login, its `seen_at` moved on as it is used, deleted at logout. Every
instance reads it by `_id` on every request, so a logout ends the session everywhere.

Totals are computed when read, never kept as counters, so nothing can be counted twice.

Every document has one kind of writer. FerretDB v1 applies an update as a read-modify-write
of the whole document without isolation, so two concurrent writers of one document can undo
each other (even on different fields); hence the broadcast marker is an insert of its own,
not an update of the recall, whose only writers are its insert and its close.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Sequence
from contextlib import suppress
from dataclasses import asdict, dataclass
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from typing import Any

import structlog
from pymongo import ASCENDING, DESCENDING, ReplaceOne, UpdateOne
from pymongo.asynchronous.collection import AsyncCollection
from pymongo.asynchronous.database import AsyncDatabase
from pymongo.errors import DuplicateKeyError

from lotline.events import Classification, EventType, decode, encode, encode_event
from lotline.recall.auth import LoginRecord
from lotline.recall.domain import (
    SOURCE,
    CustomerContact,
    FlaggedSale,
    MatchedBy,
    Progress,
    QuarantinedStock,
    Recall,
    RecallState,
    ReturnedUnits,
    UnitsAnswer,
    UnitsChunk,
)
from lotline.runtime.mongo import bulk_write_in_parts, find_by_ids
from lotline.runtime.wal import Publishes

log = structlog.get_logger(__name__)


def now() -> datetime:
    """The time as MongoDB keeps it (milliseconds), so what is saved equals what is returned."""
    moment = datetime.now(UTC)
    return moment.replace(microsecond=moment.microsecond // 1000 * 1000)


@dataclass(frozen=True)
class RecallRecord:
    """A stored recall and where its broadcast stands."""

    recall: Recall
    idempotency_key: str | None
    published_at: datetime | None

    @property
    def broadcast_pending(self) -> bool:
        return self.published_at is None

    @classmethod
    def from_document(cls, doc: dict[str, Any], published_at: datetime | None) -> RecallRecord:
        return cls(_recall(doc), doc.get("idempotency_key"), published_at)


def _recall(doc: dict[str, Any]) -> Recall:
    return Recall(
        recall_id=doc["_id"],
        sku=doc["sku"],
        lot_codes=tuple(doc.get("lot_codes", ())),
        serials=tuple(doc.get("serials", ())),
        reason=doc["reason"],
        classification=Classification(doc["classification"]),
        issued_by=doc["issued_by"],
        issued_at=doc["issued_at"],
        state=RecallState(doc["state"]),
        closed_at=doc.get("closed_at"),
        closed_by=doc.get("closed_by"),
        close_reason=doc.get("close_reason"),
    )


@dataclass(frozen=True)
class RecallFacts:
    quarantine: list[QuarantinedStock]
    chunks: list[UnitsChunk]
    contacts: list[CustomerContact]
    returns: list[ReturnedUnits]
    flagged: list[FlaggedSale]

    def progress(self) -> Progress:
        return Progress.of(
            quarantine=self.quarantine,
            chunks=self.chunks,
            contacts=self.contacts,
            returns=self.returns,
            flagged=self.flagged,
        )


def _without_id(doc: dict[str, Any]) -> dict[str, Any]:
    return {name: value for name, value in doc.items() if name != "_id"}


class RecallStore:
    def __init__(
        self, db: AsyncDatabase[dict[str, Any]], relay_horizon: timedelta = timedelta(days=30)
    ) -> None:
        # How far back the outbox looks for recalls whose broadcast is pending.
        self.relay_horizon = relay_horizon
        self.recalls: AsyncCollection[dict[str, Any]] = db["recalls"]
        self.broadcasts: AsyncCollection[dict[str, Any]] = db["broadcasts"]
        self.idempotency_keys: AsyncCollection[dict[str, Any]] = db["idempotency_keys"]
        self.quarantine: AsyncCollection[dict[str, Any]] = db["quarantine"]
        self.unit_chunks: AsyncCollection[dict[str, Any]] = db["unit_chunks"]
        self.contacts: AsyncCollection[dict[str, Any]] = db["contacts"]
        self.returns: AsyncCollection[dict[str, Any]] = db["returns"]
        self.flagged_sales: AsyncCollection[dict[str, Any]] = db["flagged_sales"]
        self.console_sessions: AsyncCollection[dict[str, Any]] = db["console_sessions"]

    async def create_indexes(self) -> None:
        await self.recalls.create_index([("issued_at", DESCENDING), ("_id", DESCENDING)])
        await self.recalls.create_index([("sku", ASCENDING), ("state", ASCENDING)])
        await self.contacts.create_index([("recall_id", ASCENDING), ("serial", ASCENDING)])
        for facts in (self.quarantine, self.unit_chunks, self.returns, self.flagged_sales):
            await facts.create_index("recall_id")

    # --- issuing and closing ---------------------------------------------------------------

    async def reserve_idempotency_key(
        self, key: str, recall_id: str, fingerprint: str
    ) -> tuple[str, str]:
        """The recall id and request fingerprint the key stands for (the first use wins)."""
        with suppress(DuplicateKeyError):
            await self.idempotency_keys.insert_one(
                {"_id": key, "recall_id": recall_id, "fingerprint": fingerprint, "at": now()}
            )
        doc = await self.idempotency_keys.find_one({"_id": key})
        assert doc is not None
        return doc["recall_id"], doc["fingerprint"]

    async def insert(
        self, recall: Recall, idempotency_key: str | None
    ) -> tuple[bool, RecallRecord]:
        """Save a new recall with its pending broadcast (one insert), or find the one saved."""
        message = encode(
            recall.batch_recalled(), source=SOURCE, id=recall.event_id, time=recall.issued_at
        )
        doc: dict[str, Any] = {
            "_id": recall.recall_id,
            "sku": recall.sku,
            "lot_codes": list(recall.lot_codes),
            "serials": list(recall.serials),
            "reason": recall.reason,
            "classification": recall.classification.value,
            "issued_by": recall.issued_by,
            "issued_at": recall.issued_at,
            "state": recall.state.value,
            "idempotency_key": idempotency_key,
            "event_id": str(recall.event_id),
            "outbox": {"message": message.value.decode()},
        }
        try:
            await self.recalls.insert_one(doc)
            created = True
        except DuplicateKeyError:
            created = False
        record = await self.load(recall.recall_id)
        assert record is not None
        return created, record

    async def load(self, recall_id: str) -> RecallRecord | None:
        doc = await self.recalls.find_one({"_id": recall_id}, {"outbox": 0})
        if doc is None:
            return None
        published = await self._published([recall_id])
        return RecallRecord.from_document(doc, published.get(recall_id))

    async def _published(self, recall_ids: list[str]) -> dict[str, datetime]:
        # By _id, one lookup each: FerretDB serves only `_id` equality from an index.
        found = await find_by_ids(self.broadcasts, recall_ids, {"published_at": 1})
        return {recall_id: doc["published_at"] for recall_id, doc in found.items()}

    async def close(
        self, recall_id: str, closed_by: str | None, reason: str | None = None
    ) -> RecallRecord | None:
        """Close an open recall, with the reason it was closed not fully accounted for."""
        await self.recalls.update_one(
            {"_id": recall_id, "state": RecallState.OPEN.value},
            {
                "$set": {
                    "state": RecallState.CLOSED.value,
                    "closed_at": now(),
                    "closed_by": closed_by,
                    "close_reason": reason,
                }
            },
        )
        return await self.load(recall_id)

    async def page(
        self,
        *,
        state: RecallState | None,
        sku: str | None,
        after: RecallRecord | None,
        limit: int,
    ) -> list[RecallRecord]:
        """Recalls newest first, from the one issued just before `after` (a cursor: a recall
        issued while a reader pages shifts nothing)."""
        query: dict[str, Any] = {}
        if state is not None:
            query["state"] = state.value
        if sku is not None:
            query["sku"] = sku
        if after is not None:
            issued_at = after.recall.issued_at
            query["$or"] = [
                {"issued_at": {"$lt": issued_at}},
                {"issued_at": issued_at, "_id": {"$lt": after.recall.recall_id}},
            ]
        cursor = (
            self.recalls.find(query, {"outbox": 0})
            .sort([("issued_at", DESCENDING), ("_id", DESCENDING)])
            .limit(limit)
        )
        docs = [doc async for doc in cursor]
        published = await self._published([doc["_id"] for doc in docs])
        return [RecallRecord.from_document(doc, published.get(doc["_id"])) for doc in docs]

    # --- console logins ----------------------------------------------------------------------

    async def start_login(self, key: str, operator: str) -> LoginRecord:
        moment = now()
        await self.console_sessions.insert_one(
            {"_id": key, "operator": operator, "started_at": moment, "seen_at": moment}
        )
        return LoginRecord(key, operator, moment, moment)

    async def login(self, key: str) -> LoginRecord | None:
        doc = await self.console_sessions.find_one({"_id": key})
        if doc is None:
            return None
        return LoginRecord(key, doc["operator"], doc["started_at"], doc["seen_at"])

    async def touch_login(self, key: str, at: datetime) -> None:
        # No upsert: a login deleted meanwhile (logged out elsewhere) stays deleted. Two
        # instances touching it at once each write a time; either one will do.
        await self.console_sessions.update_one({"_id": key}, {"$set": {"seen_at": at}})

    async def end_login(self, key: str) -> None:
        await self.console_sessions.delete_one({"_id": key})

    # --- the outbox (`lotline.runtime.outbox.SavedEvents`) ------------------------------------

    async def flush(self, recall_id: str, publisher: Publishes) -> bool:
        """Send the recall's `batch-recalled` as saved with it, unless it was published, then
        mark it sent: a marker of its own (an insert), never an update of the recall."""
        if await self.broadcasts.find_one({"_id": recall_id}, {"_id": 1}):
            return True
        doc = await self.recalls.find_one({"_id": recall_id}, {"outbox": 1})
        if doc is None:
            return False
        message = encode_event(decode(doc["outbox"]["message"].encode(), EventType.BATCH_RECALLED))
        await publisher.send([message])
        with suppress(DuplicateKeyError):
            await self.broadcasts.insert_one(
                {"_id": recall_id, "event_id": str(message.event.id), "published_at": now()}
            )
        log.info("recall_broadcast", recall_id=recall_id, event_id=str(message.event.id))
        return True

    async def waiting(self, older_than: timedelta) -> list[str]:
        """Recalls issued within the relay's horizon whose broadcast has waited longer than
        `older_than`.

        Recalls are few (a handful a day), so the recent ones are simply compared with the
        broadcast markers; a broadcast pending for longer than the horizon is an outage
        someone has long been paged about.
        """
        moment = now()
        cursor = self.recalls.find(
            {"issued_at": {"$gte": moment - self.relay_horizon, "$lte": moment - older_than}},
            {"_id": 1},
        )
        recent = [doc["_id"] async for doc in cursor]
        if not recent:
            return []
        published = await self._published(recent)
        return [recall_id for recall_id in recent if recall_id not in published]

    # --- what the handlers need to know ----------------------------------------------------

    async def recalls_by_id(self, recall_ids: Iterable[str]) -> dict[str, Recall]:
        ids = sorted(set(recall_ids))
        if not ids:
            return {}
        cursor = self.recalls.find({"_id": {"$in": ids}}, {"outbox": 0})
        return {doc["_id"]: _recall(doc) async for doc in cursor}

    async def recalls_by_sku(self, skus: Iterable[str]) -> dict[str, list[Recall]]:
        found: dict[str, list[Recall]] = defaultdict(list)
        wanted = sorted(set(skus))
        if not wanted:
            return found
        cursor = self.recalls.find({"sku": {"$in": wanted}}, {"outbox": 0})
        async for doc in cursor:
            recall = _recall(doc)
            found[recall.sku].append(recall)
        return found

    async def sold_serials(
        self, recall_ids: Iterable[str], serials: Iterable[str]
    ) -> dict[str, set[str]]:
        """Which of these serials each recall has as sold units (customers to contact)."""
        ids, wanted = sorted(set(recall_ids)), sorted(set(serials))
        found: dict[str, set[str]] = defaultdict(set)
        if not ids or not wanted:
            return found
        cursor = self.contacts.find(
            {"recall_id": {"$in": ids}, "serial": {"$in": wanted}}, {"recall_id": 1, "serial": 1}
        )
        async for doc in cursor:
            found[doc["recall_id"]].add(doc["serial"])
        return found

    async def complete_answers(self, recall_ids: Iterable[str]) -> set[str]:
        """The recalls whose serial-registry answer has all its chunks."""
        ids = sorted(set(recall_ids))
        chunks: dict[str, list[UnitsChunk]] = defaultdict(list)
        if ids:
            async for doc in self.unit_chunks.find({"recall_id": {"$in": ids}}):
                chunks[doc["recall_id"]].append(_chunk(doc))
        return {rid for rid, found in chunks.items() if UnitsAnswer.of(found).complete}

    # --- recording facts (each one upsert keyed by its natural key) ----------------------

    async def record_quarantine(self, lines: Sequence[QuarantinedStock]) -> None:
        """The latest total per recall/location/lot. A stale redelivery (an older offset of
        the same stream) cannot overwrite a newer total.

        Read by _id, decided here, written by _id: a guard in the filter (`_id` plus
        `$or`) makes FerretDB read the whole collection for every line. A line's document
        has one writer: stock-quarantined is keyed by SKU, so one instance owns its stream."""
        stored = await find_by_ids(self.quarantine, {line.key for line in lines})
        latest: dict[str, QuarantinedStock] = {}
        for line in lines:
            newest: Any = latest.get(line.key) or stored.get(line.key)
            if newest is None:
                latest[line.key] = line
                continue
            stream, offset = (
                (newest.stream, newest.offset)
                if isinstance(newest, QuarantinedStock)
                else (newest.get("stream"), newest.get("offset", -1))
            )
            if stream != line.stream or offset < line.offset:
                latest[line.key] = line
        operations = [
            ReplaceOne({"_id": key}, {"_id": key, **asdict(line)}, upsert=True)
            for key, line in latest.items()
        ]
        await bulk_write_in_parts(self.quarantine, operations, ordered=False)

    async def record_chunks(self, chunks: Sequence[UnitsChunk]) -> None:
        await self._upsert(self.unit_chunks, chunks, "$set", received_at=now())

    async def record_contacts(self, contacts: Sequence[CustomerContact]) -> None:
        await self._upsert(self.contacts, contacts, "$set")

    async def record_returns(self, returns: Sequence[ReturnedUnits]) -> None:
        await self._upsert(self.returns, returns, "$setOnInsert", recorded_at=now())

    async def record_flagged(self, flagged: Sequence[FlaggedSale]) -> None:
        await self._upsert(self.flagged_sales, flagged, "$setOnInsert", recorded_at=now())

    async def _upsert(
        self,
        collection: AsyncCollection[dict[str, Any]],
        facts: Sequence[Any],
        operator: str,
        **extra: Any,
    ) -> None:
        operations = [
            UpdateOne({"_id": fact.key}, {operator: {**_document(fact), **extra}}, upsert=True)
            for fact in facts
        ]
        await bulk_write_in_parts(collection, operations, ordered=True)

    # --- reading progress ------------------------------------------------------------------

    async def facts(self, recall_id: str) -> RecallFacts:
        match = {"recall_id": recall_id}
        quarantine = self.quarantine.find(match).sort([("location", 1), ("lot_code", 1)])
        chunks = self.unit_chunks.find(match).sort("chunk", 1)
        contacts = self.contacts.find(match).sort([("sold_at", 1), ("serial", 1)])
        returns = self.returns.find(match).sort([("recorded_at", 1), ("_id", 1)])
        flagged = self.flagged_sales.find(match).sort([("recorded_at", 1), ("_id", 1)])
        return RecallFacts(
            quarantine=[_quarantined(doc) async for doc in quarantine],
            chunks=[_chunk(doc) async for doc in chunks],
            contacts=[_contact(doc) async for doc in contacts],
            returns=[_returned(doc) async for doc in returns],
            flagged=[_flagged(doc) async for doc in flagged],
        )

    async def progress(self, recall_ids: Sequence[str]) -> dict[str, Progress]:
        """Each recall's figures, summed by the database.

        One accumulator per `$group`: FerretDB v1 computes only the first accumulator of a
        group stage (the others come back 0), so each figure is its own aggregation.
        """
        ids = list(recall_ids)
        if not ids:
            return {}
        quarantined = await self._total(self.quarantine, ids, "$quantity")
        contacts = await self._total(self.contacts, ids, 1)
        returned = await self._total(self.returns, ids, "$quantity")
        sales = await self._total(self.flagged_sales, ids, 1)
        sold = await self._total(self.flagged_sales, ids, "$quantity")
        received = await self._total(self.quarantine, ids, "$received")
        disposed = await self._total(self.quarantine, ids, "$disposed")
        sold_before = await self._total(self.quarantine, ids, "$sold_before_recall")
        into_lot = await self._total(
            self.returns, ids, "$quantity", also={"lot_code": {"$ne": None}}
        )
        chunks: dict[str, list[UnitsChunk]] = defaultdict(list)
        async for doc in self.unit_chunks.find({"recall_id": {"$in": ids}}):
            chunks[doc["recall_id"]].append(_chunk(doc))
        return {
            recall_id: Progress(
                quarantined_units=quarantined.get(recall_id, 0),
                units_to_contact=contacts.get(recall_id, 0),
                units_returned=returned.get(recall_id, 0),
                sales_after_recall=sales.get(recall_id, 0),
                units_sold_after_recall=sold.get(recall_id, 0),
                units=UnitsAnswer.of(chunks.get(recall_id, ())),
                units_received=received.get(recall_id, 0),
                units_disposed=disposed.get(recall_id, 0),
                units_sold_before_recall=sold_before.get(recall_id, 0),
                units_returned_into_lot=into_lot.get(recall_id, 0),
            )
            for recall_id in ids
        }

    async def _total(
        self,
        collection: AsyncCollection[dict[str, Any]],
        ids: list[str],
        what: str | int,
        also: dict[str, Any] | None = None,
    ) -> dict[str, int]:
        cursor = await collection.aggregate(
            [
                {"$match": {"recall_id": {"$in": ids}, **(also or {})}},
                {"$group": {"_id": "$recall_id", "total": {"$sum": what}}},
            ]
        )
        return {doc["_id"]: int(doc["total"] or 0) async for doc in cursor}


def _document(fact: Any) -> dict[str, Any]:
    doc = asdict(fact)
    for name, value in doc.items():
        if isinstance(value, tuple):
            doc[name] = list(value)
        elif isinstance(value, StrEnum):
            doc[name] = value.value
    return doc


def _quarantined(doc: dict[str, Any]) -> QuarantinedStock:
    return QuarantinedStock(**_without_id(doc))


def _chunk(doc: dict[str, Any]) -> UnitsChunk:
    fields = _without_id(doc)
    fields.pop("received_at", None)
    fields["unknown_serials"] = tuple(fields.get("unknown_serials", ()))
    return UnitsChunk(**fields)


def _contact(doc: dict[str, Any]) -> CustomerContact:
    return CustomerContact(**_without_id(doc))


def _returned(doc: dict[str, Any]) -> ReturnedUnits:
    fields = _without_id(doc)
    fields.pop("recorded_at", None)
    fields["matched_by"] = MatchedBy(fields["matched_by"])
    return ReturnedUnits(**fields)


def _flagged(doc: dict[str, Any]) -> FlaggedSale:
    fields = _without_id(doc)
    fields.pop("recorded_at", None)
    fields["matched_by"] = MatchedBy(fields["matched_by"])
    return FlaggedSale(**fields)
