"""`make demo` end to end through the CLI, twice: the second run adds nothing (no record, no
exception, no message). The first run is the shared `demo_world` fixture (tests/conftest.py)."""

from __future__ import annotations

from pathlib import Path

import dagster as dg
import duckdb
import pytest
from conftest import DemoWorld

from orderwatch_dagster.cli import main
from orderwatch_dagster.lib.feeds import FEED_FOLDERS
from orderwatch_dagster.lib.summary import warehouse_summary

SIM_ARGS = ["simulate", "--days", "3", "--orders-per-day", "40", "--seed", "5", "--quiet"]


def _counts(warehouse: Path) -> dict[str, int]:
    tables = [f"raw.{feed}" for feed in FEED_FOLDERS]
    tables += ["raw._quarantine", "raw._ingest_files"]
    tables += ["marts.fct_order_milestones", "marts.order_state", "marts.fct_failure_modes_daily"]
    tables += ["marts.order_exceptions", "ops.exception_ledger", "ops.customer_messages"]
    tables += ["ops.action_queue"]
    with duckdb.connect(str(warehouse), read_only=True) as con:
        return {t: con.execute(f"select count(*) from {t}").fetchone()[0] for t in tables}


def test_demo_twice_is_idempotent(demo_world: DemoWorld, monkeypatch: pytest.MonkeyPatch) -> None:
    tmp_path = demo_world.home
    monkeypatch.setenv("ORDERWATCH_HOME", str(tmp_path))
    monkeypatch.setenv("DAGSTER_HOME", str(tmp_path / "dagster"))
    monkeypatch.delenv("ORDERWATCH_AS_OF", raising=False)
    warehouse = demo_world.warehouse

    first = _counts(warehouse)
    output = demo_world.output
    assert "success" in output and "order_state: 120 orders" in output
    assert "exception_actions_job" in output and "human coverage:" in output

    assert main(SIM_ARGS) == 0  # same seed and clock: byte-identical pages, nothing new
    assert main(["demo"]) == 0
    assert _counts(warehouse) == first
    assert all(first[f"raw.{feed}"] > 0 for feed in FEED_FOLDERS if feed != "returns")
    assert first["marts.order_state"] == 120
    assert first["ops.customer_messages"] > 0
    # both runs are in DAGSTER_HOME's history, as `make ui` will show them
    with dg.DagsterInstance.get() as instance:
        runs = instance.get_runs()
    names = sorted(run.job_name for run in runs)
    assert names == ["exception_actions_job"] * 2 + ["orderwatch_pipeline_job"] * 2
    assert all(run.is_success for run in runs)
    summary = warehouse_summary(warehouse)
    assert "rule" in summary and "actions:" in summary and "messages:" in summary
