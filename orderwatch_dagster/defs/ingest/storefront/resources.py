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
    # Per feed: the list endpoint and the filters it needs beyond "changed since". Orders list
    # only open orders unless asked for `status=any`; closed and cancelled ones matter too.
    endpoints: ClassVar[dict[str, tuple[str, dict[str, str]]]] = {
        "storefront_orders": ("orders.json", {"status": "any"}),
        "storefront_customers": ("customers.json", {}),
    }

    def _http_pages(self, feed: str, updated_since: datetime | None) -> Iterator[Page]:
        path, filters = self.endpoints[feed]
        params: dict[str, Any] = {**self._list_params(updated_since), **filters}
        return self._follow(feed, self._url(path), params, shopify_next)
