"""Serial ranges and files as a dock worker types them (pure, no I/O)."""

from __future__ import annotations

import pytest

from lotline.cli.serials import SerialsError, expand_range, parse_serials, read_serials


def test_a_range_keeps_zero_padding_and_includes_both_ends() -> None:
    serials = expand_range("IMEI-000100..IMEI-001099")
    assert len(serials) == 1000
    assert serials[0] == "IMEI-000100"
    assert serials[1] == "IMEI-000101"
    assert serials[899] == "IMEI-000999"
    assert serials[900] == "IMEI-001000"
    assert serials[-1] == "IMEI-001099"


def test_unpadded_ranges_grow_in_width() -> None:
    assert expand_range("A-9..A-11") == ["A-9", "A-10", "A-11"]
    assert expand_range("SN7..SN7") == ["SN7"]


def test_digits_only_range() -> None:
    assert expand_range("0098..0101") == ["0098", "0099", "0100", "0101"]


@pytest.mark.parametrize(
    ("text", "says"),
    [
        ("IMEI-001099..IMEI-000100", "runs backwards"),
        ("IMEI-000100..PHONE-000200", "same prefix"),
        ("IMEI-0100..IMEI-000200", "same number of digits"),
        ("IMEI-000100..IMEI-X", "must end in digits"),
        ("IMEI-000100...IMEI-000200", "same prefix"),
        ("IMEI-000100", "not a range"),
        ("A-1..A-2..A-3", "not a range"),
        ("A-0000001..A-9999999", "more than 1,000,000"),
    ],
)
def test_bad_ranges_are_one_clear_line_naming_the_option(text: str, says: str) -> None:
    with pytest.raises(SerialsError) as caught:
        expand_range(text, "--serials")
    message = str(caught.value)
    assert message.startswith("--serials: ")
    assert says in message
    assert "\n" not in message


def test_options_mix_single_serials_lists_and_ranges() -> None:
    serials = parse_serials(["S-01..S-03", "X1,X2", "Y"])
    assert serials == ["S-01", "S-02", "S-03", "X1", "X2", "Y"]


def test_a_serial_given_twice_is_refused() -> None:
    with pytest.raises(SerialsError, match=r"--serials: 1 serial\(s\) given twice: S-02"):
        parse_serials(["S-01..S-03", "S-02"])


def test_a_file_skips_blanks_and_comments_and_names_the_bad_line() -> None:
    lines = ["# delivery 42\n", "IMEI-1\n", "\n", "IMEI-2  # box 1\n", "IMEI-05..IMEI-06\n"]
    assert read_serials(lines) == ["IMEI-1", "IMEI-2", "IMEI-05", "IMEI-06"]
    with pytest.raises(SerialsError, match=r"--serials-file: .*runs backwards.*\(line 2\)"):
        read_serials(["IMEI-1\n", "IMEI-9..IMEI-3\n"])
    with pytest.raises(SerialsError, match="line 1 has spaces"):
        read_serials(["IMEI 1\n"])
