"""The recall console in a real headless browser (Debian's chromium, driven by Playwright),
against the four services as their own processes over the real Kafka and FerretDB."""

from __future__ import annotations

import asyncio
import csv
import html
import io
import re
import shutil
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote

import httpx
import pytest
from playwright.async_api import Browser, Page, async_playwright, expect

from lotline.events import ItemReceived, ItemReturned, ItemSold, Lot, ReturnReason

from support import AS_OPERATOR, eventually

pytestmark = pytest.mark.infra

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
OPERATOR_TOKEN, STAFF_TOKEN = "qa-lena-token-" + "1" * 16, "desk-token-" + "2" * 16
TOKENS = f"qa-lena:operator:{OPERATOR_TOKEN},desk:staff:{STAFF_TOKEN}"
TRICKY_CUSTOMER = 'Doe, Jane "JJ"'  # a comma and quotes: the CSV must quote it
WAIT_MS = 90_000  # the machine is shared and slow: generous, never a timing assertion


@pytest.fixture
async def browser() -> AsyncIterator[Browser]:
    async with async_playwright() as playwright:
        launched = await playwright.chromium.launch(executable_path=CHROMIUM, headless=True)
        yield launched
        await launched.close()


async def log_in(page: Page, name: str, token: str) -> None:
    await page.goto("/console")
    await page.get_by_role("link", name="Log in", exact=True).click()
    await page.get_by_label("Operator name").fill(name)
    await page.get_by_label("Token").fill(token)
    await page.get_by_role("button", name="Log in").click()


def sale(sku: str, sale_id: str, location: str, serial: str, customer: str) -> ItemSold:
    return ItemSold(
        sku=sku,
        sale_id=sale_id,
        line=1,
        location=location,
        quantity=1,
        serial=serial,
        customer_ref=customer,
        sold_at=datetime.now(UTC),
    )


