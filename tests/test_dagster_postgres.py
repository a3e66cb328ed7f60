"""Dagster's own instance storage (runs, event log, schedules) on the local PostgreSQL server."""

from __future__ import annotations

from datetime import date
from pathlib import Path

import dagster as dg
import psycopg2
from test_ingest import default_connectors

from orderwatch_dagster.defs.ingest.factory import build_ingest_asset
from orderwatch_dagster.defs.resources import DuckDBWarehouse
from orderwatch_dagster.sim import simulate


def test_runs_and_materializations_are_stored_in_postgres(
    tmp_path: Path, postgres_server: dict[str, object], scratch_database: str
) -> None:
    landing = tmp_path / "landing"
    simulate(landing, seed=3, start=date(2026, 10, 1), days=1, orders_per_day=20)
    storage = {
        "postgres": {
            "postgres_db": {
                "hostname": postgres_server["host"],
                "port": postgres_server["port"],
                "username": postgres_server["user"],
                "password": "",
                "db_name": scratch_database,
                # SQLAlchemy 2.1 would otherwise pick psycopg 3 for postgresql:// (not installed).
                "scheme": "postgresql+psycopg2",
            }
        }
    }
    with dg.instance_for_test(overrides={"storage": storage}) as instance:
        result = dg.materialize(
            [build_ingest_asset("storefront_orders")],
            instance=instance,
            resources={
                "warehouse": DuckDBWarehouse(path=str(tmp_path / "warehouse.duckdb")),
                "storefront_orders_source": default_connectors()[
                    "storefront_orders_source"
                ].model_copy(update={"landing_dir": str(landing)}),
            },
        )
        assert result.success
        run_id = result.run_id

    server = {key: value for key, value in postgres_server.items() if key != "dbname"}
    with psycopg2.connect(dbname=scratch_database, **server) as con, con.cursor() as cur:
        cur.execute("select status from runs where run_id = %s", (run_id,))
        assert cur.fetchone() == ("SUCCESS",)
        cur.execute(
            "select count(*) from event_logs where run_id = %s"
            " and dagster_event_type = 'ASSET_MATERIALIZATION' and asset_key = %s",
            (run_id, dg.AssetKey(["raw", "storefront_orders"]).to_string()),
        )
        assert cur.fetchone() == (1,)
