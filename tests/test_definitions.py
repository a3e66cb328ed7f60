"""The whole code location loads, and its graph has the shape the design promises."""

from __future__ import annotations

import dagster as dg
import pytest

from orderwatch_dagster.definitions import defs
from orderwatch_dagster.lib.feeds import FEED_FOLDERS


@pytest.fixture(scope="module")
def definitions() -> dg.Definitions:
    return defs()


def test_every_feed_has_a_raw_ingest_asset(definitions: dg.Definitions) -> None:
    graph = definitions.get_repository_def().asset_graph
    for feed in FEED_FOLDERS:
        node = graph.get(dg.AssetKey(["raw", feed]))
        assert node.group_name == "ingest", feed
        assert node.is_materializable


def test_dbt_sources_are_the_ingest_assets(definitions: dg.Definitions) -> None:
    """Lineage feed → staging: each staging model's upstream is a ["raw", feed] ingest asset."""
    graph = definitions.get_repository_def().asset_graph
    staging_parents = {
        parent
        for key in graph.get_all_asset_keys()
        if key.path[0] == "staging" and key.path[-1].startswith("stg_")
        for parent in graph.get(key).parent_keys
    }
    assert {dg.AssetKey(["raw", feed]) for feed in FEED_FOLDERS} <= staging_parents
    marts = {key.path[-1] for key in graph.get_all_asset_keys() if key.path[0] == "marts"}
    assert {"fct_order_milestones", "order_state", "fct_failure_modes_daily"} <= marts


def test_dbt_tests_are_asset_checks(definitions: dg.Definitions) -> None:
    graph = definitions.get_repository_def().asset_graph
    checked = {check.asset_key for check in graph.asset_check_keys}
    assert dg.AssetKey(["marts", "order_state"]) in checked
    assert dg.AssetKey(["staging", "stg_storefront__orders"]) in checked


def test_pipeline_job_and_hourly_schedule(definitions: dg.Definitions) -> None:
    job = definitions.resolve_job_def("orderwatch_pipeline_job")
    selected = job.asset_layer.selected_asset_keys
    assert dg.AssetKey(["raw", "carrier_trackers"]) in selected
    assert dg.AssetKey(["marts", "order_state"]) in selected
    schedule = definitions.resolve_schedule_def("orderwatch_hourly_schedule")
    assert schedule.cron_schedule == "5 * * * *"
    assert schedule.job_name == "orderwatch_pipeline_job"


def test_dbt_models_are_keyed_by_their_schema(definitions: dg.Definitions) -> None:
    """dbt_project.yml builds each folder into its own schema; the key's first part is it."""
    keys = definitions.get_repository_def().asset_graph.get_all_asset_keys()
    by_prefix = {
        prefix: {k.path[-1] for k in keys if k.path[0] == schema and k.path[-1].startswith(prefix)}
        for prefix, schema in (("int_", "intermediate"), ("stg_", "staging"))
    }
    assert {"int_order_promises", "int_snapshot_grid"} <= by_prefix["int_"]
    assert "stg_storefront__orders" in by_prefix["stg_"]
    misplaced = [
        k.to_user_string()
        for k in keys
        if k.path[-1].startswith("int_") != (k.path[0] == "intermediate")
    ]
    assert misplaced == []


MART_COLUMNS_READ = ("order_state", "fct_order_milestones")


def mart_column_descriptions(definitions: dg.Definitions, model: str) -> dict[str, str]:
    node = definitions.get_repository_def().asset_graph.get(dg.AssetKey(["marts", model]))
    schema = node.metadata["dagster/column_schema"]
    return {column.name: column.description or "" for column in schema.columns}


def test_mart_columns_users_read_have_descriptions(definitions: dg.Definitions) -> None:
    for model in MART_COLUMNS_READ:
        described = mart_column_descriptions(definitions, model)
        assert len(described) >= 18, model
        assert [name for name, text in described.items() if not text.strip()] == [], model


def test_a_deprecated_dagster_api_fails_the_test_that_uses_it() -> None:
    """pyproject.toml's filterwarnings turns a deprecation warning raised for this project's
    code into an error, so a test that reaches a deprecated Dagster API fails."""
    with pytest.raises(DeprecationWarning, match=r"AutoMaterializePolicy\.eager` is deprecated"):
        dg.AutoMaterializePolicy.eager()
