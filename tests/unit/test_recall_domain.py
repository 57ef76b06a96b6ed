"""The recall service's rules: issuing, attribution, dedup by natural key, chunks, progress."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime

from lotline.events import Classification, SaleFlagged, StockQuarantined, UnitsRecalled, UnitStatus
from lotline.recall.domain import (
    CustomerContact,
    FlaggedSale,
    MatchedBy,
    Progress,
    QuarantinedStock,
    Recall,
    RecallRequest,
    RecallState,
    ReturnedUnits,
    UnitsAnswer,
    UnitsChunk,
    attribute,
    awaits_units_answer,
    first_by_key,
    latest_by_key,
    lots_matching_nothing,
)

NOW = datetime(2026, 11, 22, 9, 30, tzinfo=UTC)


def request(**overrides: object) -> RecallRequest:
    fields: dict[str, object] = {
        "sku": "YOG-1",
        "lot_codes": ("L.1", "L.2"),
        "serials": (),
        "reason": "listeria",
        "classification": Classification.I,
        "issued_by": "ana",
    }
    fields.update(overrides)
    return RecallRequest(**fields)  # type: ignore[arg-type]


def recall(recall_id: str = "RC-1", **overrides: object) -> Recall:
    issued = Recall.issue(recall_id, request(), NOW)
    return replace(issued, **overrides)  # type: ignore[arg-type]


# --- issuing ---------------------------------------------------------------------------------


def test_the_same_request_has_the_same_fingerprint_whoever_sends_it_in_any_order() -> None:
    first = request()
    again = request(lot_codes=("L.2", "L.1", "L.1"), issued_by="bo")
    assert first.fingerprint() == again.fingerprint()
    assert first.fingerprint() != request(lot_codes=("L.1",)).fingerprint()
    assert first.fingerprint() != request(recall_id="RC-9").fingerprint()


def test_a_request_lists_how_it_differs_from_the_recall_issued() -> None:
    issued = recall()
    assert request(lot_codes=("L.2", "L.1")).differences(issued) == []
    assert request(lot_codes=("L.1",), classification=Classification.II).differences(issued) == [
        "lot_codes",
        "classification",
    ]


def test_issuing_drops_repeated_lots_and_the_broadcast_carries_the_recall() -> None:
    issued = Recall.issue("RC-1", request(lot_codes=("L.1", "L.1", "L.2")), NOW)
    event = issued.batch_recalled()
    assert event.lot_codes == ["L.1", "L.2"]
    assert (event.recall_id, event.sku, event.issued_by, event.issued_at) == (
        "RC-1",
        "YOG-1",
        "ana",
        NOW,
    )
    assert issued.state is RecallState.OPEN
    assert issued.event_id == Recall.issue("RC-1", request(), NOW).event_id
    assert issued.event_id != Recall.issue("RC-2", request(), NOW).event_id


# --- attribution -----------------------------------------------------------------------------


def test_a_unit_is_covered_by_serial_by_lot_or_as_a_sold_unit() -> None:
    by_serial = recall(serials=("SN-1",), lot_codes=())
    assert by_serial.covers(lot_code=None, serial="SN-1") is MatchedBy.SERIAL
    assert recall().covers(lot_code="L.2", serial=None) is MatchedBy.LOT
    assert recall().covers(lot_code=None, serial="SN-7", sold_serials={"SN-7"}) is (
        MatchedBy.SOLD_UNIT
    )
    assert recall().covers(lot_code="L.3", serial="SN-8") is None


def test_open_recalls_win_over_closed_ones() -> None:
    old = recall("RC-OLD", state=RecallState.CLOSED)
    new = recall("RC-NEW")
    assert attribute([old, new], lot_code="L.1", serial=None) == [(new, MatchedBy.LOT)]


def test_a_closed_recall_still_gets_its_units_when_no_open_one_covers_them() -> None:
    old = recall("RC-OLD", state=RecallState.CLOSED)
    other = recall("RC-OTHER", lot_codes=("L.9",))
    assert attribute([old, other], lot_code="L.1", serial=None) == [(old, MatchedBy.LOT)]


def test_every_open_recall_covering_the_unit_gets_it() -> None:
    lots = recall("RC-A")
    units = recall("RC-B", lot_codes=(), serials=("SN-1",))
    assert attribute([lots, units], lot_code="L.1", serial="SN-1") == [
        (lots, MatchedBy.LOT),
        (units, MatchedBy.SERIAL),
    ]


def test_a_serial_without_lot_is_matched_through_the_recall_sold_units() -> None:
    lots = recall("RC-A")
    found = attribute([lots], lot_code=None, serial="SN-5", sold_serials={"RC-A": {"SN-5"}})
    assert found == [(lots, MatchedBy.SOLD_UNIT)]
    assert attribute([lots], lot_code=None, serial="SN-6", sold_serials={"RC-A": {"SN-5"}}) == []


def test_a_unit_without_lot_or_serial_goes_to_the_only_open_recall_of_its_sku() -> None:
    only = recall("RC-A")
    closed = recall("RC-B", state=RecallState.CLOSED)
    assert attribute([only, closed], lot_code=None, serial=None) == [(only, MatchedBy.SKU)]
    assert attribute([only, recall("RC-C")], lot_code=None, serial=None) == []
    assert attribute([], lot_code=None, serial=None) == []


def test_an_unmatched_serial_waits_only_for_an_unanswered_open_lot_recall() -> None:
    lots = recall("RC-A")
    kw = {"lot_code": None, "serial": "SN-1"}
    assert awaits_units_answer([lots], answered=set(), **kw) is True  # type: ignore[arg-type]
    assert awaits_units_answer([lots], answered={"RC-A"}, **kw) is False  # type: ignore[arg-type]
    closed = recall("RC-A", state=RecallState.CLOSED)
    assert awaits_units_answer([closed], answered=set(), **kw) is False  # type: ignore[arg-type]
    assert awaits_units_answer([lots], lot_code="L.7", serial="SN-1", answered=set()) is False


# --- natural keys and dedup ------------------------------------------------------------------


def quarantined(location: str, lot: str | None, quantity: int, offset: int) -> QuarantinedStock:
    data = StockQuarantined(
        sku="YOG-1", recall_id="RC-1", location=location, lot_code=lot, quantity=quantity
    )
    return QuarantinedStock.from_event(data, stream="stock-quarantined:2", offset=offset, at=NOW)


def test_the_latest_quarantine_total_per_location_and_lot_wins() -> None:
    lines = [
        quarantined("S1", "L.1", 5, 10),
        quarantined("S1", "L.2", 2, 11),
        quarantined("S1", "L.1", 7, 12),
        quarantined("S2", "L.1", 3, 13),
    ]
    kept = latest_by_key(lines)
    assert [(q.location, q.lot_code, q.quantity) for q in kept] == [
        ("S1", "L.2", 2),
        ("S1", "L.1", 7),
        ("S2", "L.1", 3),
    ]
    assert Progress.of(quarantine=lines).quarantined_units == 12


def test_keys_keep_lot_codes_with_dots_apart_from_absent_lots() -> None:
    assert quarantined("S1", "L.1", 1, 1).key == "RC-1 S1 L.1"
    assert quarantined("S1", None, 1, 1).key == "RC-1 S1 "


def flag(sale_id: str, line: int, quantity: int = 1, source: str = "lotline/stock") -> FlaggedSale:
    data = SaleFlagged(
        sku="YOG-1",
        sale_id=sale_id,
        line=line,
        location="S1",
        reason="recalled",
        detail="lot L.1 is recalled",
        quantity=quantity,
        lot_code="L.1",
    )
    return FlaggedSale.from_event("RC-1", data, MatchedBy.LOT, source)


def test_a_sale_line_flagged_twice_counts_once() -> None:
    flags = [
        flag("S-1", 1, 2),
        flag("S-1", 1, 2, source="lotline/serial-registry"),
        flag("S-1", 2, 1),
        flag("S-2", 1, 3),
    ]
    kept = first_by_key(flags)
    assert [(f.sale_id, f.line, f.flagged_by) for f in kept] == [
        ("S-1", 1, "lotline/stock"),
        ("S-1", 2, "lotline/stock"),
        ("S-2", 1, "lotline/stock"),
    ]
    progress = Progress.of(flagged=flags)
    assert (progress.sales_after_recall, progress.units_sold_after_recall) == (3, 6)


def returned(return_id: str, line: int, quantity: int) -> ReturnedUnits:
    return ReturnedUnits("RC-1", return_id, line, "S1", quantity, MatchedBy.LOT, lot_code="L.1")


def test_returns_count_units_once_per_return_line() -> None:
    returns = [returned("R-1", 1, 2), returned("R-1", 1, 2), returned("R-1", 2, 1)]
    assert Progress.of(returns=returns).units_returned == 3


def test_customers_to_contact_are_one_per_serial() -> None:
    contacts = [
        CustomerContact("RC-1", "SN-1", sale_id="S-1"),
        CustomerContact("RC-1", "SN-1", sale_id="S-1"),
        CustomerContact("RC-1", "SN-2", sale_id="S-2"),
    ]
    assert Progress.of(contacts=contacts).units_to_contact == 2


# --- the serial registry's answer, in chunks ------------------------------------------------


def chunk(
    number: int, of: int, sold: int, in_stock: int, unknown: tuple[str, ...] = ()
) -> UnitsChunk:
    data = UnitsRecalled(
        sku="YOG-1",
        recall_id="RC-1",
        chunk=number,
        chunks=of,
        counts={UnitStatus.SOLD: sold, UnitStatus.IN_STOCK: in_stock},
        unknown_serials=list(unknown),
    )
    return UnitsChunk.from_event(data)


def test_the_answer_is_complete_when_every_chunk_arrived_and_sums_them_once() -> None:
    first, second, third = chunk(1, 3, 2, 5, ("X1",)), chunk(2, 3, 1, 0), chunk(3, 3, 0, 4, ("X2",))
    partial = UnitsAnswer.of([first, third, first])
    assert partial.complete is False
    assert partial.chunks_received == (1, 3)
    assert partial.counts == {"sold": 2, "in_stock": 9}
    whole = UnitsAnswer.of([third, first, second, second])
    assert whole.complete is True
    assert (whole.chunks_expected, whole.chunks_received) == (3, (1, 2, 3))
    assert whole.counts == {"sold": 3, "in_stock": 9}
    assert whole.unknown_serials == ("X1", "X2")


def test_no_answer_yet_is_not_complete() -> None:
    nothing = UnitsAnswer.of([])
    assert (nothing.complete, nothing.chunks_expected, nothing.counts) == (False, None, {})


def test_progress_puts_every_figure_together() -> None:
    progress = Progress.of(
        quarantine=[quarantined("S1", "L.1", 4, 1), quarantined("S2", "L.2", 6, 2)],
        chunks=[chunk(1, 1, 2, 10)],
        contacts=[CustomerContact("RC-1", "SN-1"), CustomerContact("RC-1", "SN-2")],
        returns=[returned("R-1", 1, 1)],
        flagged=[flag("S-9", 1)],
    )
    assert (
        progress.quarantined_units,
        progress.units_to_contact,
        progress.units_returned,
        progress.sales_after_recall,
        progress.units.complete,
    ) == (10, 2, 1, 1, True)


def test_a_recalled_lot_nothing_was_reported_of_is_shown_as_matching_nothing_yet() -> None:
    lots = ("L1", "L2", "L3")
    assert lots_matching_nothing(lots) == lots
    assert lots_matching_nothing(
        lots,
        quarantine=[quarantined("S1", "L1", 0, 1)],  # a store holding none of it still matched
        contacts=[CustomerContact("RC-1", "IMEI-1", lot_code="L3")],
    ) == ("L2",)
