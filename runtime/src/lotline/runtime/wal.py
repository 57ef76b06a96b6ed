"""The write-ahead log: a batch's changed documents and the events they emit, made durable in
one insert, and written into the documents readers query in the background.

Why. On FerretDB an update costs about as much as sixteen inserts (about 1,000 updates a
second against 16,500 inserted documents here), and a stock level changed by twenty sales a
minute was written twenty times. Now a batch costs one `insert_many` into `wal`, whatever
it changed; the documents are written later by the materializer, many batches' changes to
one document coalesced into one replace.

How it holds.
- **Per partition.** Every document belongs to one Kafka partition (its key's), and that
  partition's owner is its only writer: it numbers its partition's entries (`"<p> <seq>"`)
  without gaps and keeps the ones not materialized yet in memory. A batch's entries for a
  partition carry every document the batch changed whole, with the events each change
  emits. Each document also guards its own redelivery (its stream offsets), so an entry
  split in two, or half-materialized when the process died, is still applied exactly once.
- **Compressed.** An entry's documents and list items are one zlib-compressed BSON value
  each: a batch's documents are alike (a receipt's units differ in their serials), and
  FerretDB stores every value as JSON, so 28 MB of units took it half a second, one
  compressed megabyte 15 ms. Entries logged before, uncompressed, are still read.
- **Durable, then published, then committed.** `commit` inserts the batch's entries, then
  publishes their events; the consumer commits its offsets after that. A crash between the
  insert and the publish leaves entries that the partition's next owner restores
  (`restore`), re-publishing their events (their ids derive from their causes, so a copy is
  recognised downstream) and materializing their documents.
- **Materialized in the background.** `materialize` writes the latest version of every
  pending document (stamped with its entry's number, `_wal`), moves the partition's
  checkpoint (`"done <p>"`), then deletes the entries. Partitions being revoked wait for the
  round in flight, so two owners never write one document at once (FerretDB does not
  isolate concurrent updates of a document).
- **Written out when coalesced.** A round starts once the oldest pending entry is
  `flush_after_s` old (30 s in the services), or at once when `round_docs` different
  documents are pending. A level sold in every batch meanwhile is written once, not once a
  batch; units, sold once each, never coalesce and are written as soon as a round's worth is
  pending. Memory holds one put per pending document: the ones a later entry superseded are
  dropped (`_compact`), the log keeps them.
- **Reads stay exact.** The owner reads its own documents through the entries it holds in
  memory (`latest`, and `read` for its own partitions). For the partitions it does not own,
  a reader walks each one's entries by _id from its checkpoint (`_tail`: numbered without
  gaps; the partitions are named in `wal_partitions`) and keeps what it read, as an entry
  never changes; then it reads the documents, and keeps, per document, the newest of the
  two by entry number. An entry is deleted only after its documents are written and the
  checkpoint moved, so whatever a reader misses in `wal` it finds in the documents.
- **Applied once, answered here.** An entry also records which events its batch applied
  (a fingerprint of each one's idempotency key, with its time), so the changes and the
  record of having made them are one write. The owner keeps each partition's recent
  fingerprints in memory (`RecentEvents`) and answers `applied` from it. Each materializer
  round keeps the fingerprints of the entries it deletes in a page (`wal_keys`); a
  partition's pages are merged when they pile up, and what memory forgets (older than the
  dedupe window, or beyond `recent_max`) goes to `wal_applied`, one document each, before
  `since` moves past it. So a partition's next owner restores its memory from a few pages,
  and an event older than `since` is looked up by _id. A commit split into several entries
  (over `ENTRY_BYTES`) that failed part-way is dropped by `restore`: its batch is retried.
- **Lists too.** Append-only lists kept in pages (`lotline.runtime.pages`: stock's ledger,
  the registry's lot journals) are appended to through the log (`append`): a batch's items
  are part of its entry, and the materializer appends them to their pages before it writes
  the documents, a list's items of many batches in one page. Each item written so carries
  its entry's number (`_wal`), and `read_list` merges the pages with the pending entries in
  that order, so a reader sees every committed batch's items, each list in the order the
  batches were applied.
- **Versioned collections: written out by inserts.** A document that changes a few times
  in its life and rarely twice soon (a serial unit: received, sold, perhaps returned) gains
  nothing from coalescing, and replacing it costs an update each time. A collection the
  service declares versioned (`keep_versions`) is written out as new documents instead:
  version 0 under the document's own _id, version n under `"<_id>/<n>"` (ids of such a
  collection never hold a "/"). The materializer inserts version n + 1 of each document
  (its owner knows n from what it wrote or read; otherwise it looks); any reader takes the
  highest version that exists, looking up `_id`, `_id/1`, ... until one is missing, so such a
  collection is read by _id only. A document the owner staged as `new` (it looked, and
  found none: a receipt's units) is written out as version 0 without looking again. Inserts
  run about sixteen times the rate of updates on FerretDB and faster on MongoDB too; an
  interrupted round that inserted a version already finds it (same entry number) and
  inserts nothing more.
- **Bounded memory.** Pending entries are what an instance holds beyond its caches; when
  they exceed `wal_max_pending_docs` documents, `commit` waits for the materializer.
"""

from __future__ import annotations

import asyncio
import json
import time
import zlib
from collections import OrderedDict
from collections.abc import AsyncIterator, Iterable, Mapping, Sequence
from contextlib import asynccontextmanager, suppress
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Protocol

import bson
import structlog
from bson.codec_options import CodecOptions
from pymongo import DeleteOne, ReplaceOne, UpdateOne
from pymongo.asynchronous.collection import AsyncCollection
from pymongo.asynchronous.database import AsyncDatabase
from pymongo.errors import BulkWriteError, DuplicateKeyError

from lotline.events.codec import EventDecodeError, OutgoingMessage, decode
from lotline.events.envelope import CloudEvent
from lotline.runtime.dedupe import RecentEvents, digest
from lotline.runtime.mongo import INSERT_PART, Doc, bulk_write_in_parts, find_by_ids
from lotline.runtime.pace import Pace
from lotline.runtime.pages import PagedLists

log = structlog.get_logger(__name__)

DUPLICATE_KEY = 11000
# The field a materialized document carries: the number of the entry it was written from.
VERSION = "_wal"
# An entry stays well under MongoDB's 16 MB document limit.
ENTRY_BYTES = 4 * 1024 * 1024
# Documents read back from an entry's bytes as the driver reads them: times in UTC, aware.
_CODEC: CodecOptions[Doc] = CodecOptions(tz_aware=True, tzinfo=UTC)
# Looks before giving up on versions another writer keeps taking (the versions go
# `INSERT_PART` a command).
VERSION_ATTEMPTS = 5
# A partition's pages of applied-event fingerprints are merged into one beyond this many.
MAX_KEY_PAGES = 16


class StreamTaken(RuntimeError):
    """Another writer numbered an entry of a partition this instance thought it owned (it
    lost the partition meanwhile, or its predecessor is still finishing a batch). What this
    instance holds of the partition is dropped; the batch is applied again from the log."""


