"""The serial registry's rules: what each event does to a unit, and what each flag means."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, date, datetime, timedelta

from lotline.events import (
    BatchRecalled,
    Classification,
    EventType,
    FlagReason,
    ItemReceived,
    ItemReturned,
    ItemSold,
    Lot,
    RejectReason,
    ReturnReason,
    SoldUnit,
    Tracking,
    UnitStatus,
)
from lotline.serials.domain import (
    HISTORY_LIMIT,
    Claim,
    HistoryEntry,
    Product,
    Unit,
    adopt,
    as_recalled,
    claim,
    clip,
    digital_link,
    flag_event_id,
    recall_answer_key,
    recall_entry,
    recall_scope,
    recall_unit,
    recalled_while_selling,
    receipt_problem,
    received_units,
    rejection_event_id,
    return_unit,
    sale_without_serial,
    sell,
    sold_under_recall,
    unit_id,
    units_recalled,
    units_recalled_event_id,
)
from lotline.serials.store import unit_doc, unit_from_doc, unit_update

NOW = datetime(2026, 11, 22, 9, 30, tzinfo=UTC)
PHONE = Product("PHONE", Tracking.SERIAL, revision=1, gtin="04006381333931")
MILK = Product("MILK", Tracking.BATCH, revision=1)


def receipt(serials: tuple[str, ...] | None = ("A", "B", "C"), **overrides: object) -> ItemReceived:
    fields: dict[str, object] = {
        "receipt_id": "R-1",
        "location": "DC-1",
        "sku": "PHONE",
        "quantity": len(serials) if serials else 3,
        "serials": list(serials) if serials is not None else None,
        "lot": Lot(code="L1", expires_on=date(2028, 1, 31)),
    }
    fields.update(overrides)
    return ItemReceived.model_validate(fields)


def sale(serial: str | None = "A", **overrides: object) -> ItemSold:
    fields: dict[str, object] = {
        "sale_id": "S-1",
        "line": 1,
        "location": "STORE-7",
        "sku": "PHONE",
        "quantity": 1,
        "serial": serial,
        "customer_ref": "CUST-42",
        "sold_at": NOW,
    }
    fields.update(overrides)
    return ItemSold.model_validate(fields)


def a_return(serial: str = "A", **overrides: object) -> ItemReturned:
    fields: dict[str, object] = {
        "return_id": "RT-1",
        "sale_id": "S-1",
        "location": "STORE-9",
        "sku": "PHONE",
        "quantity": 1,
        "serial": serial,
        "reason": "customer",
        "returned_at": NOW + timedelta(days=2),
    }
    fields.update(overrides)
    return ItemReturned.model_validate(fields)


def recall(**overrides: object) -> BatchRecalled:
    fields: dict[str, object] = {
        "recall_id": "RC-1",
        "sku": "PHONE",
        "lot_codes": ["L1"],
        "reason": "battery may overheat",
        "classification": Classification.I,
        "issued_by": "qa@lotline",
        "issued_at": NOW + timedelta(days=1),
    }
    fields.update(overrides)
    return BatchRecalled.model_validate(fields)


def in_stock(serial: str = "A") -> Unit:
    units = received_units(receipt(), "tests#r1", NOW)
    return next(unit for unit in units if unit.serial == serial)


def recalled(unit: Unit, recall_id: str = "RC-1") -> Unit:
    """What the store's recall update does to a unit, done in memory."""
    scope = recall_scope(recall(recall_id=recall_id), f"tests#{recall_id}")
    return replace(
        unit, recall_ids=(*unit.recall_ids, recall_id), recalled_at=scope.issued_at
    ).with_entry(recall_entry(scope, "I"))


# ---------------------------------------------------------------------------- receipts


