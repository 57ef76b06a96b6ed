"""The recall service as its own process against the real Kafka and FerretDB.

Stock and the serial registry are played by hand: the test publishes what they would.
"""

from __future__ import annotations

from contextlib import suppress
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest

from lotline.events import (
    AdjustmentDirection,
    AdjustmentReason,
    Classification,
    DisposalMethod,
    EventDecodeError,
    FlagReason,
    ItemReceived,
    ItemReturned,
    ItemSold,
    Lot,
    ProductRegistered,
    ReturnReason,
    SaleFlagged,
    SoldUnit,
    StockAdjusted,
    StockDisposed,
    StockQuarantined,
    Tracking,
    UnitsRecalled,
    UnitStatus,
    decode,
)
from lotline.recall.auth import hash_token
from lotline.recall.domain import Recall, RecallRequest
from lotline.recall.store import RecallStore, now

from support import eventually

pytestmark = pytest.mark.infra


SOLD_AT = datetime(2026, 11, 20, 15, 0, tzinfo=UTC)
STOCK, SERIALS = "lotline/stock", "lotline/serial-registry"
# Two operators (bo's entry holds only the hash of his token) and a read-only staff member.
ANA, BO, CY, SAM = (f"{name}-token-{'7' * 16}" for name in ("ana", "bo", "cy", "sam"))
TOKENS = f"ana:operator:{ANA},bo:operator:{hash_token(BO)}\ncy:operator:{CY}, sam:staff:{SAM}"


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def start_recall(start_service: Any, **env: str) -> Any:
    return start_service("recall", RECALL_OPERATOR_TOKENS=TOKENS, **env)


async def broadcasts_of(bus: Any, recall_id: str) -> list[Any]:
    events = []
    for record in await bus.read_all("batch-recalled"):
        # Other tests put garbage on the topic on purpose; it is not a broadcast.
        with suppress(EventDecodeError):
            events.append(decode(record.value))
    return [e for e in events if e.data.recall_id == recall_id]


async def recall_of(url: str, recall_id: str, token: str | None = SAM) -> dict[str, Any]:
    """A recall as staff read it (customers included), or anonymously with `token=None`."""
    async with httpx.AsyncClient(base_url=url, timeout=20) as http:
        response = await http.get(f"/recalls/{recall_id}", headers=bearer(token) if token else {})
    assert response.status_code == 200, response.text
    assert response.headers["Cache-Control"] == "no-store"
    return dict(response.json())


def quarantined(sku: str, recall_id: str, location: str, lot: str, quantity: int) -> Any:
    return StockQuarantined(
        sku=sku, recall_id=recall_id, location=location, lot_code=lot, quantity=quantity
    )


def flagged(sku: str, sale_id: str, **fields: Any) -> SaleFlagged:
    fields.setdefault("reason", FlagReason.RECALLED)
    fields.setdefault("detail", "unit of a recalled lot sold")
    return SaleFlagged(sku=sku, sale_id=sale_id, line=1, location="S1", **fields)


def returned(sku: str, return_id: str, **fields: Any) -> ItemReturned:
    fields.setdefault("reason", ReturnReason.RECALL)
    fields.setdefault("quantity", 1)
    return ItemReturned(sku=sku, return_id=return_id, location="S1", **fields)


