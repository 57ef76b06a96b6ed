"""An in-memory database and publisher for unit tests of the runtime's logic and the services'
handlers: no Kafka, no database server.

It is what it is: the part of PyMongo's async API that `lotline.runtime` (the write-ahead log,
paged lists, lookups by _id) and the stores of stock and the serial registry use, and nothing
more. It is not a replacement for the integration tests, which keep running on the real
FerretDB, whose limits shaped the runtime (lotline.runtime.mongo).

What it keeps of the driver and the server:
- documents are stored as BSON and read back decoded, as the services' client reads them
  (tz_aware, UTC): datetimes come back at millisecond precision, a tuple comes back a list,
  and a value BSON cannot hold (a `date`, an integer over 64 bits) fails when written;
- a duplicate `_id` is refused as MongoDB refuses it: `DuplicateKeyError` from `insert_one`
  and `update_one`, `BulkWriteError` with each refused write's index and code 11000 from
  `insert_many` and `bulk_write`, an ordered write stopping at its first refusal and an
  unordered one going on; an upsert whose filter misses a document with the same `_id`
  is a duplicate key too;
- as far as the code uses them: filters of equality on top-level fields, `$exists`, `$ne`
  and `$gt`/`$gte`/`$lt`/`$lte` (within one BSON type bracket); top-level inclusion or
  exclusion projections; `$set`, `$setOnInsert`, `$addToSet` (with `$each`) and `$push` (one
  value); `bulk_write` of ReplaceOne, UpdateOne and DeleteOne, with upsert; `create_index`
  as a no-op. Not `$in`, `$regex`, dotted paths, array element matching, `delete_many` or
  `count_documents`: neither the runtime nor these two stores use them.

Anything else raises NotImplementedError, so that a new use fails loudly here rather than
pass against semantics nobody wrote. `fail_next` makes one call fail, before or after its
write lands: how a test shows what a commit that failed part-way leaves behind.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import bson
from bson.codec_options import CodecOptions
from pymongo import DeleteOne, ReplaceOne, UpdateOne
from pymongo.errors import BulkWriteError, DuplicateKeyError, OperationFailure, WriteError
from pymongo.results import BulkWriteResult, InsertManyResult, InsertOneResult, UpdateResult

from lotline.events import CloudEvent, EventType, decode
from lotline.events.codec import OutgoingMessage
from lotline.runtime.consumer import BatchHandler, EventConsumer, GiveUp, Progress
from lotline.runtime.owned import OwnedState
from lotline.runtime.settings import Settings
from lotline.runtime.wal import WriteAheadLog

Doc = dict[str, Any]
DUPLICATE_KEY = 11000
# As the services' client is configured (lotline.runtime.service): aware datetimes in UTC.
CODEC = CodecOptions(tz_aware=True, tzinfo=UTC)

# Filter operators the code uses; comparisons hold within one BSON type bracket, as MongoDB's.
COMPARISONS = {"$gt", "$gte", "$lt", "$lte"}
UPDATE_OPERATORS = {"$set", "$setOnInsert", "$addToSet", "$push"}


class MemoryDatabase:
    """Collections by name (`db["wal"]`), created on first use like MongoDB's."""

    def __init__(self) -> None:
        self._collections: dict[str, MemoryCollection] = {}
        self._faults: list[_Fault] = []

    def __getitem__(self, name: str) -> MemoryCollection:
        if name not in self._collections:
            self._collections[name] = MemoryCollection(self, name)
        return self._collections[name]

    def __getattr__(self, name: str) -> Any:
        raise NotImplementedError(f"MemoryDatabase.{name}: not used by the code under test")

    def fail_next(
        self, collection: str, method: str, error: BaseException, *, after_write: bool = False
    ) -> None:
        """The next call of `method` on `collection` raises `error`: before it writes
        anything, or (`after_write`) once its write has landed, as a connection lost on
        the way back would."""
        self._faults.append(_Fault(collection, method, error, after_write))

    def _fault(self, collection: str, method: str, after_write: bool) -> None:
        for fault in self._faults:
            if (fault.collection, fault.method, fault.after_write) == (
                collection,
                method,
                after_write,
            ):
                self._faults.remove(fault)
                raise fault.error


