"""The carrier connector (EasyPost Trackers), configured from the environment."""

import dagster as dg

from orderwatch_dagster.defs.ingest.carrier.resources import EasyPostConnector
from orderwatch_dagster.defs.ingest.connector import bind_connectors, connector_settings
from orderwatch_dagster.lib.settings import EnvSetting

SETTINGS = connector_settings(
    "carrier",
    base_url="https://api.easypost.com/v2",
    page_size=100,
    secret=EnvSetting("EASYPOST_API_KEY", "api_key", None, "API key (basic auth)", secret=True),
)


@dg.definitions
def connectors() -> dg.Definitions:
    return bind_connectors(EasyPostConnector, SETTINGS)