async def test_a_recall_is_broadcast_once_and_followed_to_its_close(  # type: ignore[no-untyped-def]
    start_service, bus, run_id
) -> None:
    recall = start_recall(start_service)
    sku = f"YOG-{run_id}"
    body = {
        "sku": sku,
        "lot_codes": ["L1", "L.2"],
        "reason": "listeria found in a sample",
        "classification": "I",
    }
    headers = {"Idempotency-Key": f"console-{run_id}", **bearer(ANA)}
    async with httpx.AsyncClient(base_url=recall.url, timeout=20) as http:
        first = await http.post("/recalls", json=body, headers=headers)
        assert first.status_code == 201, first.text
        again = await http.post("/recalls", json=body, headers=headers)
        assert again.status_code == 200, again.text
        issued = first.json()
        recall_id = issued["recall_id"]
        assert again.json()["recall_id"] == recall_id
        assert again.json()["event_id"] == issued["event_id"]
        assert (issued["issued_by"], issued["state"], issued["published"]) == ("ana", "open", True)

        other = await http.post("/recalls", json={**body, "lot_codes": ["L3"]}, headers=headers)
        assert other.status_code == 422
        assert other.json()["detail"][0]["field"] == "Idempotency-Key"
        missing = await http.post("/recalls", json={**body, "lot_codes": []}, headers=bearer(ANA))
        assert missing.status_code == 422
        assert missing.json()["message"] == (
            "serials: a recall must name at least one lot code or serial"
        )
        bad_class = await http.post(
            "/recalls", json={**body, "classification": "IV"}, headers=bearer(ANA)
        )
        assert [p["field"] for p in bad_class.json()["detail"]] == ["classification"]

        # The same recall_id twice (no key) is one recall too.
        own = {**body, "recall_id": f"RC-{run_id}", "lot_codes": ["L9"]}
        first_own = await http.post("/recalls", json=own, headers=bearer(BO))
        assert (first_own.status_code, first_own.json()["issued_by"]) == (201, "bo")
        assert (await http.post("/recalls", json=own, headers=bearer(BO))).status_code == 200
        clash = await http.post(
            "/recalls", json={**own, "classification": "III"}, headers=bearer(BO)
        )
        assert clash.status_code == 409
        assert clash.json()["detail"] == (
            f"recall RC-{run_id} was already issued with a different classification"
        )

    async def broadcast_once() -> None:
        events = await broadcasts_of(bus, recall_id)
        assert len(events) == 1
        assert events[0].data.lot_codes == ["L1", "L.2"]
        assert str(events[0].id) == issued["event_id"]
        assert len(await broadcasts_of(bus, f"RC-{run_id}")) == 1

    await eventually(broadcast_once, timeout=20)

    # What stock reports: the current total per location and lot, sometimes twice.
    *_, same_again = await bus.publish(
        quarantined(sku, recall_id, "S1", "L1", 5),
        quarantined(sku, recall_id, "S1", "L1", 7),
        quarantined(sku, recall_id, "S2", "L.2", 3),
        source=STOCK,
    )
    await bus.send([same_again])  # the same event re-sent
    await bus.publish(quarantined(sku, recall_id, "S1", "L1", 7), source=STOCK)  # re-reported
    await bus.publish(quarantined(sku, f"RC-NOPE-{run_id}", "S1", "L1", 50), source=STOCK)

    # What the serial registry reports: its answer in two chunks (one re-sent).
    def contact(serial: str, sale: str, ref: str) -> SoldUnit:
        return SoldUnit(
            serial=serial,
            lot_code="L1",
            sale_id=sale,
            customer_ref=ref,
            location="S1",
            sold_at=SOLD_AT,
        )

    chunk_1 = UnitsRecalled(
        sku=sku,
        recall_id=recall_id,
        chunk=1,
        chunks=2,
        counts={UnitStatus.SOLD: 2, UnitStatus.IN_STOCK: 10},
        sold_units=[contact("SN-1", "T-1", "cust-1"), contact("SN-2", "T-2", "cust-2")],
    )
    chunk_2 = UnitsRecalled(
        sku=sku,
        recall_id=recall_id,
        chunk=2,
        chunks=2,
        counts={UnitStatus.SOLD: 1, UnitStatus.RETURNED: 1},
        unknown_serials=["SN-X"],
        sold_units=[contact("SN-3", "T-3", "cust-3")],
    )
    await bus.publish(chunk_1, source=SERIALS)
    await bus.publish(chunk_1, chunk_2, source=SERIALS)

    # Sales of recalled units after the recall, flagged by stock and by the registry.
    await bus.publish(
        flagged(sku, f"T-10-{run_id}", quantity=2, lot_code="L1", recall_id=recall_id),
        flagged(sku, f"T-11-{run_id}", lot_code="L.2"),  # no recall_id: matched by lot
        flagged(sku, f"T-12-{run_id}", lot_code="L1", reason=FlagReason.QUARANTINED),
        flagged(sku, f"T-13-{run_id}", lot_code="L7"),  # no recall covers L7
        source=STOCK,
    )
    await bus.publish(
        flagged(sku, f"T-10-{run_id}", quantity=2, lot_code="L1", recall_id=recall_id),
        source=SERIALS,
    )

    async def chunks_arrived() -> None:
        answer = (await recall_of(recall.url, recall_id))["progress"]["units_answer"]
        assert answer["complete"] is True

    await eventually(chunks_arrived, timeout=45)

    # Units brought back for the recall (a serial without lot is found among the sold units).
    await bus.publish(
        returned(sku, f"RT-1-{run_id}", quantity=2, lot_code="L1"),
        returned(sku, f"RT-1-{run_id}", quantity=2, lot_code="L1"),
        returned(sku, f"RT-2-{run_id}", serial="SN-1", sale_id="T-1"),
        returned(sku, f"RT-3-{run_id}", lot_code="L1", reason=ReturnReason.CUSTOMER),
        returned(sku, f"RT-4-{run_id}", lot_code="L8"),
        source="pos",
    )

    async def progress_complete() -> dict[str, Any]:
        found = await recall_of(recall.url, recall_id)
        assert found["progress"]["units_returned"] == 3
        assert found["progress"]["sales_after_recall"] == 2
        return found

    found = await eventually(progress_complete, timeout=45)
    assert found["progress"] == {
        "quarantined_units": 10,
        "units_to_contact": 3,
        "units_returned": 3,
        "sales_after_recall": 2,
        "units_sold_after_recall": 3,
        "units_answer": {
            "chunks_expected": 2,
            "chunks_received": [1, 2],
            "complete": True,
            "counts": {"sold": 3, "in_stock": 10, "returned": 1},
            "unknown_serials": 1,
        },
    }
    assert [(q["location"], q["lot_code"], q["quantity"]) for q in found["quarantine"]] == [
        ("S1", "L1", 7),
        ("S2", "L.2", 3),
    ]
    assert found["quarantine_by_location"] == [
        {"location": "S1", "quantity": 7},
        {"location": "S2", "quantity": 3},
    ]
    assert sorted(
        (c["serial"], c["sale_id"], c["location"], c["customer_ref"], c["sold_at"])
        for c in found["contacts"]
    ) == [
        ("SN-1", "T-1", "S1", "cust-1", "2026-11-20T15:00:00Z"),
        ("SN-2", "T-2", "S1", "cust-2", "2026-11-20T15:00:00Z"),
        ("SN-3", "T-3", "S1", "cust-3", "2026-11-20T15:00:00Z"),
    ]
    assert sorted((r["return_id"], r["quantity"], r["matched_by"]) for r in found["returns"]) == [
        (f"RT-1-{run_id}", 2, "lot"),
        (f"RT-2-{run_id}", 1, "sold_unit"),
    ]
    assert sorted(
        (f["sale_id"], f["quantity"], f["matched_by"], f["flagged_by"])
        for f in found["flagged_sales"]
    ) == [
        (f"T-10-{run_id}", 2, "recall_id", STOCK),
        (f"T-11-{run_id}", 1, "lot", STOCK),
    ]
    assert found["customers_shown"] is True

    # Anyone else sees the counts, but no customer, no sale of a customer.
    anonymous = await recall_of(recall.url, recall_id, token=None)
    assert (anonymous["customers_shown"], anonymous["contacts"], anonymous["flagged_sales"]) == (
        False,
        [],
        [],
    )
    assert anonymous["progress"] == found["progress"]
    assert "cust-1" not in str(anonymous)
    assert found["unknown_serials"] == ["SN-X"]

    async with httpx.AsyncClient(base_url=recall.url, timeout=20) as http:
        # Stock's reports here carry no account of the lots: nothing accounted for.
        refused = await http.post(f"/recalls/{recall_id}/close", headers=bearer(BO))
        assert refused.status_code == 422, refused.text
        assert [p["field"] for p in refused.json()["detail"]] == ["reason"]
        assert (await recall_of(recall.url, recall_id))["state"] == "open"
        closed = await http.post(
            f"/recalls/{recall_id}/close", json={"reason": "supplier took it over"},
            headers=bearer(BO),
        )  # fmt: skip
        assert (closed.status_code, closed.json()["state"], closed.json()["closed_by"]) == (
            200,
            "closed",
            "bo",
        )
        assert closed.json()["close_reason"] == "supplier took it over"
        twice = await http.post(f"/recalls/{recall_id}/close", headers=bearer(CY))
        assert twice.status_code == 200
        assert (twice.json()["closed_by"], twice.json()["closed_at"]) == (
            "bo",
            closed.json()["closed_at"],
        )
        unknown = await http.post(f"/recalls/RC-NOPE-{run_id}/close", headers=bearer(BO))
        assert unknown.status_code == 404

    # A closed recall still records what happens to its units.
    await bus.publish(quarantined(sku, recall_id, "S3", "L.2", 4), source=STOCK)

    async def late_quarantine() -> None:
        progress = (await recall_of(recall.url, recall_id))["progress"]
        assert progress["quarantined_units"] == 14

    await eventually(late_quarantine, timeout=30)

    async with httpx.AsyncClient(base_url=recall.url, timeout=20) as http:
        listed = (await http.get("/recalls", params={"sku": sku})).json()
        assert [(r["recall_id"], r["state"]) for r in listed["items"]] == [
            (f"RC-{run_id}", "open"),
            (recall_id, "closed"),
        ]
        summary = listed["items"][1]["progress"]
        assert {k: summary[k] for k in ("quarantined_units", "units_to_contact")} == {
            "quarantined_units": 14,
            "units_to_contact": 3,
        }
        assert (summary["units_returned"], summary["sales_after_recall"]) == (3, 2)
        assert summary["units_answer"]["counts"] == {"sold": 3, "in_stock": 10, "returned": 1}
        closed_only = (await http.get("/recalls", params={"sku": sku, "state": "closed"})).json()
        assert [r["recall_id"] for r in closed_only["items"]] == [recall_id]

        # Paged by cursor: a recall issued while a reader pages shifts nothing (an offset would
        # have shown the first page's recall again).
        first = (await http.get("/recalls", params={"sku": sku, "limit": 1})).json()
        assert [r["recall_id"] for r in first["items"]] == [f"RC-{run_id}"]
        assert first["next_after"] == f"RC-{run_id}"
        newer = {"sku": sku, "lot_codes": ["L9"], "reason": "newer", "classification": "III"}
        assert (await http.post("/recalls", json=newer, headers=bearer(ANA))).status_code == 201
        after = {"sku": sku, "limit": 1, "after": first["next_after"]}
        second = (await http.get("/recalls", params=after)).json()
        assert [r["recall_id"] for r in second["items"]] == [recall_id]
        assert second["next_after"] is None
        unknown_cursor = await http.get("/recalls", params={"after": f"RC-NOPE-{run_id}"})
        assert unknown_cursor.status_code == 422
        assert unknown_cursor.json()["message"] == (
            f"after: no recall with recall_id 'RC-NOPE-{run_id}'"
        )