async def test_an_operator_issues_follows_and_closes_a_recall_in_the_console(  # type: ignore[no-untyped-def]
    start_service, bus, run_id, browser
) -> None:
    catalog = start_service("catalog")
    stock = start_service("stock")
    serials = start_service("serial-registry")
    recall = start_service("recall", RECALL_OPERATOR_TOKENS=TOKENS)
    phone = f"PHONE-{run_id}"
    pa = [f"P{run_id}-{n:02d}" for n in range(15)]  # lot PA: 10 at S1, 5 at S2
    pb = [f"P{run_id}-{n:02d}" for n in range(20, 25)]  # lot PB: 5 at S2

    async with httpx.AsyncClient(timeout=20) as http:
        body = {"sku": phone, "name": "Phone C", "tracking": "serial"}
        created = await http.post(f"{catalog.url}/products", json=body, headers=AS_OPERATOR)
        assert created.status_code == 201, created.text
        await bus.publish(
            ItemReceived(sku=phone, receipt_id=f"R1-{run_id}", location="S1", quantity=10,
                         lot=Lot(code="PA"), serials=pa[:10]),
            ItemReceived(sku=phone, receipt_id=f"R2-{run_id}", location="S2", quantity=5,
                         lot=Lot(code="PA"), serials=pa[10:]),
            ItemReceived(sku=phone, receipt_id=f"R3-{run_id}", location="S2", quantity=5,
                         lot=Lot(code="PB"), serials=pb),
        )  # fmt: skip

        async def received() -> None:
            response = await http.get(f"{stock.url}/stock/{phone}")
            assert response.status_code == 200
            assert response.json()["on_hand"] == 20
            units = await http.get(f"{serials.url}/lots/{phone}/PB/units", params={"limit": 1})
            assert units.status_code == 200, units.text  # 404 until the lot is registered
            assert units.json()["counts"].get("in_stock") == 5

        await eventually(received, timeout=60)
        await bus.publish(
            sale(phone, f"T0-{run_id}", "S1", pa[0], TRICKY_CUSTOMER),
            sale(phone, f"T1-{run_id}", "S1", pa[1], "CUST-1"),
            sale(phone, f"T2-{run_id}", "S2", pa[10], "CUST-10"),
        )

        async def sold() -> None:
            units = await http.get(f"{serials.url}/lots/{phone}/PA/units", params={"limit": 1})
            assert units.status_code == 200, units.text
            assert units.json()["counts"].get("sold") == 3
            assert (await http.get(f"{stock.url}/stock/{phone}")).json()["on_hand"] == 17

        await eventually(sold, timeout=60)

    context = await browser.new_context(base_url=recall.url, accept_downloads=True)
    page = await context.new_page()

    # A wrong token is turned away; the right one logs the operator in.
    await log_in(page, "qa-lena", STAFF_TOKEN)
    await expect(page.get_by_role("alert")).to_have_text("Unknown operator name or wrong token.")
    await log_in(page, "qa-lena", OPERATOR_TOKEN)
    await expect(page.get_by_text("Logged in as qa-lena (operator)")).to_be_visible()
    cookie = next(c for c in await context.cookies() if c["name"] == "lotline_console")
    assert (cookie["httpOnly"], cookie["sameSite"]) == (True, "Strict")

    # Naming neither lot nor serial: the API's own 422 problem, shown next to its field.
    await page.get_by_label("SKU").fill(phone)
    await page.get_by_label("Reason").fill("Battery may swell")
    await page.get_by_label("Classification").select_option("II")
    await page.get_by_role("button", name="Issue recall").click()
    serials_field = page.locator(".field", has=page.get_by_label("Serial numbers"))
    await expect(serials_field.locator(".errors")).to_have_text(
        "a recall must name at least one lot code or serial"
    )
    await expect(page.get_by_label("Serial numbers")).to_have_attribute("aria-invalid", "true")
    await expect(page.get_by_label("SKU")).to_have_value(phone)  # what was typed is kept

    # Lot PA, plus two units of lot PB pasted as a column.
    await page.get_by_label("Lot codes").fill("PA")
    await page.get_by_label("Serial numbers").fill(f"{pb[0]}\n{pb[1]}\n")
    await page.get_by_role("button", name="Issue recall").click()
    await expect(page).to_have_url(re.compile(r"/console/recalls/RC-"), timeout=WAIT_MS)
    recall_id = page.url.rsplit("/", 1)[1]
    await expect(page.get_by_role("heading", level=1)).to_have_text(f"Recall {recall_id}")
    lot_link = page.locator("dl.facts").get_by_role("link", name="PA")
    await expect(lot_link).to_have_attribute("href", f"/trace/lots/{phone}/PA")

    # The page refreshes itself: every store's stock of the recall held, the buyers listed.
    live = page.locator("#live")
    await expect(live.locator('[data-figure="to-contact"]')).to_have_text("3", timeout=WAIT_MS)
    # Stock holds lot PA where it is (10 + 5 received, 3 sold); the serial registry counts
    # the pasted PB units among the recalled units still in stock.
    await expect(live.locator('[data-figure="quarantined"]')).to_have_text("12", timeout=WAIT_MS)
    rows = page.locator("#quarantine tbody tr")
    await expect(rows).to_have_count(2)
    await expect(rows.nth(0)).to_have_text(re.compile(r"^\s*S1\s*PA\s*8\s*$"))
    await expect(rows.nth(1)).to_have_text(re.compile(r"^\s*S2\s*PA\s*4\s*$"))
    await expect(rows.nth(0).get_by_role("link", name="PA")).to_have_attribute(
        "href", f"/trace/lots/{phone}/PA"
    )
    await expect(page.locator("dl.facts")).to_contain_text("2 named")

    # After the recall a till sells a recalled unit, and a customer brings one back.
    await bus.publish(sale(phone, f"T9-{run_id}", "S1", pa[5], "CUST-LATE"))
    await bus.publish(
        ItemReturned(sku=phone, return_id=f"RT-{run_id}", sale_id=f"T1-{run_id}", location="S1",
                     quantity=1, serial=pa[1], reason=ReturnReason.RECALL),
    )  # fmt: skip
    flagged_row = page.locator("table.flagged tr.highlight", has_text=f"T9-{run_id}")
    await expect(flagged_row).to_contain_text("CUST-LATE", timeout=WAIT_MS)
    await expect(live.locator('[data-figure="returned"]')).to_have_text("1", timeout=WAIT_MS)
    await expect(live.locator('[data-figure="sales-after"]')).to_have_text("1")

    # The contact list as CSV: one row per unit sold before the recall, quoted properly.
    async with page.expect_download() as download_info:
        await page.get_by_role("link", name="Download the contact list (CSV)").click()
    download = await download_info.value
    assert download.suggested_filename == f"{recall_id}-contacts.csv"
    fetched = await context.request.get(f"/console/recalls/{recall_id}/contacts.csv")
    assert fetched.headers["content-type"] == "text/csv; charset=utf-8"
    assert fetched.headers["cache-control"] == "no-store"  # it names customers
    text = (await fetched.body()).decode()
    assert '"Doe, Jane ""JJ"""' in text
    saved = (await download.path()).read_bytes().decode()
    rows = list(csv.reader(io.StringIO(saved, newline="")))
    assert rows[0] == ["serial", "lot_code", "sale_id", "store", "sold_at", "customer_ref"]
    assert sorted((r[0], r[1], r[2], r[3], r[5]) for r in rows[1:]) == [
        (pa[0], "PA", f"T0-{run_id}", "S1", TRICKY_CUSTOMER),
        (pa[1], "PA", f"T1-{run_id}", "S1", "CUST-1"),
        (pa[10], "PA", f"T2-{run_id}", "S2", "CUST-10"),
    ]
    assert all(datetime.fromisoformat(r[4]).tzinfo is not None for r in rows[1:])

    # The list shows it with its figures, newest first.
    await page.goto("/console")
    first = page.locator("ol.recalls > li").first
    await expect(first).to_have_attribute("data-recall-id", recall_id)
    await expect(first.locator('[data-figure="to-contact"]')).to_have_text("3")
    await expect(first.locator(".state")).to_have_text("open")

    await expect(first.locator('[data-figure="accounted"]')).to_have_text("accounted for: 17 of 17")

    # Closing it: the operator becomes closed_by, and the page stops refreshing. Every
    # unit is accounted for (the registry placed all 17), so no reason is asked for.
    await first.get_by_role("link", name=recall_id).click()
    await expect(page.locator("#accounting")).to_contain_text("accounted for: 17 of 17")
    await expect(page.locator("textarea[name=reason]")).to_have_count(0)
    await page.get_by_role("button", name="Close recall").click()
    await expect(page.locator("#state")).to_have_text("closed", timeout=WAIT_MS)
    await expect(page.get_by_text("by qa-lena")).to_have_count(2)  # issued by, closed by
    await expect(page.get_by_role("button", name="Close recall")).to_have_count(0)
    await expect(live).not_to_have_attribute("hx-get", re.compile(".*"))
    async with httpx.AsyncClient(timeout=20) as http:
        shown = (await http.get(f"{recall.url}/recalls/{quote(recall_id, safe='')}")).json()
    assert (shown["state"], shown["issued_by"], shown["closed_by"]) == (
        "closed",
        "qa-lena",
        "qa-lena",
    )
    await context.close()


