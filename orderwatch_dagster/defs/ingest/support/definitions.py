"""The support connector (Zendesk Tickets), bound from the environment when the code location
loads (README "Configuration").
"""

from orderwatch_dagster.defs.ingest.connector import connector_definitions
from orderwatch_dagster.defs.ingest.support.resources import ZendeskConnector

connectors = connector_definitions(ZendeskConnector)
