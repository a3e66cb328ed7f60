"""Raw ingest assets of the storefront: raw.storefront_orders, raw.storefront_customers."""

from orderwatch_dagster.defs.ingest.factory import build_ingest_asset, build_quarantine_check

storefront_orders = build_ingest_asset("storefront_orders")
storefront_orders_quarantine_check = build_quarantine_check("storefront_orders")
storefront_customers = build_ingest_asset("storefront_customers")
storefront_customers_quarantine_check = build_quarantine_check("storefront_customers")