def test_a_receipt_registers_each_serial_in_stock_at_its_location_with_its_lot() -> None:
    units = received_units(receipt(), "tests#r1", NOW)
    assert [(u.id, u.status, u.location, u.lot_code) for u in units] == [
        ("PHONE A", UnitStatus.IN_STOCK, "DC-1", "L1"),
        ("PHONE B", UnitStatus.IN_STOCK, "DC-1", "L1"),
        ("PHONE C", UnitStatus.IN_STOCK, "DC-1", "L1"),
    ]
    unit = units[0]
    assert unit.lot_expires_on == date(2028, 1, 31)
    assert unit.receipt_id == "R-1"
    assert unit.registered
    assert not unit.recalled
    assert [(h.type, h.event_id, h.ref, h.what) for h in unit.history] == [
        (EventType.ITEM_RECEIVED, "tests#r1", "R-1", "received at DC-1 in receipt R-1, lot L1")
    ]


def test_a_unit_received_after_its_lot_was_recalled_is_flagged_on_arrival() -> None:
    lot_recall = recall_scope(recall(), "tests#rc1")
    serial_recall = recall_scope(recall(recall_id="RC-2", lot_codes=[], serials=["B"]), "tests#rc2")
    other_lot = recall_scope(recall(recall_id="RC-3", lot_codes=["L9"]), "tests#rc3")
    units = received_units(receipt(), "tests#r1", NOW, [lot_recall, serial_recall, other_lot])
    assert [(u.serial, u.status, u.recall_ids) for u in units] == [
        ("A", UnitStatus.IN_STOCK, ("RC-1",)),
        ("B", UnitStatus.IN_STOCK, ("RC-1", "RC-2")),
        ("C", UnitStatus.IN_STOCK, ("RC-1",)),
    ]
    assert units[1].history[0].what.endswith("already under recall RC-1, RC-2")


def test_a_serial_products_receipt_without_serials_is_rejected_missing_serials() -> None:
    problem = receipt_problem(receipt(None, quantity=3), PHONE)
    assert problem is not None
    assert problem.reason is RejectReason.MISSING_SERIALS
    assert "lists no serials for its 3 units" in problem.detail


def test_serials_for_a_batch_product_are_a_tracking_mismatch() -> None:
    problem = receipt_problem(receipt(sku="MILK"), MILK)
    assert problem is not None
    assert problem.reason is RejectReason.TRACKING_MISMATCH
    assert problem.detail.startswith("MILK is tracked by batch, not by serial")


def test_a_batch_products_receipt_without_serials_is_not_this_registrys_business() -> None:
    assert receipt_problem(receipt(None, sku="MILK", quantity=12), MILK) is None
    assert receipt_problem(receipt(), PHONE) is None


def test_a_serial_found_again_is_own_adopted_or_a_duplicate() -> None:
    unit = in_stock()
    # The same receipt redelivered, or re-sent under a new event id: its own unit.
    assert claim(unit, receipt(), "tests#r1") is Claim.OWN
    assert claim(unit, receipt(), "tests#resent") is Claim.OWN
    # Another receipt naming the same serial: a duplicate, never overwritten.
    assert claim(unit, receipt(receipt_id="R-2"), "tests#r2") is Claim.DUPLICATE
    # A unit first seen in a sale (its receipt arrived late) is adopted.
    sold_first = sell(None, sale(), "tests#s1").unit
    assert claim(sold_first, receipt(receipt_id="R-2"), "tests#r2") is Claim.ADOPT


def test_a_late_receipt_gives_a_sold_unit_its_origin_but_not_its_place() -> None:
    sold_first = sell(None, sale(), "tests#s1").unit
    adopted = adopt(sold_first, receipt(), "tests#r1", NOW, [recall_scope(recall(), "t#rc")])
    assert adopted.status is UnitStatus.SOLD
    assert adopted.location == "STORE-7"
    assert (adopted.receipt_id, adopted.lot_code, adopted.registered) == ("R-1", "L1", True)
    assert adopted.recall_ids == ("RC-1",)
    assert [h.type for h in adopted.history] == [EventType.ITEM_SOLD, EventType.ITEM_RECEIVED]
    assert adopted.history[-1].what.endswith("(after it was sold)")


def test_rejection_ids_follow_the_receipt_not_the_event() -> None:
    first = rejection_event_id("PHONE", "R-1", RejectReason.DUPLICATE_SERIAL, ["B", "A"])
    again = rejection_event_id("PHONE", "R-1", RejectReason.DUPLICATE_SERIAL, ["A", "B"])
    other = rejection_event_id("PHONE", "R-1", RejectReason.DUPLICATE_SERIAL, ["A"])
    assert first == again
    assert first != other


