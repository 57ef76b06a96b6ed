"""Which expiry warnings are due: the stock service's rule, without I/O."""

from __future__ import annotations

from datetime import date, timedelta

import pytest
from pydantic import ValidationError

from lotline.events import LotExpiring
from lotline.runtime.settings import Settings
from lotline.stock.expiry import (
    LotOnHand,
    threshold_reached,
    warning_event_id,
    warnings_due,
)

TODAY = date(2026, 11, 22)
THRESHOLDS = (30, 7, 1)


def lot(code: str, days_left: int, on_hand: int = 10, location: str = "S1") -> LotOnHand:
    return LotOnHand("MILK", location, code, TODAY + timedelta(days=days_left), on_hand)


@pytest.mark.parametrize(
    ("days_left", "threshold"),
    [(31, None), (30, 30), (8, 30), (7, 7), (2, 7), (1, 1), (0, 1)],
)
def test_the_nearest_threshold_reached_is_the_one_due(days_left: int, threshold: int) -> None:
    assert threshold_reached(days_left, THRESHOLDS) == threshold


def test_warnings_due_name_lot_location_threshold_and_what_is_on_hand() -> None:
    due = warnings_due(
        [lot("L-FAR", 45), lot("L-MONTH", 20), lot("L-WEEK", 5, on_hand=3), lot("L-DAY", 1)],
        THRESHOLDS,
        TODAY,
    )
    assert [(w.lot_code, w.days_left, w.threshold_days, w.quantity_on_hand) for w in due] == [
        ("L-MONTH", 20, 30, 10),
        ("L-WEEK", 5, 7, 3),
        ("L-DAY", 1, 1, 10),
    ]


def test_no_warning_without_sellable_stock_or_once_expired() -> None:
    due = warnings_due(
        [lot("L-SOLD-OUT", 3, on_hand=0), lot("L-OVERSOLD", 3, on_hand=-2), lot("L-GONE", -1)],
        THRESHOLDS,
        TODAY,
    )
    assert due == []


def test_a_lot_expiring_today_is_still_warned_about() -> None:
    (warning,) = warnings_due([lot("L-TODAY", 0)], THRESHOLDS, TODAY)
    assert (warning.days_left, warning.threshold_days) == (0, 1)


def test_each_lot_location_and_threshold_has_its_own_key_and_event_id() -> None:
    at_s1, at_s2 = warnings_due([lot("L1", 5), lot("L1", 5, location="S2")], THRESHOLDS, TODAY)
    (later_at_s1,) = warnings_due([lot("L1", 1)], THRESHOLDS, TODAY)
    keys = {at_s1.key, at_s2.key, later_at_s1.key}
    assert keys == {"MILK S1 L1 7", "MILK S2 L1 7", "MILK S1 L1 1"}
    assert len({warning_event_id(k) for k in keys}) == 3
    # The next day's pass finds the same warning: same key, same id, so it is not sent again.
    (next_day,) = warnings_due([lot("L1", 4)], THRESHOLDS, TODAY)
    assert warning_event_id(next_day.key) == warning_event_id(at_s1.key)


def test_the_warning_event_is_valid_and_refuses_a_lot_outside_its_threshold() -> None:
    (warning,) = warnings_due([lot("L1", 5)], THRESHOLDS, TODAY)
    assert warning.event().model_dump(mode="json") == {
        "sku": "MILK",
        "location": "S1",
        "lot_code": "L1",
        "expires_on": "2026-11-27",
        "days_left": 5,
        "threshold_days": 7,
        "quantity_on_hand": 10,
    }
    with pytest.raises(ValidationError, match="days_left 9 is more than threshold_days 7"):
        LotExpiring(
            sku="MILK",
            location="S1",
            lot_code="L1",
            expires_on=TODAY,
            days_left=9,
            threshold_days=7,
            quantity_on_hand=1,
        )


def test_thresholds_come_from_a_comma_separated_setting(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("STOCK_EXPIRY_WARNING_DAYS", "7, 30,1,7")
    assert Settings().stock_expiry_warning_days == (30, 7, 1)
    monkeypatch.setenv("STOCK_EXPIRY_WARNING_DAYS", "7,soon")
    with pytest.raises(ValidationError, match="stock_expiry_warning_days") as exc:
        Settings()
    assert "'7,soon' is not a comma-separated list of whole days" in str(exc.value)
    monkeypatch.setenv("STOCK_EXPIRY_WARNING_DAYS", "-1")
    with pytest.raises(ValidationError, match="between 0 and 3650"):
        Settings()
