"""The storefront's connector (Shopify Orders, Customers), bound from the environment when the
code location loads (README "Configuration").
"""

from orderwatch_dagster.defs.ingest.connector import connector_definitions
from orderwatch_dagster.defs.ingest.storefront.resources import ShopifyConnector

connectors = connector_definitions(ShopifyConnector)
