"""The storefront's connector (Shopify Orders, Customers), configured from the environment."""

import dagster as dg

from orderwatch_dagster.defs.ingest.connector import bind_connectors, connector_settings
from orderwatch_dagster.defs.ingest.shopify import SHOPIFY_API_VERSION, SHOPIFY_BASE_URL
from orderwatch_dagster.defs.ingest.storefront.resources import ShopifyConnector
from orderwatch_dagster.lib.settings import EnvSetting

SETTINGS = connector_settings(
    "storefront",
    base_url=SHOPIFY_BASE_URL,
    page_size=250,
    extra=(
        EnvSetting("ORDERWATCH_STOREFRONT_SHOP", "shop", None, "`<shop>` of <shop>.myshopify.com"),
        EnvSetting(
            "ORDERWATCH_STOREFRONT_API_VERSION", "api_version", SHOPIFY_API_VERSION, "Admin API"
        ),
    ),
    secret=EnvSetting(
        "SHOPIFY_ACCESS_TOKEN", "api_key", None, "Admin API access token", secret=True
    ),
)


@dg.definitions
def connectors() -> dg.Definitions:
    return bind_connectors(ShopifyConnector, SETTINGS)
