"""Raw ingest assets of the oms source system: raw.oms_fulfillment_orders."""

from orderwatch_dagster.defs.ingest.factory import build_ingest_asset, build_quarantine_check

oms_fulfillment_orders = build_ingest_asset("oms_fulfillment_orders")
oms_fulfillment_orders_quarantine_check = build_quarantine_check("oms_fulfillment_orders")