@dataclass
class _Fault:
    collection: str
    method: str
    error: BaseException
    after_write: bool


class MemoryCollection:
    def __init__(self, db: MemoryDatabase, name: str) -> None:
        self._db = db
        self.name = name
        # By _id, in insertion order (MongoDB's natural order, near enough for a test).
        self._docs: dict[Any, bytes] = {}
        self.calls: dict[str, int] = {}

    def __getattr__(self, name: str) -> Any:
        raise NotImplementedError(f"MemoryCollection.{name}: not used by the code under test")

    # ------------------------------------------------------------------------- reads

    def find(
        self, filter: Mapping[str, Any] | None = None, projection: Mapping[str, Any] | None = None
    ) -> MemoryCursor:
        self._count("find")
        self._db._fault(self.name, "find", after_write=False)
        found = [_project(doc, projection) for doc in self._all() if _matches(doc, filter or {})]
        return MemoryCursor(found)

    async def find_one(
        self, filter: Mapping[str, Any] | None = None, projection: Mapping[str, Any] | None = None
    ) -> Doc | None:
        self._count("find_one")
        self._db._fault(self.name, "find_one", after_write=False)
        filter = filter or {}
        if set(filter) == {"_id"} and not isinstance(filter["_id"], Mapping):
            raw = self._docs.get(_key(filter["_id"]))
            return None if raw is None else _project(_decoded(raw), projection)
        for doc in self._all():
            if _matches(doc, filter):
                return _project(doc, projection)
        return None

    # ------------------------------------------------------------------------ writes

    async def insert_one(self, document: Doc) -> InsertOneResult:
        self._count("insert_one")
        self._db._fault(self.name, "insert_one", after_write=False)
        raw = _encoded(_with_id(document))
        key = _key(document["_id"])
        if key in self._docs:
            raise DuplicateKeyError(
                _duplicate_message(self.name, document["_id"]),
                DUPLICATE_KEY,
                {"code": DUPLICATE_KEY, "keyValue": {"_id": document["_id"]}},
            )
        self._docs[key] = raw
        self._db._fault(self.name, "insert_one", after_write=True)
        return InsertOneResult(document["_id"], True)

    async def insert_many(self, documents: Iterable[Doc], ordered: bool = True) -> InsertManyResult:
        self._count("insert_many")
        docs = list(documents)
        if not docs:
            raise TypeError("documents must be a non-empty list")  # as PyMongo says
        self._db._fault(self.name, "insert_many", after_write=False)
        # The driver encodes the whole command before it sends any of it.
        encoded = [(doc["_id"], _encoded(doc)) for doc in map(_with_id, docs)]
        errors: list[Doc] = []
        inserted = 0
        for index, (doc_id, raw) in enumerate(encoded):
            if _key(doc_id) in self._docs:
                errors.append(_write_error(index, self.name, doc_id))
                if ordered:
                    break
                continue
            self._docs[_key(doc_id)] = raw
            inserted += 1
        if errors:
            raise BulkWriteError(_bulk_details(errors, n_inserted=inserted))
        self._db._fault(self.name, "insert_many", after_write=True)
        return InsertManyResult([doc["_id"] for doc in docs], True)

    async def replace_one(
        self, filter: Mapping[str, Any], replacement: Doc, upsert: bool = False
    ) -> UpdateResult:
        self._count("replace_one")
        self._db._fault(self.name, "replace_one", after_write=False)
        outcome = self._replace(filter, replacement, upsert)
        self._db._fault(self.name, "replace_one", after_write=True)
        return _update_result(outcome)

    async def update_one(
        self, filter: Mapping[str, Any], update: Mapping[str, Any], upsert: bool = False
    ) -> UpdateResult:
        self._count("update_one")
        self._db._fault(self.name, "update_one", after_write=False)
        try:
            outcome = self._update(filter, update, upsert)
        except _Duplicate as dup:
            raise DuplicateKeyError(
                _duplicate_message(self.name, dup.doc_id),
                DUPLICATE_KEY,
                {"code": DUPLICATE_KEY, "keyValue": {"_id": dup.doc_id}},
            ) from None
        self._db._fault(self.name, "update_one", after_write=True)
        return _update_result(outcome)

    async def bulk_write(self, requests: Sequence[Any], ordered: bool = True) -> BulkWriteResult:
        self._count("bulk_write")
        if not requests:
            raise OperationFailure("Write batch sizes must be between 1 and 100000")
        self._db._fault(self.name, "bulk_write", after_write=False)
        totals = {"nInserted": 0, "nMatched": 0, "nModified": 0, "nUpserted": 0, "nRemoved": 0}
        upserted: list[Doc] = []
        errors: list[Doc] = []
        for index, request in enumerate(requests):
            try:
                if isinstance(request, ReplaceOne):
                    outcome = self._replace(request._filter, request._doc, bool(request._upsert))
                elif isinstance(request, UpdateOne):
                    outcome = self._update(request._filter, request._doc, bool(request._upsert))
                elif isinstance(request, DeleteOne):
                    totals["nRemoved"] += self._delete_one(request._filter)
                    continue
                else:
                    raise NotImplementedError(f"bulk_write of {type(request).__name__}")
            except _Duplicate as dup:
                errors.append(_write_error(index, self.name, dup.doc_id))
                if ordered:
                    break
                continue
            matched, modified, upserted_id = outcome
            totals["nMatched"] += matched
            totals["nModified"] += modified
            if upserted_id is not None:
                totals["nUpserted"] += 1
                upserted.append({"index": index, "_id": upserted_id})
        if errors:
            raise BulkWriteError(_bulk_details(errors, upserted=upserted, **_snake(totals)))
        self._db._fault(self.name, "bulk_write", after_write=True)
        return BulkWriteResult({**totals, "upserted": upserted, "writeErrors": []}, True)

    async def create_index(self, keys: Any, **kwargs: Any) -> str:
        """A no-op: with a few documents, every query is a scan anyway."""
        self._count("create_index")
        if kwargs.get("unique"):
            raise NotImplementedError("unique indexes other than _id")
        names = [keys] if isinstance(keys, str) else [f"{k}_{d}" for k, d in keys]
        return "_".join(names)

    # ------------------------------------------------------------ for tests to look

    def documents(self) -> list[Doc]:
        """Every document, decoded, in insertion order."""
        return list(self._all())

    def get(self, doc_id: Any) -> Doc | None:
        raw = self._docs.get(_key(doc_id))
        return None if raw is None else _decoded(raw)

    def __len__(self) -> int:
        return len(self._docs)

    # ---------------------------------------------------------------------- inside

    def _count(self, method: str) -> None:
        self.calls[method] = self.calls.get(method, 0) + 1

    def _all(self) -> Iterator[Doc]:
        for raw in list(self._docs.values()):
            yield _decoded(raw)

    def _first(self, filter: Mapping[str, Any]) -> Doc | None:
        if set(filter) == {"_id"} and not isinstance(filter["_id"], Mapping):
            raw = self._docs.get(_key(filter["_id"]))
            return None if raw is None else _decoded(raw)
        return next((doc for doc in self._all() if _matches(doc, filter)), None)

    def _replace(
        self, filter: Mapping[str, Any], replacement: Mapping[str, Any], upsert: bool
    ) -> tuple[int, int, Any]:
        if any(name.startswith("$") for name in replacement):
            raise ValueError("replacement can not include $ operators")  # as PyMongo says
        current = self._first(filter)
        if current is None:
            if not upsert:
                return 0, 0, None
            doc = {**_equalities(filter), **replacement}
            doc_id = doc.setdefault("_id", bson.ObjectId())
            if _key(doc_id) in self._docs:
                raise _Duplicate(doc_id)
            self._docs[_key(doc_id)] = _encoded(doc)
            return 0, 0, doc_id
        if "_id" in replacement and _canon(replacement["_id"]) != _canon(current["_id"]):
            raise WriteError("the (immutable) field '_id' was found to have been altered", 66)
        doc = {"_id": current["_id"], **{k: v for k, v in replacement.items() if k != "_id"}}
        raw = _encoded(doc)
        modified = int(raw != self._docs[_key(current["_id"])])
        self._docs[_key(current["_id"])] = raw
        return 1, modified, None

    def _update(
        self, filter: Mapping[str, Any], update: Mapping[str, Any], upsert: bool
    ) -> tuple[int, int, Any]:
        if not update or not all(name.startswith("$") for name in update):
            raise ValueError("update only works with $ operators")  # as PyMongo says
        unknown = set(update) - UPDATE_OPERATORS
        if unknown:
            raise NotImplementedError(f"update operators {sorted(unknown)}")
        current = self._first(filter)
        if current is None:
            if not upsert:
                return 0, 0, None
            doc = _equalities(filter)
            _apply(doc, update, inserting=True)
            doc_id = doc.setdefault("_id", bson.ObjectId())
            if _key(doc_id) in self._docs:
                # The filter missed the document with this _id (a guard on another field):
                # the upsert's insert is refused, as MongoDB refuses it.
                raise _Duplicate(doc_id)
            self._docs[_key(doc_id)] = _encoded(doc)
            return 0, 0, doc_id
        doc = dict(current)
        _apply(doc, update, inserting=False)
        raw = _encoded(doc)
        modified = int(raw != self._docs[_key(current["_id"])])
        self._docs[_key(current["_id"])] = raw
        return 1, modified, None

    def _delete_one(self, filter: Mapping[str, Any]) -> int:
        current = self._first(filter)
        if current is None:
            return 0
        del self._docs[_key(current["_id"])]
        return 1


