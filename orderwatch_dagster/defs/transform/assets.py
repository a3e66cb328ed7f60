"""dbt models as Dagster assets: sources are the ingest assets, dbt tests are asset checks."""

import json
import os
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import Any

import dagster as dg
from dagster_dbt import (
    DagsterDbtTranslator,
    DagsterDbtTranslatorSettings,
    DbtCliResource,
    dbt_assets,
)

from orderwatch_dagster.defs.resources import Warehouse
from orderwatch_dagster.defs.transform.project import orderwatch_dbt_project
from orderwatch_dagster.lib import settings


class OrderwatchDbtTranslator(DagsterDbtTranslator):
    """Models keyed by schema (["staging", ...], ["marts", ...]), grouped by dbt folder.

    Sources keep dagster-dbt's default key [source_name, table] = ["raw", <feed>], which is
    exactly the ingest assets' key, so the graph shows feed → staging → marts lineage.
    """

    def get_asset_spec(
        self, manifest: Mapping[str, Any], unique_id: str, project: Any
    ) -> dg.AssetSpec:
        spec = super().get_asset_spec(manifest, unique_id, project)
        props = self.get_resource_props(manifest, unique_id)
        resource_type = props["resource_type"]
        if resource_type == "source":
            return spec
        fqn: list[str] = props["fqn"]
        group = fqn[1] if resource_type == "model" and len(fqn) > 2 else "merchant_config"
        return spec.replace_attributes(
            key=dg.AssetKey([props["schema"], props["name"]]), group_name=group
        )


class DbtBuildConfig(dg.Config):
    full_refresh: bool = False  # rebuild incremental models from scratch


@contextmanager
def _environment(values: dict[str, str]) -> Iterator[None]:
    """dbt runs as a subprocess of this one and inherits its environment; restore it after."""
    saved = {name: os.environ.get(name) for name in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


@dbt_assets(
    manifest=orderwatch_dbt_project().manifest_path,
    project=orderwatch_dbt_project(),
    # Source tests (keys, freshness of _ingested_at) become checks on the raw ingest assets.
    dagster_dbt_translator=OrderwatchDbtTranslator(
        settings=DagsterDbtTranslatorSettings(enable_source_tests_as_checks=True)
    ),
    name="orderwatch_dbt_models",
)
def orderwatch_dbt_models(
    context: dg.AssetExecutionContext,
    config: DbtBuildConfig,
    dbt: DbtCliResource,
    warehouse: Warehouse,
) -> Iterator[Any]:
    as_of = settings.now()
    # dbt unit tests check the SQL, not the data: the test suite runs them (tests/test_dbt_*.py),
    # not every pipeline run
    args = [
        "build",
        "--exclude",
        "test_type:unit",
        "--vars",
        json.dumps({"as_of": as_of.isoformat()}),
    ]
    if config.full_refresh:
        args.append("--full-refresh")
    context.log.info(f"dbt build as of {as_of.isoformat()}")
    # The warehouse names its dbt target and connection (defs/resources.py).
    with _environment(warehouse.dbt_environment()):
        yield from dbt.cli(args, context=context).stream()
