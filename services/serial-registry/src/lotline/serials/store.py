"""The serial registry's MongoDB collections; the only module that speaks Mongo.

serials.units           one document per version of a unit: `_id` = "<sku> <serial>" as
                        received, "<sku> <serial>/<n>" for its n-th change (read the newest
                        through the write-ahead log, which writes them: `read_units`)
serials.lot_units       each lot's journal, "<sku> <lot>": the state of a unit of the lot
                        (status, recall flag, sale) appended whenever it changes, in
                        insert-only pages (lotline.runtime.pages): a lot's counts and contact
                        list are read in time that grows with the lot, not the registry
serials.products        the registry's read model of `product-registered`, `_id` = sku
serials.recalls         per SKU, what each recall named (lots, serials), for late receipts;
                        "/saved": a mark that changes whenever any writer saves a scope
serials.recall_answers  the `units-recalled` chunks of each recall, kept so a redelivered
                        recall republishes exactly the same events
serials.receipts        receipts registered (sku, receipt id, serials digest) and the duplicates
                        they were refused, so a redelivered big receipt costs one lookup
serials.sku_lots        per SKU, the lots its units were received in: the journals a count of
                        a location reads to find the units there
serials.sku_serials     per SKU, 32-bit fingerprints of its serials, in insert-only pages
                        (lotline.runtime.members): which of a receipt's 100,000 serials may be
                        registered already, without a lookup each

Written for MongoDB and for FerretDB 1.24 on SQLite alike. FerretDB looks a document up
through an index only for a filter that is exactly `{_id: <string>}`; any other filter
(`$in`, or `_id` plus a guard) reads the whole collection, and an update command of 100 or
more statements that match documents hangs the server. So the hot paths read and write by `_id`
alone: reads are concurrent `find_one`s, and bulk updates go in parts of at most
BULK_UPDATES statements.

Every unit a batch creates or changes, the journal entries and fingerprints that go with
it, the receipts it registers and the events it emits go through the service's write-ahead
log (`lotline.runtime.wal`): one insert for a batch (compressed: a 100,000-serial receipt is
about a megabyte), each unit written in the background by the partition's owner as a new
version (an insert: a sold unit never coalesces with another change, and an update costs
sixteen inserts on FerretDB). Reads by _id go through the log, so they show every committed
batch.
"""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import AsyncIterator, Iterable, Mapping, Sequence
from dataclasses import dataclass, fields
from datetime import date, datetime
from typing import Any

from pymongo import UpdateOne
from pymongo.asynchronous.collection import AsyncCollection
from pymongo.asynchronous.database import AsyncDatabase
from pymongo.errors import DuplicateKeyError

from lotline.events import (
    ClaimKind,
    EventType,
    FlagReason,
    OutgoingMessage,
    ProductRegistered,
    ReturnReason,
    SoldUnit,
    Tracking,
    UnitStatus,
)
from lotline.runtime.members import Fingerprints
from lotline.runtime.mongo import each_at_most, find_by_ids
from lotline.runtime.owned import OwnedState
from lotline.runtime.pages import PagedLists
from lotline.runtime.wal import WriteAheadLog
from lotline.serials.domain import (
    Flag,
    HistoryEntry,
    Product,
    RecallScope,
    ReceivedUnits,
    Unit,
    WarrantyClaim,
    lot_key,
    received_what,
    unit_id,
)

Doc = dict[str, Any]
UNITS = "units"
RECEIPTS = "receipts"
# Below FerretDB's limit of 100 matching statements per update command (see above).
BULK_UPDATES = 50
# Duplicates listed in one receipt's ledger document (well under 16 MB).
RECEIPT_LEDGER_MAX = 200_000
# The document of `recalls` whose mark changes with every scope saved: not a SKU (identifiers
# hold no "/").
RECALLS_SAVED = "/saved"
# The mark in `sku_serials` that every unit stored is in its SKU's fingerprints (not a SKU:
# identifiers hold no "/").
SERIALS_INDEXED = "/indexed"
# Lots whose journals a recall's answer reads at once.
LOTS_AT_ONCE = 8


