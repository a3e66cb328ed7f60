"""Shopify Admin REST, shared by the storefront and OMS connectors (both read one shop).

Auth: the access token in `X-Shopify-Access-Token` (env `SHOPIFY_ACCESS_TOKEN`). Lists page by
the `Link` response header (`rel="next"`, `page_info`).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, ClassVar
from urllib.parse import urljoin

import requests

from orderwatch_dagster.defs.ingest.connector import FeedConnector, iso_utc
from orderwatch_dagster.lib.settings import EnvSetting

SHOPIFY_MAX_LIMIT = 250
SHOPIFY_BASE_URL = "https://{shop}.myshopify.com/admin/api/{api_version}"
SHOPIFY_API_VERSION = "2025-07"


def shopify_next(response: requests.Response) -> tuple[str, dict[str, Any] | None] | None:
    """Shopify's cursor: the `Link: <...page_info=...>; rel="next"` header (absent at the end).

    The next URL already carries `page_info` and `limit`; Shopify rejects other filters beside it.
    """
    link = response.links.get("next")
    if not link or not link.get("url"):
        return None
    return urljoin(response.url, link["url"]), None


class ShopifyAdminConnector(FeedConnector):
    """`base_url` = `https://<shop>.myshopify.com/admin/api/<version>` (from `shop` and
    `api_version` unless set in full)."""

    shop: str | None = None  # <shop>.myshopify.com
    api_version: str = SHOPIFY_API_VERSION

    env_var: ClassVar[str] = "SHOPIFY_ACCESS_TOKEN"
    key_description: ClassVar[str] = "Admin API access token"
    default_base_url: ClassVar[str] = SHOPIFY_BASE_URL
    default_page_size: ClassVar[int] = SHOPIFY_MAX_LIMIT

    @classmethod
    def extra_settings(cls, prefix: str) -> tuple[EnvSetting, ...]:
        return (
            EnvSetting(prefix + "SHOP", "shop", None, "`<shop>` of <shop>.myshopify.com"),
            EnvSetting(prefix + "API_VERSION", "api_version", SHOPIFY_API_VERSION, "Admin API"),
        )

    def _url_fields(self) -> dict[str, str | None]:
        return {"shop": self.shop, "api_version": self.api_version}

    def _auth_headers(self) -> dict[str, str]:
        return {"X-Shopify-Access-Token": self.api_key or ""}

    def _list_params(self, updated_since: datetime | None) -> dict[str, Any]:
        """The page size and the updated-at filter every Shopify list takes; each connector adds
        its own filters (e.g. `status=any`, since orders default to open only)."""
        params: dict[str, Any] = {"limit": min(self.page_size, SHOPIFY_MAX_LIMIT)}
        if updated_since is not None:
            params["updated_at_min"] = iso_utc(updated_since)
        return params