class NoPublisher(RuntimeError):
    """Events were staged on a log that has nowhere to send them (a read-only tool)."""


def entry_id(partition: int, seq: int) -> str:
    return f"{partition} {seq:012d}"


def checkpoint_id(partition: int) -> str:
    return f"done {partition}"


def version_id(doc_id: str, version: int) -> str:
    """Where version `version` of a document of a versioned collection is stored."""
    return doc_id if version == 0 else f"{doc_id}/{version}"


def key_page_id(partition: int, seq: int) -> str:
    return f"keys {partition} {seq:012d}"


@dataclass(frozen=True)
class Fact:
    """One event as the log tracks it: its key's partition, what makes two deliveries the
    same event (its idempotency key), and its time."""

    partition: int
    key: str
    at: datetime


@dataclass
class Put:
    """One document as a batch leaves it, and the events its change emits."""

    collection: str
    doc_id: str
    doc: Doc
    outbox: list[OutgoingMessage] = field(default_factory=list)
    _encoded: bytes | None = field(default=None, repr=False, compare=False)

    @property
    def encoded(self) -> bytes:
        """The put as BSON, encoded once (its size decides how a commit is split)."""
        if self._encoded is None:
            self._encoded = bson.encode(self.to_document())
        return self._encoded

    def forget_encoding(self) -> None:
        self._encoded = None

    def to_document(self) -> Doc:
        return {
            "c": self.collection,
            "id": self.doc_id,
            "doc": self.doc,
            "out": [_message_doc(m) for m in self.outbox] if self.outbox else [],
        }

    @classmethod
    def from_document(cls, doc: Doc) -> Put:
        return cls(doc["c"], doc["id"], doc["doc"], [_message_of(m) for m in doc.get("out", [])])


@dataclass
class Entry:
    partition: int
    seq: int
    puts: list[Put]
    # Events that change no document (a flag about a unit nobody registered, say).
    outbox: list[OutgoingMessage] = field(default_factory=list)
    # The events the batch applied: fingerprint -> time (seconds since the epoch).
    keys: dict[str, float] = field(default_factory=dict)
    # Items appended to paged lists: (collection, list key) -> items.
    lists: dict[tuple[str, str], list[Doc]] = field(default_factory=dict)
    # The last entry number of the commit this entry is part of.
    end: int = 0
    # When this instance committed (or restored) it, on the monotonic clock: the writer
    # waits `flush_after_s` from the oldest pending entry (memory only).
    at: float = 0.0

    @property
    def messages(self) -> list[OutgoingMessage]:
        return [*(m for put in self.puts for m in put.outbox), *self.outbox]

    def to_document(self) -> Doc:
        # The puts and fingerprints travel as BSON bytes: the database stores one value
        # instead of parsing tens of thousands of fields (a 5,000-line batch changes about
        # 4,000 documents), which made the insert cost follow the fields, not the bytes.
        # Compressed: a batch's documents are alike (a receipt's 100,000 units differ in
        # their serials), so an entry is a twentieth of the bytes and FerretDB, which stores
        # each value as JSON, takes it in a thirtieth of the time (28 MB: 0.52 s, 1 MB: 15 ms).
        return {
            "_id": entry_id(self.partition, self.seq),
            "p": self.partition,
            "seq": self.seq,
            "zbody": _compressed(b"".join(put.encoded for put in self.puts)),
            "out": [_message_doc(m) for m in self.outbox],
            "keys": bson.encode(self.keys),
            "zlists": _compressed(_lists_bytes(self.lists)),
            "end": self.end or self.seq,
        }

    @classmethod
    def from_document(cls, doc: Doc) -> Entry:
        keys = doc.get("keys") or {}
        return cls(
            doc["p"],
            doc["seq"],
            [Put.from_document(p) for p in put_docs(doc)],
            [_message_of(m) for m in doc.get("out", [])],
            _fingerprints(keys),
            lists=list_items(doc),
            end=int(doc.get("end") or doc["seq"]),
        )


class Publishes(Protocol):
    """What the log needs of a publisher: send encoded events and wait until Kafka has them."""

    async def send(self, messages: Sequence[OutgoingMessage]) -> None: ...


