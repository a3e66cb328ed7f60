"""dbt models as Dagster assets: sources are the ingest assets, dbt tests are asset checks."""

import hashlib
import os
import shutil
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
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
    """Models keyed by their schema (dbt_project.yml: ["staging", ...], ["intermediate", ...],
    ["marts", ...]), grouped by dbt folder; seeds are ["staging", <seed>].

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


# The moment dbt builds "as of" (macro orderwatch_as_of, dbt_project/macros/marts.sql).
AS_OF_VARIABLE = "ORDERWATCH_DBT_AS_OF"
PARTIAL_PARSE_FILE = "partial_parse.msgpack"


def parse_state_path() -> Path:
    """dbt's parse state of the last build on this ORDERWATCH_HOME, kept between runs.

    dagster-dbt gives every invocation a fresh target folder seeded with the project's prebuilt
    `target/partial_parse.msgpack` (`make manifest`), and dbt writes its new state there. That
    prebuilt state matches only the profile it was parsed with (dbt's state check hashes the
    connection, the DuckDB path included), so on any other ORDERWATCH_HOME every run would
    re-parse the whole project. dbt reads `DBT_PARTIAL_PARSE_FILE_PATH` instead when it is set.
    The state is per project folder too: it records absolute seed paths (dagster-dbt's
    `DbtProject` invalidates seeds in a prebuilt state for that reason).
    """
    folder = hashlib.sha256(str(orderwatch_dbt_project().project_dir).encode()).hexdigest()[:12]
    return settings.home() / "dbt" / folder / PARTIAL_PARSE_FILE


def _keep_parse_state(target_path: Path, kept: Path) -> None:
    """Replace the kept parse state with the one this invocation wrote (atomically: a run
    reading it meanwhile sees the old file or the new one, never half of one)."""
    written = target_path / PARTIAL_PARSE_FILE
    if not written.is_file():
        return
    kept.parent.mkdir(parents=True, exist_ok=True)
    copy = kept.with_name(f"{kept.name}.{os.getpid()}.tmp")
    shutil.copyfile(written, copy)
    os.replace(copy, kept)


@dbt_assets(
    manifest=orderwatch_dbt_project().manifest_path,
    project=orderwatch_dbt_project(),
    # Source tests are not asset checks: a check on a raw asset runs with every materialization
    # of it, and these would start a dbt process for a raw-only run. They still run in each
    # `dbt build` (default selection); the raw tables' own NOT NULL columns
    # (lib/warehouse_session.py) and quarantine checks (defs/ingest/factory.py) guard the raw
    # layer where it is written.
    dagster_dbt_translator=OrderwatchDbtTranslator(
        settings=DagsterDbtTranslatorSettings(enable_source_tests_as_checks=False)
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
    args = ["build", "--exclude", "test_type:unit"]
    if config.full_refresh:
        args.append("--full-refresh")
    context.log.info(f"dbt build as of {as_of.isoformat()}")
    # The warehouse names its dbt target and connection (defs/resources.py); "now" travels in an
    # environment variable, not --vars, so dbt's partial parse stays valid (macros/marts.sql).
    environment = {**warehouse.dbt_environment(), AS_OF_VARIABLE: as_of.isoformat()}
    kept = parse_state_path()
    if kept.is_file():  # dbt refuses a DBT_PARTIAL_PARSE_FILE_PATH that does not exist
        environment["DBT_PARTIAL_PARSE_FILE_PATH"] = str(kept)
    with _environment(environment):
        invocation = dbt.cli(args, context=context)
        try:
            # Column names and types of each built model, read from the warehouse once it is
            # built (dagster-dbt waits for the dbt process on DuckDB), become the
            # materialization's `dagster/column_schema`: the UI shows real types without
            # declaring them in the yml.
            yield from invocation.stream().fetch_column_metadata(with_column_lineage=False)
        finally:
            _release_adapter(invocation.adapter)
    _keep_parse_state(invocation.target_path, kept)


def _release_adapter(adapter: Any) -> None:
    """Close the in-process connection dagster-dbt opened to read the columns.

    dbt-duckdb keeps one DuckDB instance per process, opened with dbt's settings; while it
    lives, this process (the in-process executor's next steps) cannot open the same file with
    its own. PostgreSQL connections are simply returned.
    """
    if adapter is None:
        return
    adapter.cleanup_connections()
    if adapter.type() == "duckdb":
        from dbt.adapters.duckdb.connections import DuckDBConnectionManager

        try:
            environment = DuckDBConnectionManager.env()
        except Exception:  # dbt-duckdb's "requested before creation": nothing was opened
            return
        environment.close()
        DuckDBConnectionManager.close_all_connections()
