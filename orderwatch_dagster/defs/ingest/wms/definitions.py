"""The WMS / 3PL connector (ShipBob Orders), configured from the environment."""

import dagster as dg

from orderwatch_dagster.defs.ingest.connector import bind_connectors, connector_settings
from orderwatch_dagster.defs.ingest.wms.resources import ShipBobConnector
from orderwatch_dagster.lib.settings import EnvSetting

SETTINGS = connector_settings(
    "wms",
    base_url="https://api.shipbob.com/1.0",
    page_size=250,
    secret=EnvSetting(
        "SHIPBOB_ACCESS_TOKEN", "api_key", None, "Personal Access Token (Bearer)", secret=True
    ),
)


@dg.definitions
def connectors() -> dg.Definitions:
    return bind_connectors(ShipBobConnector, SETTINGS)
