"""One handler per event the serial registry consumes: decode -> domain -> store -> publish.

Effectively once, without transactions:
- a unit is written whole, only if its `version` is still the one read (a redelivery, or a
  concurrent consumer, is then seen on the next read); every event leaves a history entry
  with its event id and business key (sale#line, return#line, receipt, recall), so the same
  event, or the same fact re-sent under a new id, is recognised and not applied twice;
- new units are inserted with a unique `_id`; a recall flags by `$addToSet` of its id, guarded
  by `recall_ids: {$ne: id}`; products by revision;
- derived events get ids from the business key, and the ids sent are remembered in
  `serials.published`, so a redelivery resends only what was never sent.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime
from uuid import UUID

import structlog

from lotline.events import (
    BatchRecalled,
    ClaimRefusal,
    EventData,
    FlagReason,
    ItemReceived,
    ItemReturned,
    ItemSold,
    ReceiptRejected,
    RejectReason,
    SaleFlagged,
    StockAdjusted,
    StockCounted,
    StockDisposed,
    TransferReceived,
    TransferShipped,
    UnitsRecalled,
    WarrantyClaimed,
    WarrantyClaimRefused,
    encode,
)
from lotline.runtime.consumer import BatchResult, Deferred, Delivery
from lotline.serials.domain import (
    SOURCE,
    Claim,
    Flag,
    HistoryEntry,
    Outcome,
    RecallScope,
    ReceivedUnits,
    Unit,
    adjust_unit,
    adopt,
    claim,
    claim_refused_event_id,
    clip,
    counted_found,
    counted_missing,
    dispose_unit,
    flag_event_id,
    recall_answer_key,
    recall_entry,
    recall_scope,
    recall_unit,
    recalled_while_selling,
    receipt_key,
    receipt_problem,
    receipt_units,
    receive_unit,
    rejection_event_id,
    return_unit,
    sale_without_serial,
    sell,
    ship_unit,
    sold_under_recall,
    take_claim,
    unit_id,
    units_recalled,
    units_recalled_event_id,
)
from lotline.serials.store import SerialStore, UnitChange

log = structlog.get_logger(__name__)

# How many duplicate serials a rejection's detail names (the `serials` field lists them all).
DETAIL_SERIALS = 5


@dataclass(frozen=True)
class Derived:
    """An event to publish, with the id that makes a resend a duplicate."""

    data: EventData
    id: UUID
    time: datetime


Decide = Callable[[Unit | None, Delivery], Outcome]
# What one event of the store's operations does to one of the serials it names.
DecideSerial = Callable[[Unit | None, Delivery, str], Outcome]


@dataclass
class SerialHandlers:
    store: SerialStore

    # ------------------------------------------------------------------------ products

    async def on_products_registered(self, deliveries: list[Delivery]) -> None:
        await self.store.save_products([delivery.data for delivery in deliveries])

    # ------------------------------------------------------------------------ receipts

    async def on_items_received(self, deliveries: list[Delivery]) -> BatchResult:
        result = BatchResult()
        products = await self.store.products_of(d.data.sku for d in deliveries)
        outgoing: list[Derived] = []
        to_register: list[Delivery] = []
        for delivery in deliveries:
            receipt: ItemReceived = delivery.data
            broken = receipt.rule_broken()
            if broken is not None:
                # A rule the schema cannot state: booked nowhere (stock does not book it
                # either), and this registry answers for the contract, product or not.
                reason, rule = broken
                detail = f"receipt {receipt.receipt_id} was not booked: {rule}"
                outgoing.append(_rejection(delivery, reason, detail, [], whole=True))
                continue
            product = products.get(receipt.sku)
            if product is None:
                # Only a receipt with serials is this registry's business; the product may be
                # registered a moment later (another topic), so wait for it.
                if receipt.serials:
                    result.defer(delivery, f"product {receipt.sku!r} is not registered (yet)")
                continue
            problem = receipt_problem(receipt, product)
            if problem is not None:
                outgoing.append(
                    _rejection(delivery, problem.reason, problem.detail, receipt.serials or [])
                )
            elif product.serialized:
                to_register.append(delivery)
        if to_register:
            outgoing.extend(await self._register(to_register))
            # The lots a count of a location reads its units from (store.unit_ids_at).
            for sku in {d.data.sku for d in to_register}:
                lots = [d.data.lot.code for d in to_register if d.data.sku == sku and d.data.lot]
                await self.store.add_lots(sku, lots)
        await self.publish(outgoing)
        return result

    async def _register(self, deliveries: list[Delivery]) -> list[Derived]:
        """Register the batch's receipts together: one look at which were registered before,
        and all their new units, lot journal entries and the receipts registered staged on
        the batch's unit of work; only the units some receipt found already registered are
        read and settled one receipt at a time."""
        skus = {d.data.sku for d in deliveries}
        scopes = await self.store.recall_scopes(skus)
        keys = [receipt_key(d.data) for d in deliveries]
        registered = await self.store.registered_receipts(keys)
        # Each new receipt's units; a serial an earlier receipt of this batch claims is
        # settled against that receipt's unit, as if it had been registered before.
        units_of: dict[int, ReceivedUnits] = {}
        claimed: dict[str, int] = {}
        clashing: dict[int, list[str]] = {}
        first_of: dict[str, int] = {}
        for index, (delivery, key) in enumerate(zip(deliveries, keys, strict=True)):
            if key in registered or first_of.setdefault(key, index) != index:
                continue
            receipt: ItemReceived = delivery.data
            at = receipt.received_at or delivery.event.time
            units = receipt_units(receipt, delivery.event.dedupe_key, at, scopes[receipt.sku])
            ids = [unit_id(receipt.sku, serial) for serial in units.serials]
            mine = [claimed.setdefault(uid, index) == index for uid in ids]
            units_of[index] = units.only(s for s, ok in zip(units.serials, mine, strict=True) if ok)
            clashing[index] = [uid for uid, ok in zip(ids, mine, strict=True) if not ok]
        existing = set(await self.store.register_units(list(units_of.values())))
        outgoing: list[Derived] = []
        now_registered: list[tuple[str, str, str, list[str]]] = []
        for index, delivery in enumerate(deliveries):
            receipt = delivery.data
            key = keys[index]
            if index in units_of:
                units = units_of[index]
                taken = [
                    uid
                    for uid in (unit_id(receipt.sku, serial) for serial in units.serials)
                    if uid in existing
                ]
                found = taken + clashing[index]
                duplicates: list[str] = []
                if found:
                    at = receipt.received_at or delivery.event.time
                    settled = await self._settle_existing(
                        receipt, delivery.event.dedupe_key, at, found, scopes[receipt.sku]
                    )
                    duplicates = [unit.serial for unit in settled]
                now_registered.append((receipt.sku, key, delivery.event.dedupe_key, duplicates))
                registered[key] = duplicates
                new = len(units) - len(taken)
            else:
                duplicates, new = registered.get(key, []), 0
            if duplicates:
                known = await self.store.units_by_id(
                    unit_id(receipt.sku, serial) for serial in duplicates[:DETAIL_SERIALS]
                )
                outgoing.append(_duplicates_rejection(delivery, duplicates, known))
            log.debug(
                "receipt_registered",
                sku=receipt.sku,
                receipt_id=receipt.receipt_id,
                serials=len(receipt.serials or ()),
                new=new,
                duplicates=len(duplicates),
            )
        self.store.receipts_registered(now_registered, datetime.now(UTC))
        # A recall saved while the units were being registered did not see them: flag them now.
        # (The recall handler saves its scope before it flags, so one of the two sees both.)
        # Read from the database: memory holds what the first read found, and a recall saved
        # meanwhile was saved by another writer (see _recalls_missed), never through it.
        later = await self.store.recall_scopes(skus, stored=True)
        for sku in skus:
            for scope in later[sku]:
                if scope in scopes[sku]:
                    continue
                if any(_receipt_in_scope(d.data, scope) for d in deliveries if d.data.sku == sku):
                    await self._flag_recalled(sku, scope, recall_entry(scope))
        return outgoing

    async def _settle_existing(
        self,
        receipt: ItemReceived,
        event_id: str,
        at: datetime,
        ids: list[str],
        scopes: Sequence[RecallScope],
    ) -> list[Unit]:
        """Units a receipt found already registered: its own (a redelivery) stay as they are,
        those first seen in a sale or return are adopted, the others are duplicates."""
        current = await self.store.units_by_id(ids)
        duplicates: list[Unit] = []
        adoptions: list[UnitChange] = []
        for unit in current.values():
            match claim(unit, receipt, event_id):
                case Claim.DUPLICATE:
                    duplicates.append(unit)
                case Claim.ADOPT:
                    adoptions.append(UnitChange(unit, adopt(unit, receipt, event_id, at, scopes)))
                case Claim.OWN:
                    pass
        await self.store.apply_changes(adoptions)
        return sorted(duplicates, key=lambda u: u.serial)

    async def on_receipts_given_up(self, deferred: list[Deferred]) -> None:
        outgoing = []
        for item in deferred:
            receipt: ItemReceived = item.delivery.data
            serials = receipt.serials or []
            outgoing.append(
                _rejection(
                    item.delivery,
                    RejectReason.UNKNOWN_SKU,
                    f"{receipt.sku} is not a registered product; the {len(serials)} serials of "
                    f"receipt {receipt.receipt_id} were not registered",
                    serials,
                )
            )
        await self.publish(outgoing)

    # --------------------------------------------------------------------------- sales

    async def on_items_sold(self, deliveries: list[Delivery]) -> BatchResult:
        started = time.perf_counter()
        result = BatchResult()
        products = await self.store.products_of(d.data.sku for d in deliveries)
        flagged: list[tuple[Delivery, Flag, str | None]] = []
        to_sell: list[Delivery] = []
        for delivery in deliveries:
            sale: ItemSold = delivery.data
            product = products.get(sale.sku)
            if product is None:
                if sale.serial is not None:
                    result.defer(delivery, f"product {sale.sku!r} is not registered (yet)")
                continue
            if not product.serialized:
                continue  # quantities and lots are stock's business
            if sale.serial is None:
                flagged.append((delivery, sale_without_serial(sale), sale.lot_code))
            else:
                to_sell.append(delivery)

        scopes, mark = await self.store.recall_scopes_marked(d.data.sku for d in to_sell)

        def decide(unit: Unit | None, delivery: Delivery) -> Outcome:
            sale: ItemSold = delivery.data
            return sell(unit, sale, delivery.event.dedupe_key, scopes[sale.sku])

        outcomes = await self._apply_to_units(to_sell, decide)
        for delivery, outcome in outcomes:
            flagged.extend((delivery, flag, outcome.unit.lot_code) for flag in outcome.flags)
        flagged.extend(await self._recalls_missed(outcomes, scopes, mark))
        await self.publish([_sale_flag(d, flag, lot_code) for d, flag, lot_code in flagged])
        log.info(
            "sales_applied",
            sales=len(deliveries),
            units=len(to_sell),
            flags=len(flagged),
            deferred=len(result.deferred),
            seconds=round(time.perf_counter() - started, 3),
        )
        return result

    async def _recalls_missed(
        self,
        outcomes: list[tuple[Delivery, Outcome]],
        seen: dict[str, list[RecallScope]],
        mark: str | None,
    ) -> list[tuple[Delivery, Flag, str | None]]:
        """A SKU's events normally have one writer, but not always: after a rebalance the
        instance that lost the partitions may still be applying its batch (one that outlasted
        max.poll.interval: a million-unit recall is one), so a recall can be saved by another
        instance between this batch reading the recall scopes and writing its sales, and
        answered from units that did not show these sales yet. A recall saves its scope before
        it reads any unit, so reading the scopes again after the write finds every such recall,
        provided that read goes to the database (by _id, one lookup per SKU): memory holds only
        what the first read found. The sales of the units it covers are flagged now (at worst
        a customer is named twice, never missed). Whether any recall was saved at all since
        the first look is one lookup (`recalls_mark`, changed by every save after its scope):
        a batch of sales of 300 SKUs looked each one up again, a fifth of the registry's time
        at a steady 1,000 lines a second."""
        applied = [(d, o) for d, o in outcomes if o.changed]
        if not applied or await self.store.recalls_mark() == mark:
            return []
        now = await self.store.recall_scopes((d.data.sku for d, _ in applied), stored=True)
        new = {sku: [s for s in scopes if s not in seen[sku]] for sku, scopes in now.items()}
        missed: list[tuple[Delivery, Flag, str | None]] = []
        changes: list[UnitChange] = []
        for delivery, outcome in applied:
            sale: ItemSold = delivery.data
            if not new[sale.sku]:
                continue
            late = recalled_while_selling(
                outcome.unit, sale, delivery.event.dedupe_key, new[sale.sku]
            )
            if late is not None:
                changes.append(UnitChange(outcome.unit, late.unit))
                missed.extend((delivery, flag, outcome.unit.lot_code) for flag in late.flags)
        await self.store.apply_changes(changes)
        return missed

    async def on_sales_given_up(self, deferred: list[Deferred]) -> None:
        outgoing = []
        for item in deferred:
            sale: ItemSold = item.delivery.data
            flag = Flag(
                FlagReason.UNKNOWN_SKU,
                f"{sale.sku} is not a registered product; serial {sale.serial} was sold in sale "
                f"{sale.sale_id} line {sale.line} but is not recorded",
            )
            outgoing.append(_sale_flag(item.delivery, flag, sale.lot_code))
        await self.publish(outgoing)

    # ------------------------------------------------------------------------- returns

    async def on_items_returned(self, deliveries: list[Delivery]) -> BatchResult:
        result = BatchResult()
        products = await self.store.products_of(d.data.sku for d in deliveries)
        to_return: list[Delivery] = []
        for delivery in deliveries:
            ret: ItemReturned = delivery.data
            product = products.get(ret.sku)
            if product is None:
                if ret.serial is not None:
                    result.defer(delivery, f"product {ret.sku!r} is not registered (yet)")
                continue
            if not product.serialized:
                continue
            if ret.serial is None:
                # Which unit came back is unknown; stock books the quantity.
                log.warning("return_without_serial", sku=ret.sku, return_id=ret.return_id)
                continue
            to_return.append(delivery)

        scopes = await self.store.recall_scopes(d.data.sku for d in to_return)

        def decide(unit: Unit | None, delivery: Delivery) -> Outcome:
            ret: ItemReturned = delivery.data
            at = ret.returned_at or delivery.event.time
            return return_unit(unit, ret, delivery.event.dedupe_key, at, scopes[ret.sku])

        await self._apply_to_units(to_return, decide)
        return result

    # ------------------------------------------------------------------------- recalls

    async def on_batches_recalled(self, deliveries: list[Delivery]) -> None:
        for delivery in deliveries:
            await self.publish(await self._recall(delivery))

    async def _recall(self, delivery: Delivery) -> list[Derived]:
        recall: BatchRecalled = delivery.data
        started = time.perf_counter()
        scope = recall_scope(recall, delivery.event.dedupe_key)
        # Scope first, flags second: a receipt racing with this recall sees one or the other.
        await self.store.save_recall_scope(recall.sku, scope)
        flagged, unknown = await self._flag_recalled(
            recall.sku, scope, recall_entry(scope, recall.classification.value)
        )
        flagged_in = time.perf_counter() - started
        key = recall_answer_key(recall)
        chunks = await self.store.recall_answer(key)
        if chunks is None:
            found = await self.store.recalled_units(recall.sku, scope)
            answer = units_recalled(recall, found.counts, unknown, found.sold)
            chunks = [chunk.model_dump(mode="json") for chunk in answer]
            await self.store.save_recall_answer(key, chunks)
        answers = [UnitsRecalled.model_validate(data) for data in chunks]
        late_flags = await self._flag_sold_under_recall(recall.sku, scope, answers)
        log.info(
            "recall_applied",
            sku=recall.sku,
            recall_id=recall.recall_id,
            flagged_now=flagged,
            chunks=len(chunks),
            sales_flagged=len(late_flags),
            flag_seconds=round(flagged_in, 3),
            seconds=round(time.perf_counter() - started, 3),
        )
        return [
            *(
                Derived(answer, units_recalled_event_id(key, answer.chunk), delivery.event.time)
                for answer in answers
            ),
            *(
                _unit_sale_flag(unit, flag, delivery.event.time)
                for unit, flags in late_flags
                for flag in flags
            ),
        ]

    async def _flag_sold_under_recall(
        self, sku: str, scope: RecallScope, answers: Sequence[UnitsRecalled]
    ) -> list[tuple[Unit, tuple[Flag, ...]]]:
        """The sales this recall's answer names that were made once it was issued: a sale
        applied before its recall gets the flag it would have got after (sold_under_recall).
        Taken from the answer, so a redelivered recall finds them again and resends their
        flags (the ids make that harmless); few, so each unit is read by _id."""
        late = [
            unit_id(sku, sold.serial)
            for answer in answers
            for sold in answer.sold_units
            if sold.sold_at is not None and sold.sold_at >= scope.issued_at
        ]
        if not late:
            return []
        flagged: list[tuple[Unit, tuple[Flag, ...]]] = []
        changes: list[UnitChange] = []
        for unit in (await self.store.units_by_id(late)).values():
            outcome = sold_under_recall(unit, scope)
            if outcome is None:
                continue
            if outcome.changed:
                changes.append(UnitChange(unit, outcome.unit))
            flagged.append((outcome.unit, outcome.flags))
        await self.store.apply_changes(changes)
        return flagged

    # ------------------------------------------------------------------ warranty claims

    async def on_warranty_claims(self, deliveries: list[Delivery]) -> BatchResult:
        """Each claim in order, its units read afresh (two claims of a batch may share a
        replacement unit: the second must see it sold). Claims are few, units read by _id."""
        result = BatchResult()
        products = await self.store.products_of(d.data.sku for d in deliveries)
        outgoing: list[Derived] = []
        to_take: list[Delivery] = []
        for delivery in deliveries:
            claim_: WarrantyClaimed = delivery.data
            product = products.get(claim_.sku)
            broken = claim_.rule_broken()
            if broken is not None:
                outgoing.append(_claim_refusal(delivery, *broken))
            elif product is None:
                result.defer(delivery, f"product {claim_.sku!r} is not registered (yet)")
            elif not product.serialized:
                outgoing.append(
                    _claim_refusal(
                        delivery,
                        ClaimRefusal.UNKNOWN_SERIAL,
                        f"{claim_.sku} is tracked by {product.tracking.value}, not by serial: "
                        f"claim {claim_.claim_id} names no unit this registry knows",
                    )
                )
            else:
                to_take.append(delivery)
        scopes = await self.store.recall_scopes(d.data.sku for d in to_take)
        for delivery in to_take:
            claim_ = delivery.data
            claimed = unit_id(claim_.sku, claim_.serial)
            other = (
                unit_id(claim_.sku, claim_.replacement_serial)
                if claim_.replacement_serial
                else None
            )
            units = await self.store.units_by_id([claimed, *([other] if other else [])])
            outcome = take_claim(
                units.get(claimed),
                units.get(other) if other else None,
                claim_,
                delivery.event.dedupe_key,
                products[claim_.sku].warranty_months,
                scopes[claim_.sku],
            )
            if outcome.refusal is not None:
                outgoing.append(
                    _claim_refusal(
                        delivery, outcome.refusal, outcome.detail, outcome.warranty.ends_on
                    )
                )
            await self.store.apply_changes([UnitChange(a, b) for a, b in outcome.changes])
            log.info(
                "warranty_claim",
                sku=claim_.sku,
                claim_id=claim_.claim_id,
                kind=claim_.kind.value,
                refused=outcome.refusal.value if outcome.refusal else None,
                applied_before=not outcome.changed,
            )
        await self.publish(outgoing)
        return result

    async def on_warranty_claims_given_up(self, deferred: list[Deferred]) -> None:
        await self.publish(
            _claim_refusal(
                item.delivery,
                ClaimRefusal.UNKNOWN_SKU,
                f"{item.delivery.data.sku} is not a registered product; claim "
                f"{item.delivery.data.claim_id} was not taken",
            )
            for item in deferred
        )

    # ----------------------------------------------------------------------- transfers

    async def on_transfers_shipped(self, deliveries: list[Delivery]) -> BatchResult:
        """Each unit shipped is in transit to the destination, a history entry added."""

        def decide(unit: Unit | None, delivery: Delivery, serial: str) -> Outcome:
            return ship_unit(unit, delivery.data, serial, delivery.event.dedupe_key)

        return await self._move_units(deliveries, decide)

    async def on_transfers_received(self, deliveries: list[Delivery]) -> BatchResult:
        """Each unit received is in stock at the destination; one not shipped in the transfer
        says so in its history, and one shipped and not received stays in transit."""
        scopes = await self.store.recall_scopes(d.data.sku for d in deliveries)

        def decide(unit: Unit | None, delivery: Delivery, serial: str) -> Outcome:
            event: TransferReceived = delivery.data
            return receive_unit(unit, event, serial, delivery.event.dedupe_key, scopes[event.sku])

        return await self._move_units(deliveries, decide)

    async def _move_units(
        self,
        deliveries: list[Delivery],
        decide: Callable[[Unit | None, Delivery, str], Outcome],
    ) -> BatchResult:
        """A transfer's serial units, event by event (one names many units), read once and
        redecided if a unit believed new was created meanwhile, like `_apply_to_units`."""
        result = BatchResult()
        products = await self.store.products_of(d.data.sku for d in deliveries)
        moving: list[Delivery] = []
        for delivery in deliveries:
            event: TransferShipped | TransferReceived = delivery.data
            product = products.get(event.sku)
            if product is None:
                if event.serials:
                    result.defer(delivery, f"product {event.sku!r} is not registered (yet)")
            elif product.serialized and event.serials:
                moving.append(delivery)
        await self._apply_to_serials(moving, decide)
        return result

    # ------------------------------------------------------------ the store's operations

    async def on_stock_counted(self, deliveries: list[Delivery]) -> BatchResult:
        """A count of a serial item lists every unit found: the registry's units on the shelf
        there that it does not list are missing, and a listed one the registry had elsewhere
        (or missing, or not at all) is in stock there, as stock now has it on hand. Each
        count in order, its location's units read afresh (counts are few)."""
        result, to_count = await self._serialized(deliveries, "count")
        scopes = await self.store.recall_scopes(d.data.sku for d in to_count)
        for delivery in to_count:
            count: StockCounted = delivery.data
            assert count.serials is not None
            event_id, recalls = delivery.event.dedupe_key, scopes[count.sku]
            listed = {unit_id(count.sku, serial): serial for serial in count.serials}
            named = {lot.lot_code for lot in count.lots if lot.lot_code is not None}
            here = await self.store.unit_ids_at(count.sku, count.location, named)
            units = await self.store.units_by_id([*here, *listed])
            changes: list[UnitChange] = []
            for uid in here:
                unit = units.get(uid)
                if unit is None or uid in listed:
                    continue
                missing = counted_missing(unit, count, event_id, recalls)
                if missing is not None and missing.changed:
                    changes.append(UnitChange(unit, missing.unit))
            for uid, serial in listed.items():
                before = units.get(uid)
                found = counted_found(before, count, serial, event_id, recalls)
                if found is not None and found.changed:
                    changes.append(UnitChange(before, found.unit))
            await self.store.apply_changes(changes)
            log.info(
                "count_applied",
                sku=count.sku,
                count_id=count.count_id,
                location=count.location,
                found=len(listed),
                changed=len(changes),
            )
        return result

    async def on_stock_adjusted(self, deliveries: list[Delivery]) -> BatchResult:
        """Units written off leave stock (`written_off`, with the reason); units found are
        in stock at the adjustment's location again."""
        result, to_adjust = await self._serialized(deliveries, "adjustment")
        scopes = await self.store.recall_scopes(d.data.sku for d in to_adjust)

        def decide(unit: Unit | None, delivery: Delivery, serial: str) -> Outcome:
            adjustment: StockAdjusted = delivery.data
            return adjust_unit(
                unit, adjustment, serial, delivery.event.dedupe_key, scopes[adjustment.sku]
            )

        await self._apply_to_serials(to_adjust, decide)
        return result

    async def on_stock_disposed(self, deliveries: list[Delivery]) -> BatchResult:
        """Units disposed of are destroyed or returned to the supplier, with the reference."""
        result, to_dispose = await self._serialized(deliveries, "disposal")
        scopes = await self.store.recall_scopes(d.data.sku for d in to_dispose)

        def decide(unit: Unit | None, delivery: Delivery, serial: str) -> Outcome:
            disposal: StockDisposed = delivery.data
            return dispose_unit(
                unit, disposal, serial, delivery.event.dedupe_key, scopes[disposal.sku]
            )

        await self._apply_to_serials(to_dispose, decide)
        return result

    async def _serialized(
        self, deliveries: list[Delivery], what: str
    ) -> tuple[BatchResult, list[Delivery]]:
        """The store operations this registry applies: of serial items, naming their serials.
        One of a product not registered yet waits for it (another topic); one of a serial
        item that names no serials cannot say which units: stock books it, the registry logs
        it (the two then differ until a count with serials settles it)."""
        result = BatchResult()
        products = await self.store.products_of(d.data.sku for d in deliveries)
        ours: list[Delivery] = []
        for delivery in deliveries:
            data = delivery.data
            product = products.get(data.sku)
            if product is None:
                if data.serials is not None:
                    result.defer(delivery, f"product {data.sku!r} is not registered (yet)")
            elif not product.serialized:
                continue  # quantities and lots are stock's business
            elif data.serials is None:
                log.warning(f"{what}_without_serials", sku=data.sku, location=data.location)
            else:
                ours.append(delivery)
        return result, ours

    async def _apply_to_serials(self, deliveries: list[Delivery], decide: DecideSerial) -> None:
        """As `_apply_to_units`, for events that name several serials each."""
        pairs = [(d, serial) for d in deliveries for serial in d.data.serials]
        if not pairs:
            return
        ids = [unit_id(d.data.sku, serial) for d, serial in pairs]
        current: dict[str, Unit | None] = dict(await self.store.units_by_id(ids))
        changes: list[UnitChange] = []
        for (delivery, serial), uid in zip(pairs, ids, strict=True):
            before = current.get(uid)
            outcome = decide(before, delivery, serial)
            if outcome.changed:
                changes.append(UnitChange(before, outcome.unit))
                current[uid] = outcome.unit
        await self.store.apply_changes(changes)

    # ---------------------------------------------------------------------------- shared

    async def _flag_recalled(
        self, sku: str, scope: RecallScope, entry: HistoryEntry
    ) -> tuple[int, list[str]]:
        """Flag the units a recall names by serial; returns how many were flagged now and the
        named serials not in the registry. The units of its lots are not written: the saved
        scope is what recalls them (`as_recalled`), at once, however many they are."""
        named = await self.store.units_by_id(unit_id(sku, serial) for serial in scope.serials)
        changes = [
            UnitChange(unit, after)
            for unit in named.values()
            if (after := recall_unit(unit, scope, entry)) is not None
        ]
        await self.store.apply_changes(changes)
        known = {unit.serial for unit in named.values()}
        return len(changes), sorted(scope.serials - known)

    async def _apply_to_units(
        self, deliveries: list[Delivery], decide: Decide
    ) -> list[tuple[Delivery, Outcome]]:
        """Read the batch's units once, decide each event in order, stage the changes on the
        batch's unit of work (what was applied before is recognised by the unit's history)."""
        if not deliveries:
            return []
        ids = [unit_id(d.data.sku, d.data.serial) for d in deliveries]
        current: dict[str, Unit | None] = dict(await self.store.units_by_id(ids))
        outcomes: list[tuple[Delivery, Outcome]] = []
        changes: list[UnitChange] = []
        for delivery, uid in zip(deliveries, ids, strict=True):
            before = current.get(uid)
            outcome = decide(before, delivery)
            outcomes.append((delivery, outcome))
            if outcome.changed:
                changes.append(UnitChange(before, outcome.unit))
                current[uid] = outcome.unit
        await self.store.apply_changes(changes)
        return outcomes

    async def publish(self, derived: Iterable[Derived]) -> None:
        """Log the events with the batch, then send them. Their ids derive from their
        causes, so a resend (a redelivered batch, a restored log) is a duplicate that
        consumers drop."""
        unique = {str(item.id): item for item in derived}
        self.store.publish(
            [
                encode(item.data, source=SOURCE, id=item.id, time=item.time)
                for item in unique.values()
            ]
        )


