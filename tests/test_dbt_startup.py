"""What a run pays before and around its steps (issue "Ingest at DuckDB speed" item 4):
a raw-only run starts no dbt, dbt re-parses nothing when nothing changed, and dagster-dbt
starts no `dbt --version` process."""

from __future__ import annotations

import json
from importlib.metadata import version as installed_version
from pathlib import Path

import dagster as dg
import pytest
from dagster_dbt import DbtCliResource
from packaging import version

from orderwatch_dagster.definitions import defs
from orderwatch_dagster.defs.environment import OrderwatchDbtCliResource, environment
from orderwatch_dagster.defs.resources import DuckDBWarehouse
from orderwatch_dagster.defs.transform.assets import orderwatch_dbt_models, parse_state_path
from orderwatch_dagster.lib.feeds import FEED_FOLDERS

# the smallest thing dbt can build: a seed whose tests read nothing else (eager selection)
SEED = dg.AssetKey(["staging", "merchant_holidays"])


def test_no_dbt_step_in_a_raw_only_run() -> None:
    """Every check on a raw asset is its quarantine check: materializing raw assets (the UI
    runs an asset's checks with it) never pulls in the dbt multi-asset."""
    definitions = defs()
    graph = definitions.get_repository_def().asset_graph
    raw = {dg.AssetKey(["raw", feed]) for feed in FEED_FOLDERS}
    on_raw = {key for key in graph.asset_check_keys if key.asset_key in raw}
    assert on_raw == {
        dg.AssetCheckKey(dg.AssetKey(["raw", feed]), f"raw_{feed}_quarantine_check")
        for feed in FEED_FOLDERS
    }
    dbt_checks = orderwatch_dbt_models.check_keys
    assert dbt_checks and not any(key.asset_key in raw for key in dbt_checks)


def test_the_venv_dbt_version_is_known_without_running_dbt() -> None:
    dbt = environment().resources["dbt"]
    assert isinstance(dbt, OrderwatchDbtCliResource)
    # the attribute dagster-dbt reads; were it renamed, the override would silently stop saving
    assert "_cli_version" in vars(DbtCliResource)
    assert dbt._cli_version == version.parse(installed_version("dbt-core"))


def _dbt_events(invocation_dir: Path) -> dict[str, str]:
    events: dict[str, str] = {}
    for line in (invocation_dir / "dbt.log").read_text().splitlines():
        if line.startswith("{"):
            info = json.loads(line)["info"]
            events.setdefault(info["name"], info["msg"])
    return events


def test_a_second_dbt_run_reuses_the_parse_state(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The first build on a home parses the project (its prebuilt state is another home's);
    it keeps its state, and the next build, "now" moved on, skips parsing."""
    monkeypatch.setenv("ORDERWATCH_HOME", str(tmp_path))
    monkeypatch.setenv("DBT_TARGET_PATH", str(tmp_path / "target"))  # not dbt_project/target
    resources = {
        "dbt": environment().resources["dbt"],
        "warehouse": DuckDBWarehouse(path=str(tmp_path / "warehouse.duckdb")),
    }
    runs = []
    for moment in ("2026-10-05T00:00:00Z", "2026-10-05T01:00:00Z"):
        monkeypatch.setenv("ORDERWATCH_AS_OF", moment)
        result = dg.materialize([orderwatch_dbt_models], selection=[SEED], resources=resources)
        assert result.success
        (invocation,) = [p for p in (tmp_path / "target").iterdir() if p.name not in runs]
        runs.append(invocation.name)
        events = _dbt_events(invocation)
        assert "vars: {}" in events["StateCheckVarsHash"]  # "now" is no --vars
        if len(runs) == 1:
            assert "PartialParsingSkipParsing" not in events
            assert parse_state_path().is_file()
        else:
            assert "PartialParsingSkipParsing" in events, events.get("UnableToPartialParse")