class WriteAheadLog:
    def __init__(
        self,
        db: AsyncDatabase[Doc],
        publisher: Publishes | None = None,
        *,
        max_pending_docs: int = 50_000,
        round_docs: int = 5_000,
        flush_after_s: float = 1.0,
        give_way_s: float = 1.0,
        recent_max: int = 100_000,
        window_s: float = 72 * 3600,
        known_docs: int = 100_000,
        versioned: Iterable[str] = (),
    ) -> None:
        self._db = db
        # Collections written out as new versions, never replaced (`keep_versions`).
        self._versioned: set[str] = set(versioned)
        self._entries: AsyncCollection[Doc] = db["wal"]
        # Fingerprints of applied events: recent ones in pages per partition, older ones
        # (forgotten by memory) one document each.
        self._key_pages: AsyncCollection[Doc] = db["wal_keys"]
        self._forgotten: AsyncCollection[Doc] = db["wal_applied"]
        self._recent_max = recent_max
        self._window_s = window_s
        self._publisher = publisher
        self._max_pending_docs = max_pending_docs
        self._round_docs = round_docs
        self._flush_after_s = flush_after_s
        self._give_way_s = give_way_s
        # Partitions any instance ever logged for (one tiny document each), which a reader
        # walks to find the entries other owners have not written out (`_tails`).
        self._partitions: AsyncCollection[Doc] = db["wal_partitions"]
        self._tails: dict[int, dict[int, Seen]] = {}
        self._tail_locks: dict[int, asyncio.Lock] = {}
        self._done_seen: dict[int, int] = {}
        # Puts of pending entries that a later pending entry superseded (`_compact`).
        self._superseded = 0
        # Per owned partition: the next entry number, and the entries not materialized yet.
        self._next_seq: dict[int, int] = {}
        self._pending: dict[int, list[Entry]] = {}
        # The newest pending version of each document: (partition, seq, document).
        self._latest: dict[tuple[str, str], tuple[int, int, Doc]] = {}
        self._staged: dict[tuple[str, str], tuple[int, Put]] = {}
        # Documents of versioned collections that the owner found absent (staged `new`):
        # their first write is version 0, without looking (cleared once written).
        self._staged_new: set[tuple[str, str]] = set()
        self._new: set[tuple[str, str]] = set()
        # Documents as this owner last wrote them (or read them), least recently used first,
        # as BSON, with their stored version: what its next batches would otherwise read
        # back (`latest`), and where the next version of a versioned one goes.
        self._known: OrderedDict[tuple[str, str], tuple[bytes, int]] = OrderedDict()
        self._known_max = known_docs
        # Per owned partition: the events applied lately, and the pages that hold them.
        self._recent: dict[int, RecentEvents] = {}
        self._pages: dict[int, list[str]] = {}
        self._staged_keys: dict[int, dict[str, float]] = {}
        self._staged_lists: dict[int, dict[tuple[str, str], list[Doc]]] = {}
        # The paged lists appended to through the log, by collection (`register`).
        self._lists: dict[str, PagedLists] = {}
        self._unsent: list[OutgoingMessage] = []
        self._partition_of: dict[str, int] = {}
        self._emitted: dict[int, list[OutgoingMessage]] = {}
        self._round = asyncio.Lock()
        self._work = asyncio.Event()
        self._drained = asyncio.Event()
        self._drained.set()  # room to commit; cleared while a commit waits for the writer
        # Units of work in progress: the materializer gives way to them between its writes
        # (both compete for one database), unless a commit is waiting for room.
        self._busy = 0
        self._unit = asyncio.Lock()
        self._quiet = asyncio.Event()
        self._quiet.set()
        # When the round in flight started, and how long it has waited (`_give_way`).
        self._round_started = time.monotonic()
        self._waited = 0.0
        self.stats = {"entries": 0, "materialized_docs": 0, "rounds": 0}

    # --------------------------------------------------------------- the owner's side

    @property
    def pending_docs(self) -> int:
        return len(self._latest)

    @asynccontextmanager
    async def foreground(self) -> AsyncIterator[None]:
        """A unit of work in progress: the batch a consumer is applying comes before writing
        out earlier ones (bounded: `max_pending_docs` makes a commit wait for the writer).
        One at a time: what is staged belongs to one unit of work (a batch's, or a timer's:
        `unit_of_work`), and one's commit or abort never takes another's changes."""
        async with self._unit:
            self._busy += 1
            self._quiet.clear()
            try:
                yield
            finally:
                self._busy -= 1
                if not self._busy:
                    self._quiet.set()

    @asynccontextmanager
    async def unit_of_work(self) -> AsyncIterator[None]:
        """A unit of work of the partitions' owner outside any batch (a timer's): between
        the batches, never within one; what it stages, emits and records is committed when
        the block ends, and dropped if it raises."""
        async with self.foreground():
            try:
                yield
                await self.commit()
            except BaseException:
                self.abort()
                raise

    async def _give_way(self) -> None:
        """Wait while a unit of work is in progress and no commit waits for room. A round
        waits in all at most as long as it has worked (and at least `give_way_s`), so a
        steady stream of batches cannot starve the writer (waiting before each of a round's
        parts without a bound, it wrote 50 documents a second while batches came back to
        back, until commits stalled for room), and it can halve its pace at most. A fixed
        budget of 1 s a round was spent in the first second of a 12 s round: the batches
        of the other eleven waited behind its writes (p99 at 1,000 lines/s: 280 ms)."""
        if not self._busy or not self._drained.is_set():
            return
        started = time.monotonic()
        worked = started - self._round_started - self._waited
        patience = max(self._give_way_s, worked) - self._waited
        if patience > 0:
            with suppress(TimeoutError):
                await asyncio.wait_for(self._quiet.wait(), timeout=patience)
            self._waited += time.monotonic() - started

    async def restore(self, partitions: Iterable[int]) -> None:
        """Take over partitions: their entries not materialized yet become pending here,
        and their events are published again (a crash may have come before the publish)."""
        todo = sorted(set(partitions) - self._next_seq.keys())
        if not todo:
            return
        async with self._round:
            for partition in todo:
                if partition not in self._next_seq:  # not restored while this one waited
                    await self._restore(partition)

    async def _restore(self, partition: int) -> None:
        # Before this owner logs anything there: readers elsewhere walk the partitions named.
        await _insert_ignoring_duplicate(self._partitions, {"_id": partition})
        self._tails.pop(partition, None)  # owned now: read from memory
        done = await self._entries.find_one({"_id": checkpoint_id(partition)})
        last: int = done["seq"] if done else 0
        if done is None:
            await _insert_ignoring_duplicate(
                self._entries, {"_id": checkpoint_id(partition), "seq": 0}
            )
        stale = [
            doc["_id"]
            async for doc in self._entries.find({"p": partition, "seq": {"$lte": last}}, {"_id": 1})
        ]
        if stale:
            # Numbered at or below the checkpoint: written by an owner that had lost the
            # partition (its number was free again once the real entry was written out and
            # deleted). Its batch's offsets were never committed, so the batch is applied
            # again here; the entry itself is no part of the log.
            await bulk_write_in_parts(
                self._entries, [DeleteOne({"_id": doc_id}) for doc_id in stale], ordered=False
            )
            log.warning("wal_stale_entries_dropped", partition=partition, entries=len(stale))
        found = [
            Entry.from_document(doc)
            async for doc in self._entries.find({"p": partition, "seq": {"$gt": last}})
        ]
        entries = sorted(found, key=lambda entry: entry.seq)
        if entries and entries[-1].seq < entries[-1].end:
            # A commit in several entries that failed part-way: it never happened (nothing
            # of it was published or remembered); its batch is applied again.
            broken = [e for e in entries if e.end == entries[-1].end]
            await bulk_write_in_parts(
                self._entries,
                [DeleteOne({"_id": entry_id(partition, e.seq)}) for e in broken],
                ordered=False,
            )
            entries = entries[: len(entries) - len(broken)]
            log.warning("wal_incomplete_commit_dropped", partition=partition, entries=len(broken))
        pages: list[str] = list((done or {}).get("pages", []))
        since = (done or {}).get("since")
        recent = RecentEvents(since=float("-inf") if since is None else since)
        for page in (await find_by_ids(self._key_pages, pages)).values():
            recent.seen.update(_fingerprints(page["keys"]))
        self._recent[partition] = recent
        self._pages[partition] = pages
        self._pending[partition] = entries
        self._next_seq[partition] = (entries[-1].seq if entries else last) + 1
        restored_at = time.monotonic()
        for entry in entries:
            entry.at = restored_at
            self._remember(entry)
        self._compact()
        unsent = [m for entry in entries for m in entry.messages]
        if unsent:
            await self._send(unsent)
        if entries:
            log.info("wal_restored", partition=partition, entries=len(entries))
            self._work.set()

    async def release(self, partitions: Iterable[int]) -> None:
        """Give partitions up: the round in flight ends first, then what this instance
        holds of them is dropped (the next owner restores it from `wal`)."""
        gone = set(partitions)
        async with self._round:
            self._forget(gone)
            for name in [k for k, p in self._partition_of.items() if p in gone]:
                del self._partition_of[name]

    def _forget(self, partitions: set[int]) -> None:
        """Drop what this instance holds of partitions; the log has it, `restore` reads it."""
        for partition in partitions:
            self._pending.pop(partition, None)
            self._next_seq.pop(partition, None)
            self._recent.pop(partition, None)
            self._pages.pop(partition, None)
        for key in [k for k, (p, _, _) in self._latest.items() if p in partitions]:
            del self._latest[key]
            self._new.discard(key)
        # Documents are not kept by partition: all of them go (a rebalance or a failed
        # commit is rare, and then memory may no longer be what the database holds).
        self._known.clear()

    async def applied(self, facts: Sequence[Fact]) -> list[bool]:
        """For each event, whether it was applied already: by a committed batch, earlier in
        this one, or by a copy before it in `facts`. Recent events are answered from memory;
        one older than a partition's memory is looked up by _id in `wal_applied`."""
        await self.restore({fact.partition for fact in facts})
        answers: list[bool | None] = []
        batch: set[tuple[int, str]] = set()
        for fact in facts:
            fingerprint = digest(fact.key)
            if (fact.partition, fingerprint) in batch or fingerprint in self._staged_keys.get(
                fact.partition, {}
            ):
                answers.append(True)
                continue
            batch.add((fact.partition, fingerprint))
            answers.append(
                self._recent[fact.partition].knows_digest(fingerprint, fact.at.timestamp())
            )
        unsure = [digest(f.key) for f, a in zip(facts, answers, strict=True) if a is None]
        old = await find_by_ids(self._forgotten, unsure, {"_id": 1}) if unsure else {}
        return [
            digest(f.key) in old if a is None else a for f, a in zip(facts, answers, strict=True)
        ]

    def record(self, facts: Iterable[Fact]) -> None:
        """These events were applied by the batch: recorded with its changes by `commit`."""
        for fact in facts:
            self._staged_keys.setdefault(fact.partition, {})[digest(fact.key)] = fact.at.timestamp()

    def abort(self) -> None:
        """The batch failed: nothing it staged or recorded is committed."""
        self._staged = {}
        self._staged_new = set()
        self._emitted = {}
        self._staged_keys = {}
        self._staged_lists = {}

    def observe(self, key: str, partition: int) -> None:
        """An event of `key` came from `partition`: the documents it changes belong there."""
        self._partition_of[key] = partition

    def stage(
        self,
        key: str,
        collection: str,
        doc_id: str,
        doc: Doc,
        outbox: Sequence[OutgoingMessage] = (),
        *,
        new: bool = False,
    ) -> None:
        """A document of `key` (a SKU) as this batch leaves it (the last staged version
        wins), and the events its change emits; made durable by `commit`. `new`: the owner
        knows it does not exist yet (a versioned collection then writes version 0 without
        looking first)."""
        self._stage(self._partition(key), collection, doc_id, doc, outbox)
        if new and collection in self._versioned:
            self._staged_new.add((collection, doc_id))

    def stage_many(
        self, key: str, collection: str, docs: Iterable[tuple[str, Doc]], *, new: bool = False
    ) -> None:
        """Documents of `key` as this batch leaves them, (_id, document) each, emitting no
        events: `stage` for a receipt's 100,000 units."""
        partition = self._partition(key)
        staged = self._staged
        fresh = new and collection in self._versioned
        for doc_id, doc in docs:
            held = (collection, doc_id)
            earlier = staged.get(held)
            outbox = list(earlier[1].outbox) if earlier else []
            staged[held] = (partition, Put(collection, doc_id, doc, outbox))
            if fresh:
                self._staged_new.add(held)

    def register(self, lists: PagedLists) -> None:
        """Paged lists this service appends to through the log (`append`); their pages are
        written by the materializer with this instance (its tails cache included)."""
        self._lists[lists.collection.name] = lists

    def append(
        self, key: str, lists: PagedLists, items_by_key: Mapping[str, Sequence[Doc]]
    ) -> None:
        """Items of `key` (a SKU) appended to paged lists, made durable with the batch by
        `commit` and written to their pages in the background."""
        self._lists.setdefault(lists.collection.name, lists)
        staged = self._staged_lists.setdefault(self._partition(key), {})
        for list_key, items in items_by_key.items():
            if items:
                staged.setdefault((lists.collection.name, list_key), []).extend(items)

    async def read_list(self, lists: PagedLists, key: str) -> list[Doc]:
        """A paged list's items as of every committed batch (and, on the owner, the batch
        being applied), in the order their batches were applied: the pending entries first
        (an entry is deleted only after its items are in the pages), then the pages."""
        name = lists.collection.name
        pending: list[tuple[int, Doc]] = [
            (entry.seq, item)
            for entries in self._pending.values()
            for entry in entries
            for item in entry.lists.get((name, key), [])
        ]
        for seen in await self._elsewhere():
            pending.extend((seen.seq, item) for item in seen.lists.get((name, key), []))
        stored = [(item.get(VERSION) or 0, item) for item in await lists.read(key)]
        staged = [
            (1 << 62, item)
            for held in self._staged_lists.values()
            for item in held.get((name, key), [])
        ]
        merged = sorted([*stored, *pending, *staged], key=lambda pair: pair[0])
        return [_unversioned(item) for _, item in merged]

    def emit(self, key: str, messages: Sequence[OutgoingMessage]) -> None:
        """Events of `key` that change no document, made durable with the batch by `commit`."""
        if messages:
            self._emitted.setdefault(self._partition(key), []).extend(messages)

    def _partition(self, key: str) -> int:
        partition = self._partition_of.get(key)
        if partition is None:
            raise LookupError(f"key {key!r}: no event of this batch named it, so no partition")
        return partition

    def _stage(
        self,
        partition: int,
        collection: str,
        doc_id: str,
        doc: Doc,
        outbox: Sequence[OutgoingMessage] = (),
    ) -> None:
        key = (collection, doc_id)
        earlier = self._staged.get(key)
        messages = [*(earlier[1].outbox if earlier else []), *outbox]
        self._staged[key] = (partition, Put(collection, doc_id, doc, messages))

    def keep_versions(self, collection: str) -> None:
        """Write `collection` out as new versions, never replacing a document (see the module
        docstring): for documents that change a few times each and seldom coalesce."""
        self._versioned.add(collection)

    async def latest(self, collection: str, ids: Iterable[str]) -> dict[str, Doc]:
        """The owner's view: the newest pending version of each document, else the stored one.
        A partition of this batch not restored yet (taken over, or dropped after a failed
        commit) is restored first: its pending entries are newer than its documents."""
        await self.restore(set(self._partition_of.values()) - self._next_seq.keys())
        wanted = list(dict.fromkeys(ids))
        found: dict[str, Doc] = {}
        missing = []
        for doc_id in wanted:
            staged = self._staged.get((collection, doc_id))
            pending = self._latest.get((collection, doc_id))
            if staged is not None:
                found[doc_id] = staged[1].doc
            elif pending is not None:
                found[doc_id] = pending[2]
            elif (known := self._known.get((collection, doc_id))) is not None:
                self._known.move_to_end((collection, doc_id))
                found[doc_id] = bson.decode(known[0], _CODEC)
            else:
                missing.append(doc_id)
        if missing:
            read = await self._stored(collection, missing)
            for version, doc in read.values():
                doc.pop(VERSION, None)
                self._know(collection, doc, version)
                found[doc["_id"]] = doc
            self._trim_known()
        return found

    def know(self, collection: str, docs: Iterable[Doc]) -> None:
        """Documents of this owner's partitions as the database now holds them, inserted by
        the service itself (a versioned collection's version 0): its next `latest` answers
        them from memory. Bounded by `known_docs`, least recently used out first."""
        for doc in docs:
            self._know(collection, doc, 0)
        self._trim_known()

    def _know(self, collection: str, doc: Doc, version: int) -> None:
        if self._known_max:
            key = (collection, doc["_id"])
            self._known[key] = (bson.encode(doc), version)
            self._known.move_to_end(key)

    def _trim_known(self) -> None:
        while len(self._known) > self._known_max:
            self._known.popitem(last=False)

    async def _stored(
        self, collection: str, ids: Sequence[str], projection: Mapping[str, int] | None = None
    ) -> dict[str, tuple[int, Doc]]:
        """The documents as written out, by _id: (version, document). A versioned
        collection's newest version is found by looking up the next until one is missing
        (a unit has a handful); the document then carries its own _id."""
        stored = self._db[collection]
        if collection not in self._versioned:
            found = await find_by_ids(stored, ids, dict(projection) if projection else None)
            return {doc_id: (0, doc) for doc_id, doc in found.items()}
        newest: dict[str, tuple[int, Doc]] = {}
        looking = list(dict.fromkeys(ids))
        version = 0
        while looking:
            probes = {version_id(doc_id, version): doc_id for doc_id in looking}
            hits = await find_by_ids(stored, probes, dict(projection) if projection else None)
            looking = []
            for probe, doc in hits.items():
                doc_id = probes[probe]
                doc["_id"] = doc_id
                newest[doc_id] = (version, doc)
                looking.append(doc_id)
            version += 1
        return newest

    async def commit(self) -> None:
        """Make the staged documents and their events durable in one insert, then publish
        the events. Waits first while too much is pending (the materializer catches up)."""
        # Events a failed publish left unsent go first: their batch is being redelivered,
        # and its documents, already logged, will not emit them again.
        await self._send([])
        staged, self._staged = self._staged, {}
        new, self._staged_new = self._staged_new, set()
        emitted, self._emitted = self._emitted, {}
        keys, self._staged_keys = self._staged_keys, {}
        lists, self._staged_lists = self._staged_lists, {}
        if not staged and not emitted and not keys and not lists:
            return
        while self.pending_docs >= self._max_pending_docs:
            self._drained.clear()
            self._work.set()
            await self._drained.wait()
        # After the wait: a rebalance meanwhile may have released the batch's partitions
        # (restored again here; if another instance logged there since, the insert below
        # is refused as `StreamTaken` and the batch applied again from the log).
        unowned = (
            {p for p, _ in staged.values()} | emitted.keys() | keys.keys() | lists.keys()
        ) - self._next_seq.keys()
        if unowned:
            await self.restore(unowned)
        by_partition: dict[int, list[Put]] = {
            p: [] for p in emitted.keys() | keys.keys() | lists.keys()
        }
        for partition, put in staged.values():
            by_partition.setdefault(partition, []).append(put)
        entries: list[Entry] = []
        for partition, puts in sorted(by_partition.items()):
            parts = list(_parts(puts)) or [[]]
            group = [Entry(partition, 0, part) for part in parts]
            appended = lists.get(partition, {})
            if appended and _size(group[-1].puts) + len(_lists_bytes(appended)) > ENTRY_BYTES:
                group.append(Entry(partition, 0, []))  # the list items in an entry of their own
            group[-1].lists = appended
            group[-1].outbox = emitted.get(partition, [])
            group[-1].keys = keys.get(partition, {})
            for entry in group:
                entry.seq = self._next_seq[partition]
                self._next_seq[partition] += 1
            for entry in group:
                entry.end = group[-1].seq
            entries.extend(group)
        try:
            await self._entries.insert_many([e.to_document() for e in entries], ordered=True)
        except BaseException as exc:
            # The entries may or may not be in, and another writer may have logged some:
            # drop what this instance holds of the partitions; the retried batch's first
            # read (`latest`) restores them from the log, then applies the batch again.
            async with self._round:
                self._forget(set(by_partition))
            if isinstance(exc, BulkWriteError) and any(
                e.get("code") == DUPLICATE_KEY for e in exc.details.get("writeErrors", [])
            ):
                raise StreamTaken(f"partitions {sorted(by_partition)}: {exc}") from None
            raise
        self._new |= new
        committed_at = time.monotonic()
        for entry in entries:
            entry.at = committed_at
            for put in entry.puts:
                put.forget_encoding()  # the log has the bytes; memory keeps the document
            self._pending.setdefault(entry.partition, []).append(entry)
            self._remember(entry)
        self._compact()
        self.stats["entries"] += len(entries)
        self._work.set()
        messages = [m for entry in entries for m in entry.messages]
        for entry in entries:
            # Pending in memory until written out, without its events: a restore reads them
            # from the log, and every event held is dozens of objects for the collector.
            entry.outbox = []
            for put in entry.puts:
                put.outbox = []
        await self._send(messages)

    def _remember(self, entry: Entry) -> None:
        for put in entry.puts:
            key = (put.collection, put.doc_id)
            if key in self._latest:
                self._superseded += 1
            self._latest[key] = (entry.partition, entry.seq, put.doc)
        recent = self._recent.get(entry.partition)
        if recent is not None:
            recent.seen.update(entry.keys)

    def _compact(self) -> None:
        """Drop from memory the puts that a later pending entry superseded, once they are as
        many as the documents pending: with changes kept `flush_after_s` to coalesce, a level
        sold in every batch would otherwise be held once per batch. A round then writes each
        document from the newest entry it takes that holds it; a document whose newest
        version is in an entry a later round takes is written by that round (the stored one
        lags meanwhile, and every reader takes the pending version, which is newer)."""
        if self._superseded < max(1_000, len(self._latest)):
            return
        for entries in self._pending.values():
            for entry in entries:
                entry.puts = [
                    put
                    for put in entry.puts
                    if self._latest.get((put.collection, put.doc_id), (-1, -1))[:2]
                    == (entry.partition, entry.seq)
                ]
        self._superseded = 0

    async def _send(self, messages: list[OutgoingMessage]) -> None:
        """Publish, after whatever an earlier failed publish left; kept until Kafka has it."""
        self._unsent.extend(messages)
        if not self._unsent:
            return
        if self._publisher is None:
            raise NoPublisher(f"{len(self._unsent)} events staged on a log with no publisher")
        await self._publisher.send(self._unsent)
        self._unsent = []

    # ------------------------------------------------------------------ materializing

    async def materialize(self) -> int:
        """One round: write the newest pending version of the documents of whole entries,
        until they change `round_docs` different documents; move the checkpoints, delete
        the entries written. Returns the documents written."""
        async with self._round:
            self._round_started, self._waited = time.monotonic(), 0.0
            pace = Pace(between=self._give_way)
            taken: dict[int, list[Entry]] = {}
            # Counted as different documents, not puts: entries that change the same
            # documents (a busy level sold in every batch) are written out together, each
            # document once. The newest version of each is what the round writes.
            newest: dict[tuple[str, str], tuple[int, Doc]] = {}
            # Snapshots: commits append entries while the round gives way.
            for partition, entries in list(self._pending.items()):
                for entry in list(entries):
                    changes = {(put.collection, put.doc_id): put.doc for put in entry.puts}
                    if (
                        len(newest) >= self._round_docs
                        and taken
                        and not changes.keys() <= newest.keys()
                    ):
                        break
                    taken.setdefault(partition, []).append(entry)
                    for key, doc in changes.items():
                        newest[key] = (entry.seq, doc)
                    await pace.step()
            if not taken:
                self._drained.set()
                return 0
            # The lists first: a list never lags the documents its items describe.
            appended: dict[str, dict[str, list[Doc]]] = {}
            for entries in taken.values():
                for entry in entries:
                    for (collection, list_key), items in entry.lists.items():
                        appended.setdefault(collection, {}).setdefault(list_key, []).extend(
                            {**item, VERSION: entry.seq} for item in items
                        )
                        await pace.step()
            for collection, by_key in appended.items():
                lists = self._lists.get(collection) or PagedLists(self._db[collection])
                await lists.append(by_key, between=self._give_way)
            del appended
            by_collection: dict[str, list[ReplaceOne[Doc]]] = {}
            versioned: dict[str, dict[str, tuple[int, Doc]]] = {}
            for (collection, doc_id), (seq, doc) in newest.items():
                await pace.step()
                if collection in self._versioned:
                    versioned.setdefault(collection, {})[doc_id] = (seq, doc)
                    continue
                by_collection.setdefault(collection, []).append(
                    ReplaceOne({"_id": doc_id}, {**doc, "_id": doc_id, VERSION: seq}, upsert=True)
                )
            for collection, operations in by_collection.items():
                await bulk_write_in_parts(
                    self._db[collection], operations, ordered=False, between=self._give_way
                )
            versions: dict[tuple[str, str], int] = {}
            for collection, docs in versioned.items():
                for doc_id, version in (await self._insert_versions(collection, docs)).items():
                    versions[(collection, doc_id)] = version
            self._new.difference_update(versions)
            checkpoints: list[UpdateOne] = []
            dropped_pages: list[str] = []
            for partition, entries in taken.items():
                await pace.turn()  # a partition's memory may be pruned: 100,000 keys
                state, dropped = await self._keep_keys(partition, entries)
                checkpoints.append(
                    UpdateOne(
                        {"_id": checkpoint_id(partition)},
                        {"$set": {"seq": entries[-1].seq, **state}},
                        upsert=True,
                    )
                )
                dropped_pages.extend(dropped)
            await bulk_write_in_parts(self._entries, checkpoints, ordered=False)
            await bulk_write_in_parts(
                self._entries,
                [
                    DeleteOne({"_id": entry_id(e.partition, e.seq)})
                    for entries in taken.values()
                    for e in entries
                ],
                ordered=False,
            )
            await bulk_write_in_parts(
                self._key_pages, [DeleteOne({"_id": page}) for page in dropped_pages], ordered=False
            )
            # Each step on its own: a commit between two of them finds memory consistent.
            # The round's own copies go before its entries do, and the entries one by one
            # (paced): freeing 30 s of a busy partition's entries at once (their puts,
            # items and fingerprints) held the event loop for over 100 ms.
            written = len(newest)
            del newest, by_collection, versioned
            for partition, entries in taken.items():
                done = {e.seq for e in entries}
                self._pending[partition] = [
                    e for e in self._pending.get(partition, []) if e.seq not in done
                ]
                last = entries[-1].seq
                entries.reverse()
                while entries:
                    entry = entries.pop()
                    for put in entry.puts:
                        await pace.step()
                        key = (put.collection, put.doc_id)
                        held = self._latest.get(key)
                        if held is not None and held[0] == partition and held[1] <= last:
                            del self._latest[key]
                            doc = {**held[2], "_id": put.doc_id}
                            self._know(put.collection, doc, versions.get(key, 0))
                    del entry
            self._trim_known()
            self.stats["materialized_docs"] += written
            self.stats["rounds"] += 1
            if self.pending_docs < self._max_pending_docs:
                self._drained.set()
            return written

    async def _insert_versions(
        self, collection: str, docs: Mapping[str, tuple[int, Doc]]
    ) -> dict[str, int]:
        """Write documents of a versioned collection out as their next versions (entry
        number, document); returns the version each now has. The owner knows most
        documents' versions; the others are looked up, and so is any whose version another
        insert took (a round interrupted after it wrote them: that version is this one)."""
        stored = self._db[collection]
        written: dict[str, int] = {}
        next_of: dict[str, int] = {}
        unknown: list[str] = []
        for doc_id in docs:
            known = self._known.get((collection, doc_id))
            if known is not None:
                next_of[doc_id] = known[1] + 1
            elif (collection, doc_id) in self._new:
                next_of[doc_id] = 0  # staged as new: a version there is an interrupted round's
            else:
                unknown.append(doc_id)
        for _ in range(VERSION_ATTEMPTS):
            if unknown:
                found = await self._stored(collection, unknown, {VERSION: 1})
                for doc_id in unknown:
                    held = found.get(doc_id)
                    if held is None:
                        next_of[doc_id] = 0
                    elif held[1].get(VERSION, 0) >= docs[doc_id][0]:
                        written[doc_id] = held[0]  # written by an interrupted round
                    else:
                        next_of[doc_id] = held[0] + 1
            todo = list(next_of.items())
            next_of, unknown = {}, []
            for start in range(0, len(todo), INSERT_PART):
                await self._give_way()
                part = todo[start : start + INSERT_PART]
                versions = [
                    {**doc, "_id": version_id(doc_id, version), VERSION: seq}
                    for (doc_id, version), (seq, doc) in ((p, docs[p[0]]) for p in part)
                ]
                taken: set[int] = set()
                try:
                    await stored.insert_many(versions, ordered=False)
                except BulkWriteError as exc:
                    errors = exc.details.get("writeErrors", [])
                    if any(error.get("code") != DUPLICATE_KEY for error in errors):
                        raise
                    taken = {error["index"] for error in errors}
                for index, (doc_id, version) in enumerate(part):
                    if index in taken:
                        unknown.append(doc_id)
                    else:
                        written[doc_id] = version
            if not unknown:
                return written
        raise StreamTaken(
            f"{collection}: versions of {len(unknown)} documents kept being taken by another "
            f"writer (first: {unknown[0]!r})"
        )

    async def _keep_keys(self, partition: int, entries: list[Entry]) -> tuple[Doc, list[str]]:
        """Before `entries` are deleted, keep the fingerprints they hold: in a page of the
        partition (all of its memory in one page when the pages pile up), and what memory
        forgets now in `wal_applied`. Returns the checkpoint's new fields and the pages it
        no longer names (deleted once it is moved)."""
        recent = self._recent.get(partition)
        pages = self._pages.get(partition)
        if recent is None or pages is None:
            return {}, []
        forgotten = recent.prune(datetime.now(UTC), self._window_s, self._recent_max)
        if forgotten:
            docs = [{"_id": key, "t": at} for key, at in forgotten.items()]
            with suppress(BulkWriteError):  # already kept by an interrupted round
                await self._forgotten.insert_many(docs, ordered=False)
        keys: dict[str, float] = {}
        for entry in entries:
            keys.update(entry.keys)
        dropped: list[str] = []
        page = key_page_id(partition, entries[-1].seq)
        if len(pages) >= MAX_KEY_PAGES:
            # One page with all the partition remembers (a pending entry's fingerprints too:
            # that entry is durable, so keeping them early is harmless).
            keys = dict(recent.seen)
            dropped, pages = pages, []
        if keys:
            # As one BSON value: a merged page holds up to `recent_max` fingerprints, which
            # FerretDB would otherwise store and parse as as many fields.
            await _replace(
                self._key_pages, {"_id": page, "p": partition, "keys": bson.encode(keys)}
            )
            pages.append(page)
        self._pages[partition] = pages
        since = None if recent.since == float("-inf") else recent.since
        return {"pages": list(pages), "since": since}, dropped

    async def name_partitions(self) -> None:
        """A log written before `wal_partitions` existed names its partitions by their
        checkpoints only (every owner made one before it logged): name them once, so that
        readers elsewhere walk a partition nobody has taken over since the upgrade."""
        if await self._partitions.find_one({}) is not None:
            return
        async for done in self._entries.find({"p": {"$exists": False}}, {"_id": 1}):
            name = str(done["_id"])
            if name.startswith("done "):
                await _insert_ignoring_duplicate(self._partitions, {"_id": int(name[5:])})

    async def run(self, idle_s: float = 0.05) -> None:
        """The materializer: a round whenever something is pending; never ends on an error
        (the entries stay, and the next round writes them)."""
        named = False
        while True:
            if not named:  # once; a failure is tried again next time, never holding rounds up
                try:
                    await self.name_partitions()
                    named = True
                except Exception as exc:
                    log.warning("wal_partitions_not_named", error=repr(exc))
            await self._wait_for_work(idle_s)
            started = time.monotonic()
            try:
                written = await self.materialize()
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.warning("wal_materialize_failed", error=repr(exc))
                await asyncio.sleep(1.0)
                continue
            if written:
                log.debug(
                    "wal_materialized",
                    docs=written,
                    seconds=round(time.monotonic() - started, 3),
                    pending=self.pending_docs,
                )

    async def _wait_for_work(self, idle_s: float) -> None:
        """Until something is pending; then until the oldest pending entry is `flush_after_s`
        old (so that the changes of many batches to one document coalesce into one write),
        unless a round's worth of different documents is pending (changes that do not
        coalesce, such as units sold once each, are written as they come) or a commit is
        waiting for room."""
        if not self._latest:
            self._work.clear()
            try:
                await asyncio.wait_for(self._work.wait(), timeout=idle_s * 20)
            except TimeoutError:
                return
        while True:
            oldest = min((e[0].at for e in self._pending.values() if e), default=None)
            if oldest is None or time.monotonic() >= oldest + self._flush_after_s:
                return
            if self.pending_docs >= self._round_docs or not self._drained.is_set():
                return
            await asyncio.sleep(idle_s)

    # ---------------------------------------------------------------- any reader's side

    async def pending(self, collection: str) -> dict[str, tuple[int, Doc]]:
        """Every document of `collection` not written out yet, newest version: (entry
        number, document). For a query on another field than _id, which the documents alone
        answer only for what is written out (`overlay` merges the two)."""
        found: dict[str, tuple[int, Doc]] = {}
        for (name, doc_id), (_, seq, doc) in self._latest.items():
            if name == collection:
                found[doc_id] = (seq, {**doc, "_id": doc_id})
        for seen in await self._elsewhere():
            for (name, doc_id), doc in seen.puts.items():
                held = found.get(doc_id)
                if name == collection and (held is None or held[0] < seen.seq):
                    found[doc_id] = (seen.seq, {**doc, "_id": doc_id})
        return found

    async def read(
        self, collection: str, ids: Iterable[str], projection: Mapping[str, int] | None = None
    ) -> dict[str, Doc]:
        """Documents by _id as of every committed batch, on any instance: the stored ones,
        overlaid with their newer pending versions (read first: an entry is deleted only
        after its documents are written)."""
        wanted = list(dict.fromkeys(ids))
        if not wanted:
            return {}
        pending: dict[str, tuple[int, Doc]] = {}
        for doc_id in wanted:
            held = self._latest.get((collection, doc_id))
            if held is not None:
                pending[doc_id] = (held[1], held[2])
        for seen in await self._elsewhere():
            for doc_id in wanted:
                doc = seen.puts.get((collection, doc_id))
                if doc is not None and (doc_id not in pending or pending[doc_id][0] < seen.seq):
                    pending[doc_id] = (seen.seq, doc)
        stored = await self._stored(collection, wanted, _with_version(projection))
        found: dict[str, Doc] = {}
        for doc_id in wanted:
            doc = stored[doc_id][1] if doc_id in stored else None
            newer = pending.get(doc_id)
            if newer is not None and (doc is None or doc.get(VERSION, 0) < newer[0]):
                doc = _project({**newer[1], "_id": doc_id}, projection)
            if doc is not None:
                doc.pop(VERSION, None)
                found[doc_id] = doc
        return found

    async def _elsewhere(self) -> list[Seen]:
        """The committed entries not written out yet of the partitions this instance does
        not own (its own are in memory): each partition's entries are walked by _id from its
        checkpoint, and kept here (an entry never changes), so a read costs a scan of the
        tiny `wal_partitions`, two lookups per such partition (the next entry, missing, and
        the checkpoint) and one per entry logged since the last read, never a scan of `wal`."""
        partitions = [doc["_id"] async for doc in self._partitions.find({})]
        others = sorted(p for p in partitions if p not in self._next_seq)
        tails = await asyncio.gather(*(self._tail(p) for p in others))
        return [seen for tail in tails for seen in tail]

    async def _tail(self, partition: int) -> list[Seen]:
        """A partition's committed pending entries, in order. Its entries are numbered
        without gaps from its checkpoint; one missing means either none was logged since, or
        the writer wrote it out and deleted it (the checkpoint moved first: walk on from
        there). A commit split in several entries whose last is not in yet has not
        happened (or never will: `restore` drops it), so its entries are left out, and looked
        for again next time."""
        lock = self._tail_locks.setdefault(partition, asyncio.Lock())
        async with lock:
            cached = self._tails.setdefault(partition, {})
            seq = max(cached, default=self._done_seen.get(partition, 0)) + 1
            fresh: list[Seen] = []
            while True:
                doc = await self._entries.find_one({"_id": entry_id(partition, seq)}, _ENTRY_READ)
                if doc is not None:
                    fresh.append(Seen.of(doc))
                    seq += 1
                    continue
                # Read after the miss: whatever is numbered at or below it is written out
                # (or a stale entry, no part of the log), the rest is pending.
                done = await self._checkpoint(partition)
                if done < seq:
                    break
                fresh = [seen for seen in fresh if seen.seq > done]
                seq = done + 1
            self._done_seen[partition] = done
            for old in [s for s in cached if s <= done]:
                del cached[old]
            for seen in fresh:
                if seen.end < seq:
                    cached[seen.seq] = seen
            return [cached[s] for s in sorted(cached)]

    async def _checkpoint(self, partition: int) -> int:
        done = await self._entries.find_one({"_id": checkpoint_id(partition)}, {"seq": 1})
        return int(done["seq"]) if done else 0


