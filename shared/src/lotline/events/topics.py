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
    # After-sales: a warranty claim on a sold unit, and the registry's refusal of one.
    WARRANTY_CLAIMED = "warranty-claimed"
    WARRANTY_CLAIM_REFUSED = "warranty-claim-refused"
    # Goods moved between two locations: shipped (in transit), then received (store-ops).
    TRANSFER_SHIPPED = "transfer-shipped"
    TRANSFER_RECEIVED = "transfer-received"

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
        # Both locations of a transfer's SKU are on its partition: one handler moves both.
        EventType.TRANSFER_SHIPPED,
        EventType.TRANSFER_RECEIVED,
        # A replacement's unit leaves on-hand and a faulty unit comes back, as in the
        # registry; a claim the registry refused is undone (the two agree).
        EventType.WARRANTY_CLAIMED,
        EventType.WARRANTY_CLAIM_REFUSED,
    ),
    "serial-registry": (
        EventType.PRODUCT_REGISTERED,
        EventType.ITEM_RECEIVED,
        EventType.ITEM_SOLD,
        EventType.ITEM_RETURNED,
        EventType.BATCH_RECALLED,
        EventType.WARRANTY_CLAIMED,
        # A transfer's serial units: in transit, then located at the destination.
        EventType.TRANSFER_SHIPPED,
        EventType.TRANSFER_RECEIVED,
        # The units a count missed or found, wrote off or found, and disposed of.
        EventType.STOCK_COUNTED,
        EventType.STOCK_ADJUSTED,
        EventType.STOCK_DISPOSED,
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
        # warranty-claim-refused is for the after-sales desk's tools: the claim's answer.
        EventType.WARRANTY_CLAIM_REFUSED,
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
        EventType.TRANSFER_SHIPPED,
        EventType.TRANSFER_RECEIVED,
    ),
    # The after-sales desk: it acts on units already sold, for a customer (repairs,
    # replacements, refunds). Not store-ops: a stock-room handheld must not hand a unit to a
    # customer or refund one, and the desk must not write stock off.
    "after-sales": (EventType.WARRANTY_CLAIMED,),
}


def router_of(event: EventType) -> str | None:
    """The service that moves an event an outside producer put on the wrong partition (a
    librdkafka client partitions with CRC32 unless told `murmur2_random`) to its key's
    partition: one per topic, so each misrouted event is moved once; the topic's other
    consumers skip it and apply the moved copy. Only the outside producers' topics (tills,
    the dock, the stock room, the after-sales desk) have one: Lotline's own services always
    partition by murmur2, and no service may write another service's topic. Stock routes
    every such topic it consumes; another, its first consumer by name. None: no router."""
    outside = {p for p in PUBLISHED_BY if p not in CONSUMED_BY}
    if not any(event in PUBLISHED_BY[p] for p in outside):
        return None
    consumers = sorted(service for service, events in CONSUMED_BY.items() if event in events)
    if ROUTER in consumers:
        return ROUTER
    return consumers[0] if consumers else None


ROUTER = "stock"


def key_partition(key: str, partitions: int) -> int:
    """The partition of a key, as the Java client and aiokafka's default partitioner pick
    it (murmur2 of the key's bytes, positive, modulo the partition count)."""
    return (_murmur2(message_key(key)) & 0x7FFFFFFF) % partitions


def _murmur2(data: bytes) -> int:
    """Murmur2 as org.apache.kafka.common.utils.Utils.murmur2 computes it."""
    length = len(data)
    seed, m, r = 0x9747B28C, 0x5BD1E995, 24
    h = (seed ^ length) & 0xFFFFFFFF
    for i in range(0, length - length % 4, 4):
        k = int.from_bytes(data[i : i + 4], "little")
        k = (k * m) & 0xFFFFFFFF
        k ^= k >> r
        k = (k * m) & 0xFFFFFFFF
        h = (h * m) & 0xFFFFFFFF
        h ^= k
    tail = length % 4
    if tail:
        rest = data[length - tail :]
        if tail >= 3:
            h ^= rest[2] << 16
        if tail >= 2:
            h ^= rest[1] << 8
        h ^= rest[0]
        h = (h * m) & 0xFFFFFFFF
    h ^= h >> 13
    h = (h * m) & 0xFFFFFFFF
    h ^= h >> 15
    # As a Java int: negative values keep their sign bit, which the caller masks off.
    return h - (1 << 32) if h & 0x80000000 else h


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