# ------------------------------------------------------------------------------- sales


def test_selling_a_unit_in_stock_records_the_sale_without_flags() -> None:
    outcome = sell(in_stock(), sale(), "tests#s1")
    unit = outcome.unit
    assert outcome.flags == ()
    assert outcome.changed
    assert (unit.status, unit.location, unit.sale_id, unit.line) == (
        UnitStatus.SOLD,
        "STORE-7",
        "S-1",
        1,
    )
    assert (unit.customer_ref, unit.sold_at) == ("CUST-42", NOW)
    assert unit.history[-1].ref == "S-1#1"


def test_selling_a_sold_unit_is_flagged_not_in_stock_and_still_recorded() -> None:
    first = sell(in_stock(), sale(), "tests#s1").unit
    outcome = sell(first, sale(sale_id="S-2", customer_ref="CUST-7"), "tests#s2")
    assert [f.reason for f in outcome.flags] == [FlagReason.SERIAL_NOT_IN_STOCK]
    assert "already sold in sale S-1 line 1 at STORE-7" in outcome.flags[0].detail
    assert (outcome.unit.sale_id, outcome.unit.customer_ref) == ("S-2", "CUST-7")
    assert [h.ref for h in outcome.unit.history] == ["R-1", "S-1#1", "S-2#1"]


def test_selling_a_recalled_unit_is_flagged_recalled_with_the_recall() -> None:
    unit = recalled(in_stock())
    assert unit.status is UnitStatus.IN_STOCK  # a recall is not a place
    outcome = sell(unit, sale(sold_at=NOW + timedelta(days=2)), "tests#s1")
    assert [(f.reason, f.recall_id) for f in outcome.flags] == [(FlagReason.RECALLED, "RC-1")]


def test_a_sale_made_before_the_recall_but_reported_after_it_is_still_flagged() -> None:
    # The recall's answer went out without this customer: the flag is what names them.
    outcome = sell(recalled(in_stock()), sale(sold_at=NOW), "tests#s1")
    assert [(f.reason, f.recall_id) for f in outcome.flags] == [(FlagReason.RECALLED, "RC-1")]
    assert outcome.flags[0].detail == (
        "serial A of PHONE is sold before recall RC-1 was issued but reported after it: "
        "contact the customer"
    )
    assert outcome.unit.status is UnitStatus.SOLD
    assert outcome.unit.history[-1].flags == outcome.flags


def test_a_recall_covers_units_first_seen_in_a_sale() -> None:
    # Named by serial before anyone had received it, or of a recalled lot the till scanned.
    by_serial = recall_scope(recall(recall_id="RC-2", lot_codes=[], serials=["ZZ"]), "t#rc2")
    by_lot = recall_scope(recall(), "t#rc1")
    for scope, lot_code in ((by_serial, None), (by_lot, "L1")):
        outcome = sell(None, sale(serial="ZZ", lot_code=lot_code), "tests#s1", [scope])
        assert [f.reason for f in outcome.flags] == [
            FlagReason.UNKNOWN_SERIAL,
            FlagReason.RECALLED,
        ]
        assert outcome.unit.recall_ids == (scope.recall_id,)
    untouched = sell(None, sale(serial="ZZ", lot_code="L7"), "tests#s1", [by_lot])
    assert [f.reason for f in untouched.flags] == [FlagReason.UNKNOWN_SERIAL]


def test_a_recall_that_raced_the_sale_is_flagged_after_the_write() -> None:
    sold = sell(in_stock(), sale(sold_at=NOW + timedelta(days=2)), "tests#s1").unit
    assert recalled_while_selling(sold, sale(), "tests#s1") is None
    # Another consumer flagged the unit between this sale's read and its write.
    late = recalled_while_selling(recalled(sold), sale(), "tests#s1")
    assert late is not None
    assert [(f.reason, f.recall_id) for f in late.flags] == [(FlagReason.RECALLED, "RC-1")]
    assert late.unit.history[-1].ref == "S-1#1"
    # ... and only once: the entry it leaves says the sale is flagged.
    assert recalled_while_selling(late.unit, sale(), "tests#s1") is None
    # The recall's scope is enough, even before its flag reached the unit.
    scope = recall_scope(recall(), "t#rc1")
    assert recalled_while_selling(sold, sale(), "tests#s1", [scope]) is not None
    # A sale that saw the recall already carries the flag.
    flagged = sell(recalled(in_stock()), sale(), "tests#s1").unit
    assert recalled_while_selling(flagged, sale(), "tests#s1") is None


