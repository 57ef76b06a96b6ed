"""GS1 identifiers of products, lots and units: a Digital Link where GS1 allows one, else a URN.

One builder for every service and tool, with no dependency beyond the standard library (the
serial registry has no GS1 library installed; the recall service checks each link with biip).

A Digital Link names a unit as `https://id.gs1.org/01/{gtin14}/21/{serial}` and a lot as
`https://id.gs1.org/01/{gtin14}/10/{lot}` (GS1 Digital Link URI syntax 1.x). GS1 allows only
the characters of its "AI encodable character set 82" in AI 10 and AI 21, at most 20 of them
(GS1 General Specifications, figure 7.11-1 and the AI table). Lotline's lot codes and serials
may be longer or carry other printable characters (`SN#42`), and a product may have no GTIN:
those are named by Lotline URNs instead, which EPCIS 2.0 accepts for instance- and class-level
identifiers (CBV 2.0 section 8.2.2, "private or industry-wide URN"):
`urn:lotline:unit:{sku}:{serial}` and `urn:lotline:class:{sku}[:lot:{lot}]`.

Every value in a link or URN is percent-encoded as a whole (nothing is left reserved), which
is how GS1's canonical Digital Link encodes path values and keeps `:` inside a URN's parts.
"""

from __future__ import annotations

from urllib.parse import quote

RESOLVER = "https://id.gs1.org"
AI_GTIN, AI_LOT, AI_SERIAL = "01", "10", "21"
# AI 10 (batch/lot) and AI 21 (serial) are both X..20.
MAX_LOT_LENGTH = 20
MAX_SERIAL_LENGTH = 20
# GS1 AI encodable character set 82: ! " % & ' ( ) * + , - . / 0-9 : ; < = > ? A-Z _ a-z.
CSET_82 = frozenset(
    "!\"%&'()*+,-./0123456789:;<=>?ABCDEFGHIJKLMNOPQRSTUVWXYZ_abcdefghijklmnopqrstuvwxyz"
)
URN_PREFIX = "urn:lotline"


def gtin14(gtin: str | None) -> str | None:
    """A GTIN-8/12/13/14 with a correct check digit, as 14 digits; None for anything else."""
    if gtin is None or not gtin.isascii() or not gtin.isdigit() or len(gtin) not in (8, 12, 13, 14):
        return None
    digits = gtin.zfill(14)
    # Weights 3, 1, 3, ... from the digit left of the check digit (GS1 General Specs 7.9.1).
    total = sum(int(d) * (3 if i % 2 == 0 else 1) for i, d in enumerate(reversed(digits[:-1])))
    return digits if (10 - total % 10) % 10 == int(digits[-1]) else None


def encodable(value: str, max_length: int) -> bool:
    """Whether GS1 accepts the value in an X..max_length AI (AI 10, AI 21)."""
    return 1 <= len(value) <= max_length and all(char in CSET_82 for char in value)


def lot_encodable(lot_code: str) -> bool:
    return encodable(lot_code, MAX_LOT_LENGTH)


def serial_encodable(serial: str) -> bool:
    return encodable(serial, MAX_SERIAL_LENGTH)


def _part(value: str) -> str:
    return quote(value, safe="")


def product_link(gtin: str | None) -> str | None:
    """The Digital Link of a product (AI 01), or None without a valid GTIN."""
    digits = gtin14(gtin)
    return None if digits is None else f"{RESOLVER}/{AI_GTIN}/{digits}"


def unit_link(gtin: str | None, serial: str) -> str | None:
    """The Digital Link of one unit (AI 01 + AI 21), or None where GS1 cannot name it."""
    product = product_link(gtin)
    if product is None or not serial_encodable(serial):
        return None
    return f"{product}/{AI_SERIAL}/{_part(serial)}"


def lot_link(gtin: str | None, lot_code: str | None) -> str | None:
    """The Digital Link of a lot (AI 01 + AI 10), of the product when no lot is named, or None
    where GS1 cannot name it."""
    product = product_link(gtin)
    if product is None or lot_code is None:
        return product
    if not lot_encodable(lot_code):
        return None
    return f"{product}/{AI_LOT}/{_part(lot_code)}"


def unit_urn(sku: str, serial: str) -> str:
    return f"{URN_PREFIX}:unit:{_part(sku)}:{_part(serial)}"


def class_urn(sku: str, lot_code: str | None) -> str:
    if lot_code is None:
        return f"{URN_PREFIX}:class:{_part(sku)}"
    return f"{URN_PREFIX}:class:{_part(sku)}:lot:{_part(lot_code)}"


def unit_id(sku: str, gtin: str | None, serial: str) -> str:
    """A unit's identifier in EPCIS `epcList`: its Digital Link, else its Lotline URN."""
    return unit_link(gtin, serial) or unit_urn(sku, serial)


def class_id(sku: str, gtin: str | None, lot_code: str | None) -> str:
    """A lot's (or product's) identifier in EPCIS `epcClass`: its Digital Link, else its URN."""
    return lot_link(gtin, lot_code) or class_urn(sku, lot_code)