async def test_garbage_goes_to_the_dead_letter_topic_and_the_next_event_applies(  # type: ignore[no-untyped-def]
    start_service, bus, run_id
) -> None:
    recall = start_recall(start_service)
    sku = f"SOUP-{run_id}"
    body = {"sku": sku, "lot_codes": ["L1"], "reason": "swollen cans", "classification": "II"}
    async with httpx.AsyncClient(base_url=recall.url, timeout=20) as http:
        issued = await http.post("/recalls", json=body, headers=bearer(ANA))
        assert issued.status_code == 201, issued.text
    recall_id = issued.json()["recall_id"]

    garbage = b"\x00not json " + run_id.encode()
    await bus.send_raw("stock-quarantined", garbage, key=sku.encode())
    await bus.publish(quarantined(sku, recall_id, "S1", "L1", 6), source=STOCK)

    async def dead_lettered() -> None:
        records = await bus.read_all("stock-quarantined.dlq")
        ours = [r for r in records if r.value == garbage]
        assert len(ours) == 1
        headers = {name: value.decode() for name, value in ours[0].headers}
        assert headers["lotline-dlq-reason"].startswith("not valid JSON")
        assert headers["lotline-dlq-service"] == "recall"

    await eventually(dead_lettered, timeout=30)

    async def applied() -> None:
        assert (await recall_of(recall.url, recall_id))["progress"]["quarantined_units"] == 6

    await eventually(applied, timeout=30)