def test_a_recall_flags_a_named_unit_once() -> None:
    scope = recall_scope(recall(lot_codes=[], serials=["A"]), "tests#rc1")
    entry = recall_entry(scope, "I")
    unit = recall_unit(in_stock(), scope, entry)
    assert unit is not None
    assert (unit.recall_ids, unit.recalled_at, unit.status) == (
        ("RC-1",),
        NOW + timedelta(days=1),
        UnitStatus.IN_STOCK,
    )
    assert recall_unit(unit, scope, entry) is None


def test_a_unit_write_sets_only_what_the_event_changed() -> None:
    before = in_stock()
    after = sell(before, sale(), "tests#s1").unit
    update = unit_update(before, after)
    assert sorted(update) == ["$push", "$set"]
    assert sorted(update["$set"]) == [
        "customer_ref",
        "line",
        "location",
        "sale_id",
        "sold_at",
        "status",
    ]
    assert update["$set"]["status"] == "sold"
    assert [e["ref"] for e in update["$push"]["history"]["$each"]] == ["S-1#1"]
    flagged = recall_unit(
        after, recall_scope(recall(), "t#rc1"), recall_entry(recall_scope(recall(), "t#rc1"))
    )
    assert flagged is not None
    update = unit_update(after, flagged)
    assert update["$addToSet"] == {"recall_ids": {"$each": ["RC-1"]}}
    assert update["$set"] == {"recalled_at": NOW + timedelta(days=1), "recalled": True}
    assert unit_from_doc(unit_doc(flagged)) == flagged


def test_a_recalled_unit_sold_twice_gets_both_flags() -> None:
    unit = recalled(sell(in_stock(), sale(), "tests#s1").unit)
    outcome = sell(unit, sale(sale_id="S-2", sold_at=NOW + timedelta(days=2)), "tests#s2")
    assert [f.reason for f in outcome.flags] == [
        FlagReason.SERIAL_NOT_IN_STOCK,
        FlagReason.RECALLED,
    ]


def test_an_unknown_serial_is_flagged_and_the_sale_recorded_on_a_new_unit() -> None:
    outcome = sell(None, sale(serial="ZZ", lot_code="L1"), "tests#s1")
    assert [f.reason for f in outcome.flags] == [FlagReason.UNKNOWN_SERIAL]
    unit = outcome.unit
    assert (unit.id, unit.status, unit.registered, unit.lot_code) == (
        "PHONE ZZ",
        UnitStatus.SOLD,
        False,
        "L1",
    )


def test_the_same_sale_again_changes_nothing_and_repeats_its_flags() -> None:
    first = sell(recalled(in_stock()), sale(), "tests#s1")
    redelivered = sell(first.unit, sale(), "tests#s1")
    resent = sell(first.unit, sale(), "tests#other-id")
    for again in (redelivered, resent):
        assert not again.changed
        assert again.unit == first.unit
        assert again.flags == first.flags


def test_a_serial_items_sale_without_serial_is_an_unknown_serial() -> None:
    flag = sale_without_serial(sale(serial=None, quantity=2))
    assert flag.reason is FlagReason.UNKNOWN_SERIAL
    assert "carries no serial: 2 unit(s) left untraced" in flag.detail


def test_flag_ids_follow_the_sale_line_and_reason() -> None:
    one = flag_event_id("PHONE", "S-1", 1, FlagReason.RECALLED)
    assert one == flag_event_id("PHONE", "S-1", 1, FlagReason.RECALLED)
    assert one != flag_event_id("PHONE", "S-1", 2, FlagReason.RECALLED)
    assert one != flag_event_id("PHONE", "S-1", 1, FlagReason.SERIAL_NOT_IN_STOCK)


# ----------------------------------------------------------------------------- returns


