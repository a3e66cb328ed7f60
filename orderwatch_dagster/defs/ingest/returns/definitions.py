"""The returns connector (Loop Returns), configured from the environment."""

import dagster as dg

from orderwatch_dagster.defs.ingest.connector import bind_connectors, connector_settings
from orderwatch_dagster.defs.ingest.returns.resources import LoopConnector
from orderwatch_dagster.lib.settings import EnvSetting

SETTINGS = connector_settings(
    "returns",
    base_url="https://api.loopreturns.com/api/v1",
    page_size=250,
    secret=EnvSetting("LOOP_API_KEY", "api_key", None, "API key (X-Authorization)", secret=True),
)


@dg.definitions
def connectors() -> dg.Definitions:
    return bind_connectors(LoopConnector, SETTINGS)
