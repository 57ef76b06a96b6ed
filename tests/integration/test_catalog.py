"""The catalog as its own process against the real Kafka and FerretDB."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from lotline.catalog.domain import ProductDetails, revise
from lotline.catalog.store import RECEIPTS, ProductStore
from lotline.events import ItemReceived, Lot, Tracking, decode
from lotline.runtime.wal import WriteAheadLog

from support import AS_OPERATOR, eventually, unique_gtin

pytestmark = pytest.mark.infra

# Each SKU's own GTIN, new every run: a GTIN belongs to one product.
GTINS: dict[str, str] = {}


def gtin_of(sku: str) -> str:
    return GTINS.setdefault(sku, unique_gtin())


def milk(sku: str, **overrides: Any) -> dict[str, Any]:
    body = {"sku": sku, "name": "Milk 1L", "tracking": "batch", "gtin": gtin_of(sku)}
    body["shelf_life_days"] = 10
    body.update(overrides)
    return body


def catalog_client(catalog: Any, **headers: str) -> httpx.AsyncClient:
    """As the tests' operator, who may change products."""
    return httpx.AsyncClient(base_url=catalog.url, timeout=20, headers=headers or AS_OPERATOR)


async def revisions_on_topic(bus: Any, sku: str) -> list[int]:
    records = await bus.read_all("product-registered")
    return [decode(r.value).data.revision for r in records if r.key == sku.encode()]


async def test_register_update_and_each_revision_is_published(start_service, bus, run_id) -> None:  # type: ignore[no-untyped-def]
    catalog = start_service("catalog")
    sku, other = f"MILK-{run_id}", f"MILK-{run_id}-B"
    async with catalog_client(catalog) as http:
        created = await http.post("/products", json=milk(sku))
        assert created.status_code == 201, created.text
        assert {k: created.json()[k] for k in ("sku", "revision", "gtin", "published")} == {
            "sku": sku,
            "revision": 1,
            "gtin": gtin_of(sku),
            "published": True,
        }
        again = await http.post("/products", json=milk(sku))
        assert again.status_code == 409
        assert again.json()["detail"] == (
            f"sku {sku} is already registered (revision 1); use PUT /products/{sku} to change it"
        )

        renamed = milk(sku, name="Whole milk 1L", shelf_life_days=12)
        updated = await http.put(f"/products/{sku}", json=renamed)
        assert (updated.status_code, updated.json()["revision"]) == (200, 2)
        unchanged = await http.put(f"/products/{sku}", json=renamed)
        assert (unchanged.status_code, unchanged.json()["revision"]) == (200, 2)

        fetched = (await http.get(f"/products/{sku}")).json()
        assert (fetched["name"], fetched["shelf_life_days"], fetched["revision"]) == (
            "Whole milk 1L",
            12,
            2,
        )
        missing = await http.get(f"/products/NOPE-{run_id}")
        assert (missing.status_code, missing.json()["detail"]) == (
            404,
            f"no product with sku 'NOPE-{run_id}'",
        )

        put_new = await http.put(f"/products/{other}", json=milk(other, tracking="serial"))
        assert (put_new.status_code, put_new.json()["revision"]) == (201, 1)
        page = (await http.get("/products", params={"after": sku, "limit": 1})).json()
        assert [p["sku"] for p in page["items"]] == [other]
        assert page["next_after"] == other or page["next_after"] is None
        serials = (await http.get("/products", params={"after": sku, "tracking": "serial"})).json()
        assert serials["items"][0]["sku"] == other
        batch = (await http.get("/products", params={"after": sku, "tracking": "batch"})).json()
        assert other not in [p["sku"] for p in batch["items"]]

    async def published() -> None:
        assert await revisions_on_topic(bus, sku) == [1, 2]
        assert await revisions_on_topic(bus, other) == [1]

    await eventually(published, timeout=20)