@dataclass
class Seen:
    """A pending entry as a reader keeps it: its documents and list items."""

    seq: int
    end: int
    puts: dict[tuple[str, str], Doc]
    lists: dict[tuple[str, str], list[Doc]]

    @classmethod
    def of(cls, doc: Doc) -> Seen:
        return cls(
            doc["seq"],
            int(doc.get("end") or doc["seq"]),
            {(put["c"], put["id"]): put["doc"] for put in put_docs(doc)},
            list_items(doc),
        )


# What a reader needs of an entry (not its events or fingerprints).
_ENTRY_READ = {"zbody": 1, "body": 1, "puts": 1, "zlists": 1, "lists": 1, "seq": 1, "end": 1}


def list_items(entry: Doc) -> dict[tuple[str, str], list[Doc]]:
    """An entry's items appended to paged lists: (collection, list key) -> items."""
    blob = _expanded(entry.get("zlists")) if "zlists" in entry else entry.get("lists")
    if not blob:
        return {}
    return {(d["c"], d["k"]): d["items"] for d in bson.decode_all(blob, _CODEC)}


def _lists_bytes(lists: Mapping[tuple[str, str], list[Doc]]) -> bytes:
    return b"".join(
        bson.encode({"c": collection, "k": key, "items": items})
        for (collection, key), items in lists.items()
    )


