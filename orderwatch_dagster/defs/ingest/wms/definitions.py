"""The WMS / 3PL connector (ShipBob Orders), bound from the environment when the code location
loads (README "Configuration").
"""

from orderwatch_dagster.defs.ingest.connector import connector_definitions
from orderwatch_dagster.defs.ingest.wms.resources import ShipBobConnector

connectors = connector_definitions(ShipBobConnector)
