"""Raw ingest assets of the wms source system: raw.wms_shipments."""

from orderwatch_dagster.defs.ingest.factory import build_ingest_asset, build_quarantine_check

wms_shipments = build_ingest_asset("wms_shipments")
wms_shipments_quarantine_check = build_quarantine_check("wms_shipments")