def test_a_returned_unit_is_back_at_the_return_location() -> None:
    sold = sell(in_stock(), sale(), "tests#s1").unit
    outcome = return_unit(sold, a_return(), "tests#rt1", NOW + timedelta(days=2))
    unit = outcome.unit
    assert (unit.status, unit.location, unit.return_id, unit.return_reason) == (
        UnitStatus.RETURNED,
        "STORE-9",
        "RT-1",
        ReturnReason.CUSTOMER,
    )
    # The sale it came from stays on record.
    assert (unit.sale_id, unit.customer_ref) == ("S-1", "CUST-42")
    assert unit.history[-1].what == "returned at STORE-9 in return RT-1 (customer)"


def test_a_recall_return_keeps_the_recall_flag() -> None:
    sold = recalled(sell(in_stock(), sale(), "tests#s1").unit)
    unit = return_unit(sold, a_return(reason="recall"), "tests#rt1", NOW).unit
    assert unit.status is UnitStatus.RETURNED
    assert unit.recalled
    assert unit.recall_ids == ("RC-1",)
    assert unit.return_reason is ReturnReason.RECALL


def test_a_returned_unit_can_be_sold_again_without_flags() -> None:
    sold = sell(in_stock(), sale(), "tests#s1").unit
    back = return_unit(sold, a_return(), "tests#rt1", NOW).unit
    outcome = sell(back, sale(sale_id="S-2"), "tests#s2")
    assert outcome.flags == ()
    assert outcome.unit.status is UnitStatus.SOLD


def test_odd_returns_are_applied_and_explained() -> None:
    never_sold = return_unit(in_stock(), a_return(), "tests#rt1", NOW).unit
    assert never_sold.status is UnitStatus.RETURNED
    assert never_sold.history[-1].what.endswith("; it was in_stock, not sold")
    unknown = return_unit(None, a_return(serial="Q"), "tests#rt2", NOW).unit
    assert (unknown.status, unknown.registered) == (UnitStatus.RETURNED, False)
    again = return_unit(never_sold, a_return(), "tests#resent", NOW)
    assert not again.changed


# ----------------------------------------------------------------------------- recalls


def test_units_recalled_is_chunked_by_a_thousand_sold_units_with_totals_in_each() -> None:
    sold = [SoldUnit(serial=f"S{i:05d}", sale_id=f"SALE-{i}") for i in range(2500)]
    counts = {UnitStatus.SOLD: 2500, UnitStatus.IN_STOCK: 7000}
    chunks = units_recalled(recall(), counts, ["X2", "X1"], reversed(sold))
    assert [(c.chunk, c.chunks, len(c.sold_units)) for c in chunks] == [
        (1, 3, 1000),
        (2, 3, 1000),
        (3, 3, 500),
    ]
    for chunk in chunks:
        assert chunk.counts == {
            UnitStatus.IN_STOCK: 7000,
            UnitStatus.SOLD: 2500,
            UnitStatus.RETURNED: 0,
        }
    assert chunks[0].sold_units[0].serial == "S00000"
    assert chunks[2].sold_units[-1].serial == "S02499"
    assert [c.unknown_serials for c in chunks] == [["X1", "X2"], [], []]


def test_a_recall_with_nothing_sold_still_answers_in_one_chunk() -> None:
    chunks = units_recalled(recall(), {UnitStatus.IN_STOCK: 12}, [], [])
    assert [(c.chunk, c.chunks, c.sold_units, c.counts[UnitStatus.IN_STOCK]) for c in chunks] == [
        (1, 1, [], 12)
    ]


def test_many_unknown_serials_are_chunked_too() -> None:
    unknown = [f"U{i:04d}" for i in range(1500)]
    chunks = units_recalled(recall(), {}, unknown, [], chunk_size=1000)
    assert [len(c.unknown_serials) for c in chunks] == [1000, 500]


def test_the_same_recall_gets_the_same_answer_ids() -> None:
    key = recall_answer_key(recall(lot_codes=["L2", "L1"]))
    assert key == recall_answer_key(recall(lot_codes=["L1", "L2"]))
    assert key != recall_answer_key(recall(lot_codes=["L1"]))
    assert key != recall_answer_key(recall(lot_codes=["L1", "L2"], serials=["A"]))
    assert units_recalled_event_id(key, 1) == units_recalled_event_id(key, 1)
    assert units_recalled_event_id(key, 1) != units_recalled_event_id(key, 2)


