"""The one place that knows Lotline's Kafka topics, their settings and message keys."""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum


class EventType(StrEnum):
    """Every event Lotline exchanges; each is also the name of its topic."""

    PRODUCT_REGISTERED = "product-registered"
    ITEM_RECEIVED = "item-received"
    ITEM_SOLD = "item-sold"
    ITEM_RETURNED = "item-returned"
    BATCH_RECALLED = "batch-recalled"
    STOCK_QUARANTINED = "stock-quarantined"
    UNITS_RECALLED = "units-recalled"
    SALE_FLAGGED = "sale-flagged"
    RECEIPT_REJECTED = "receipt-rejected"
    LOT_EXPIRING = "lot-expiring"
    # A store's own operations: counts, adjustments, disposals, reorder points (store-ops).
    STOCK_COUNTED = "stock-counted"
    STOCK_ADJUSTED = "stock-adjusted"
    STOCK_DISPOSED = "stock-disposed"
    REORDER_POINT_SET = "reorder-point-set"
    STOCK_LOW = "stock-low"

    @property
    def topic(self) -> str:
        return self.value

    @property
    def dlq_topic(self) -> str:
        return dlq_topic(self.value)


DLQ_SUFFIX = ".dlq"

# Which service consumes which event: the source of the consumer groups and of the
# dead-letter topics the stack creates (a `.dlq` for each consumed topic).
CONSUMED_BY: dict[str, tuple[EventType, ...]] = {
    # The catalog learns that a SKU has stock (its tracking mode is then frozen).
    "catalog": (EventType.ITEM_RECEIVED,),
    "stock": (
        EventType.PRODUCT_REGISTERED,
        EventType.ITEM_RECEIVED,
        EventType.ITEM_SOLD,
        EventType.ITEM_RETURNED,
        EventType.BATCH_RECALLED,
        # Serial units the registry refused come off stock's on-hand: the two agree.
        EventType.RECEIPT_REJECTED,
        # What the store's staff did to the shelf, and the reorder points they set.
        EventType.REORDER_POINT_SET,
        EventType.STOCK_COUNTED,
        EventType.STOCK_ADJUSTED,
        EventType.STOCK_DISPOSED,
    ),
    "serial-registry": (
        EventType.PRODUCT_REGISTERED,
        EventType.ITEM_RECEIVED,
        EventType.ITEM_SOLD,
        EventType.ITEM_RETURNED,
        EventType.BATCH_RECALLED,
    ),
    "recall": (
        EventType.STOCK_QUARANTINED,
        EventType.UNITS_RECALLED,
        EventType.SALE_FLAGGED,
        EventType.ITEM_RETURNED,
    ),
}


# Who publishes which event (the services, and the POS and receiving systems outside).
PUBLISHED_BY: dict[str, tuple[EventType, ...]] = {
    "catalog": (EventType.PRODUCT_REGISTERED,),
    # lot-expiring has no consumer in Lotline yet: it is for stores' markdown and waste tools.
    # stock-low is for the stores' replenishment tools, like lot-expiring.
    "stock": (
        EventType.STOCK_QUARANTINED,
        EventType.SALE_FLAGGED,
        EventType.LOT_EXPIRING,
        EventType.STOCK_LOW,
    ),
    "serial-registry": (
        EventType.UNITS_RECALLED,
        EventType.SALE_FLAGGED,
        EventType.RECEIPT_REJECTED,
    ),
    "recall": (EventType.BATCH_RECALLED,),
    "pos": (EventType.ITEM_SOLD, EventType.ITEM_RETURNED),
    "receiving": (EventType.ITEM_RECEIVED,),
    # The stock room's handhelds and the store manager's tools: a login of their own, so a
    # till (many, on the shop floor) cannot write stock off, and a handheld cannot sell.
    "store-ops": (
        EventType.STOCK_COUNTED,
        EventType.STOCK_ADJUSTED,
        EventType.STOCK_DISPOSED,
        EventType.REORDER_POINT_SET,
    ),
}


def dlq_topic(topic: str) -> str:
    return f"{topic}{DLQ_SUFFIX}"


def consumer_group(service: str) -> str:
    """Every instance of a service joins the same group, so Kafka splits the work."""
    return f"lotline-{service}"


@dataclass(frozen=True)
class TopicSpec:
    name: str
    partitions: int
    config: dict[str, str] = field(default_factory=dict)


def topic_specs(partitions: int = 6) -> list[TopicSpec]:
    """Every topic the project creates: one per event, plus a DLQ per consumed topic."""
    specs: list[TopicSpec] = []
    for event in EventType:
        config: dict[str, str] = {}
        if event is EventType.PRODUCT_REGISTERED:
            # The latest registration of each SKU is the product: keep it forever.
            config = {"cleanup.policy": "compact", "min.compaction.lag.ms": "0"}
        specs.append(TopicSpec(event.topic, partitions, config))
    consumed = sorted({event.topic for events in CONSUMED_BY.values() for event in events})
    specs.extend(TopicSpec(dlq_topic(topic), partitions) for topic in consumed)
    return specs


def message_key(sku: str) -> bytes:
    """Every event of one SKU carries the SKU as key, so it stays ordered on one partition."""
    return sku.encode()