def _receipt_in_scope(receipt: ItemReceived, scope: RecallScope) -> bool:
    if receipt.lot is not None and receipt.lot.code in scope.lot_codes:
        return True
    return not scope.serials.isdisjoint(receipt.serials or ())


def _rejection(
    delivery: Delivery, reason: RejectReason, detail: str, serials: list[str], whole: bool = False
) -> Derived:
    """The units not booked are the serials named, or all of the receipt's when it lists
    none; stock takes them off its on-hand, from the receipt's lot. `whole`: the receipt
    line as a whole (each lot and set of serials of a receipt is its own rejection)."""
    receipt: ItemReceived = delivery.data
    keyed_by = [receipt.fact_key] if whole else serials
    return Derived(
        ReceiptRejected(
            sku=receipt.sku,
            receipt_id=receipt.receipt_id,
            location=receipt.location,
            reason=reason,
            detail=clip(detail),
            serials=serials,
            quantity=len(serials) or receipt.quantity,
            lot_code=receipt.lot.code if receipt.lot else None,
        ),
        rejection_event_id(receipt.sku, receipt.receipt_id, reason, keyed_by),
        delivery.event.time,
    )


def _duplicates_rejection(
    delivery: Delivery, duplicates: list[str], known: dict[str, Unit]
) -> Derived:
    receipt: ItemReceived = delivery.data

    def where(serial: str) -> str:
        unit = known.get(unit_id(receipt.sku, serial))
        if unit is None:
            return serial
        return f"{serial} (receipt {unit.receipt_id}, {unit.status.value} at {unit.location})"

    named = ", ".join(where(serial) for serial in duplicates[:DETAIL_SERIALS])
    more = (
        f" and {len(duplicates) - DETAIL_SERIALS} more" if len(duplicates) > DETAIL_SERIALS else ""
    )
    detail = (
        f"{len(duplicates)} of the {receipt.quantity} serials of receipt {receipt.receipt_id} "
        f"are already registered for {receipt.sku} and were not booked again: {named}{more}"
    )
    return _rejection(delivery, RejectReason.DUPLICATE_SERIAL, detail, duplicates)


