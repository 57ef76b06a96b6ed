"""The catalog database: products with their pending publication, and which SKUs have stock.

`products`: one document per SKU (`_id` = sku). A change and its pending
`product-registered` are one document write (`unpublished_revision`), so a crash after
saving never loses the event; the outbox (`flush`, run by the runtime's relay) clears the
field once the revision is on the topic.

`stock_receipts`: the first receipt of each SKU (`_id` = sku), learned from `item-received`
through the unit of work (`lotline.runtime.consumer`): the consumer stages a SKU's first
receipt on the write-ahead log, and it is read through the log (`WriteAheadLog.read`), so a
receipt is known on every instance once its batch is committed, before it is written out.
It is kept apart from `products` on purpose, and written only by its SKU's partition owner:
FerretDB v1 applies an update as read-modify-write of the whole document without isolation,
so two concurrent writers of one document can undo each other (even on different fields).
For the same reason the writers of one product in this process take turns (`writing(sku)`).

`gtins`: which product each GTIN belongs to (`_id` = the GTIN), claimed by an insert before
a product is saved with it and released after the product no longer has it, so two products
never share one (a unique index on `products.gtin` would not be served by FerretDB, and an
insert is atomic everywhere). A claim whose product does not have the GTIN (a change that
stopped between its two writes) is released by the next product that asks for the GTIN.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterable, Sequence
from contextlib import asynccontextmanager, suppress
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import structlog
from pymongo import ASCENDING, ReturnDocument
from pymongo.asynchronous.collection import AsyncCollection
from pymongo.asynchronous.database import AsyncDatabase
from pymongo.errors import BulkWriteError, DuplicateKeyError

from lotline.catalog.domain import SOURCE, Change, Product, ProductDetails
from lotline.events import Tracking, encode
from lotline.runtime.wal import Publishes, WriteAheadLog

DUPLICATE_KEY = 11000
# Enough to outlast any interleaving of writers; each round publishes a newer revision.
PUBLISH_ROUNDS = 20
# A claim younger than this may be a change still on its way to saving its product.
CLAIM_SETTLE = timedelta(seconds=60)

log = structlog.get_logger(__name__)


def now() -> datetime:
    """The time as MongoDB keeps it (milliseconds), so what is saved equals what is returned."""
    moment = datetime.now(UTC)
    return moment.replace(microsecond=moment.microsecond // 1000 * 1000)


@dataclass(frozen=True)
class FirstReceipt:
    sku: str
    receipt_id: str
    location: str
    received_at: datetime


@dataclass(frozen=True)
class ProductRecord:
    """A stored product, where its publication stands, and whether stock of it exists."""

    product: Product
    first_receipt_id: str | None
    unpublished_revision: int | None
    created_at: datetime | None
    updated_at: datetime | None

    @property
    def sku(self) -> str:
        return self.product.sku

    @property
    def has_receipts(self) -> bool:
        return self.first_receipt_id is not None

    @classmethod
    def from_document(cls, doc: dict[str, Any], first_receipt_id: str | None) -> ProductRecord:
        details = ProductDetails(
            name=doc["name"],
            tracking=Tracking(doc["tracking"]),
            gtin=doc.get("gtin"),
            shelf_life_days=doc.get("shelf_life_days"),
            warranty_months=doc.get("warranty_months"),
        )
        return cls(
            product=Product(doc["_id"], details, doc["revision"]),
            first_receipt_id=first_receipt_id,
            unpublished_revision=doc.get("unpublished_revision"),
            created_at=doc.get("created_at"),
            updated_at=doc.get("updated_at"),
        )


class WriterLocks:
    """One writer at a time per key in this process (the database cannot guarantee it)."""

    def __init__(self) -> None:
        self._locks: dict[str, tuple[asyncio.Lock, int]] = {}

    @asynccontextmanager
    async def hold(self, key: str) -> AsyncIterator[None]:
        lock, users = self._locks.get(key, (asyncio.Lock(), 0))
        self._locks[key] = (lock, users + 1)
        try:
            async with lock:
                yield
        finally:
            lock, users = self._locks[key]
            if users == 1:
                del self._locks[key]
            else:
                self._locks[key] = (lock, users - 1)


RECEIPTS = "stock_receipts"


class ProductStore:
    def __init__(self, db: AsyncDatabase[dict[str, Any]], wal: WriteAheadLog) -> None:
        self.products: AsyncCollection[dict[str, Any]] = db["products"]
        self.wal = wal
        self.gtins: AsyncCollection[dict[str, Any]] = db["gtins"]
        self._writers = WriterLocks()

    async def create_indexes(self) -> None:
        await self.products.create_index([("tracking", ASCENDING), ("_id", ASCENDING)])
        await self.products.create_index("pending_since", sparse=True)
        await self.claim_existing_gtins()

    async def claim_existing_gtins(self) -> None:
        """Claims for products saved before GTINs were claimed (idempotent; where two such
        products share a GTIN, the first one in SKU order keeps it)."""
        cursor = self.products.find({"gtin": {"$ne": None}}, {"gtin": 1}).sort("_id", ASCENDING)
        docs = [{"_id": doc["gtin"], "sku": doc["_id"], "at": now()} async for doc in cursor]
        if not docs:
            return
        try:
            await self.gtins.insert_many(docs, ordered=False)
        except BulkWriteError as exc:
            if any(e.get("code") != DUPLICATE_KEY for e in exc.details.get("writeErrors", [])):
                raise

    async def claim_gtin(self, gtin: str, sku: str) -> str | None:
        """Claim the GTIN for `sku`; the other product that has it, if one does."""
        holder: str | None = None
        for _ in range(3):
            with suppress(DuplicateKeyError):
                await self.gtins.insert_one({"_id": gtin, "sku": sku, "at": now()})
                return None
            claim = await self.gtins.find_one({"_id": gtin})
            if claim is None:
                continue  # released meanwhile: claim it again
            holder = str(claim["sku"])
            if holder == sku:
                return None
            product = await self.products.find_one({"_id": holder}, {"gtin": 1})
            has_it = product is not None and product.get("gtin") == gtin
            if has_it or claim.get("at", now()) > now() - CLAIM_SETTLE:
                return holder
            await self.release_gtin(gtin, holder)  # a change that never finished: stale
        return holder

    async def release_gtin(self, gtin: str, sku: str) -> None:
        await self.gtins.delete_one({"_id": gtin, "sku": sku})

    def writing(self, sku: str) -> Any:
        """Hold while reading-deciding-writing a product, or publishing it."""
        return self._writers.hold(sku)

    async def load(self, sku: str) -> ProductRecord | None:
        doc = await self.products.find_one({"_id": sku})
        if doc is None:
            return None
        return ProductRecord.from_document(doc, await self.first_receipt(sku))

    async def first_receipt(self, sku: str) -> str | None:
        return (await self._first_receipts([sku])).get(sku)

    async def save(self, change: Change) -> ProductRecord | None:
        """Save a revision with its pending event; None if the product moved on meanwhile."""
        product = change.product
        details = product.details
        moment = now()
        fields: dict[str, Any] = {
            "sku": product.sku,
            "name": details.name,
            "tracking": details.tracking.value,
            "gtin": details.gtin,
            "shelf_life_days": details.shelf_life_days,
            "warranty_months": details.warranty_months,
            "revision": product.revision,
            "updated_at": moment,
            "unpublished_revision": product.revision,
            "pending_since": moment,
        }
        if change.previous_revision is None:
            try:
                await self.products.insert_one({"_id": product.sku, **fields, "created_at": moment})
            except DuplicateKeyError:
                return None  # registered by someone else between our read and this write
            return await self.load(product.sku)
        doc = await self.products.find_one_and_update(
            {"_id": product.sku, "revision": change.previous_revision},
            {"$set": fields},
            return_document=ReturnDocument.AFTER,
        )
        if doc is None:
            return None
        return ProductRecord.from_document(doc, await self.first_receipt(product.sku))

    async def mark_published(self, sku: str, revision: int) -> bool:
        """Clear the pending event, unless a newer revision was saved since it was sent."""
        result = await self.products.update_one(
            {"_id": sku, "revision": revision, "unpublished_revision": revision},
            {
                "$unset": {"unpublished_revision": "", "pending_since": ""},
                "$set": {"published_revision": revision, "published_at": now()},
            },
        )
        return result.modified_count == 1

    # --- the outbox (`lotline.runtime.outbox.SavedEvents`) ------------------------------------

    async def waiting(self, older_than: timedelta, limit: int = 500) -> list[str]:
        """SKUs whose latest revision has waited longer than `older_than` to be published."""
        cursor = self.products.find(
            {"pending_since": {"$lte": now() - older_than}}, {"_id": 1}
        ).limit(limit)
        return [doc["_id"] async for doc in cursor]

    async def flush(self, sku: str, publisher: Publishes) -> bool:
        """Publish the product's latest revision if pending; True once it is on the topic.

        The topic is compacted, so its last record per SKU must be the latest revision. Two
        writers may publish out of order (A sends revision 2 after B sent 3); A then finds it
        cannot mark 2 published, sees 3 and sends 3 again (same event id, so consumers drop
        the copy) — the last record is 3 again.
        """
        async with self.writing(sku):
            sent = 0
            for _ in range(PUBLISH_ROUNDS):
                record = await self.load(sku)
                if record is None:
                    return False
                product = record.product
                if record.unpublished_revision is None and (sent == 0 or product.revision <= sent):
                    return True  # published, and nothing we sent can be the stale last record
                message = encode(product.registered(), source=SOURCE, id=product.event_id)
                await publisher.send([message])
                sent = product.revision
                if await self.mark_published(sku, product.revision):
                    return True
        log.warning("product_publish_unsettled", sku=sku, rounds=PUBLISH_ROUNDS)
        return False

    async def list(
        self, *, tracking: Tracking | None, after: str | None, limit: int
    ) -> list[ProductRecord]:
        query: dict[str, Any] = {}
        if tracking is not None:
            query["tracking"] = tracking.value
        if after is not None:
            query["_id"] = {"$gt": after}
        docs = [doc async for doc in self.products.find(query).sort("_id", ASCENDING).limit(limit)]
        receipts = await self._first_receipts(doc["_id"] for doc in docs)
        return [ProductRecord.from_document(doc, receipts.get(doc["_id"])) for doc in docs]

    async def _first_receipts(self, skus: Iterable[str]) -> dict[str, str]:
        """Each SKU's first receipt, as of every committed batch (pending ones included)."""
        found = await self.wal.read(RECEIPTS, skus, {"receipt_id": 1})
        return {sku: doc["receipt_id"] for sku, doc in found.items()}

    async def record_first_receipts(self, receipts: Sequence[FirstReceipt]) -> None:
        """Stage each SKU's first receipt in the batch's unit of work; a SKU that has one
        already (a later receipt, a redelivery) keeps it. The consumer owns the SKUs'
        partitions, so nobody else stages them meanwhile."""
        known = await self.wal.latest(RECEIPTS, [receipt.sku for receipt in receipts])
        for receipt in receipts:
            if receipt.sku in known:
                continue
            doc = {
                "receipt_id": receipt.receipt_id,
                "location": receipt.location,
                "received_at": receipt.received_at,
            }
            self.wal.stage(receipt.sku, RECEIPTS, receipt.sku, doc)
