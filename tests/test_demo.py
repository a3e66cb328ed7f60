"""`make demo` end to end through the CLI, twice: the second run adds nothing and changes no
row of any mart (a digest of each mart's normalised contents, tests/digests.py)."""

from __future__ import annotations

from pathlib import Path

import dagster as dg
import duckdb
import pytest
from digests import digest

from orderwatch_dagster.cli import main
from orderwatch_dagster.lib.feeds import FEED_FOLDERS
from orderwatch_dagster.lib.summary import warehouse_summary

SIM_ARGS = ["simulate", "--days", "3", "--orders-per-day", "40", "--seed", "5", "--quiet"]


def _counts(warehouse: Path) -> dict[str, int]:
    tables = [f"raw.{feed}" for feed in FEED_FOLDERS]
    tables += ["raw._quarantine", "raw._ingest_files"]
    tables += ["marts.fct_order_milestones", "marts.order_state", "marts.fct_failure_modes_daily"]
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


def test_demo_twice_is_idempotent(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("ORDERWATCH_HOME", str(tmp_path))
    monkeypatch.setenv("DAGSTER_HOME", str(tmp_path / "dagster"))
    monkeypatch.delenv("ORDERWATCH_AS_OF", raising=False)
    (tmp_path / "dagster").mkdir()
    warehouse = tmp_path / "warehouse.duckdb"

    assert main(SIM_ARGS) == 0
    assert main(["demo"]) == 0
    first = _counts(warehouse)
    first_digests = _mart_digests(warehouse)
    output = capsys.readouterr().out
    assert "success" in output and "order_state: 120 orders" in output

    assert main(SIM_ARGS) == 0  # same seed and clock: byte-identical pages, nothing new
    assert main(["demo"]) == 0
    assert _counts(warehouse) == first
    # same clock, same pages: every mart row is the same (as_of included)
    assert _mart_digests(warehouse) == first_digests
    assert {"order_state", "order_state_snapshots", "fct_order_milestones"} <= set(first_digests)
    assert all(first[f"raw.{feed}"] > 0 for feed in FEED_FOLDERS if feed != "returns")
    assert first["marts.order_state"] == 120
    # both runs are in DAGSTER_HOME's history, as `make ui` will show them
    with dg.DagsterInstance.get() as instance:
        runs = instance.get_runs()
    assert [run.job_name for run in runs] == ["orderwatch_pipeline_job"] * 2
    assert all(run.is_success for run in runs)
    assert "rule" in warehouse_summary(warehouse)
