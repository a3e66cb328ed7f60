"""Every raw ingest asset and its quarantine check, generated from the feed registry.

One `["raw", <feed>]` asset and one `raw_<feed>_quarantine_check` per entry of `FEEDS`
(lib/feeds.py); the connectors they read through are bound by each source folder.
"""

import dagster as dg

from orderwatch_dagster.defs.ingest.factory import build_ingest_asset, build_quarantine_check
from orderwatch_dagster.lib.feeds import FEEDS


@dg.definitions
def raw_assets() -> dg.Definitions:
    # Built when the definitions load, from the registry as it is then.
    return dg.Definitions(
        assets=[build_ingest_asset(feed) for feed in FEEDS],
        asset_checks=[build_quarantine_check(feed) for feed in FEEDS],
    )