class MemoryCursor:
    """What `find` returns, iterated with `async for` (the only way the code reads one)."""

    def __init__(self, docs: list[Doc]) -> None:
        self._docs = iter(docs)

    def __aiter__(self) -> MemoryCursor:
        return self

    async def __anext__(self) -> Doc:
        try:
            return next(self._docs)
        except StopIteration:
            raise StopAsyncIteration from None

    def __getattr__(self, name: str) -> Any:
        raise NotImplementedError(f"MemoryCursor.{name} (sort, limit, ...): not used")


class _Duplicate(Exception):
    def __init__(self, doc_id: Any) -> None:
        self.doc_id = doc_id


# ------------------------------------------------------------------------ BSON round trips


def _with_id(doc: Doc) -> Doc:
    # PyMongo adds the _id it generates to the caller's document.
    if "_id" not in doc:
        doc["_id"] = bson.ObjectId()
    return doc


def _encoded(doc: Mapping[str, Any]) -> bytes:
    return bson.encode(doc, codec_options=CODEC)


def _decoded(raw: bytes) -> Doc:
    return bson.decode(raw, codec_options=CODEC)


def _key(doc_id: Any) -> Any:
    if isinstance(doc_id, Mapping | list):
        raise NotImplementedError("a document or array as _id")
    return _canon(doc_id)