def test_a_recall_entry_names_the_recall_and_its_class() -> None:
    entry = recall_entry(recall_scope(recall(), "tests#rc1"), "I")
    assert (entry.type, entry.ref, entry.at) == (
        EventType.BATCH_RECALLED,
        "RC-1",
        NOW + timedelta(days=1),
    )
    assert entry.what == "recalled under RC-1 (class I): battery may overheat"


# ---------------------------------------------------------------------------- the unit


def test_history_is_capped_but_keeps_how_the_unit_came_to_be_known() -> None:
    unit = in_stock()
    for i in range(HISTORY_LIMIT + 10):
        unit = unit.with_entry(HistoryEntry(EventType.ITEM_SOLD, f"e{i}", NOW, "sold", f"S{i}#1"))
    assert len(unit.history) == HISTORY_LIMIT
    assert unit.history[0].type is EventType.ITEM_RECEIVED
    assert unit.history[-1].event_id == f"e{HISTORY_LIMIT + 9}"


def test_a_received_unit_is_stored_without_its_receipt_entry_and_read_back_whole() -> None:
    unit = in_stock()
    doc = unit_doc(unit)
    assert "history" not in doc  # rebuilt from the receipt's fields
    assert "recall_ids" not in doc
    assert "sale_id" not in doc
    assert unit_from_doc(doc) == unit
    sold = sell(unit, sale(), "tests#s1").unit
    assert [e["ref"] for e in unit_doc(sold)["history"]] == ["S-1#1"]
    assert unit_from_doc(unit_doc(sold)) == sold
    # Received under a recall: the entry's words differ from the default, so they are kept.
    under = received_units(receipt(), "tests#r1", NOW, [recall_scope(recall(), "t#rc1")])[0]
    assert unit_from_doc(unit_doc(under)) == under
    # Adopted by a late receipt: the receipt entry is not the first, so it is stored.
    adopted = adopt(sell(None, sale(), "tests#s1").unit, receipt(), "tests#r1", NOW)
    assert [e["type"] for e in unit_doc(adopted)["history"]] == ["item-sold", "item-received"]
    assert unit_from_doc(unit_doc(adopted)) == adopted


def test_ids_links_and_texts() -> None:
    assert unit_id("PHONE", "A/1") == "PHONE A/1"
    assert digital_link("04006381333931", "A/1:x") == (
        "https://id.gs1.org/01/04006381333931/21/A%2F1%3Ax"
    )
    # GS1 cannot encode a space (AI 21 takes character set 82), nor a unit without a GTIN.
    assert digital_link("04006381333931", "A/1 x") is None
    assert digital_link(None, "A1") is None
    assert clip("x" * 600) == "x" * 499 + "…"
    assert clip("short") == "short"


def test_a_lot_recall_recalls_its_units_without_writing_them() -> None:
    scope = recall_scope(recall(), "tests#rc")
    other_lot = recall_scope(recall(recall_id="RC-2", lot_codes=["L9"]), "tests#rc2")
    unit = in_stock("A")
    seen = as_recalled(unit, [other_lot, scope])
    assert seen.recalled
    assert seen.recall_ids == ("RC-1",)
    assert seen.recalled_at == scope.issued_at
    assert seen.history[-1].type is EventType.BATCH_RECALLED
    assert seen.history[-1].ref == "RC-1"
    # The record itself is untouched, and applying the scopes again changes nothing.
    assert not unit.recalled
    assert as_recalled(seen, [scope]) == seen
    assert as_recalled(unit, [other_lot]) == unit


def test_a_unit_of_a_recalled_lot_sold_later_is_flagged_from_the_scope() -> None:
    scope = recall_scope(recall(), "tests#rc")
    outcome = sell(in_stock("A"), sale("A", sold_at=NOW + timedelta(days=3)), "tests#s", [scope])
    assert outcome.unit.recalled
    assert [f.reason for f in outcome.flags] == [FlagReason.RECALLED]


