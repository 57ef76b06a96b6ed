"""What the recall service hears about its recalls: one function per consumed event.

Events of recalls this service does not know (another system's, or a test's) are ignored:
there is nothing to follow. Every write is an upsert keyed by the fact's natural key, so a
redelivered batch or a fact reported twice changes nothing.
"""

from __future__ import annotations

import structlog

from lotline.events import (
    FlagReason,
    ItemReturned,
    ReturnReason,
    SaleFlagged,
    StockQuarantined,
    UnitsRecalled,
)
from lotline.recall.domain import (
    CustomerContact,
    FlaggedSale,
    MatchedBy,
    QuarantinedStock,
    ReturnedUnits,
    UnitsChunk,
    attribute,
    awaits_units_answer,
    first_by_key,
    latest_by_key,
)
from lotline.recall.store import RecallStore
from lotline.runtime.consumer import BatchResult, Delivery

log = structlog.get_logger(__name__)


async def on_stock_quarantined(store: RecallStore, deliveries: list[Delivery]) -> None:
    """Stock reports the units now held per location and lot: the latest total wins."""
    known = await store.recalls_by_id(d.data.recall_id for d in deliveries)
    lines = []
    for delivery in deliveries:
        data: StockQuarantined = delivery.data
        if data.recall_id not in known:
            _ignore(delivery, data.recall_id)
            continue
        lines.append(
            QuarantinedStock.from_event(
                data, stream=delivery.stream, offset=delivery.offset, at=delivery.event.time
            )
        )
    await store.record_quarantine(latest_by_key(lines))


async def on_units_recalled(store: RecallStore, deliveries: list[Delivery]) -> None:
    """The serial registry's answer, chunk by chunk: counts, unknown serials, sold units."""
    known = await store.recalls_by_id(d.data.recall_id for d in deliveries)
    chunks: list[UnitsChunk] = []
    contacts: list[CustomerContact] = []
    for delivery in deliveries:
        data: UnitsRecalled = delivery.data
        if data.recall_id not in known:
            _ignore(delivery, data.recall_id)
            continue
        chunks.append(UnitsChunk.from_event(data))
        contacts.extend(CustomerContact.from_sold_unit(data.recall_id, u) for u in data.sold_units)
    # Contacts first: a chunk recorded means its sold units are there too.
    await store.record_contacts(latest_by_key(contacts))
    await store.record_chunks(latest_by_key(chunks))


async def on_sale_flagged(store: RecallStore, deliveries: list[Delivery]) -> None:
    """Sales of recalled units after the recall (reason `recalled`); other flags are not ours."""
    recalled = [d for d in deliveries if d.data.reason is FlagReason.RECALLED]
    known = await store.recalls_by_id(d.data.recall_id for d in recalled if d.data.recall_id)
    of_sku = await store.recalls_by_sku(d.data.sku for d in recalled if not d.data.recall_id)
    flagged: list[FlaggedSale] = []
    for delivery in recalled:
        data: SaleFlagged = delivery.data
        if data.recall_id is not None:
            if data.recall_id not in known:
                _ignore(delivery, data.recall_id)
                continue
            matches = [(known[data.recall_id], MatchedBy.RECALL_ID)]
        else:
            matches = attribute(
                of_sku.get(data.sku, []), lot_code=data.lot_code, serial=data.serial
            )
            if not matches:
                _ignore(delivery, None)
        flagged.extend(
            FlaggedSale.from_event(recall.recall_id, data, how, delivery.event.source)
            for recall, how in matches
        )
    await store.record_flagged(first_by_key(flagged))


async def on_item_returned(store: RecallStore, deliveries: list[Delivery]) -> BatchResult:
    """Units brought back because of a recall, attributed to the recall(s) covering them.

    A serial returned without its lot, while a lot recall of its SKU still waits for the
    serial registry's answer, is deferred (retried with backoff): the answer may name it.
    """
    result = BatchResult()
    returned = [d for d in deliveries if d.data.reason is ReturnReason.RECALL]
    of_sku = await store.recalls_by_sku(d.data.sku for d in returned)
    recall_ids = [recall.recall_id for recalls in of_sku.values() for recall in recalls]
    sold = await store.sold_serials(recall_ids, (d.data.serial for d in returned if d.data.serial))
    answered = await store.complete_answers(recall_ids)
    returns: list[ReturnedUnits] = []
    for delivery in returned:
        data: ItemReturned = delivery.data
        recalls = of_sku.get(data.sku, [])
        matches = attribute(recalls, lot_code=data.lot_code, serial=data.serial, sold_serials=sold)
        if not matches:
            if awaits_units_answer(
                recalls, lot_code=data.lot_code, serial=data.serial, answered=answered
            ):
                result.defer(
                    delivery,
                    f"serial {data.serial} may be in a lot recall of {data.sku}"
                    " whose units the serial registry has not reported yet",
                )
            else:
                _ignore(delivery, None)
        returns.extend(
            ReturnedUnits.from_event(recall.recall_id, data, how, delivery.event.time)
            for recall, how in matches
        )
    await store.record_returns(first_by_key(returns))
    return result


def _ignore(delivery: Delivery, recall_id: str | None) -> None:
    log.info(
        "event_of_no_known_recall",
        topic=delivery.topic,
        offset=delivery.offset,
        sku=delivery.data.sku,
        recall_id=recall_id,
    )
