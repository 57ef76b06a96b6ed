"""The warranty rule and warranty claims on serial units (lotline.serials.domain), pure."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, date, datetime

import pytest

from lotline.events import ClaimKind, ClaimRefusal, UnitStatus, WarrantyClaimed
from lotline.serials.domain import (
    RecallScope,
    Unit,
    WarrantyStatus,
    add_months,
    take_claim,
    warranty_of,
)
from lotline.serials.store import unit_doc, unit_from_doc

SOLD_AT = datetime(2026, 1, 31, 15, 0, tzinfo=UTC)
SOLD = Unit(
    sku="PHONE",
    serial="IMEI1",
    status=UnitStatus.SOLD,
    location="S1",
    lot_code="L1",
    sale_id="SALE1",
    line=1,
    customer_ref="CUST-7",
    sold_at=SOLD_AT,
)
SPARE = Unit(sku="PHONE", serial="IMEI2", status=UnitStatus.IN_STOCK, location="S1")


def _claim(kind: ClaimKind = ClaimKind.REPAIR, at: date = date(2026, 6, 1), **extra: object):
    fields: dict[str, object] = {
        "sku": "PHONE",
        "claim_id": "C1",
        "serial": "IMEI1",
        "location": "S1",
        "kind": kind,
        "claimed_at": datetime(at.year, at.month, at.day, 10, tzinfo=UTC),
    }
    if kind is ClaimKind.REPLACEMENT:
        fields["replacement_serial"] = "IMEI2"
    return WarrantyClaimed(**(fields | extra))  # type: ignore[arg-type]


def test_months_are_added_to_the_day_or_the_shorter_months_last_day() -> None:
    assert add_months(date(2026, 1, 15), 12) == date(2027, 1, 15)
    assert add_months(date(2026, 1, 31), 1) == date(2026, 2, 28)
    assert add_months(date(2027, 12, 31), 2) == date(2028, 2, 29)
    assert add_months(date(2026, 11, 30), 3) == date(2027, 2, 28)


def test_a_sold_unit_is_in_warranty_through_its_last_day_then_expired() -> None:
    last = warranty_of(SOLD, 12, date(2027, 1, 31))
    assert (last.status, last.starts_on, last.ends_on) == (
        WarrantyStatus.IN_WARRANTY,
        date(2026, 1, 31),
        date(2027, 1, 31),
    )
    assert warranty_of(SOLD, 12, date(2027, 2, 1)).status is WarrantyStatus.EXPIRED


@pytest.mark.parametrize(
    ("unit", "months"),
    [(SOLD, None), (SOLD, 0), (SPARE, 12), (replace(SOLD, status=UnitStatus.RETURNED), 12)],
)
def test_no_warranty_without_terms_or_when_not_sold(unit: Unit, months: int | None) -> None:
    warranty = warranty_of(unit, months, date(2026, 2, 1))
    assert warranty.status is WarrantyStatus.NONE
    assert warranty.ends_on is None


def test_a_repair_in_warranty_is_recorded_and_the_unit_stays_sold() -> None:
    outcome = take_claim(SOLD, None, _claim(problem="screen"), "ev1", 12)
    assert outcome.refusal is None
    ((before, after),) = outcome.changes
    assert before == SOLD
    assert after.status is UnitStatus.SOLD
    assert [(c.claim_id, c.kind, c.in_warranty) for c in after.claims] == [
        ("C1", ClaimKind.REPAIR, True)
    ]
    assert after.history[-1].ref == "C1"
    assert "in warranty until 2027-01-31" in after.history[-1].what


def test_a_replacement_links_both_units_and_carries_the_customer_and_the_warranty() -> None:
    outcome = take_claim(SOLD, SPARE, _claim(ClaimKind.REPLACEMENT), "ev1", 12)
    assert outcome.refusal is None
    (_, old), (before, new) = outcome.changes
    assert before == SPARE
    assert (old.status, old.replaced_by, old.return_id) == (UnitStatus.RETURNED, "IMEI2", "C1")
    assert (new.status, new.replaces, new.customer_ref, new.sale_id) == (
        UnitStatus.SOLD,
        "IMEI1",
        "CUST-7",
        "SALE1",
    )
    # The replacement's warranty runs from the original sale, not from the swap.
    assert warranty_of(new, 12, date(2026, 6, 1)).ends_on == date(2027, 1, 31)


def test_a_refund_takes_the_unit_back() -> None:
    outcome = take_claim(SOLD, None, _claim(ClaimKind.REFUND), "ev1", 12)
    ((_, after),) = outcome.changes
    assert (after.status, after.location, after.replaced_by) == (UnitStatus.RETURNED, "S1", None)


def test_a_claim_outside_warranty_is_refused_naming_the_end_unless_overridden() -> None:
    late = _claim(at=date(2027, 2, 1))
    refused = take_claim(SOLD, None, late, "ev1", 12)
    assert refused.refusal is ClaimRefusal.OUTSIDE_WARRANTY
    assert refused.changes == ()
    assert "2027-01-31" in refused.detail
    assert refused.warranty.ends_on == date(2027, 1, 31)

    granted = take_claim(
        SOLD, None, _claim(at=date(2027, 2, 1), override_reason="goodwill"), "e", 12
    )
    assert granted.refusal is None
    ((_, after),) = granted.changes
    assert after.claims[0].in_warranty is False
    assert after.claims[0].override_reason == "goodwill"
    assert "granted: goodwill" in after.history[-1].what


def test_a_product_without_terms_refuses_claims_as_no_warranty() -> None:
    assert take_claim(SOLD, None, _claim(), "ev1", None).refusal is ClaimRefusal.NO_WARRANTY


@pytest.mark.parametrize(
    ("unit", "replacement", "reason"),
    [
        (None, SPARE, ClaimRefusal.UNKNOWN_SERIAL),
        (replace(SOLD, status=UnitStatus.IN_STOCK), SPARE, ClaimRefusal.NOT_SOLD),
        (SOLD, None, ClaimRefusal.REPLACEMENT_NOT_IN_STOCK),
        (SOLD, replace(SPARE, location="S2"), ClaimRefusal.REPLACEMENT_NOT_IN_STOCK),
        (SOLD, replace(SPARE, status=UnitStatus.SOLD), ClaimRefusal.REPLACEMENT_NOT_IN_STOCK),
    ],
)
def test_what_a_claim_needs(
    unit: Unit | None, replacement: Unit | None, reason: ClaimRefusal
) -> None:
    outcome = take_claim(unit, replacement, _claim(ClaimKind.REPLACEMENT), "ev1", 12)
    assert outcome.refusal is reason
    assert outcome.changes == ()


def test_a_recalled_replacement_is_never_handed_out_even_with_an_override() -> None:
    scope = RecallScope("R1", "ev0", SOLD_AT, serials=frozenset({"IMEI2"}))
    claim = _claim(ClaimKind.REPLACEMENT, override_reason="manager said so")
    outcome = take_claim(SOLD, SPARE, claim, "ev1", 12, [scope])
    assert outcome.refusal is ClaimRefusal.REPLACEMENT_RECALLED


def test_a_claim_applied_before_is_not_applied_again_under_another_id() -> None:
    ((_, after), _) = take_claim(SOLD, SPARE, _claim(ClaimKind.REPLACEMENT), "ev1", 12).changes
    again = take_claim(after, None, _claim(ClaimKind.REPLACEMENT), "ev2", 12)
    assert again.changed is False
    assert again.refusal is None
    assert again.changes == ()


def test_claims_and_links_survive_the_store() -> None:
    (_, old), (_, new) = take_claim(SOLD, SPARE, _claim(ClaimKind.REPLACEMENT), "ev1", 12).changes
    assert unit_from_doc(unit_doc(old)) == old
    assert unit_from_doc(unit_doc(new)) == new
    assert "claims" not in unit_doc(SPARE)
