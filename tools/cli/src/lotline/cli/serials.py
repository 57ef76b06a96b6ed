"""Serial numbers a worker types or loads: ranges like IMEI-000100..IMEI-001099 and files."""

from __future__ import annotations

import re
from collections.abc import Iterable

MAX_RANGE = 1_000_000
_ENDING_DIGITS = re.compile(r"^(?P<prefix>.*?)(?P<digits>\d+)$")


class SerialsError(ValueError):
    """A range or list of serials that cannot be used, said in one line naming the option."""


def expand_range(text: str, option: str = "--serials") -> list[str]:
    """`PREFIX-000100..PREFIX-001099` -> every serial from first to last, zero padding kept."""
    text = text.strip()
    if text.count("..") != 1:
        raise SerialsError(
            f"{option}: {text!r} is not a range; write FIRST..LAST, e.g. IMEI-000100..IMEI-001099"
        )
    first, last = (part.strip() for part in text.split(".."))
    start, end = _split(first, option), _split(last, option)
    if start[0] != end[0]:
        raise SerialsError(
            f"{option}: both ends must share the same prefix, got {start[0]!r} and {end[0]!r}"
        )
    prefix, first_digits = start
    last_digits = end[1]
    low, high = int(first_digits), int(last_digits)
    if high < low:
        raise SerialsError(
            f"{option}: the range {first}..{last} runs backwards; put the lower first"
        )
    count = high - low + 1
    if count > MAX_RANGE:
        raise SerialsError(
            f"{option}: the range {first}..{last} holds {count:,} serials, more than {MAX_RANGE:,}"
        )
    padded = first_digits.startswith("0") or last_digits.startswith("0")
    if padded and len(first_digits) != len(last_digits):
        raise SerialsError(
            f"{option}: zero-padded ends must have the same number of digits, "
            f"got {first_digits!r} and {last_digits!r}"
        )
    width = len(first_digits) if padded else 0
    return [f"{prefix}{n:0{width}d}" for n in range(low, high + 1)]


def _split(end: str, option: str) -> tuple[str, str]:
    match = _ENDING_DIGITS.match(end)
    if not end or match is None:
        raise SerialsError(f"{option}: the range end {end!r} must end in digits, e.g. IMEI-000100")
    return match["prefix"], match["digits"]


def parse_serials(values: Iterable[str], option: str = "--serials") -> list[str]:
    """Serials given on the command line: single ones and ranges, comma-separated or repeated."""
    serials: list[str] = []
    for value in values:
        for part in (p.strip() for p in value.split(",")):
            if not part:
                continue
            serials.extend(expand_range(part, option) if ".." in part else [part])
    return check_distinct(serials, option)


def read_serials(lines: Iterable[str], option: str = "--serials-file") -> list[str]:
    """One serial per line (ranges allowed); blank lines and `#` comments are skipped."""
    serials: list[str] = []
    for number, raw in enumerate(lines, start=1):
        line = raw.split("#", 1)[0].strip()
        if not line:
            continue
        if any(c.isspace() for c in line):
            raise SerialsError(f"{option}: line {number} has spaces in it: {line!r}")
        try:
            serials.extend(expand_range(line, option) if ".." in line else [line])
        except SerialsError as exc:
            raise SerialsError(f"{exc} (line {number})") from None
    return check_distinct(serials, option)


def check_distinct(serials: list[str], option: str) -> list[str]:
    seen: set[str] = set()
    repeated: list[str] = []
    for serial in serials:
        if serial in seen:
            repeated.append(serial)
        seen.add(serial)
    if repeated:
        shown = ", ".join(repeated[:3]) + (" …" if len(repeated) > 3 else "")
        raise SerialsError(f"{option}: {len(repeated)} serial(s) given twice: {shown}")
    return serials