def test_a_sale_reported_after_its_later_return_leaves_the_unit_returned() -> None:
    # The return (two days after the sale) is applied first: sales and returns are two topics.
    back = return_unit(in_stock(), a_return(), "tests#rt1", NOW + timedelta(days=2)).unit
    outcome = sell(back, sale(), "tests#s1")
    assert (outcome.unit.status, outcome.unit.location) == (UnitStatus.RETURNED, "STORE-9")
    assert outcome.unit.sale_id == "S-1"
    assert outcome.unit.history[-1].what.endswith("so it stays returned")
    assert outcome.flags == ()


# ------------------------------------------------------- sales and recalls, in either order


def test_the_registry_applies_a_batchs_recalls_before_its_sales_as_stock_does() -> None:
    # Within a batch, topics are applied in the order they were registered: a recall and a
    # sale of its unit in one batch must be flagged by both services, whenever it was sold.
    from lotline.serials.app import service as registry
    from lotline.stock.app import service as stock

    for service in (registry, stock):
        order = list(service.consumer.topics)
        assert order.index(EventType.BATCH_RECALLED.topic) < order.index(
            EventType.ITEM_SOLD.topic
        ), (service.name, order)


def test_a_sale_of_a_recalled_unit_is_flagged_whichever_is_applied_first() -> None:
    scope = recall_scope(recall(), "tests#rc1")
    after = sale(sold_at=scope.issued_at + timedelta(hours=1))
    recall_first = sell(in_stock(), after, "tests#s1", [scope])
    sold = sell(in_stock(), after, "tests#s1")
    assert sold.flags == ()
    sale_first = sold_under_recall(sold.unit, scope)
    assert sale_first is not None
    for outcome in (recall_first, sale_first):
        assert [(f.reason, f.recall_id) for f in outcome.flags] == [(FlagReason.RECALLED, "RC-1")]
        assert outcome.flags[0].detail == (
            "serial A of PHONE is under recall RC-1: contact the customer"
        )
        unit = outcome.unit
        assert (unit.status, unit.recall_ids, unit.sale_id, unit.customer_ref) == (
            UnitStatus.SOLD,
            ("RC-1",),
            "S-1",
            "CUST-42",
        )
        assert unit.history[-1].ref == "S-1#1"
        assert unit.history[-1].flags == outcome.flags
    # Both leave the same flag event (one per sale line and reason).
    assert flag_event_id("PHONE", "S-1", 1, FlagReason.RECALLED) == flag_event_id(
        after.sku, after.sale_id, after.line, recall_first.flags[0].reason
    )


def test_a_recall_applied_after_the_sale_flags_it_once_and_only_if_sold_under_it() -> None:
    scope = recall_scope(recall(), "tests#rc1")
    # Sold before the recall was issued: the recall's answer names the customer, no flag.
    before = sell(in_stock(), sale(sold_at=scope.issued_at - timedelta(hours=1)), "tests#s1")
    assert sold_under_recall(before.unit, scope) is None
    # Not of the recalled lot, or not sold (back in the shop): nothing to flag.
    other_lot = recall_scope(recall(lot_codes=["L9"]), "tests#rc9")
    after = sell(in_stock(), sale(sold_at=scope.issued_at), "tests#s1")
    assert sold_under_recall(after.unit, other_lot) is None
    back = return_unit(after.unit, a_return(), "tests#rt1", scope.issued_at + timedelta(days=1))
    assert sold_under_recall(back.unit, scope) is None
    # Sold at the very moment it was issued counts as under it; flagged once.
    flagged = sold_under_recall(after.unit, scope)
    assert flagged is not None
    assert flagged.changed
    again = sold_under_recall(flagged.unit, scope)
    assert again is not None
    assert (again.changed, again.flags, again.unit) == (False, flagged.flags, flagged.unit)
    # A sale the sale path flagged already (it saw the recall) is not flagged twice.
    seen = sell(in_stock(), sale(sold_at=scope.issued_at), "tests#s1", [scope])
    repeat = sold_under_recall(seen.unit, scope)
    assert repeat is not None
    assert (repeat.changed, repeat.flags) == (False, seen.flags)