async def test_closing_a_recall_not_fully_accounted_for_asks_for_a_reason(  # type: ignore[no-untyped-def]
    start_service, run_id, browser
) -> None:
    recall = start_service("recall", RECALL_OPERATOR_TOKENS=TOKENS)
    recall_id = f"RC-{run_id}"
    body = {"recall_id": recall_id, "sku": f"JAM-{run_id}", "lot_codes": ["L1"],
            "reason": "mould", "classification": "III"}  # fmt: skip
    async with httpx.AsyncClient(base_url=recall.url, timeout=20) as http:
        issued = await http.post(
            "/recalls", json=body, headers={"Authorization": f"Bearer {OPERATOR_TOKEN}"}
        )
        assert issued.status_code == 201, issued.text
    context = await browser.new_context(base_url=recall.url)
    page = await context.new_page()
    await log_in(page, "qa-lena", OPERATOR_TOKEN)
    await page.goto(f"/console/recalls/{recall_id}")
    # No store has reported lot L1: nothing of it is accounted for yet.
    await expect(page.locator("#accounting")).to_contain_text("accounted for: 0 of 0")
    reason = page.get_by_label(re.compile("Not every unit is accounted for"))
    await expect(reason).to_be_visible()
    # The browser insists on the field; without it (as a script posts) the server does.
    await reason.evaluate("field => field.removeAttribute('required')")
    await page.get_by_role("button", name="Close recall").click()
    await expect(page.locator("#reason-error")).to_contain_text(
        "accounts for 0 of 0 units: closing it needs a reason"
    )
    await expect(page.locator("#state")).to_have_text("open")
    await page.get_by_label(re.compile("Not every unit is accounted for")).fill("lot never shipped")
    await page.get_by_role("button", name="Close recall").click()
    await expect(page.locator("#state")).to_have_text("closed", timeout=WAIT_MS)
    await expect(page.locator("#close-reason-shown")).to_have_text("lot never shipped")
    await context.close()


