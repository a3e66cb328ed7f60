"""The carrier connector (EasyPost Trackers), bound from the environment when the code location
loads (README "Configuration").
"""

from orderwatch_dagster.defs.ingest.carrier.resources import EasyPostConnector
from orderwatch_dagster.defs.ingest.connector import connector_definitions

connectors = connector_definitions(EasyPostConnector)
