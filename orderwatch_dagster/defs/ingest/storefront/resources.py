"""Shopify Admin REST connector for the storefront feeds (orders, customers)."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime
from typing import Any, ClassVar
from urllib.parse import urljoin

import requests

from orderwatch_dagster.defs.ingest.connector import FeedConnector, Page, iso_utc

SHOPIFY_MAX_LIMIT = 250


def shopify_next(response: requests.Response) -> tuple[str, dict[str, Any] | None] | None:
    """Shopify's cursor: the `Link: <...page_info=...>; rel="next"` header (absent at the end).

    The next URL already carries `page_info` and `limit`; Shopify rejects other filters beside it.
    """
    link = response.links.get("next")
    if not link or not link.get("url"):
        return None
    return urljoin(response.url, link["url"]), None


class ShopifyConnector(FeedConnector):
    """Shopify Admin REST `Order` / `Customer` lists (storefront_orders, storefront_customers).

    HTTP: `base_url` = `https://<shop>.myshopify.com/admin/api/<version>` (e.g. 2025-07); the
    access token goes in `X-Shopify-Access-Token`, from env `SHOPIFY_ACCESS_TOKEN`
    (`api_key=dg.EnvVar("SHOPIFY_ACCESS_TOKEN")`). `updated_since` -> `updated_at_min`;
    pages follow the `Link` header (`rel="next"`, `page_info`).
    """

    feeds: ClassVar[tuple[str, ...]] = ("storefront_orders", "storefront_customers")
    env_var: ClassVar[str] = "SHOPIFY_ACCESS_TOKEN"
    endpoints: ClassVar[dict[str, str]] = {
        "storefront_orders": "orders.json",
        "storefront_customers": "customers.json",
    }

    def _auth_headers(self) -> dict[str, str]:
        return {"X-Shopify-Access-Token": self.api_key or ""}

    def _list_params(self, feed: str, updated_since: datetime | None) -> dict[str, Any]:
        params: dict[str, Any] = {"limit": min(self.page_size, SHOPIFY_MAX_LIMIT)}
        if feed in ("storefront_orders", "oms_fulfillment_orders"):
            params["status"] = "any"  # default is open only; closed/cancelled orders matter too
        if updated_since is not None:
            params["updated_at_min"] = iso_utc(updated_since)
        return params

    def _http_pages(self, feed: str, updated_since: datetime | None) -> Iterator[Page]:
        url = self._url(self.endpoints[feed])
        return self._follow(feed, url, self._list_params(feed, updated_since), shopify_next)
