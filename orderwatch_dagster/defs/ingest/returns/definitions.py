"""The returns connector (Loop Returns), bound from the environment when the code location
loads (README "Configuration").
"""

from orderwatch_dagster.defs.ingest.connector import connector_definitions
from orderwatch_dagster.defs.ingest.returns.resources import LoopConnector

connectors = connector_definitions(LoopConnector)
