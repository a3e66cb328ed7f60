"""The OMS connector (Shopify FulfillmentOrders), bound from the environment when the code location
loads (README "Configuration").
"""

from orderwatch_dagster.defs.ingest.connector import connector_definitions
from orderwatch_dagster.defs.ingest.oms.resources import ShopifyFulfillmentOrdersConnector

connectors = connector_definitions(ShopifyFulfillmentOrdersConnector)