async def test_bad_input_is_refused_naming_the_field(start_service, run_id) -> None:  # type: ignore[no-untyped-def]
    catalog = start_service("catalog")
    sku = f"BAD-{run_id}"
    async with catalog_client(catalog) as http:
        bad_gtin = await http.post("/products", json=milk(sku, gtin="4006381333932"))
        assert bad_gtin.status_code == 422
        assert [p["field"] for p in bad_gtin.json()["detail"]] == ["gtin"]
        assert "'4006381333932' is not a valid GTIN" in bad_gtin.json()["message"]

        bad = await http.post("/products", json={"sku": sku, "tracking": "pallet"})
        assert bad.status_code == 422
        assert sorted(p["field"] for p in bad.json()["detail"]) == ["name", "tracking"]

        negative = await http.put(f"/products/{sku}", json=milk(sku, shelf_life_days=-1))
        assert negative.json()["message"] == (
            "shelf_life_days: Input should be greater than or equal to 0"
        )
        slash = await http.post("/products", json=milk(f"{sku}/2"))
        assert slash.status_code == 422  # a SKU is a path segment: no '/'
        assert [p["field"] for p in slash.json()["detail"]] == ["sku"]
        mismatch = await http.put(f"/products/{sku}", json=milk(f"{sku}-X"))
        assert mismatch.status_code == 422
        assert mismatch.json()["detail"][0]["field"] == "sku"
        assert (await http.get(f"/products/{sku}")).status_code == 404


async def test_tracking_cannot_change_once_stock_was_received(  # type: ignore[no-untyped-def]
    start_service, bus, mongo, run_id
) -> None:
    catalog = start_service("catalog")
    sku, late = f"YOG-{run_id}", f"LATE-{run_id}"
    async with catalog_client(catalog) as http:
        assert (await http.post("/products", json=milk(sku))).status_code == 201
        # Before any stock, the tracking mode may change (and change back).
        assert (await http.put(f"/products/{sku}", json=milk(sku, tracking="serial"))).json()[
            "revision"
        ] == 2
        assert (await http.put(f"/products/{sku}", json=milk(sku))).json()["revision"] == 3

        receipt = ItemReceived(
            receipt_id=f"R1-{run_id}", location="DC-1", sku=sku, quantity=5, lot=Lot(code="L.1")
        )
        later = ItemReceived(
            receipt_id=f"R2-{run_id}", location="DC-1", sku=sku, quantity=2, lot=Lot(code="L.2")
        )
        sent = await bus.publish(receipt, later)
        await bus.send(sent[:1])  # a producer's re-send
        await bus.publish(
            ItemReceived(receipt_id=f"R3-{run_id}", location="DC-2", sku=late, quantity=1)
        )

        async def stock_known() -> dict[str, Any]:
            product = (await http.get(f"/products/{sku}")).json()
            assert product["has_receipts"] is True
            return dict(product)

        product = await eventually(stock_known, timeout=30)
        assert (product["first_receipt_id"], product["revision"]) == (f"R1-{run_id}", 3)

        refused = await http.put(f"/products/{sku}", json=milk(sku, tracking="serial"))
        assert refused.status_code == 409
        assert refused.json()["detail"] == (
            f"sku {sku} has stock received (receipt R1-{run_id}), its tracking mode cannot "
            "change from batch to serial"
        )
        renamed = await http.put(f"/products/{sku}", json=milk(sku, name="Yoghurt"))
        assert (renamed.status_code, renamed.json()["revision"]) == (200, 4)

        # Stock that arrived before the product was registered: the first registration
        # sets the tracking mode, changing it afterwards is refused.
        async def stock_recorded() -> None:
            # As any instance reads it: through the log, before it is written out.
            assert await WriteAheadLog(mongo["catalog"]).read(RECEIPTS, [late])

        await eventually(stock_recorded, timeout=30)
        assert (await http.get(f"/products/{late}")).status_code == 404
        created = await http.post("/products", json=milk(late, tracking="quantity"))
        assert created.status_code == 201, created.text
        assert created.json()["first_receipt_id"] == f"R3-{run_id}"
        late_change = await http.put(f"/products/{late}", json=milk(late, tracking="batch"))
        assert late_change.status_code == 409

    async def published() -> None:
        assert await revisions_on_topic(bus, sku) == [1, 2, 3, 4]

    await eventually(published, timeout=20)


async def test_a_change_saved_before_a_crash_is_published_by_the_relay(  # type: ignore[no-untyped-def]
    start_service, bus, mongo, run_id
) -> None:
    catalog = start_service("catalog", OUTBOX_RELAY_GRACE_S="0.5")
    sku = f"CRASH-{run_id}"
    # What a catalog process leaves behind if it dies between saving and publishing.
    change = revise(sku, None, ProductDetails("Crash test", Tracking.QUANTITY), None)
    assert change is not None
    saved = await ProductStore(mongo["catalog"], WriteAheadLog(mongo["catalog"])).save(change)
    assert saved is not None
    assert saved.unpublished_revision == 1

    async def relayed() -> None:
        assert await revisions_on_topic(bus, sku) == [1]
        async with httpx.AsyncClient(base_url=catalog.url) as http:
            assert (await http.get(f"/products/{sku}")).json()["published"] is True

    await eventually(relayed, timeout=30)