def _canon(value: Any) -> Any:
    """A value as MongoDB compares it for equality: documents field by field in order, and
    numbers by value across int and float, but never a bool for a number."""
    if isinstance(value, Mapping):
        return ("doc", tuple((k, _canon(v)) for k, v in value.items()))
    if isinstance(value, list | tuple):
        return ("array", tuple(_canon(v) for v in value))
    if isinstance(value, bool):
        return ("bool", value)
    if isinstance(value, int | float):
        return ("number", value)
    if value is None:
        return ("null",)
    if isinstance(value, datetime):
        # Stored at millisecond precision: compare what the database would hold.
        return ("date", _decoded(_encoded({"v": value}))["v"])
    return (type(value).__name__, value)


# ---------------------------------------------------------------------------------- filters


def _field(name: str) -> str:
    if name.startswith("$"):
        raise NotImplementedError(f"top-level filter operator {name}")
    if "." in name:
        raise NotImplementedError(f"dotted field {name!r}: no nested paths are queried")
    return name


def _is_operators(condition: Any) -> bool:
    return (
        isinstance(condition, Mapping)
        and bool(condition)
        and all(str(k).startswith("$") for k in condition)
    )


def _matches(doc: Doc, filter: Mapping[str, Any]) -> bool:
    for name, condition in filter.items():
        present = _field(name) in doc
        value = doc.get(name)
        if _is_operators(condition):
            if not all(_test(op, present, value, operand) for op, operand in condition.items()):
                return False
        elif not _equal(present, value, condition):
            return False
    return True