def _chunks(items: Sequence[Any], size: int) -> Iterable[Sequence[Any]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


# ------------------------------------------------------------------------------ documents


def entry_doc(entry: HistoryEntry) -> Doc:
    doc: Doc = {
        "type": entry.type.value,
        "event_id": entry.event_id,
        "at": entry.at,
        "what": entry.what,
    }
    if entry.ref is not None:
        doc["ref"] = entry.ref
    if entry.location is not None:
        doc["location"] = entry.location
    if entry.flags:
        doc["flags"] = [
            {"reason": f.reason.value, "detail": f.detail}
            | ({"recall_id": f.recall_id} if f.recall_id else {})
            for f in entry.flags
        ]
    return doc


def entry_from_doc(doc: Doc) -> HistoryEntry:
    return HistoryEntry(
        type=EventType(doc["type"]),
        event_id=doc["event_id"],
        at=doc["at"],
        what=doc["what"],
        ref=doc.get("ref"),
        location=doc.get("location"),
        flags=tuple(
            Flag(FlagReason(f["reason"]), f["detail"], f.get("recall_id"))
            for f in doc.get("flags") or ()
        ),
    )


# Unit fields as stored; `history` and `recall_ids` are written by $push / $addToSet.
_SCALAR_FIELDS = [
    f.name for f in fields(Unit) if f.name not in ("history", "recall_ids", "sku", "serial")
]


def claim_doc(claim: WarrantyClaim) -> Doc:
    doc = {name: _stored(getattr(claim, name)) for name in _CLAIM_FIELDS}
    return {name: value for name, value in doc.items() if value is not None}


def claim_from_doc(doc: Doc) -> WarrantyClaim:
    ends = doc.get("warranty_ends_on")
    return WarrantyClaim(
        claim_id=doc["claim_id"],
        kind=ClaimKind(doc["kind"]),
        event_id=doc["event_id"],
        at=doc["at"],
        location=doc["location"],
        in_warranty=doc["in_warranty"],
        warranty_ends_on=date.fromisoformat(ends) if ends else None,
        replacement_serial=doc.get("replacement_serial"),
        override_reason=doc.get("override_reason"),
        problem=doc.get("problem"),
        claimed_by=doc.get("claimed_by"),
    )


_CLAIM_FIELDS = [f.name for f in fields(WarrantyClaim)]


def _stored(value: Any) -> Any:
    if isinstance(value, tuple):  # a unit's warranty claims, the one tuple among its fields
        return [claim_doc(claim) for claim in value]
    if isinstance(value, date) and not isinstance(value, datetime):
        return value.isoformat()  # BSON has no date without a time
    if isinstance(value, UnitStatus | ReturnReason | ClaimKind):
        return value.value
    return value


def _implicit_receipt(unit: Unit) -> bool:
    """Whether the unit's first history entry is its own receipt's: it is then not stored but
    rebuilt from the receipt fields on read (a 100,000-serial receipt inserts 40 % faster)."""
    first = unit.history[0] if unit.history else None
    return (
        first is not None
        and first.type is EventType.ITEM_RECEIVED
        and first.event_id == unit.received_event
        and first.at == unit.received_at
        and first.ref == unit.receipt_id
    )


def _stored_history(unit: Unit) -> list[Doc]:
    entries = unit.history[1:] if _implicit_receipt(unit) else unit.history
    return [entry_doc(entry) for entry in entries]


def unit_doc(unit: Unit) -> Doc:
    """The unit as stored: absent rather than null or empty, so large receipts stay small."""
    doc: Doc = {"_id": unit.id, "sku": unit.sku, "serial": unit.serial}
    for name in _SCALAR_FIELDS:
        value = getattr(unit, name)
        if value is not None and value != ():
            doc[name] = _stored(value)
    if unit.recall_ids:
        doc["recalled"] = True
        doc["recall_ids"] = list(unit.recall_ids)
    if _implicit_receipt(unit):
        what = unit.history[0].what
        if what != received_what(unit.received_location, unit.receipt_id or "", unit.lot_code):
            doc["received_what"] = what
    if history := _stored_history(unit):
        doc["history"] = history
    return doc


def lot_entry(unit: Unit) -> Doc:
    """A unit's line in its lot's journal: what a lot's counts and contact list need (the
    lot is the journal's)."""
    entry: Doc = {"serial": unit.serial, "status": unit.status.value, "location": unit.location}
    if unit.recall_ids:
        entry["recalled"] = True
    for name in ("sale_id", "customer_ref", "sold_at"):
        if (value := getattr(unit, name)) is not None:
            entry[name] = value
    return entry


def unit_from_doc(doc: Doc) -> Unit:
    expires = doc.get("lot_expires_on")
    reason = doc.get("return_reason")
    history = tuple(entry_from_doc(entry) for entry in doc.get("history") or ())
    received_event = doc.get("received_event")
    if received_event is not None and not any(
        e.type is EventType.ITEM_RECEIVED and e.event_id == received_event for e in history
    ):
        what = doc.get("received_what") or received_what(
            doc.get("received_location"), doc["receipt_id"], doc.get("lot_code")
        )
        receipt = HistoryEntry(
            EventType.ITEM_RECEIVED,
            received_event,
            doc["received_at"],
            what,
            doc["receipt_id"],
            location=doc.get("received_location"),
        )
        history = (receipt, *history)
    return Unit(
        sku=doc["sku"],
        serial=doc["serial"],
        status=UnitStatus(doc["status"]),
        location=doc["location"],
        lot_code=doc.get("lot_code"),
        lot_expires_on=date.fromisoformat(expires) if expires else None,
        receipt_id=doc.get("receipt_id"),
        received_event=received_event,
        received_at=doc.get("received_at"),
        received_location=doc.get("received_location"),
        sale_id=doc.get("sale_id"),
        line=doc.get("line"),
        customer_ref=doc.get("customer_ref"),
        sold_at=doc.get("sold_at"),
        return_id=doc.get("return_id"),
        return_reason=ReturnReason(reason) if reason else None,
        returned_at=doc.get("returned_at"),
        recall_ids=tuple(doc.get("recall_ids") or ()),
        recalled_at=doc.get("recalled_at"),
        warranty_from=doc.get("warranty_from"),
        replaced_by=doc.get("replaced_by"),
        replaces=doc.get("replaces"),
        claims=tuple(claim_from_doc(claim) for claim in doc.get("claims") or ()),
        history=history,
        transfer_id=doc.get("transfer_id"),
        in_transit_to=doc.get("in_transit_to"),
    )


def unit_update(before: Unit, after: Unit) -> Doc:
    """Only what the event changed: `$set` of the changed fields, `$addToSet` of new recall
    ids, `$push` of new history entries. Fields nobody changed are left to other writers."""
    changed = {
        name: _stored(getattr(after, name))
        for name in _SCALAR_FIELDS
        if getattr(after, name) != getattr(before, name)
    }
    update: Doc = {}
    cleared = [name for name, value in changed.items() if value is None]
    if cleared:
        update["$unset"] = dict.fromkeys(cleared, "")
        changed = {name: value for name, value in changed.items() if value is not None}
    new_recalls = [r for r in after.recall_ids if r not in before.recall_ids]
    if new_recalls:
        changed["recalled"] = True
        update["$addToSet"] = {"recall_ids": {"$each": new_recalls}}
    kept = len(before.history)
    if after.history[:kept] == before.history:
        added = after.history[kept:]
        if added:
            update["$push"] = {"history": {"$each": [entry_doc(e) for e in added]}}
    else:  # trimmed to HISTORY_LIMIT
        changed["history"] = _stored_history(after)
    if changed:
        update["$set"] = changed
    return update


@dataclass(frozen=True)
class UnitChange:
    """A unit as read (None: not in the registry yet) and as the event leaves it."""

    before: Unit | None
    after: Unit


@dataclass(frozen=True)
class LotPage:
    units: list[Unit]
    counts: dict[UnitStatus, int]
    recalled: int
    matched: int


@dataclass(frozen=True)
class RecalledUnits:
    counts: dict[UnitStatus, int]
    sold: list[SoldUnit]


class SerialStore:
    def __init__(
        self,
        db: AsyncDatabase[Doc],
        owned: OwnedState | None = None,
        wal: WriteAheadLog | None = None,
    ) -> None:
        owned = owned or OwnedState()
        self.wal = wal or WriteAheadLog(db)
        # A unit changes a few times in its life and is sold once: written out as new
        # versions (inserts), never replaced, and so read by _id only (`wal.read`).
        self.wal.keep_versions(UNITS)
        self.units: AsyncCollection[Doc] = db[UNITS]
        self.lot_units = PagedLists(db["lot_units"], owned.cache())
        self.wal.register(self.lot_units)
        self.sku_serials: AsyncCollection[Doc] = db["sku_serials"]
        self.serial_index = Fingerprints(
            PagedLists(self.sku_serials, owned.cache()), self.wal, owned.cache()
        )
        self.products: AsyncCollection[Doc] = db["products"]
        self.recalls: AsyncCollection[Doc] = db["recalls"]
        # Products and recall scopes of the SKUs this instance owns, between batches: it is
        # their only writer (lotline.runtime.owned). Units are too many to keep.
        self._products: dict[str, Product] = owned.cache()
        self._scopes: dict[str, list[RecallScope]] = owned.cache()
        # The recalls' mark (`recalls_mark`) when memory last held every saved scope.
        self._scopes_mark: str | None = None
        self.recall_answers: AsyncCollection[Doc] = db["recall_answers"]
        self.sku_lots: AsyncCollection[Doc] = db["sku_lots"]

    # ------------------------------------------------------------------------- products

    async def products_of(self, skus: Iterable[str]) -> dict[str, Product]:
        wanted = set(skus)
        found = {sku: self._products[sku] for sku in wanted if sku in self._products}
        for sku, doc in (await find_by_ids(self.products, wanted - found.keys())).items():
            found[sku] = self._products[sku] = Product(
                sku=sku,
                tracking=Tracking(doc["tracking"]),
                revision=doc["revision"],
                gtin=doc.get("gtin"),
                name=doc.get("name"),
                warranty_months=doc.get("warranty_months"),
            )
        return found

    async def product(self, sku: str) -> Product | None:
        return (await self.products_of([sku])).get(sku)

    async def save_products(self, registrations: Sequence[ProductRegistered]) -> None:
        """Newest revision wins; an older or equal one (a replay of the compacted topic)
        changes nothing. One consumer owns a SKU's partition, so read-then-write is safe."""
        latest: dict[str, ProductRegistered] = {}
        for product in registrations:
            self._products.pop(product.sku, None)
            known = latest.get(product.sku)
            if known is None or product.revision > known.revision:
                latest[product.sku] = product
        stored = await find_by_ids(self.products, latest, {"revision": 1})
        writes: list[UpdateOne] = [
            UpdateOne(
                {"_id": sku},
                {
                    "$set": {
                        "tracking": product.tracking.value,
                        "gtin": product.gtin,
                        "name": product.name,
                        "warranty_months": product.warranty_months,
                        "revision": product.revision,
                    }
                },
                upsert=True,
            )
            for sku, product in latest.items()
            if sku not in stored or stored[sku]["revision"] < product.revision
        ]
        for part in _chunks(writes, BULK_UPDATES):
            await self.products.bulk_write(list(part), ordered=False)

    # ---------------------------------------------------------------------------- units

    async def units_by_id(self, ids: Iterable[str]) -> dict[str, Unit]:
        """The owner's view of its units: pending changes included."""
        found = await self.wal.latest(UNITS, ids)
        return {uid: unit_from_doc(doc) for uid, doc in found.items()}

    async def read_units(self, ids: Iterable[str]) -> dict[str, Unit]:
        """Any reader's view (the HTTP side): every committed batch included."""
        found = await self.wal.read(UNITS, ids)
        return {uid: unit_from_doc(doc) for uid, doc in found.items()}

    async def unit(self, sku: str, serial: str) -> Unit | None:
        return (await self.read_units([unit_id(sku, serial)])).get(unit_id(sku, serial))

    async def unit_ids_at(self, sku: str, location: str, lot_codes: Iterable[str]) -> list[str]:
        """The ids of a SKU's units of these lots (and of every lot it was received in) whose
        latest journal entry puts them at a location: for a count, which must tell the units
        it did not find. From the lots' journals, not a query on the units (FerretDB would
        read all of them); read the units by id (`units_by_id`) for their state."""
        lots = set(lot_codes) | await self.lots_of(sku)
        ids = []
        for lot_code in sorted(lots):
            for serial, state in (await self.lot_states(sku, lot_code)).items():
                if state.get("location") == location:
                    ids.append(unit_id(sku, serial))
        return ids

    async def lots_of(self, sku: str) -> set[str]:
        """Every lot a receipt registered units of this SKU in (`add_lots`)."""
        doc = await self.sku_lots.find_one({"_id": sku})
        return set((doc or {}).get("lots") or ())

    async def add_lots(self, sku: str, lot_codes: Iterable[str]) -> None:
        """Remember the lots a SKU's units were received in (idempotent, by _id)."""
        wanted = sorted(set(lot_codes))
        if wanted:
            await self.sku_lots.update_one(
                {"_id": sku}, {"$addToSet": {"lots": {"$each": wanted}}}, upsert=True
            )

    async def register_units(self, received: Sequence[ReceivedUnits]) -> dict[str, Unit]:
        """Create the units receipts bring that the registry does not hold yet; returns, by
        id, those it holds already (left untouched: the receipt settles them). Which of a
        receipt's serials exist is answered by the SKU's serial fingerprints: only the few
        that match are looked up, not each serial (`lotline.runtime.members`)."""
        candidates: list[str] = []
        for units in received:
            maybe = await self.serial_index.maybe(units.sku, units.serials)
            candidates.extend(unit_id(units.sku, s) for s in units.serials if s in maybe)
        existing = await self.units_by_id(candidates)
        for units in received:
            self._create(units, existing)
        return existing

    def _create(self, received: ReceivedUnits, existing: Mapping[str, Unit]) -> None:
        """Stage a receipt's new units, their journal entries and their fingerprints. The
        units are alike but for their serials: each document is the template's with its own
        serial (a recall named some by serial: those are documents of their own)."""
        sku, template = received.sku, received.template
        doc, entry = unit_doc(template), lot_entry(template)
        created = [serial for serial in received.serials if unit_id(sku, serial) not in existing]
        plain = [serial for serial in created if serial not in received.named]
        self.wal.stage_many(
            sku,
            UNITS,
            (((uid := unit_id(sku, s)), {**doc, "_id": uid, "serial": s}) for s in plain),
            new=True,
        )
        journal = [{**entry, "serial": serial} for serial in plain]
        for serial in created:
            if (named := received.named.get(serial)) is not None:
                self.wal.stage(sku, UNITS, named.id, unit_doc(named), new=True)
                journal.append(lot_entry(named))
        if template.lot_code is not None and journal:
            self.wal.append(sku, self.lot_units, {lot_key(sku, template.lot_code): journal})
        self.serial_index.add(sku, created)

    async def index_serials(self, *, again: bool = False) -> int | None:
        """Make sure every unit stored is in its SKU's serial fingerprints: a registry that
        held units before they existed has them indexed once, by a pass over the units'
        ids (run at startup, before the consumers; `again` indexes whatever is marked).
        Returns how many were indexed, or None if nothing had to be."""
        if not again and await self.sku_serials.find_one({"_id": SERIALS_INDEXED}) is not None:
            return None
        count = 0
        if again or await self.units.find_one({}, {"_id": 1}) is not None:

            async def serials() -> AsyncIterator[tuple[str, str]]:
                async for doc in self.units.find({}, {"_id": 1}):
                    if "/" not in doc["_id"]:  # a unit's first version, under its own id
                        sku, serial = doc["_id"].split(" ", 1)
                        yield sku, serial

            count = await self.serial_index.backfill(serials())
        with contextlib.suppress(DuplicateKeyError):
            await self.sku_serials.insert_one({"_id": SERIALS_INDEXED})
        return count

    async def apply_changes(self, changes: Sequence[UnitChange]) -> None:
        """Stage the changes on the batch's unit of work (committed by the consumer: one
        insert into the write-ahead log, with the lots' journal entries and the new units'
        serial fingerprints), seen by the next read at once. The partition's owner is the
        units' only writer: another instance writing the partition meanwhile (a rebalance
        overlap) loses the log's entry number to it, and its batch is applied again."""
        journal: dict[str, dict[str, list[Doc]]] = {}
        created: dict[str, list[str]] = {}
        for change in changes:
            after = change.after
            new = change.before is None
            self.wal.stage(after.sku, UNITS, after.id, unit_doc(after), new=new)
            if new:
                created.setdefault(after.sku, []).append(after.serial)
            if after.lot_code is not None:
                journal.setdefault(after.sku, {}).setdefault(
                    lot_key(after.sku, after.lot_code), []
                ).append(lot_entry(after))
        for sku, entries in journal.items():
            self.wal.append(sku, self.lot_units, entries)
        for sku, serials in created.items():
            self.serial_index.add(sku, serials)

    def publish(self, messages: Sequence[OutgoingMessage]) -> None:
        """Derived events, made durable with the batch in the write-ahead log, then
        published, when the consumer commits the batch."""
        for message in messages:
            self.wal.emit(message.key.decode(), [message])

    async def lot_states(self, sku: str, lot_code: str) -> dict[str, Doc]:
        """Each unit of one lot as its latest journal entry leaves it, by serial."""
        latest: dict[str, Doc] = {}
        for entry in await self.wal.read_list(self.lot_units, lot_key(sku, lot_code)):
            latest[entry["serial"]] = entry
        return {serial: latest[serial] | {"lot_code": lot_code} for serial in sorted(latest)}

    async def recalled_units(self, sku: str, scope: RecallScope) -> RecalledUnits:
        """Every unit under a recall (of its lots, or named), counted by status, with the
        sold ones listed."""
        counts = {status: 0 for status in UnitStatus}
        sold: list[SoldUnit] = []
        states: dict[str, Doc] = {}
        # The lots' journals side by side: each read is a few lookups, one after another.
        by_lot: dict[str, dict[str, Doc]] = {}

        async def states_of(lot_code: str) -> None:
            by_lot[lot_code] = await self.lot_states(sku, lot_code)

        lots = sorted(scope.lot_codes)
        await each_at_most(LOTS_AT_ONCE, lots, states_of)
        for lot_code in lots:
            states.update(by_lot[lot_code])
        named = [unit_id(sku, serial) for serial in scope.serials if serial not in states]
        # Through the write-ahead log: a unit changed in a batch not written out yet counts.
        for doc in (await self.wal.latest(UNITS, named)).values():
            states[doc["serial"]] = doc
        for doc in (states[serial] for serial in sorted(states)):
            if not scope.covers(doc["serial"], doc.get("lot_code")):
                continue
            status = UnitStatus(doc["status"])
            counts[status] += 1
            if status is UnitStatus.SOLD:
                sold.append(
                    SoldUnit(
                        serial=doc["serial"],
                        lot_code=doc.get("lot_code"),
                        sale_id=doc.get("sale_id"),
                        customer_ref=doc.get("customer_ref"),
                        location=doc.get("location"),
                        sold_at=doc.get("sold_at"),
                    )
                )
        return RecalledUnits(counts, sold)

    async def registered_receipts(self, keys: Iterable[str]) -> dict[str, list[str]]:
        """Of these receipts, those registered before, with the duplicates each was refused."""
        found = await self.wal.latest(RECEIPTS, keys)
        return {key: list(doc["duplicates"]) for key, doc in found.items()}

    def receipts_registered(
        self, registered: Sequence[tuple[str, str, str, Sequence[str]]], at: datetime
    ) -> None:
        """Receipts (SKU, key, event id, duplicates) whose units are now in, staged with
        them: a redelivery then costs one lookup, not one per serial."""
        for sku, key, event_id, duplicates in registered:
            # Too big for one document: a redelivery takes the slow path.
            if len(duplicates) <= RECEIPT_LEDGER_MAX:
                doc = {"event_id": event_id, "duplicates": list(duplicates), "at": at}
                self.wal.stage(sku, RECEIPTS, key, doc)

    # -------------------------------------------------------------------------- recalls

    async def save_recall_scope(self, sku: str, scope: RecallScope) -> None:
        """Remember what a recall named, so units received or sold later are flagged. One
        document per SKU (a product sees few recalls), found by _id; a later event of the same
        recall that names more lots or serials adds a scope."""
        self._scopes.pop(sku, None)
        stored = await self.recalls.find_one({"_id": sku})
        for known in (stored or {}).get("scopes", []):
            if (
                known["recall_id"] == scope.recall_id
                and set(known["lot_codes"]) >= scope.lot_codes
                and set(known["serials"]) >= scope.serials
            ):
                return  # the same recall again (redelivered, or re-sent under a new id)
        await self.recalls.update_one(
            {"_id": sku},
            {
                "$push": {
                    "scopes": {
                        "recall_id": scope.recall_id,
                        "event_id": scope.event_id,
                        "issued_at": scope.issued_at,
                        "reason": scope.reason,
                        "lot_codes": sorted(scope.lot_codes),
                        "serials": sorted(scope.serials),
                    }
                }
            },
            upsert=True,
        )
        # Then the mark every reader of scopes checks (`recalls_mark`): after the scope, so
        # whoever sees the new mark finds the scope.
        await self.recalls.update_one(
            {"_id": RECALLS_SAVED}, {"$set": {"mark": uuid.uuid4().hex}}, upsert=True
        )

    async def recalls_mark(self) -> str | None:
        """What the latest save of a recall scope, by any writer, left: it changes with every
        save. A batch that reads it before its first look at the scopes and again after its
        writes knows, by one lookup, whether any recall was saved in between (and only then
        looks at each SKU's scopes in the database again)."""
        doc = await self.recalls.find_one({"_id": RECALLS_SAVED}, {"mark": 1})
        return None if doc is None else str(doc["mark"])

    async def recall_scopes_marked(
        self, skus: Iterable[str]
    ) -> tuple[dict[str, list[RecallScope]], str | None]:
        """Each SKU's recall scopes with the mark read before them: memory answers only while
        no writer saved a scope since memory read them (another instance may have, during a
        rebalance overlap); otherwise memory is dropped and the scopes read again."""
        mark = await self.recalls_mark()
        if mark != self._scopes_mark:
            self._scopes.clear()
            self._scopes_mark = mark
        return await self.recall_scopes(skus), mark

    async def recall_scopes(
        self, skus: Iterable[str], *, stored: bool = False
    ) -> dict[str, list[RecallScope]]:
        """Each SKU's recall scopes, from memory where this instance holds them. `stored`
        reads the database whatever memory holds (and refreshes it): the look for a recall
        saved since the last read, which memory cannot have seen if another writer saved it."""
        wanted = set(skus)
        cached = {} if stored else {sku: self._scopes[sku] for sku in wanted if sku in self._scopes}
        found = await find_by_ids(self.recalls, wanted - cached.keys())
        loaded = {
            sku: [
                RecallScope(
                    recall_id=s["recall_id"],
                    event_id=s["event_id"],
                    issued_at=s["issued_at"],
                    lot_codes=frozenset(s.get("lot_codes") or ()),
                    serials=frozenset(s.get("serials") or ()),
                    reason=s.get("reason", ""),
                )
                for s in found.get(sku, {}).get("scopes", [])
            ]
            for sku in wanted - cached.keys()
        }
        self._scopes.update(loaded)
        return cached | loaded

    async def recall_answer(self, key: str) -> list[Doc] | None:
        """The stored chunks of a recall's answer, or None if it was never completed."""
        header = await self.recall_answers.find_one({"_id": f"{key} header"})
        if header is None:
            return None
        ids = [f"{key} {chunk:06d}" for chunk in range(1, header["chunks"] + 1)]
        found = await find_by_ids(self.recall_answers, ids)
        if len(found) != len(ids):
            return None
        return [found[doc_id]["data"] for doc_id in ids]

    async def save_recall_answer(self, key: str, chunks: Sequence[Doc]) -> None:
        """Chunks first, then the header that says the answer is complete. A crash in between
        leaves no header, so the answer is recomputed and the chunks overwritten."""
        ops = [
            UpdateOne({"_id": f"{key} {index:06d}"}, {"$set": {"data": data}}, upsert=True)
            for index, data in enumerate(chunks, start=1)
        ]
        for part in _chunks(ops, BULK_UPDATES):
            await self.recall_answers.bulk_write(list(part), ordered=False)
        with contextlib.suppress(DuplicateKeyError):
            await self.recall_answers.insert_one({"_id": f"{key} header", "chunks": len(chunks)})

    # ------------------------------------------------------------------------ read side

    async def lot_page(
        self,
        sku: str,
        lot_code: str,
        status: UnitStatus | None,
        recalled: bool | None,
        limit: int,
        skip: int,
        lot_recalled: bool = False,
    ) -> LotPage:
        """The lot's units filtered and paged, with counts over the whole lot. A recalled
        lot (`lot_recalled`) has every unit recalled, flagged in its record or not."""
        counts = {status_: 0 for status_ in UnitStatus}
        recalled_count = 0
        matching: list[str] = []
        for doc in (await self.lot_states(sku, lot_code)).values():
            unit_status = UnitStatus(doc["status"])
            unit_recalled = lot_recalled or bool(doc.get("recalled"))
            counts[unit_status] += 1
            recalled_count += unit_recalled
            if (status is None or unit_status is status) and (
                recalled is None or unit_recalled is recalled
            ):
                matching.append(unit_id(sku, doc["serial"]))
        page = await self.read_units(matching[skip : skip + limit])
        units = sorted(page.values(), key=lambda unit: unit.serial)
        return LotPage(units, counts, recalled_count, len(matching))
