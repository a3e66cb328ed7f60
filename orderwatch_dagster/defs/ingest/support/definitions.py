"""The support connector (Zendesk Tickets), configured from the environment."""

import dagster as dg

from orderwatch_dagster.defs.ingest.connector import bind_connectors, connector_settings
from orderwatch_dagster.defs.ingest.support.resources import ZendeskConnector
from orderwatch_dagster.lib.settings import EnvSetting

SETTINGS = connector_settings(
    "support",
    base_url="https://{subdomain}.zendesk.com/api/v2",
    page_size=100,
    extra=(
        EnvSetting(
            "ORDERWATCH_SUPPORT_SUBDOMAIN", "subdomain", None, "`<subdomain>` of .zendesk.com"
        ),
        EnvSetting(
            "ORDERWATCH_SUPPORT_EMAIL",
            "email",
            None,
            "Agent e-mail for API-token auth; unset: the token is an OAuth bearer token",
        ),
    ),
    secret=EnvSetting(
        "ZENDESK_API_TOKEN", "api_key", None, "API token (or OAuth access token)", secret=True
    ),
)


@dg.definitions
def connectors() -> dg.Definitions:
    return bind_connectors(ZendeskConnector, SETTINGS)
