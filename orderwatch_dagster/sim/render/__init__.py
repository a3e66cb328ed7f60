"""One renderer module per vendor: a plan as that vendor's record at a moment, and its page.

`shopify` (storefront orders, customers, FulfillmentOrders), `shipbob` (3PL orders),
`easypost` (carrier trackers), `loop` (returns), `zendesk` (support tickets); `common` holds
the timestamp styles and ids they share. docs/feeds.md is the contract.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from orderwatch_dagster.sim.render import easypost, loop, shipbob, shopify, zendesk

# feed (landing folder) -> the vendor's list-page body around a page of records
# (records, more pages follow, sideloaded objects) -> body
PAGES: dict[str, Callable[[list[dict], bool, list[dict]], Any]] = {
    "storefront_orders": shopify.orders_page,
    "storefront_customers": shopify.customers_page,
    "oms_fulfillment_orders": shopify.fulfillment_orders_page,
    "wms_shipments": shipbob.orders_page,
    "carrier_trackers": easypost.trackers_page,
    "returns": loop.returns_page,
    "support_tickets": zendesk.tickets_page,
}

__all__ = ["PAGES", "easypost", "loop", "shipbob", "shopify", "zendesk"]
