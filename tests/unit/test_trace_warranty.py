"""A unit's trace carries its warranty and the units a warranty claim linked it to."""

from __future__ import annotations

from lotline.recall.timeline import ProductInfo, assemble_unit


def test_a_unit_trace_shows_its_warranty_and_its_replacement() -> None:
    unit = {
        "sku": "PHONE",
        "serial": "NEW",
        "status": "sold",
        "location": "S1",
        "warranty": {"status": "in_warranty", "months": 12, "ends_on": "2027-11-22"},
        "replaces": "OLD",
        "history": [],
    }
    trace = assemble_unit(unit, ProductInfo(sku="PHONE", tracking="serial"), [])
    assert (trace.warranty_status, trace.warranty_ends_on) == ("in_warranty", "2027-11-22")
    assert (trace.replaces, trace.replaced_by) == ("OLD", None)


def test_a_unit_without_warranty_says_none() -> None:
    unit = {"sku": "PHONE", "serial": "A", "status": "in_stock", "location": "S1"}
    trace = assemble_unit(unit, ProductInfo(sku="PHONE"), [])
    assert (trace.warranty_status, trace.warranty_ends_on) == ("none", None)