async def test_a_recall_saved_before_a_crash_is_broadcast_by_the_relay(  # type: ignore[no-untyped-def]
    start_service, bus, mongo, run_id
) -> None:
    recall = start_recall(start_service, OUTBOX_RELAY_GRACE_S="0.5")
    recall_id = f"RC-CRASH-{run_id}"
    # What a recall process leaves behind if it dies between saving and publishing.
    request = RecallRequest(
        sku=f"TEA-{run_id}",
        lot_codes=("L1",),
        serials=(),
        reason="glass fragments",
        classification=Classification.I,
        issued_by="ana",
    )
    created, record = await RecallStore(mongo["recall"]).insert(
        Recall.issue(recall_id, request, now()), None
    )
    assert (created, record.broadcast_pending) == (True, True)

    async def relayed() -> None:
        events = await broadcasts_of(bus, recall_id)
        assert [str(e.id) for e in events] == [str(record.recall.event_id)]
        assert (await recall_of(recall.url, recall_id))["published"] is True

    await eventually(relayed, timeout=30)


async def test_only_an_authenticated_operator_issues_and_closes(  # type: ignore[no-untyped-def]
    start_service, run_id
) -> None:
    recall = start_recall(start_service)
    sku = f"JAM-{run_id}"
    body = {"sku": sku, "lot_codes": ["L1"], "reason": "mould", "classification": "III"}
    async with httpx.AsyncClient(base_url=recall.url, timeout=20) as http:

        async def refused(path: str, headers: dict[str, str]) -> tuple[int, str, str]:
            response = await http.post(path, json=body, headers=headers)
            challenge = response.headers.get("WWW-Authenticate", "")
            return response.status_code, challenge, response.json()["detail"]

        for path in ("/recalls", f"/recalls/RC-{run_id}/close"):
            assert await refused(path, {}) == (
                401,
                'Bearer realm="lotline-recall"',
                "an operator must log in to change recalls: "
                "send Authorization: Bearer <operator token>",
            )
            assert await refused(path, {"Authorization": f"Basic {ANA}"}) == (
                401,
                'Bearer realm="lotline-recall"',
                "an operator must log in to change recalls: "
                "send Authorization: Bearer <operator token>",
            )
            assert await refused(path, bearer(ANA[:-1] + "8")) == (
                401,
                'Bearer realm="lotline-recall", error="invalid_token"',
                "the token is not valid",
            )
            assert await refused(path, bearer(SAM)) == (
                403,
                "",
                "'sam' may read recalls but not change them "
                "(role staff; an operator token is needed)",
            )
        # The hash of bo's token is not bo's token.
        assert (await refused("/recalls", bearer(hash_token(BO))))[0] == 401
        # Nothing was issued by any of them; reads stay open.
        listed = await http.get("/recalls", params={"sku": sku})
        assert (listed.status_code, listed.json()["items"]) == (200, [])

        issued = await http.post("/recalls", json={**body, "recall_id": f"RC-{run_id}"},
                                 headers=bearer(ANA))  # fmt: skip
        assert (issued.status_code, issued.json()["issued_by"]) == (201, "ana")
        # Who issues is who authenticated: the body cannot name someone else.
        named = await http.post("/recalls", json={**body, "issued_by": "bo"}, headers=bearer(ANA))
        assert [p["field"] for p in named.json()["detail"]] == ["issued_by"]
        assert (await refused(f"/recalls/RC-{run_id}/close", bearer(SAM)))[0] == 403
        assert (await recall_of(recall.url, f"RC-{run_id}"))["state"] == "open"
        closed = await http.post(
            f"/recalls/RC-{run_id}/close", json={"reason": "issued by mistake"}, headers=bearer(BO)
        )
        assert (closed.status_code, closed.json()["closed_by"]) == (200, "bo")


