"""Raw ingest assets of the carrier source system: raw.carrier_trackers."""

from orderwatch_dagster.defs.ingest.factory import build_ingest_asset, build_quarantine_check

carrier_trackers = build_ingest_asset("carrier_trackers")
carrier_trackers_quarantine_check = build_quarantine_check("carrier_trackers")
