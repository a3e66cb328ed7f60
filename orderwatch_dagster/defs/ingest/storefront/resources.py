"""Shopify Admin REST connector for the storefront feeds (orders, customers)."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime
from typing import Any, ClassVar

from orderwatch_dagster.defs.ingest.connector import Page
from orderwatch_dagster.defs.ingest.shopify import ShopifyAdminConnector, shopify_next


class ShopifyConnector(ShopifyAdminConnector):
    """Shopify Admin REST `Order` / `Customer` lists (storefront_orders, storefront_customers).

    HTTP: see defs/ingest/shopify.py for base URL and auth. `updated_since` ->
    `updated_at_min`; pages follow the `Link` header (`rel="next"`, `page_info`).
    """

    source: ClassVar[str] = "storefront"
    endpoints: ClassVar[dict[str, str]] = {
        "storefront_orders": "orders.json",
        "storefront_customers": "customers.json",
    }

    def _http_pages(self, feed: str, updated_since: datetime | None) -> Iterator[Page]:
        params: dict[str, Any] = self._list_params(updated_since)
        if feed == "storefront_orders":
            params["status"] = "any"  # default is open only; closed/cancelled orders matter too
        return self._follow(feed, self._url(self.endpoints[feed]), params, shopify_next)
