"""The console's form reading and its CSV, without I/O."""

from __future__ import annotations

import csv
import io
from datetime import UTC, datetime

import pytest
from pydantic import ValidationError

from lotline.events import Classification
from lotline.recall.api import RecallDetail, RecallIssue
from lotline.recall.console import contacts_csv, field_problems, recall_fields, split_codes
from lotline.recall.domain import CustomerContact, Progress, Recall, RecallRequest
from lotline.recall.store import RecallFacts, RecallRecord


def test_a_pasted_column_of_serials_is_a_list() -> None:
    pasted = "IMEI-1\r\nIMEI-2\n\n  IMEI-3 ,IMEI-4;IMEI-5\t"
    assert split_codes(pasted) == ["IMEI-1", "IMEI-2", "IMEI-3", "IMEI-4", "IMEI-5"]
    assert split_codes("  \n ") == []


def test_what_a_person_typed_is_taken_without_the_spaces_around_it() -> None:
    """The contract refuses a padded SKU rather than trim it; the form trims what was typed."""
    typed = {
        "sku": " MILK-1 ",
        "reason": " Listeria\n",
        "classification": "I ",
        "lot_codes": " L1 ",
    }
    body = RecallIssue.model_validate(recall_fields({**typed, "serials": "  "}))
    assert (body.sku, body.reason, body.classification, body.lot_codes, body.serials) == (
        "MILK-1",
        "Listeria",
        Classification.I,
        ["L1"],
        [],
    )


def test_the_apis_problems_land_on_their_form_fields() -> None:
    with pytest.raises(ValidationError) as bad:
        RecallIssue.model_validate(
            {"sku": "A B", "lot_codes": [], "serials": ["S1", "x" * 65], "classification": "IV"}
        )
    problems = field_problems(list(bad.value.errors()))
    assert set(problems) == {"sku", "serials", "reason", "classification"}
    assert problems["reason"] == ["required"]
    assert problems["serials"][0].startswith(repr("x" * 65) + ": String should have at most 64")
    assert problems["classification"] == ["Input should be 'I', 'II' or 'III'"]

    with pytest.raises(ValidationError) as nothing_named:
        RecallIssue.model_validate({"sku": "A", "reason": "r", "classification": "I"})
    assert field_problems(list(nothing_named.value.errors())) == {
        "serials": ["a recall must name at least one lot code or serial"]
    }
    header = [{"loc": ("header", "Idempotency-Key"), "msg": "used before", "type": "value_error"}]
    assert field_problems(header) == {"form": ["used before"]}


def test_the_contact_list_csv_quotes_what_needs_quoting() -> None:
    at = datetime(2026, 11, 20, 15, 0, tzinfo=UTC)
    request = RecallRequest("PHONE", ("L1",), (), "battery", Classification.II, "ana")
    record = RecallRecord(Recall.issue("RC-1", request, at), None, at)
    contacts = [
        CustomerContact("RC-1", "S-1", "L1", "T-1", "STORE-1", at, 'Doe, Jane "JJ"'),
        CustomerContact("RC-1", "S-2", None, None, None, None, None),
    ]
    facts = RecallFacts([], [], contacts, [], [])
    text = contacts_csv(RecallDetail.detail_of(record, facts))
    assert text.splitlines()[1] == 'S-1,L1,T-1,STORE-1,2026-11-20T15:00:00+00:00,"Doe, Jane ""JJ"""'
    assert list(csv.reader(io.StringIO(text, newline=""))) == [
        ["serial", "lot_code", "sale_id", "store", "sold_at", "customer_ref"],
        ["S-1", "L1", "T-1", "STORE-1", "2026-11-20T15:00:00+00:00", 'Doe, Jane "JJ"'],
        ["S-2", "", "", "", "", ""],
    ]
    assert Progress.of(contacts=contacts).units_to_contact == 2