def _equal(present: bool, value: Any, wanted: Any) -> bool:
    if isinstance(value, list) or isinstance(wanted, list):
        raise NotImplementedError("equality with an array (element matching) is not used")
    if wanted is None:
        return not present or value is None  # {f: null} matches a missing field too
    return present and _canon(value) == _canon(wanted)


def _bracket(value: Any) -> str | None:
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, int | float):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, datetime):
        return "date"
    return None


def _test(op: str, present: bool, value: Any, operand: Any) -> bool:
    if op == "$exists":
        return present is bool(operand)
    if op == "$ne":
        return not _equal(present, value, operand)
    if op in COMPARISONS:
        kind = _bracket(operand)
        if kind in (None, "bool"):
            raise NotImplementedError(f"{op} with {type(operand).__name__}")
        if not present or _bracket(value) != kind:
            return False  # MongoDB compares within one type bracket only
        a, b = _canon(value)[-1], _canon(operand)[-1]
        return bool({"$gt": a > b, "$gte": a >= b, "$lt": a < b, "$lte": a <= b}[op])
    raise NotImplementedError(f"filter operator {op}")


def _equalities(filter: Mapping[str, Any]) -> Doc:
    """What an upsert's new document takes from its filter: its plain equalities."""
    return {name: value for name, value in filter.items() if not _is_operators(value)}


# ------------------------------------------------------------------------------ projections


def _project(doc: Doc, projection: Mapping[str, Any] | None) -> Doc:
    if not projection:
        return doc
    if not isinstance(projection, Mapping):
        raise NotImplementedError("a projection as a list of names")
    flags: dict[str, bool] = {}
    for name, on in projection.items():
        if on not in (0, 1) or isinstance(on, Mapping):
            raise NotImplementedError(f"projection {name}: {on!r}")
        flags[_field(name)] = bool(on)
    with_id = flags.pop("_id", True)
    if len(set(flags.values())) > 1:
        raise OperationFailure("Cannot mix inclusion and exclusion in a projection", 31254)
    if flags and next(iter(flags.values())):
        return {k: v for k, v in doc.items() if k in flags or (k == "_id" and with_id)}
    return {k: v for k, v in doc.items() if k not in flags and (k != "_id" or with_id)}


# ---------------------------------------------------------------------------------- updates


def _apply(doc: Doc, update: Mapping[str, Any], *, inserting: bool) -> None:
    for op, fields in update.items():
        if op == "$setOnInsert" and not inserting:
            continue
        for name, value in fields.items():
            _field(name)
            if name == "_id" and "_id" in doc and _canon(doc["_id"]) != _canon(value):
                raise WriteError("the (immutable) field '_id' was found to be altered", 66)
            if op in ("$set", "$setOnInsert"):
                doc[name] = value
            elif op == "$addToSet":
                each = value["$each"] if _is_operators(value) else [value]
                if _is_operators(value) and set(value) != {"$each"}:
                    raise NotImplementedError(f"$addToSet modifiers {sorted(value)}")
                held = _array(doc, name)
                for item in each:
                    if all(_canon(item) != _canon(h) for h in held):
                        held.append(item)
            elif op == "$push":
                if _is_operators(value):
                    raise NotImplementedError(f"$push modifiers {sorted(value)}")
                _array(doc, name).append(value)


def _array(doc: Doc, name: str) -> list[Any]:
    held = doc.setdefault(name, [])
    if not isinstance(held, list):
        raise WriteError(f"The field '{name}' must be an array", 2)
    return held


# ---------------------------------------------------------------------------- write results


