"""The OMS connector (Shopify FulfillmentOrders), configured from the environment."""

import dagster as dg

from orderwatch_dagster.defs.ingest.connector import bind_connectors, connector_settings
from orderwatch_dagster.defs.ingest.oms.resources import ShopifyFulfillmentOrdersConnector
from orderwatch_dagster.defs.ingest.shopify import SHOPIFY_API_VERSION, SHOPIFY_BASE_URL
from orderwatch_dagster.lib.settings import EnvSetting

SETTINGS = connector_settings(
    "oms",
    base_url=SHOPIFY_BASE_URL,
    page_size=250,
    extra=(
        EnvSetting("ORDERWATCH_OMS_SHOP", "shop", None, "`<shop>` of <shop>.myshopify.com"),
        EnvSetting("ORDERWATCH_OMS_API_VERSION", "api_version", SHOPIFY_API_VERSION, "Admin API"),
    ),
    secret=EnvSetting(
        "SHOPIFY_ACCESS_TOKEN",
        "api_key",
        None,
        "Admin API access token (scope read_*_fulfillment_orders)",
        secret=True,
    ),
)


@dg.definitions
def connectors() -> dg.Definitions:
    return bind_connectors(ShopifyFulfillmentOrdersConnector, SETTINGS)
