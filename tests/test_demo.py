"""`make demo` end to end through the CLI, twice: the second run adds nothing (no record, no
exception, no message) and changes no row of any mart (a digest of each mart's normalised
contents, tests/digests.py). The first run is the shared `demo_world` fixture
(tests/conftest.py)."""

from __future__ import annotations

from pathlib import Path

import dagster as dg
import duckdb
import pytest
from conftest import DEMO_SIM_ARGS, DemoWorld
from digests import digest

from orderwatch_dagster.cli import main
from orderwatch_dagster.lib.feeds import FEED_FOLDERS, feed_spec
from orderwatch_dagster.lib.summary import warehouse_summary

ORDERS = int(DEMO_SIM_ARGS[2]) * int(DEMO_SIM_ARGS[4])  # --days × --orders-per-day


def _counts(warehouse: Path) -> dict[str, int]:
    tables = [f"raw.{feed}" for feed in FEED_FOLDERS]
    tables += ["raw._quarantine", "raw._ingest_files"]
    tables += ["marts.fct_order_milestones", "marts.order_state", "marts.fct_failure_modes_daily"]
    tables += ["marts.order_exceptions", "ops.exception_ledger", "ops.customer_messages"]
    tables += ["ops.action_queue"]
    with duckdb.connect(str(warehouse), read_only=True) as con:
        return {t: con.execute(f"select count(*) from {t}").fetchone()[0] for t in tables}


def _mart_digests(warehouse: Path) -> dict[str, str]:
    with duckdb.connect(str(warehouse), read_only=True) as con:
        con.execute("SET TimeZone = 'UTC'")
        marts = [
            name
            for (name,) in con.execute(
                "select table_name from information_schema.tables where table_schema = 'marts'"
            ).fetchall()
        ]
        out = {}
        for mart in marts:
            cursor = con.execute(f"select * from marts.{mart}")
            out[mart] = digest([d[0] for d in cursor.description], cursor.fetchall())
    return out


def _episodes(warehouse: Path) -> set[tuple[str, str, str]]:
    with duckdb.connect(str(warehouse), read_only=True) as con:
        rows = con.execute(
            "select exception_id, exception_type, cast(started_at as varchar)"
            " from marts.order_exceptions"
        ).fetchall()
    return set(rows)


def test_demo_twice_is_idempotent(demo_world: DemoWorld, monkeypatch: pytest.MonkeyPatch) -> None:
    tmp_path = demo_world.home
    monkeypatch.setenv("ORDERWATCH_HOME", str(tmp_path))
    monkeypatch.setenv("DAGSTER_HOME", str(tmp_path / "dagster"))
    monkeypatch.delenv("ORDERWATCH_AS_OF", raising=False)
    warehouse = demo_world.warehouse

    first = _counts(warehouse)
    first_digests = _mart_digests(warehouse)
    first_episodes = _episodes(warehouse)
    output = demo_world.output
    assert "success" in output and f"order_state: {ORDERS} orders" in output
    assert "exception_actions_job" in output and "human coverage:" in output

    assert main(DEMO_SIM_ARGS) == 0  # same seed and clock: byte-identical pages, nothing new
    assert main(["demo"]) == 0
    assert _counts(warehouse) == first
    # same clock, same pages: every mart row is the same (as_of included); order_exceptions
    # also carries what the first action run did (evidence of actions taken), so there the
    # episodes are compared: the same exception ids, types and starts, none new
    second_digests = _mart_digests(warehouse)
    assert second_digests.pop("order_exceptions") and first_digests.pop("order_exceptions")
    assert second_digests == first_digests
    assert _episodes(warehouse) == first_episodes and first_episodes
    assert {"order_state", "order_state_snapshots", "fct_order_milestones"} <= set(first_digests)
    # 10 days: every feed has records, returns and status tickets included (docs/feeds.md)
    assert all(first[f"raw.{feed}"] > 0 for feed in FEED_FOLDERS), first
    assert first["marts.order_state"] == ORDERS
    assert first["ops.customer_messages"] > 0
    # both runs are in DAGSTER_HOME's history, as `make ui` will show them
    with dg.DagsterInstance.get() as instance:
        runs = instance.get_runs()
        assert_mart_columns_typed_and_described(instance)
    names = sorted(run.job_name for run in runs)
    assert names == ["exception_actions_job"] * 2 + ["orderwatch_pipeline_job"] * 2
    assert all(run.is_success for run in runs)
    summary = warehouse_summary(warehouse)
    assert "rule" in summary and "actions:" in summary and "messages:" in summary


def assert_mart_columns_typed_and_described(instance: dg.DagsterInstance) -> None:
    """The marts users read: each built column has a type from the warehouse (the
    materialization's column schema) and a description (the definitions' column schema)."""
    from orderwatch_dagster.definitions import defs

    graph = defs().get_repository_def().asset_graph
    for model in ("order_state", "fct_order_milestones"):
        key = dg.AssetKey(["marts", model])
        event = instance.get_latest_materialization_event(key)
        assert event is not None and event.asset_materialization is not None, model
        built = event.asset_materialization.metadata["dagster/column_schema"].value
        types = {column.name: column.type for column in built.columns}
        assert len(types) >= 18 and "?" not in types.values(), (model, types)
        declared = graph.get(key).metadata["dagster/column_schema"]
        described = {c.name for c in declared.columns if (c.description or "").strip()}
        assert set(types) - described == set(), model


def test_demo_summary_reads_the_bound_warehouse(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """ORDERWATCH_WAREHOUSE elsewhere than ORDERWATCH_HOME: the summary reads the file the run
    wrote, not the default path."""
    from orderwatch_dagster.cli import demo_summary
    from orderwatch_dagster.defs.resources import DuckDBWarehouse

    custom = tmp_path / "elsewhere" / "wh.duckdb"
    custom.parent.mkdir()
    monkeypatch.setenv("ORDERWATCH_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("ORDERWATCH_WAREHOUSE", str(custom))
    monkeypatch.delenv("ORDERWATCH_WAREHOUSE_ENGINE", raising=False)
    with DuckDBWarehouse(path=str(custom)).connect() as session:
        session.ensure_feed("returns", feed_spec("returns").key_columns)
    summary = demo_summary()
    assert summary.startswith(f"warehouse {custom}")
    assert "returns" in summary and "no warehouse" not in summary