async def test_without_operator_tokens_every_change_is_refused(  # type: ignore[no-untyped-def]
    start_service, run_id
) -> None:
    recall = start_service(
        "recall",
        RECALL_OPERATOR_TOKENS="",
        RECALL_OPERATOR_TOKENS_FILE="",
        LOTLINE_TOKENS="",
        LOTLINE_TOKENS_FILE="",
    )
    body = {"sku": f"OIL-{run_id}", "lot_codes": ["L1"], "reason": "rancid", "classification": "II"}
    async with httpx.AsyncClient(base_url=recall.url, timeout=20) as http:
        for path in ("/recalls", f"/recalls/RC-{run_id}/close"):
            response = await http.post(path, json=body, headers=bearer(ANA))
            assert response.status_code == 503
            assert response.json()["detail"] == (
                "changes are refused: the recall service has no tokens configured (set "
                "LOTLINE_TOKENS, LOTLINE_TOKENS_FILE, RECALL_OPERATOR_TOKENS or "
                "RECALL_OPERATOR_TOKENS_FILE)"
            )
        assert (await http.get("/recalls")).status_code == 200


async def test_a_recall_accounts_for_every_unit_stock_reports(  # type: ignore[no-untyped-def]
    start_service, bus, run_id
) -> None:
    """Stock's own process reports each recalled lot's account; the recall adds it up."""
    stock = start_service("stock")
    recall = start_recall(start_service)
    milk = f"MILK-{run_id}"
    sold_at = datetime.now(UTC)
    await bus.publish(ProductRegistered(sku=milk, name="Milk", tracking=Tracking.BATCH))

    async def registered() -> None:
        async with httpx.AsyncClient(base_url=stock.url, timeout=20) as http:
            # 404 until stock knows the product and its receipt; both arrive in order.
            assert (await http.get(f"/stock/{milk}")).status_code == 200

    # 10 received; 3 sold before the recall; 1 written off as stolen (not accounted for).
    await bus.publish(
        ItemReceived(
            sku=milk, receipt_id=f"R-{run_id}", location="S1", quantity=10, lot=Lot(code="LA")
        )
    )
    await eventually(registered, timeout=60)
    await bus.publish(
        ItemSold(sku=milk, sale_id=f"T-{run_id}", line=1, location="S1", quantity=3,
                 lot_code="LA", sold_at=sold_at),
        StockAdjusted(sku=milk, adjustment_id=f"A-{run_id}", location="S1", quantity=1,
                      direction=AdjustmentDirection.OUT, reason=AdjustmentReason.THEFT,
                      lot_code="LA", adjusted_at=sold_at),
    )  # fmt: skip

    async def six_left() -> None:
        async with httpx.AsyncClient(base_url=stock.url, timeout=20) as http:
            assert (await http.get(f"/stock/{milk}")).json()["on_hand"] == 6

    await eventually(six_left, timeout=60)
    body = {"sku": milk, "lot_codes": ["LA"], "reason": "listeria", "classification": "I"}
    async with httpx.AsyncClient(base_url=recall.url, timeout=20) as http:
        issued = await http.post("/recalls", json=body, headers=bearer(ANA))
        assert issued.status_code == 201, issued.text
    recall_id = issued.json()["recall_id"]

    async def accounted(figures: dict[str, Any]) -> None:
        shown = (await recall_of(recall.url, recall_id))["accounting"]
        assert {name: shown[name] for name in figures} == figures

    await eventually(
        lambda: accounted(
            {"basis": "lots", "expected": 10, "accounted": 9, "quarantined": 6,
             "sold_before_recall": 3, "summary": "accounted for: 9 of 10", "complete": False}
        ),
        timeout=60,
    )  # fmt: skip

    # The quarantine is destroyed: held becomes disposed, the stolen unit is still missing.
    await bus.publish(
        StockDisposed(sku=milk, disposal_id=f"D-{run_id}", location="S1", lot_code="LA",
                      quantity=6, method=DisposalMethod.DESTROYED, reference=f"CERT-{run_id}",
                      recall_id=recall_id, disposed_at=datetime.now(UTC)),
    )  # fmt: skip
    await eventually(
        lambda: accounted({"quarantined": 0, "disposed": 6, "accounted": 9, "expected": 10}),
        timeout=60,
    )
    async with httpx.AsyncClient(base_url=recall.url, timeout=20) as http:
        listed = (await http.get("/recalls", params={"sku": milk})).json()["items"]
        assert listed[0]["accounting"]["summary"] == "accounted for: 9 of 10"
        refused = await http.post(f"/recalls/{recall_id}/close", headers=bearer(BO))
        assert refused.status_code == 422, refused.text
        assert refused.json()["detail"][0]["field"] == "reason"
        assert "accounts for 9 of 10 units" in refused.json()["message"]
        blank = await http.post(
            f"/recalls/{recall_id}/close", json={"reason": " "}, headers=bearer(BO)
        )
        assert blank.status_code == 422
        closed = await http.post(
            f"/recalls/{recall_id}/close", json={"reason": "1 stolen before the recall"},
            headers=bearer(BO),
        )  # fmt: skip
        assert closed.status_code == 200, closed.text
    shown = await recall_of(recall.url, recall_id)
    assert (shown["state"], shown["close_reason"]) == ("closed", "1 stolen before the recall")
