"""Raw ingest assets of the support source system: raw.support_tickets."""

from orderwatch_dagster.defs.ingest.factory import build_ingest_asset, build_quarantine_check

support_tickets = build_ingest_asset("support_tickets")
support_tickets_quarantine_check = build_quarantine_check("support_tickets")
