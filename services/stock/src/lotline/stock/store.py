"""The stock service's MongoDB collections: levels (one per SKU and location), products, and
the movements ledger (what each event did to each lot: the lot trace), kept per lot in
insert-only pages (lotline.runtime.pages) so a lot's movements are read by _id alone.

The only module that speaks Mongo. A level document carries its lots and `version`, counting
its writes; nothing about the events that made it (which events were applied is the write-
ahead log's business, recorded in the same insert as the change).

Levels are written through the service's write-ahead log (`lotline.runtime.wal`): a batch's
changed levels and the events they emit are one insert, and the levels themselves are
written in the background, a level changed by many batches once. Reads by _id go through
the log too, so they show every committed batch.

Levels and products of the SKUs this instance owns are kept in memory between batches
(`lotline.runtime.owned`): the instance is their only writer, so reading them again would
return what it wrote.
"""

from __future__ import annotations

from collections.abc import Iterable
from contextlib import suppress
from dataclasses import dataclass, field
from datetime import date
from typing import Any

from pymongo import ASCENDING, UpdateOne
from pymongo.asynchronous.database import AsyncDatabase
from pymongo.errors import DuplicateKeyError

from lotline.events import OutgoingMessage, ProductRegistered, Tracking, decode, encode_event
from lotline.runtime.mongo import bulk_write_in_parts, find_by_ids
from lotline.runtime.owned import OwnedState
from lotline.runtime.pages import PagedLists
from lotline.runtime.wal import WriteAheadLog, overlay
from lotline.stock.domain import Level, Recall, Transfer
from lotline.stock.ledger import Movement

# Partitions a location's index may be spread over (topics have 6 by default).
MAX_PARTITIONS = 64
LEVELS = "levels"
TRANSFERS = "transfers"


def ledger_key(sku: str, lot_code: str | None) -> str:
    """The ledger's list for a lot; movements of no lot (a plain SKU, sales before any lot
    covered them) go to the SKU's own list. Neither a SKU nor a lot code holds a space."""
    return sku if lot_code is None else f"{sku} {lot_code}"


def transfer_key(sku: str, transfer_id: str) -> str:
    """A SKU's part of a transfer (a transfer may carry many SKUs, each on its partition)."""
    return f"{sku} {transfer_id}"


def level_id(sku: str, location: str) -> str:
    # Identifiers are printable without spaces, so a space cannot be ambiguous.
    return f"{sku} {location}"


@dataclass
class Product:
    sku: str
    tracking: Tracking
    revision: int
    name: str = ""
    shelf_life_days: int | None = None
    recalls: dict[str, Recall] = field(default_factory=dict)


@dataclass
class StoredLevel:
    """A level as read: the domain object plus what guards its next write."""

    level: Level
    version: int = 0
    outbox: list[OutgoingMessage] = field(default_factory=list)
    # The Kafka partition of its SKU, known for a level created in this batch.
    partition: int | None = None
    changed: bool = False


