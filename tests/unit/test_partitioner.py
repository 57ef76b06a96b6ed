"""The contract's own murmur2 (no Kafka client in the contract package) picks the partition
aiokafka's and the Java client's default partitioner pick; each outside producer's topic
has one router."""

from __future__ import annotations

from aiokafka.partitioner import DefaultPartitioner
from hypothesis import given
from hypothesis import strategies as st

from lotline.events.topics import CONSUMED_BY, PUBLISHED_BY, EventType, key_partition, router_of

# Java's Utils.murmur2 on these keys (positive part), as Kafka's own tests pin it.
JAVA = {"21": -973932308, "foobar": -790332482, "a-little-bit-long-string": -985981536}


@given(st.text(min_size=1, max_size=40), st.sampled_from([1, 3, 6, 12, 64]))
def test_the_partition_of_a_key_is_the_default_partitioners(key: str, partitions: int) -> None:
    chosen = DefaultPartitioner()(key.encode(), list(range(partitions)), list(range(partitions)))
    assert key_partition(key, partitions) == chosen


def test_murmur2_is_javas() -> None:
    for key, hashed in JAVA.items():
        assert key_partition(key, 1 << 31) == hashed & 0x7FFFFFFF


def test_each_outside_producers_topic_has_one_router_that_consumes_it() -> None:
    outside = {p for p in PUBLISHED_BY if p not in CONSUMED_BY}
    for event in EventType:
        consumers = {s for s, events in CONSUMED_BY.items() if event in events}
        from_outside = any(event in PUBLISHED_BY[p] for p in outside)
        router = router_of(event)
        assert (router is not None) == (from_outside and bool(consumers))
        assert router is None or router in consumers
    assert router_of(EventType.ITEM_SOLD) == "stock"
    assert router_of(EventType.BATCH_RECALLED) is None  # only the recall service writes it