async def test_the_console_refuses_changes_from_anyone_but_an_operator(  # type: ignore[no-untyped-def]
    start_service, run_id, browser
) -> None:
    recall = start_service("recall", RECALL_OPERATOR_TOKENS=TOKENS)
    sku = f"JAM-{run_id}"
    form = {"sku": sku, "lot_codes": "L1", "reason": "mould", "classification": "III"}

    async def issued() -> list[Any]:
        async with httpx.AsyncClient(timeout=20) as http:
            listed = await http.get(f"{recall.url}/recalls", params={"sku": sku})
        return list(listed.json()["items"])

    # Anonymous: the page offers a login instead of the form, and a posted form is refused.
    anonymous = await browser.new_context(base_url=recall.url)
    page = await anonymous.new_page()
    await page.goto("/")
    await expect(page).to_have_url(f"{recall.url}/console")
    await expect(page.get_by_role("button", name="Issue recall")).to_have_count(0)
    await expect(page.get_by_role("link", name="Log in as an operator")).to_be_visible()
    refused = await anonymous.request.post("/console/recalls", form=form)
    assert refused.status == 401
    assert refused.headers["www-authenticate"] == 'Bearer realm="lotline-recall"'
    assert "an operator must log in to change recalls" in await refused.text()
    closing = await anonymous.request.post(f"/console/recalls/RC-{run_id}/close", form={})
    assert closing.status == 401

    # Staff may log in and look, but not issue.
    staff = await browser.new_context(base_url=recall.url)
    page = await staff.new_page()
    await log_in(page, "desk", STAFF_TOKEN)
    await expect(page.get_by_text("Logged in as desk (staff)")).to_be_visible()
    await expect(page.get_by_role("button", name="Issue recall")).to_have_count(0)
    refused = await staff.request.post("/console/recalls", form=form)
    assert refused.status == 403
    assert "'desk' may read recalls but not change them" in html.unescape(await refused.text())

    # An operator's session, but a form without its CSRF token (as another site would post).
    operator = await browser.new_context(base_url=recall.url)
    page = await operator.new_page()
    await log_in(page, "qa-lena", OPERATOR_TOKEN)
    await expect(page.get_by_role("button", name="Issue recall")).to_be_visible()
    forged = await operator.request.post("/console/recalls", form=form)
    assert forged.status == 403
    assert "did not come from the console" in await forged.text()
    assert await issued() == []

    # Logging out ends it: the same browser is anonymous again, and a copy of the cookie
    # taken before (with the form's own CSRF token) is worthless: the server ended it.
    copied = next(c for c in await operator.cookies() if c["name"] == "lotline_console")
    csrf = await page.locator('input[name="csrf_token"]').first.get_attribute("value")
    assert csrf
    await page.get_by_role("button", name="Log out").click()
    await expect(page.get_by_role("link", name="Log in", exact=True)).to_be_visible()
    assert (await operator.request.post("/console/recalls", form=form)).status == 401
    async with httpx.AsyncClient(
        base_url=recall.url, timeout=20, cookies={"lotline_console": copied["value"]}
    ) as replay:
        replayed = await replay.post("/console/recalls", data={**form, "csrf_token": csrf})
        assert replayed.status_code == 401
        assert "an operator must log in" in replayed.text
        assert "Logged in as" not in (await replay.get("/console")).text
    assert await issued() == []
    for context in (anonymous, staff, operator):
        await context.close()


