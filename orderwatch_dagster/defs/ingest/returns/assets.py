"""Raw ingest assets of the returns source system: raw.returns."""

from orderwatch_dagster.defs.ingest.factory import build_ingest_asset, build_quarantine_check

returns = build_ingest_asset("returns")
returns_quarantine_check = build_quarantine_check("returns")
