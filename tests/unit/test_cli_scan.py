"""GS1 barcodes read at the dock and the till (pure, no I/O)."""

from __future__ import annotations

from datetime import date

import pytest

from lotline.cli.scan import Scan, ScanError, expiry_date, parse_scan

TODAY = date(2026, 11, 22)


def test_an_element_string_gives_gtin_lot_expiry_and_serial() -> None:
    scan = parse_scan("(01)09521234543213(10)ABC123(17)261231(21)12345", TODAY)
    assert scan == Scan(
        gtin="09521234543213", lot="ABC123", expires_on=date(2026, 12, 31), serial="12345"
    )


def test_raw_scanner_output_with_group_separators() -> None:
    scan = parse_scan("0109521234543213" + "10ABC123\x1d" + "17270615", TODAY)
    assert scan == Scan(gtin="09521234543213", lot="ABC123", expires_on=date(2027, 6, 15))


def test_a_digital_link_uri() -> None:
    scan = parse_scan("https://id.gs1.org/01/09521234543213/10/ABC123?17=261231", TODAY)
    assert scan == Scan(gtin="09521234543213", lot="ABC123", expires_on=date(2026, 12, 31))


def test_a_digital_link_with_a_serial() -> None:
    scan = parse_scan("https://id.gs1.org/01/09521234543213/21/IMEI-000123", TODAY)
    assert scan.serial == "IMEI-000123"
    assert scan.lot is None


def test_a_plain_ean13_is_padded_to_14_digits() -> None:
    assert parse_scan("9521234543213", TODAY) == Scan(gtin="09521234543213")


@pytest.mark.parametrize(
    "code",
    [
        "(01)09521234543214(10)ABC123",
        "https://id.gs1.org/01/09521234543214/10/ABC123",
        "9521234543214",
    ],
)
def test_a_wrong_check_digit_is_a_clear_error(code: str) -> None:
    with pytest.raises(ScanError) as caught:
        parse_scan(code, TODAY)
    message = str(caught.value)
    assert message.startswith("--scan: ")
    assert "check digit" in message
    assert "Expected 3, got 4" in message


@pytest.mark.parametrize(
    ("code", "says"),
    [
        ("", "empty"),
        ("hello", "not a GS1 barcode"),
        ("(10)ABC123", "carries no GTIN"),
        ("https://example.com/shop/x", "not a GS1 Digital Link"),
        ("(01)09521234543213(17)261340", "cannot read"),
    ],
)
def test_unusable_barcodes(code: str, says: str) -> None:
    with pytest.raises(ScanError, match=says):
        parse_scan(code, TODAY)


def test_expiry_day_00_is_the_last_day_of_the_month() -> None:
    assert expiry_date("261200", TODAY) == date(2026, 12, 31)
    assert expiry_date("270200", TODAY) == date(2027, 2, 28)
    assert expiry_date("280200", TODAY) == date(2028, 2, 29)  # leap year
    assert expiry_date("260400", TODAY) == date(2026, 4, 30)
    assert parse_scan("(01)09521234543213(17)270200", TODAY).expires_on == date(2027, 2, 28)


def test_expiry_century_follows_the_gs1_window() -> None:
    assert expiry_date("760101", TODAY) == date(2076, 1, 1)  # 50 years ahead
    assert expiry_date("770101", TODAY) == date(1977, 1, 1)  # 51 ahead -> last century
    assert expiry_date("010101", date(2098, 6, 1)) == date(2101, 1, 1)


@pytest.mark.parametrize("value", ["2612", "261331", "260231", "26123A"])
def test_impossible_expiry_dates(value: str) -> None:
    with pytest.raises(ScanError, match="--scan: expiry"):
        expiry_date(value, TODAY)