def _unit_sale_flag(unit: Unit, flag: Flag, at: datetime) -> Derived:
    """A flag on a unit's recorded sale, raised by a later event (a recall): the same event,
    by id, as the sale's own flag would have been."""
    assert unit.sale_id is not None
    assert unit.line is not None
    return Derived(
        SaleFlagged(
            sku=unit.sku,
            sale_id=unit.sale_id,
            line=unit.line,
            location=unit.location,
            reason=flag.reason,
            detail=clip(flag.detail),
            quantity=1,
            serial=unit.serial,
            lot_code=unit.lot_code,
            recall_id=flag.recall_id,
            customer_ref=unit.customer_ref,
            sold_at=unit.sold_at,
        ),
        flag_event_id(unit.sku, unit.sale_id, unit.line, flag.reason),
        at,
    )


def _sale_flag(delivery: Delivery, flag: Flag, lot_code: str | None) -> Derived:
    sale: ItemSold = delivery.data
    return Derived(
        SaleFlagged(
            sku=sale.sku,
            sale_id=sale.sale_id,
            line=sale.line,
            location=sale.location,
            reason=flag.reason,
            detail=clip(flag.detail),
            quantity=sale.quantity,
            serial=sale.serial,
            lot_code=lot_code,
            recall_id=flag.recall_id,
            customer_ref=sale.customer_ref,
            sold_at=sale.sold_at,
        ),
        flag_event_id(sale.sku, sale.sale_id, sale.line, flag.reason),
        delivery.event.time,
    )


def _claim_refusal(
    delivery: Delivery, reason: ClaimRefusal, detail: str, ends_on: date | None = None
) -> Derived:
    claim: WarrantyClaimed = delivery.data
    return Derived(
        WarrantyClaimRefused(
            sku=claim.sku,
            claim_id=claim.claim_id,
            serial=claim.serial,
            location=claim.location,
            kind=claim.kind,
            reason=reason,
            detail=clip(detail),
            replacement_serial=claim.replacement_serial,
            warranty_ends_on=ends_on,
        ),
        claim_refused_event_id(claim.sku, claim.claim_id),
        delivery.event.time,
    )
