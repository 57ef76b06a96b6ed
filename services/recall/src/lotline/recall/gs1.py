"""The recall's GS1 identifiers: the contract's builder, every Digital Link checked by biip.

The contract (`lotline.events.gs1`) builds links without a GS1 library; a trace and its EPCIS
export only give out a link that biip also reads back to the same GTIN, lot and serial. One
biip refuses becomes the Lotline URN, as if GS1 could not name it: an export never carries an
invalid link.
"""

from __future__ import annotations

from functools import lru_cache

from biip import ParseError
from biip.gs1_digital_link_uris import GS1DigitalLinkURI

from lotline.events import gs1

# A lot of ten thousand units is exported in one document; its links are checked once.
_CACHE_SIZE = 65_536


@lru_cache(maxsize=_CACHE_SIZE)
def checked(link: str, expected: tuple[tuple[str, str], ...]) -> bool:
    """Whether biip reads `link` as exactly these (AI, value) pairs, each valid, and writes it
    back unchanged."""
    try:
        parsed = GS1DigitalLinkURI.parse(link)
    except ParseError:
        return False
    elements = parsed.element_strings
    if any(e.gtin_error for e in elements):
        return False
    # The canonical form too: the contract encodes values as GS1's canonical link does.
    values = tuple((e.ai.ai, e.value) for e in elements)
    return values == expected and parsed.as_canonical_uri() == link


def unit_link(gtin: str | None, serial: str) -> str | None:
    link = gs1.unit_link(gtin, serial)
    if link is None:
        return None
    expected = ((gs1.AI_GTIN, gs1.gtin14(gtin) or ""), (gs1.AI_SERIAL, serial))
    return link if checked(link, expected) else None


def lot_link(gtin: str | None, lot_code: str | None) -> str | None:
    link = gs1.lot_link(gtin, lot_code)
    if link is None:
        return None
    expected: tuple[tuple[str, str], ...] = ((gs1.AI_GTIN, gs1.gtin14(gtin) or ""),)
    if lot_code is not None:
        expected += ((gs1.AI_LOT, lot_code),)
    return link if checked(link, expected) else None


def unit_id(sku: str, gtin: str | None, serial: str) -> str:
    return unit_link(gtin, serial) or gs1.unit_urn(sku, serial)


def class_id(sku: str, gtin: str | None, lot_code: str | None) -> str:
    return lot_link(gtin, lot_code) or gs1.class_urn(sku, lot_code)
