"""GS1 identifiers: the contract's Digital Links are what biip reads back, and what GS1 cannot
encode (or a product without a GTIN) gets a Lotline URN instead."""

from __future__ import annotations

import string
from urllib.parse import quote

import pytest
from biip import ParseError
from biip.gs1_digital_link_uris import GS1DigitalLinkURI
from biip.gs1_element_strings import GS1ElementString, GS1ElementStrings
from hypothesis import given
from hypothesis import strategies as st

from lotline.events import gs1
from lotline.recall import gs1 as checked_gs1

GTIN = "09521234543213"

VALID_GTINS = [
    ("09521234543213", GTIN),  # GTIN-14
    ("9521234543213", GTIN),  # GTIN-13
    ("614141123452", "00614141123452"),  # GTIN-12 (UPC-A)
    ("96385074", "00000096385074"),  # GTIN-8
]
INVALID_GTINS = [
    None,
    "",
    "09521234543214",  # check digit
    "952123454321",  # 12 digits, wrong check digit
    "0952123454321",  # 13 digits, wrong check digit
    "123456789",  # no GTIN has 9 digits
    "095212345432130",  # 15 digits
    "0952123454321A",
    "٠٩٥٢١٢٣٤٥٤٣٢١٣",  # Arabic-Indic digits: str.isdigit, not GS1
]
# Every special character of set 82, a percent sign, a 20-long value.
VALID_VALUES = [
    "IMEI-000123",
    "A",
    "L1",
    "a/b",
    "x:y;z",
    "!\"%&'()*+,-./",
    ":;<=>?_",
    "100%",
    "A" * 20,
    "0123456789abcdefghij",
]
INVALID_VALUES = [
    "SN#42",  # '#' is not in set 82
    "A" * 21,  # AI 10 and AI 21 are X..20
    "IMEI-0001234567890123",  # 21
    "A B",
    "a~b",
    "a@b",
    "a$b",
    "[x]",
    "a\\b",
    "a^b",
    "a`b",
    "{x}",
    "a|b",
    "é",
    "",
]


def biip_values(link: str) -> list[tuple[str, str]]:
    parsed = GS1DigitalLinkURI.parse(link)
    assert not any(e.gtin_error for e in parsed.element_strings)
    assert parsed.as_canonical_uri() == link
    return [(e.ai.ai, e.value) for e in parsed.element_strings]


def hand_built(gtin: str, ai: str, value: str) -> str:
    """A link as Lotline built it before: any value, percent-encoded."""
    return f"https://id.gs1.org/01/{gtin}/{ai}/{quote(value, safe='')}"


@pytest.mark.parametrize(("gtin", "digits"), VALID_GTINS)
def test_a_valid_gtin_of_any_length_is_written_as_fourteen_digits(gtin: str, digits: str) -> None:
    assert gs1.gtin14(gtin) == digits
    link = gs1.product_link(gtin)
    assert link == f"https://id.gs1.org/01/{digits}"
    assert biip_values(link) == [("01", digits)]


@pytest.mark.parametrize("gtin", INVALID_GTINS)
def test_without_a_valid_gtin_there_is_no_link_but_a_urn(gtin: str | None) -> None:
    assert gs1.gtin14(gtin) is None
    assert gs1.product_link(gtin) is None
    assert gs1.unit_link(gtin, "A1") is None
    assert gs1.lot_link(gtin, "L1") is None
    assert gs1.unit_id("PHONE-1", gtin, "A1") == "urn:lotline:unit:PHONE-1:A1"
    assert gs1.class_id("MILK", gtin, "L1") == "urn:lotline:class:MILK:lot:L1"
    assert gs1.class_id("MILK", gtin, None) == "urn:lotline:class:MILK"
    assert checked_gs1.unit_id("PHONE-1", gtin, "A1") == "urn:lotline:unit:PHONE-1:A1"


def test_biip_refuses_a_gtin_with_a_wrong_check_digit() -> None:
    # Why the contract checks the digit itself: biip parses the link but flags the GTIN.
    parsed = GS1DigitalLinkURI.parse("https://id.gs1.org/01/09521234543214/21/A1")
    assert parsed.element_strings[0].gtin_error


