"""The default body limit leaves room for the largest recall the contract allows, whether it
comes as the API's JSON or as the console's form."""

from __future__ import annotations

import json
from urllib.parse import urlencode

from lotline.recall.api import RecallIssue
from lotline.runtime.settings import Settings

# Characters the identifier pattern allows that cost the most once escaped: a quote and a
# backslash take two bytes in JSON, and every punctuation mark three in a form.
COSTLY = '"\\' * 32


def largest_recall() -> dict[str, object]:
    serials = [f"{n:05d}{COSTLY}"[:64] for n in range(10_000)]
    lot_codes = [f"{n:04d}{COSTLY}"[:40] for n in range(1_000)]
    issue = RecallIssue(
        recall_id="R" * 64,
        sku="S" * 64,
        lot_codes=lot_codes,
        serials=serials,
        reason="\U0001f50b" * 500,
        classification="I",
    )
    return issue.model_dump(mode="json")


def test_the_largest_recall_fits_as_json_however_it_is_written() -> None:
    recall = largest_recall()
    limit = Settings().http_max_body_bytes
    for text in (json.dumps(recall), json.dumps(recall, indent=4)):
        assert len(text.encode()) < limit / 2


def test_the_largest_recall_fits_as_the_consoles_form() -> None:
    recall = largest_recall()
    form = urlencode(
        {
            "sku": recall["sku"],
            "lot_codes": "\r\n".join(recall["lot_codes"]),  # type: ignore[arg-type]
            "serials": "\r\n".join(recall["serials"]),  # type: ignore[arg-type]
            "reason": recall["reason"],
            "classification": recall["classification"],
            "csrf_token": "t" * 64,
        }
    )
    assert len(form.encode()) < Settings().http_max_body_bytes * 0.6
