"""Cells a spreadsheet shows and never runs: the one rule every CSV export writes through."""

from __future__ import annotations

from collections.abc import Iterable

# A cell starting with one of these is a formula to Excel, LibreOffice or Google Sheets
# (OWASP's CSV injection guidance; ASVS 1.2.10 adds NUL, and some spreadsheets skip a
# leading tab, CR or LF before they look for the formula).
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r", "\n", "\0")


def safe_cell(value: object) -> str:
    """The value as text a spreadsheet shows as it is: a leading quote marks a would-be
    formula as text (the quote is not shown). Every column goes through here, numbers too:
    the quantities and line numbers of Lotline's exports are never negative, so a number
    never starts with "-" and stays a number."""
    text = "" if value is None else str(value)
    if text.startswith(FORMULA_STARTS):
        return "'" + text
    return text


def safe_row(values: Iterable[object]) -> list[str]:
    return [safe_cell(value) for value in values]