@pytest.mark.parametrize("value", VALID_VALUES)
def test_a_serial_or_lot_gs1_can_encode_is_a_link_biip_reads_back(value: str) -> None:
    unit = gs1.unit_link(GTIN, value)
    lot = gs1.lot_link(GTIN, value)
    assert unit is not None
    assert lot is not None
    assert unit.startswith(f"https://id.gs1.org/01/{GTIN}/21/")
    assert lot.startswith(f"https://id.gs1.org/01/{GTIN}/10/")
    assert biip_values(unit) == [("01", GTIN), ("21", value)]
    assert biip_values(lot) == [("01", GTIN), ("10", value)]
    assert gs1.unit_id("PHONE-1", GTIN, value) == unit
    assert gs1.class_id("MILK", GTIN, value) == lot
    # The recall service's check agrees.
    assert checked_gs1.unit_link(GTIN, value) == unit
    assert checked_gs1.lot_link(GTIN, value) == lot


@pytest.mark.parametrize("value", INVALID_VALUES)
def test_a_serial_or_lot_gs1_cannot_encode_gets_a_urn_not_an_invalid_link(value: str) -> None:
    # The link as it used to be built is one biip refuses...
    for ai in ("21", "10"):
        with pytest.raises(ParseError):
            GS1DigitalLinkURI.parse(hand_built(GTIN, ai, value))
    # ...so there is none, and the identifier is a Lotline URN.
    assert gs1.unit_link(GTIN, value) is None
    assert gs1.lot_link(GTIN, value) is None
    assert checked_gs1.unit_link(GTIN, value) is None
    assert checked_gs1.lot_link(GTIN, value) is None
    part = quote(value, safe="")
    assert gs1.unit_id("PHONE-1", GTIN, value) == f"urn:lotline:unit:PHONE-1:{part}"
    assert gs1.class_id("MILK", GTIN, value) == f"urn:lotline:class:MILK:lot:{part}"
    assert checked_gs1.unit_id("PHONE-1", GTIN, value) == f"urn:lotline:unit:PHONE-1:{part}"
    assert checked_gs1.class_id("MILK", GTIN, value) == f"urn:lotline:class:MILK:lot:{part}"


def test_a_product_without_a_lot_is_named_by_its_gtin() -> None:
    assert gs1.class_id("MILK", GTIN, None) == f"https://id.gs1.org/01/{GTIN}"
    assert checked_gs1.class_id("MILK", GTIN, None) == f"https://id.gs1.org/01/{GTIN}"


def test_urn_parts_are_percent_encoded_so_a_colon_cannot_shift_them() -> None:
    assert gs1.unit_urn("A:B", "C#D") == "urn:lotline:unit:A%3AB:C%23D"
    assert gs1.class_urn("A:B", "L:1") == "urn:lotline:class:A%3AB:lot:L%3A1"


def test_the_recall_check_refuses_a_link_biip_does_not_read_back() -> None:
    link = gs1.unit_link(GTIN, "A1")
    assert link is not None
    assert checked_gs1.checked(link, (("01", GTIN), ("21", "A1")))
    assert not checked_gs1.checked(link, (("01", GTIN), ("21", "A2")))
    assert not checked_gs1.checked(link.replace("A1", "A%231"), (("01", GTIN), ("21", "A#1")))
    assert not checked_gs1.checked(link.replace("/21/", "/ser/"), (("01", GTIN), ("21", "A1")))


# Any printable ASCII the contract lets a serial or lot carry, and a few others.
ALPHABET = string.printable.strip() + " é"


@given(value=st.text(alphabet=ALPHABET, min_size=1, max_size=24))
def test_the_contract_and_biip_agree_on_every_value(value: str) -> None:
    try:
        element = GS1ElementString.parse(f"21{value}")
    except ParseError:
        element = None
    link = gs1.unit_link(GTIN, value)
    assert (link is not None) == (element is not None), value
    if element is not None:
        gtin = GS1ElementString.parse(f"01{GTIN}")
        built = GS1DigitalLinkURI.from_element_strings(GS1ElementStrings([gtin, element]))
        assert link == built.as_canonical_uri()
        assert biip_values(built.value) == [("01", GTIN), ("21", value)]