def _compressed(data: bytes) -> bytes:
    return zlib.compress(data, 1) if data else b""


def _expanded(data: bytes | None) -> bytes:
    return zlib.decompress(data) if data else b""


def _size(puts: list[Put]) -> int:
    return sum(len(put.encoded) for put in puts)


def put_docs(entry: Doc) -> list[Doc]:
    """An entry's puts, as compressed BSON bytes (`zbody`) or, in entries logged before,
    as BSON bytes (`body`) or documents."""
    if "zbody" in entry:
        return bson.decode_all(_expanded(entry["zbody"]), _CODEC)
    if "body" in entry:
        return bson.decode_all(entry["body"], _CODEC)
    return list(entry.get("puts", []))


def _parts(puts: list[Put]) -> Iterable[list[Put]]:
    """Entries of at most ENTRY_BYTES each (a document stays whole in one entry)."""
    part: list[Put] = []
    size = 0
    for put in puts:
        put_size = len(put.encoded)
        if part and size + put_size > ENTRY_BYTES:
            yield part
            part, size = [], 0
        part.append(put)
        size += put_size
    if part:
        yield part


def _fingerprints(keys: bytes | Mapping[str, float]) -> dict[str, float]:
    """Fingerprints as an entry or a page of `wal_keys` holds them: BSON bytes or (written
    by an earlier version) a document."""
    return dict(bson.decode(keys, _CODEC)) if isinstance(keys, bytes) else dict(keys)