async def test_changing_products_needs_a_token_of_a_role_that_may(  # type: ignore[no-untyped-def]
    start_service, run_id
) -> None:
    catalog = start_service(
        "catalog",
        LOTLINE_TOKENS=f"cat:catalog:{'c' * 20},desk:staff:{'d' * 20}",
    )
    sku = f"AUTH-{run_id}"
    async with httpx.AsyncClient(base_url=catalog.url, timeout=20) as anonymous:
        refused = await anonymous.post("/products", json=milk(sku))
        assert refused.status_code == 401
        assert refused.headers["WWW-Authenticate"].startswith("Bearer")
        assert "log in to change products" in refused.json()["detail"]
        put = await anonymous.put(f"/products/{sku}", json=milk(sku))
        assert put.status_code == 401
        wrong = await anonymous.post(
            "/products", json=milk(sku), headers={"Authorization": "Bearer " + "x" * 20}
        )
        assert (wrong.status_code, wrong.json()["detail"]) == (401, "the token is not valid")
        staff = await anonymous.put(
            f"/products/{sku}", json=milk(sku), headers={"Authorization": "Bearer " + "d" * 20}
        )
        assert staff.status_code == 403
        assert staff.json()["detail"] == (
            "'desk' may not change products (role staff; an operator or catalog token is needed)"
        )
        assert (await anonymous.get(f"/products/{sku}")).status_code == 404  # nothing changed
    async with catalog_client(catalog, Authorization="Bearer " + "c" * 20) as http:
        assert (await http.post("/products", json=milk(sku))).status_code == 201
        assert (await http.get(f"/products/{sku}")).status_code == 200

    unconfigured = start_service("catalog", LOTLINE_TOKENS="", LOTLINE_TOKENS_FILE="")
    async with catalog_client(unconfigured) as http:
        nobody = await http.post("/products", json=milk(f"{sku}-2"))
        assert nobody.status_code == 503
        assert (
            "no tokens configured (set LOTLINE_TOKENS or LOTLINE_TOKENS_FILE)"
            in (nobody.json()["detail"])
        )
        assert (await http.get(f"/products/{sku}")).status_code == 200  # reading needs none


async def test_a_gtin_belongs_to_one_product(start_service, run_id) -> None:  # type: ignore[no-untyped-def]
    catalog = start_service("catalog")
    first, second, gtin = f"GT-{run_id}-A", f"GT-{run_id}-B", unique_gtin()
    async with catalog_client(catalog) as http:
        assert (await http.post("/products", json=milk(first, gtin=gtin))).status_code == 201
        for attempt in (
            http.post("/products", json=milk(second, gtin=gtin)),
            http.put(f"/products/{second}", json=milk(second, gtin=gtin)),
        ):
            taken = await attempt
            assert taken.status_code == 409, taken.text
            assert taken.json()["detail"].startswith(
                f"gtin {gtin} belongs to product {first}: a GTIN names one product"
            )
        assert (await http.get(f"/products/{second}")).status_code == 404
        # The second product registers with a GTIN of its own, and may not take the first's.
        assert (await http.post("/products", json=milk(second))).status_code == 201
        moved = await http.put(f"/products/{second}", json=milk(second, gtin=gtin))
        assert moved.status_code == 409
        assert (await http.get(f"/products/{second}")).json()["gtin"] == gtin_of(second)
        # Once the first product gives its GTIN up, the second may have it; the first may
        # keep being changed meanwhile (an unchanged GTIN is its own).
        kept = await http.put(f"/products/{first}", json=milk(first, gtin=gtin, name="A"))
        assert (kept.status_code, kept.json()["revision"]) == (200, 2)
        released = await http.put(f"/products/{first}", json=milk(first, gtin=None))
        assert (released.status_code, released.json()["gtin"]) == (200, None)
        taken_over = await http.put(f"/products/{second}", json=milk(second, gtin=gtin))
        assert (taken_over.status_code, taken_over.json()["gtin"]) == (200, gtin)
        back = await http.put(f"/products/{first}", json=milk(first, gtin=gtin))
        assert back.status_code == 409
        assert f"belongs to product {second}" in back.json()["detail"]
