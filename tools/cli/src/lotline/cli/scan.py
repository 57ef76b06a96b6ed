"""GS1 barcodes as scanned at the dock or the till: element strings and Digital Link URIs."""

from __future__ import annotations

import calendar
import re
from dataclasses import dataclass
from datetime import date

import biip
from biip import ParseError
from biip.gs1_element_strings import GS1ElementString
from biip.gs1_messages import GS1Message


class ScanError(ValueError):
    """A barcode that cannot be used, said in one line."""


@dataclass(frozen=True)
class Scan:
    """What a GS1 barcode says about one item."""

    gtin: str  # always 14 digits
    lot: str | None = None
    expires_on: date | None = None
    serial: str | None = None


def parse_scan(code: str, today: date | None = None) -> Scan:
    """Read `(01)…(10)…(17)…(21)…`, raw GS1 data (FNC1 as GS) or a GS1 Digital Link URI."""
    code = code.strip()
    if not code:
        raise ScanError("--scan: the barcode is empty")
    elements = _elements(code)
    found = {e.ai.ai: e for e in elements}
    gtin_element = found.get("01")
    if gtin_element is None:
        raise ScanError(f"--scan: {code!r} carries no GTIN (AI 01)")
    if gtin_element.gtin is None:
        problem = gtin_element.gtin_error or "not a valid GTIN"
        raise ScanError(f"--scan: {problem}")
    expiry = found.get("17")
    return Scan(
        gtin=gtin_element.value.zfill(14),
        lot=found["10"].value if "10" in found else None,
        expires_on=expiry_date(expiry.value, today) if expiry else None,
        serial=found["21"].value if "21" in found else None,
    )


def _elements(code: str) -> list[GS1ElementString]:
    try:
        if code.startswith("("):
            return list(GS1Message.parse_hri(code).element_strings)
        result = biip.parse(code)
    except ParseError as exc:
        raise ScanError(f"--scan: cannot read {code!r}: {exc}") from None
    if result.gs1_digital_link_uri is not None:
        return list(result.gs1_digital_link_uri.element_strings)
    if code.isdigit() and len(code) in (8, 12, 13, 14):  # a plain EAN/UPC: just the product
        if result.gtin is None:
            raise ScanError(f"--scan: {result.gtin_error}")
        return list(GS1Message.parse(f"01{result.gtin.as_gtin_14()}").element_strings)
    if result.gs1_message is not None:
        return list(result.gs1_message.element_strings)
    if code.startswith(("http://", "https://")):
        raise ScanError(
            f"--scan: {code!r} is not a GS1 Digital Link: {result.gs1_digital_link_uri_error}"
        )
    raise ScanError(f"--scan: {code!r} is not a GS1 barcode: {result.gs1_message_error}")


_YYMMDD = re.compile(r"^\d{6}$")


def expiry_date(yymmdd: str, today: date | None = None) -> date:
    """GS1 dates (AI 17): day 00 means the month's last day; the century is the one that puts
    the year within 49 years back or 50 years ahead of today (GS1 General Specifications 7.12)."""
    if not _YYMMDD.match(yymmdd):
        raise ScanError(f"--scan: expiry {yymmdd!r} is not YYMMDD")
    yy, month, day = int(yymmdd[:2]), int(yymmdd[2:4]), int(yymmdd[4:])
    today = today or date.today()
    century = today.year - today.year % 100
    difference = yy - today.year % 100
    if difference >= 51:
        century -= 100
    elif difference <= -50:
        century += 100
    year = century + yy
    if not 1 <= month <= 12:
        raise ScanError(f"--scan: expiry {yymmdd!r} has no month {month:02d}")
    last = calendar.monthrange(year, month)[1]
    if day == 0:
        day = last
    if day > last:
        raise ScanError(f"--scan: expiry {yymmdd!r} names a day that does not exist")
    return date(year, month, day)