class StockStore:
    def __init__(
        self,
        db: AsyncDatabase[dict[str, Any]],
        owned: OwnedState | None = None,
        wal: WriteAheadLog | None = None,
    ) -> None:
        self.levels = db["levels"]
        self.wal = wal or WriteAheadLog(db)
        self.products = db["products"]
        # Which levels exist, per SKU and per location: FerretDB answers `{"sku": ...}` by
        # reading every level, but a document by its _id from the index.
        self.places = db["places"]
        owned = owned or OwnedState()
        self._products: dict[str, Product] = owned.cache()
        self._levels: dict[str, StoredLevel] = owned.cache()
        self.ledger = PagedLists(db["ledger"], owned.cache())
        self.wal.register(self.ledger)

    async def create_indexes(self) -> None:
        await self.levels.create_index([("next_expiry", ASCENDING)])

    # Products: the service's read model of the catalog.

    async def save_product(self, product: ProductRegistered) -> None:
        """Keep the newest revision; an older or repeated one (compacted replay) changes nothing."""
        fields = {
            "tracking": product.tracking.value,
            "revision": product.revision,
            "name": product.name,
            "shelf_life_days": product.shelf_life_days,
        }
        self._products.pop(product.sku, None)
        # A duplicate key means the stored revision is as new or newer.
        with suppress(DuplicateKeyError):
            await self.products.update_one(
                {"_id": product.sku, "revision": {"$lt": product.revision}},
                {"$set": fields, "$setOnInsert": {"recalls": []}},
                upsert=True,
            )

    async def load_products(self, skus: Iterable[str]) -> dict[str, Product]:
        wanted = set(skus)
        found = {sku: self._products[sku] for sku in wanted if sku in self._products}
        for doc in (await find_by_ids(self.products, wanted - found.keys())).values():
            if "tracking" not in doc:
                continue  # only recalls so far: the product is not registered yet
            found[doc["_id"]] = Product(
                sku=doc["_id"],
                tracking=Tracking(doc["tracking"]) if doc.get("tracking") else Tracking.QUANTITY,
                revision=doc.get("revision", 0),
                name=doc.get("name", ""),
                shelf_life_days=doc.get("shelf_life_days"),
                recalls={
                    r["lot_code"]: Recall(r["recall_id"], r["lot_code"], r["issued_at"])
                    for r in doc.get("recalls", [])
                },
            )
            self._products[doc["_id"]] = found[doc["_id"]]
        return found

    async def add_recalls(self, sku: str, recalls: list[Recall]) -> None:
        """Remember recalled lots, so later receipts, sales and returns know (idempotent).

        A recall may name a product stock has not heard of yet: it is kept all the same, in
        a product document with no tracking (revision 0, so the registration's own write
        finds and completes it), and applies the moment the product and its lot arrive."""
        entries = [
            {"lot_code": r.lot_code, "recall_id": r.recall_id, "issued_at": r.issued_at}
            for r in recalls
        ]
        self._products.pop(sku, None)
        await self.products.update_one(
            {"_id": sku},
            {"$addToSet": {"recalls": {"$each": entries}}, "$setOnInsert": {"revision": 0}},
            upsert=True,
        )

    # Levels.

    async def load_levels(self, ids: Iterable[str]) -> dict[str, StoredLevel]:
        """The levels that exist, from memory where this instance holds them."""
        wanted = set(ids)
        found = {key: self._levels[key] for key in wanted if key in self._levels}
        for key, doc in (await self.wal.latest(LEVELS, wanted - found.keys())).items():
            found[key] = self._levels[key] = _stored(doc)
        return found

    async def load_levels_of_sku(self, sku: str) -> dict[str, StoredLevel]:
        return await self.load_levels(await self._level_ids("sku", sku))

    async def _level_ids(self, kind: str, value: str) -> list[str]:
        if kind == "sku":
            doc = await self.places.find_one({"_id": f"sku {value}"})
            return [level_id(value, location) for location in (doc or {}).get("members", [])]
        # A location's SKUs sit on every partition: one document per partition, each
        # written only by that partition's owner (FerretDB does not isolate two writers).
        shards = [f"location {value} {partition}" for partition in range(MAX_PARTITIONS)]
        found = await find_by_ids(self.places, shards)
        return [level_id(sku, value) for doc in found.values() for sku in doc["members"]]

    async def _index_new_levels(self, levels: list[StoredLevel]) -> None:
        """Record new levels in `places` before they are written, so no level is ever
        missing from it (an entry whose write then failed is harmless: it is skipped).
        The SKU's document and the location's document of the SKU's partition have one
        writer, this instance, like the level itself."""
        operations = [
            UpdateOne({"_id": place}, {"$addToSet": {"members": member}}, upsert=True)
            for stored in levels
            for place, member in (
                (f"sku {stored.level.sku}", stored.level.location),
                (f"location {stored.level.location} {stored.partition}", stored.level.sku),
            )
        ]
        await bulk_write_in_parts(self.places, operations, ordered=False)

    def new_level(self, key: str, level: Level, partition: int) -> StoredLevel:
        """A level not in the database yet, created by an event of `partition`; it is
        written (and kept) with the batch."""
        if partition >= MAX_PARTITIONS:
            raise ValueError(f"partition {partition}: the location index spans {MAX_PARTITIONS}")
        stored = self._levels[key] = StoredLevel(level, partition=partition)
        return stored

    async def stage_levels(self, levels: dict[str, StoredLevel]) -> None:
        """Stage every changed level, whole, with the events its change emits, on the
        batch's unit of work; the consumer commits it (one insert into the write-ahead log
        for the batch; the level documents follow in the background).

        A level has one writer: its SKU's partitions of every topic belong to one consumer
        instance, which applies one batch at a time."""
        changed = {key: stored for key, stored in levels.items() if stored.changed}
        await self._index_new_levels([s for s in changed.values() if s.version == 0])
        for key, stored in changed.items():
            doc = {"_id": key, **stored.level.to_document(), "version": stored.version + 1}
            self.wal.stage(stored.level.sku, LEVELS, key, doc, stored.outbox)
            stored.version += 1
            stored.changed = False
            stored.outbox = []

    def record_movements(self, movements: list[Movement]) -> None:
        """Append the movements a batch made to their lots' pages, with the batch's unit of
        work: logged with the levels they describe, and written to the pages before them. A
        round replayed after a crash appends its movements again; a movement's _id comes
        from its event, so the reader keeps each once."""
        by_sku: dict[str, dict[str, list[dict[str, Any]]]] = {}
        for movement in movements:
            key = ledger_key(movement.sku, movement.lot_code)
            by_sku.setdefault(movement.sku, {}).setdefault(key, []).append(movement.to_document())
        for sku, by_lot in by_sku.items():
            self.wal.append(sku, self.ledger, by_lot)

    # Transfers: one document per SKU of a transfer, written through the log like levels.

    async def load_transfers(self, keys: Iterable[str]) -> dict[str, Transfer]:
        found = await self.wal.latest(TRANSFERS, keys)
        return {key: Transfer.from_document(doc) for key, doc in found.items()}

    async def stage_transfers(self, transfers: dict[str, tuple[Transfer, int]]) -> None:
        """Stage each changed transfer (with its SKU's partition) on the batch's unit of work,
        and index it by transfer id first, one document per partition (FerretDB does not
        isolate two writers of one document), so the read side finds its SKUs."""
        operations = [
            UpdateOne(
                {"_id": f"transfer {t.transfer_id} {partition}"},
                {"$addToSet": {"members": t.sku}},
                upsert=True,
            )
            for t, partition in transfers.values()
        ]
        await bulk_write_in_parts(self.places, operations, ordered=False)
        for key, (transfer, _) in transfers.items():
            self.wal.stage(transfer.sku, TRANSFERS, key, {"_id": key, **transfer.to_document()})

    async def transfer(self, transfer_id: str) -> list[dict[str, Any]]:
        """Every SKU's part of a transfer, by SKU (the read side, any instance)."""
        shards = [f"transfer {transfer_id} {partition}" for partition in range(MAX_PARTITIONS)]
        skus = {
            sku
            for doc in (await find_by_ids(self.places, shards)).values()
            for sku in doc["members"]
        }
        found = await self.wal.read(TRANSFERS, [transfer_key(sku, transfer_id) for sku in skus])
        return sorted(
            ({k: v for k, v in doc.items() if k != "_id"} for doc in found.values()),
            key=lambda doc: doc["sku"],
        )

    # The read side.

    async def levels_of_sku(self, sku: str) -> list[dict[str, Any]]:
        found = await self.wal.read(LEVELS, await self._level_ids("sku", sku), _PUBLIC)
        return sorted(found.values(), key=lambda doc: doc["location"])

    async def levels_at(self, location: str) -> list[dict[str, Any]]:
        found = await self.wal.read(LEVELS, await self._level_ids("location", location), _PUBLIC)
        return sorted(found.values(), key=lambda doc: doc["sku"])

    async def lot_levels(self, sku: str, lot_code: str) -> list[dict[str, Any]]:
        """Each location's stock of one lot of a SKU."""
        return [
            {"location": doc["location"], **lot}
            for doc in await self.levels_of_sku(sku)
            for lot in doc.get("lots", [])
            if lot.get("code") == lot_code
        ]

    async def lot_movements(self, sku: str, lot_code: str) -> list[dict[str, Any]]:
        """Every movement of one lot, in the order things happened."""
        found = await self.wal.read_list(self.ledger, ledger_key(sku, lot_code))
        docs = {doc["_id"]: doc for doc in found}
        # Stored times keep milliseconds: movements of one millisecond stay in the order
        # they were applied (the list's order; the sort is stable), not by their ids.
        return sorted(docs.values(), key=lambda doc: doc["at"])

    async def expiring_lots(self, until: date, location: str | None = None) -> list[dict[str, Any]]:
        """Lots with stock on hand that expire on or before `until`, soonest first."""
        # Each level keeps the expiry of its first lot on hand (`next_expiry`), so the query
        # needs no $unwind (FerretDB v1's drops the other fields).
        query: dict[str, Any] = {"next_expiry": {"$ne": None, "$lte": until.isoformat()}}
        if location:
            query["location"] = location
        # The documents answer for what is written out; levels still in the write-ahead
        # log are taken from there, so the answer covers every committed batch. The log
        # first: an entry is deleted only once its documents are written, so a level the
        # log no longer holds is found by the query that follows.
        pending = await self.wal.pending(LEVELS)
        written = [doc async for doc in self.levels.find(query, _PUBLIC)]
        levels = overlay(written, pending)
        rows = [
            {
                "sku": doc["sku"],
                "location": doc["location"],
                "lot_code": lot["code"],
                "expires_on": lot["expires_on"],
                "on_hand": lot["on_hand"],
            }
            for doc in levels
            if (location is None or doc.get("location") == location)
            and doc.get("next_expiry")
            and doc["next_expiry"] <= until.isoformat()
            for lot in doc.get("lots", [])
            if lot.get("expires_on")
            and lot["expires_on"] <= until.isoformat()
            and lot.get("on_hand", 0) > 0
        ]
        return sorted(rows, key=lambda row: (row["expires_on"], row["sku"], row["location"]))

    async def low_levels(self, location: str | None = None) -> list[dict[str, Any]]:
        """Levels whose on-hand is below their reorder point, by SKU then location (written
        documents first, then the log's pending ones, as for expiring lots)."""
        query: dict[str, Any] = {"low": True}
        if location:
            query["location"] = location
        pending = await self.wal.pending(LEVELS)
        written = [doc async for doc in self.levels.find(query, _PUBLIC)]
        rows = [
            doc
            for doc in overlay(written, pending)
            if doc.get("low") and (location is None or doc.get("location") == location)
        ]
        return sorted(rows, key=lambda doc: (doc["sku"], doc["location"]))


# What the read side shows of a level (not the bookkeeping of levels written before the
# write-ahead log: `outbox`, `streams`, `recent`).
_PUBLIC = {"outbox": 0, "streams": 0, "recent": 0}


def _stored(doc: dict[str, Any]) -> StoredLevel:
    return StoredLevel(
        level=Level.from_document(doc),
        version=doc.get("version", 0),
        # Events a level written before the log kept to send: sent with its next change.
        outbox=[encode_event(decode(e["value"].encode())) for e in doc.get("outbox", [])],
    )