def _duplicate_message(collection: str, doc_id: Any) -> str:
    return f"E11000 duplicate key error collection: {collection} index: _id_ dup key: {doc_id!r}"


def _write_error(index: int, collection: str, doc_id: Any) -> Doc:
    return {
        "index": index,
        "code": DUPLICATE_KEY,
        "errmsg": _duplicate_message(collection, doc_id),
        "keyValue": {"_id": doc_id},
    }


def _snake(totals: Mapping[str, int]) -> dict[str, int]:
    return {
        "n_inserted": totals["nInserted"],
        "n_matched": totals["nMatched"],
        "n_modified": totals["nModified"],
        "n_upserted": totals["nUpserted"],
        "n_removed": totals["nRemoved"],
    }


def _bulk_details(
    errors: list[Doc],
    *,
    n_inserted: int = 0,
    n_matched: int = 0,
    n_modified: int = 0,
    n_upserted: int = 0,
    n_removed: int = 0,
    upserted: list[Doc] | None = None,
) -> Doc:
    return {
        "writeErrors": errors,
        "writeConcernErrors": [],
        "nInserted": n_inserted,
        "nUpserted": n_upserted,
        "nMatched": n_matched,
        "nModified": n_modified,
        "nRemoved": n_removed,
        "upserted": upserted or [],
    }


def _update_result(outcome: tuple[int, int, Any]) -> UpdateResult:
    matched, modified, upserted_id = outcome
    raw: Doc = {"n": matched + (upserted_id is not None), "nModified": modified}
    if upserted_id is not None:
        raw["upserted"] = upserted_id
    return UpdateResult(raw, True)


# -------------------------------------------------------------------------------- publisher


@dataclass
class MemoryPublisher:
    """Stands in for Kafka where the runtime publishes: keeps what it was sent, in order.

    `send` is what the write-ahead log and the handlers publish through; `send_raw` is
    where the consumer dead-letters. `fail_next` makes the next `send` raise, before
    anything is kept (Kafka did not take the events)."""

    sent: list[OutgoingMessage] = field(default_factory=list)
    dead_letters: list[tuple[str, bytes | None, bytes | None, dict[str, str]]] = field(
        default_factory=list
    )
    failures: list[BaseException] = field(default_factory=list)
    # Off: stands in for a broker fed by a newer version whose events this one cannot read.
    checks_contract: bool = True

    def fail_next(self, error: BaseException) -> None:
        self.failures.append(error)

    async def send(self, messages: Sequence[OutgoingMessage]) -> None:
        if self.failures:
            raise self.failures.pop(0)
        for message in messages if self.checks_contract else ():
            # What a consumer would read back: the bytes must decode as the contract says.
            decode(message.value, EventType(message.event.type))
        self.sent.extend(messages)

    async def send_raw(
        self, topic: str, key: bytes | None, value: bytes | None, headers: dict[str, str]
    ) -> None:
        self.dead_letters.append((topic, key, value, headers))

    def events(self, event_type: EventType | None = None) -> list[CloudEvent[Any]]:
        """What was sent, decoded from the bytes sent (of one type, if given)."""
        decoded = [decode(m.value) for m in self.sent]
        return [e for e in decoded if event_type is None or e.type is event_type]

    def clear(self) -> None:
        self.sent.clear()
        self.dead_letters.clear()


def memory_consumers(
    service: str,
    wiring: Mapping[EventType, tuple[BatchHandler, GiveUp | None]],
    *,
    db: MemoryDatabase,
    publisher: MemoryPublisher,
    settings: Settings,
    owned: OwnedState,
    wal: WriteAheadLog,
) -> dict[EventType, EventConsumer]:
    """A service's consumers over the in-memory database, as its app.py wires them: one per
    event type, each with its handler and give-up hook."""
    return {
        event_type: EventConsumer(
            service=service,
            event_type=event_type,
            handler=handler,
            publisher=publisher,  # type: ignore[arg-type]
            settings=settings,
            owned=owned,
            progress=Progress(60.0),
            wal=wal,
            give_up=give_up,
        )
        for event_type, (handler, give_up) in wiring.items()
    }