def _unversioned(item: Doc) -> Doc:
    """An item without the entry number it was written out from (most items of a list
    were appended directly, and have none: a million of them in a recall's answer)."""
    if VERSION not in item:
        return item
    return {name: value for name, value in item.items() if name != VERSION}


def _with_version(projection: Mapping[str, int] | None) -> Doc | None:
    if projection is None:
        return None
    if any(projection.values()):
        return {**projection, VERSION: 1}
    return dict(projection)


def _project(doc: Doc, projection: Mapping[str, int] | None) -> Doc:
    """The top-level projection MongoDB would apply (inclusion or exclusion)."""
    if not projection:
        return doc
    if any(projection.values()):
        keep = {name for name, on in projection.items() if on} | {"_id"}
        return {name: value for name, value in doc.items() if name in keep}
    return {name: value for name, value in doc.items() if name not in projection}


def _message_doc(message: OutgoingMessage) -> Doc:
    return {
        "topic": message.topic,
        "key": message.key.decode(),
        "value": message.value.decode(),
        # FerretDB stores no arrays of arrays: each header is a small document.
        "headers": [{"name": name, "value": value.decode()} for name, value in message.headers],
    }


def _message_of(doc: Doc) -> OutgoingMessage:
    """An event saved in an entry, as it is sent again after a crash (its bytes unchanged).

    An event this version's contract does not know (logged by a newer instance, then
    restored here during a rolling upgrade: a new reason, a new field) is sent as it is:
    it was valid where it was made, and refusing it would stall the partition for good."""
    value = doc["value"].encode()
    try:
        event = decode(value)
    except EventDecodeError as exc:
        log.warning("wal_event_not_understood", topic=doc["topic"], problem=str(exc))
        event = CloudEvent[Any].model_construct(**json.loads(value))
    return OutgoingMessage(
        topic=doc["topic"],
        key=doc["key"].encode(),
        value=value,
        headers=[(header["name"], header["value"].encode()) for header in doc["headers"]],
        event=event,
    )


async def _insert_ignoring_duplicate(collection: AsyncCollection[Doc], doc: Doc) -> None:
    with suppress(DuplicateKeyError):
        await collection.insert_one(doc)


async def _replace(collection: AsyncCollection[Doc], doc: Doc) -> None:
    """Insert, or after an interrupted round that inserted it, write it again whole."""
    try:
        await collection.insert_one(doc)
    except DuplicateKeyError:
        await collection.replace_one({"_id": doc["_id"]}, doc)


def overlay(stored: Iterable[Doc], pending: Mapping[str, tuple[int, Doc]]) -> list[Doc]:
    """Documents a query found (with their `_wal` number) and the pending versions of any
    document, newest of each kept, without the bookkeeping field. The caller filters the
    pending ones by its query."""
    merged: dict[str, tuple[int, Doc]] = {doc["_id"]: (doc.get(VERSION, 0), doc) for doc in stored}
    for doc_id, (seq, doc) in pending.items():
        held = merged.get(doc_id)
        if held is None or held[0] < seq:
            merged[doc_id] = (seq, doc)
    return [{k: v for k, v in doc.items() if k != VERSION} for _, doc in merged.values()]
