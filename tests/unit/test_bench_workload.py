"""The bench's workloads: what they send adds up to the state they expect (no I/O)."""

from __future__ import annotations

from collections import Counter
from datetime import date

import pytest

from lotline.bench.kafka_io import CommitWatcher
from lotline.bench.workload import recall_workload, receipt_workload, sales_workload
from lotline.events import Tracking, encode

TODAY = date(2026, 11, 22)


def test_sales_workload_expects_received_minus_sold_at_every_level() -> None:
    workload = sales_workload("T1", lines=3_000, skus=30, locations=4, today=TODAY)
    assert len(workload.sales) == 3_000
    assert Counter(p.tracking for p in workload.products) == dict.fromkeys(Tracking, 10)
    received: Counter[tuple[str, str]] = Counter()
    for receipt in workload.receipts:
        received[(receipt.sku, receipt.location)] += receipt.quantity
    sold: Counter[tuple[str, str]] = Counter()
    for sale in workload.sales:
        sold[(sale.sku, sale.location)] += sale.quantity
    assert len(workload.levels) == 30 * 4
    for level in workload.levels:
        key = (level.sku, level.location)
        assert sum(level.on_hand.values()) == received[key] - sold[key]
        assert all(on_hand >= 0 for on_hand in level.on_hand.values())


def test_batch_sales_empty_the_earliest_lot_first() -> None:
    workload = sales_workload("T2", lines=600, skus=3, locations=1, today=TODAY)
    (batch,) = [level for level in workload.levels if level.sku.endswith("B0001")]
    assert batch.on_hand == {"EARLY": 0, "LATE": 3}
    lots = {r.lot.code: r.lot.expires_on for r in workload.receipts if r.lot and r.sku == batch.sku}
    assert lots["EARLY"] < lots["LATE"]


def test_every_serial_sold_was_received_once_and_sold_once() -> None:
    workload = sales_workload("T3", lines=900, skus=9, locations=3, today=TODAY)
    received = Counter((r.sku, serial) for r in workload.receipts for serial in (r.serials or []))
    assert all(count == 1 for count in received.values())
    sold = Counter((s.sku, s.serial) for s in workload.sales if s.serial)
    assert all(count == 1 for count in sold.values())
    assert set(sold) <= set(received)
    expected = {(u.sku, u.serial): u.sale_id for u in workload.units}
    assert set(expected) == set(received)
    assert sum(1 for sale_id in expected.values() if sale_id) == len(sold)


def test_events_are_valid_for_the_contract_and_keyed_by_run() -> None:
    workload = sales_workload("T4", lines=60, skus=6, locations=2, today=TODAY)
    for event in [*workload.products, *workload.receipts, *workload.sales]:
        assert encode(event, source="tests").key.startswith(b"BT4-")


def test_recall_workload_splits_units_evenly_and_builds_receipts_lazily() -> None:
    workload = recall_workload("T5", units=2_000, lots=10, stores=4)
    assert workload.units_per_receipt == 50
    receipts = list(workload.receipts(TODAY))
    assert len(receipts) == 40
    serials = {s for r in receipts for s in r.serials or []}
    assert len(serials) == 2_000
    assert all(workload.sample_serial(lot) in serials for lot in workload.lot_codes)
    assert {s for lot in workload.lot_codes for s in workload.sample_serials(lot)} <= serials
    body = workload.recall_request("RC-1")
    assert body["lot_codes"] == workload.lot_codes
    assert "issued_by" not in body
    with pytest.raises(ValueError, match="split evenly"):
        recall_workload("T5", units=2_001, lots=10, stores=4)


def test_receipt_workload_is_one_receipt_of_distinct_serials() -> None:
    workload = receipt_workload("T6", 1_000, TODAY)
    assert workload.receipt.quantity == 1_000
    assert len(set(workload.receipt.serials or [])) == 1_000


def test_commit_watcher_times_a_record_by_the_slowest_group() -> None:
    from aiokafka import TopicPartition

    tp = TopicPartition("item-sold", 0)
    watcher = CommitWatcher(admin=None, groups=("a", "b"), partitions=[tp])  # type: ignore[arg-type]
    watcher.history = {"a": {tp: ([1.0, 2.0], [10, 20])}, "b": {tp: ([1.5, 3.0], [5, 25])}}
    # Offset 12 is past group a's commit at t=2.0 and group b's at t=3.0.
    assert watcher.applied_at(tp, 12) == 3.0
    assert watcher.applied_at(tp, 4) == 1.5
    assert watcher.applied_at(tp, 30) is None
    assert watcher.done_at({tp: 20}, "a") == 2.0
    assert watcher.done_at({tp: 21}, "a") is None
