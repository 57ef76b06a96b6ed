"""The catalog's one consumed event: `item-received`, to know which SKUs have stock.

DESIGN.md lists the catalog as consuming nothing; the issue wins: "changing a product's
tracking mode once stock exists is refused". The catalog may not read the stock service's
database, so it learns that stock exists from `item-received` into its own read model.
"""

from __future__ import annotations

from lotline.catalog.store import FirstReceipt, ProductStore
from lotline.events import ItemReceived
from lotline.runtime.consumer import Delivery


async def on_item_received(store: ProductStore, deliveries: list[Delivery]) -> None:
    """Mark each SKU as having stock, with its first receipt (what a refusal will cite)."""
    first: dict[str, FirstReceipt] = {}
    for delivery in deliveries:
        receipt: ItemReceived = delivery.data
        if receipt.rule_broken() is not None:
            continue  # booked nowhere (receipt-rejected): no stock came of it
        first.setdefault(
            receipt.sku,
            FirstReceipt(
                sku=receipt.sku,
                receipt_id=receipt.receipt_id,
                location=receipt.location,
                received_at=receipt.received_at or delivery.event.time,
            ),
        )
    await store.record_first_receipts(list(first.values()))