async def console_login(http: httpx.AsyncClient, name: str, token: str) -> httpx.Response:
    """A login as the browser sends it: the form's CSRF token, then name and token."""
    page = await http.get("/console/login")
    csrf = re.search(r'name="csrf_token" value="([^"]+)"', page.text)
    assert csrf is not None
    return await http.post(
        "/console/login",
        data={"csrf_token": csrf.group(1), "name": name, "token": token, "next": "/console"},
    )


async def test_a_console_login_unused_for_the_idle_time_ends(start_service) -> None:  # type: ignore[no-untyped-def]
    recall = start_service("recall", RECALL_OPERATOR_TOKENS=TOKENS, RECALL_SESSION_IDLE_S="2")
    async with httpx.AsyncClient(base_url=recall.url, timeout=20) as http:
        assert (await console_login(http, "qa-lena", OPERATOR_TOKEN)).status_code == 303
        assert "Logged in as" in (await http.get("/console")).text
        await asyncio.sleep(3)  # longer than the idle time: the outcome does not depend on speed
        after = await http.get("/console")
        assert "Logged in as" not in after.text
        assert "lotline_console" in after.headers.get("set-cookie", "")  # a fresh, anonymous one


async def test_failed_logins_are_throttled_then_locked_out(start_service) -> None:  # type: ignore[no-untyped-def]
    recall = start_service(
        "recall",
        RECALL_OPERATOR_TOKENS=TOKENS,
        LOTLINE_LOGIN_BACKOFF_S="0",
        LOTLINE_LOGIN_LOCKOUT_FAILURES="4",
        LOTLINE_LOGIN_LOCKOUT_S="3",
    )
    async with httpx.AsyncClient(base_url=recall.url, timeout=20) as http:
        for _ in range(4):
            wrong = await console_login(http, "qa-lena", STAFF_TOKEN)
            assert wrong.status_code == 401
        # Locked out: even the right token is refused, before it is looked at.
        locked = await console_login(http, "qa-lena", OPERATOR_TOKEN)
        assert locked.status_code == 429
        wait = int(locked.headers["Retry-After"])
        assert 1 <= wait <= 3
        assert "Too many failed logins from this operator name or address" in locked.text
        assert "Logged in as" not in (await http.get("/console")).text
        await asyncio.sleep(wait + 0.5)  # the lockout served
        assert (await console_login(http, "qa-lena", OPERATOR_TOKEN)).status_code == 303
        assert "Logged in as <strong>qa-lena</strong>" in (await http.get("/console")).text

        # Bearer tokens count against the address the same way (its lockout served, anew).
        body = {"sku": "X", "lot_codes": ["L"], "reason": "r", "classification": "III"}
        for _ in range(4):
            bad = await http.post(
                "/recalls", json=body, headers={"Authorization": "Bearer " + "z" * 20}
            )
            assert bad.status_code == 401
        refused = await http.post(
            "/recalls", json=body, headers={"Authorization": f"Bearer {OPERATOR_TOKEN}"}
        )
        assert refused.status_code == 429
        assert "Retry-After" in refused.headers
    log = recall.log_path.read_text()
    assert '"event": "console_login_failed"' in log
    assert '"event": "console_login_throttled"' in log
    assert '"event": "token_invalid"' in log
    assert OPERATOR_TOKEN not in log
    assert STAFF_TOKEN not in log
