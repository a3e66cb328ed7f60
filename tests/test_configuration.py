"""Configuration by environment variables: the README tables are the code's, the code location
reads them when it loads, and one feed switches to HTTP through them alone."""

from __future__ import annotations

import importlib
import re
from collections.abc import Iterator
from pathlib import Path

import dagster as dg
import pytest
from http_server import ScriptedHTTPServer
from test_ingest import easypost_tracker, easypost_trackers_reply, metadata_by_feed

from orderwatch_dagster.defs.ingest.connector import FeedConnector
from orderwatch_dagster.defs.ingest.returns.resources import LoopConnector
from orderwatch_dagster.defs.resources import WAREHOUSE_SETTINGS, DuckDBWarehouse, PostgresWarehouse
from orderwatch_dagster.lib.feeds import FEEDS, sources
from orderwatch_dagster.lib.settings import GENERAL_SETTINGS, EnvSetting

README = Path(__file__).resolve().parents[1] / "README.md"
PROFILES = Path(__file__).resolve().parents[1] / "dbt_project" / "profiles.yml"
KEY = "ep-env-test-3f9c2a"  # must never show up in a log line or a resource's repr


def code_settings() -> dict[str, tuple[EnvSetting, ...]]:
    """System -> the variables the code declares (general, warehouse, one per source folder)."""
    systems = {"general": GENERAL_SETTINGS, "warehouse": WAREHOUSE_SETTINGS}
    for source in sources():
        module = importlib.import_module(f"orderwatch_dagster.defs.ingest.{source}.definitions")
        (connector,) = {
            value
            for value in vars(module).values()
            if isinstance(value, type) and issubclass(value, FeedConnector)
        }
        assert connector.source == source
        systems[source] = connector.settings()
    return systems


Row = tuple[str, str | None, bool, str]  # variable, default, secret, what it sets


def readme_settings(text: str) -> dict[str, list[Row]]:
    """System -> (variable, default, secret, description) rows of README "Configuration"."""
    section = text.split("\n## Configuration\n", 1)[1].split("\n## ", 1)[0]
    tables: dict[str, list[Row]] = {}
    system = ""
    for line in section.splitlines():
        if line.startswith("### "):
            system = line[4:].split()[0]
            tables[system] = []
        elif system and re.match(r"^\| `", line):
            cells = [cell.strip() for cell in line.strip().strip("|").split(" | ")]
            name, default, secret, description = cells
            value = None if default == "—" else default.strip("`")
            tables[system].append((name.strip("`"), value, secret == "yes", description))
    return tables


def profile_variables(text: str) -> set[str]:
    """The variables dbt_project/profiles.yml reads (`env_var('NAME', ...)`)."""
    return set(re.findall(r"env_var\(\s*'([A-Z0-9_]+)'", text))


@pytest.fixture
def clean_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[Path]:
    for settings in code_settings().values():
        for setting in settings:
            monkeypatch.delenv(setting.name, raising=False)
    monkeypatch.setenv("ORDERWATCH_HOME", str(tmp_path))
    yield tmp_path


def test_readme_configuration_tables_are_the_code_settings() -> None:
    documented = readme_settings(README.read_text())
    declared = {
        system: [(s.name, s.default, s.secret, s.description) for s in settings]
        for system, settings in code_settings().items()
    }
    assert documented == declared


def test_every_variable_dbt_reads_is_declared_and_documented() -> None:
    read_by_dbt = profile_variables(PROFILES.read_text())
    assert {"ORDERWATCH_DBT_TARGET", "ORDERWATCH_PG_PASSWORD"} <= read_by_dbt
    declared = {s.name for settings in code_settings().values() for s in settings}
    documented = {row[0] for rows in readme_settings(README.read_text()).values() for row in rows}
    assert read_by_dbt - declared == set()
    assert read_by_dbt - documented == set()


def test_the_table_reader_sees_a_changed_description() -> None:
    row = "| `ORDERWATCH_X_BASE_URL` | `https://x` |  | API root (http) |"
    text = f"intro\n## Configuration\n### x\n| variable | default | secret | what |\n{row}\n"
    assert readme_settings(text) == {
        "x": [("ORDERWATCH_X_BASE_URL", "https://x", False, "API root (http)")]
    }
    assert readme_settings(text) != {
        "x": [("ORDERWATCH_X_BASE_URL", "https://x", False, "API root for `http`")]
    }


def test_with_no_variable_set_every_feed_reads_its_landing_folder(clean_environment: Path) -> None:
    from orderwatch_dagster.definitions import defs

    resources = defs().resources or {}
    assert isinstance(resources["warehouse"], DuckDBWarehouse)
    for feed in FEEDS:
        connector = resources[f"{feed}_source"]
        assert isinstance(connector, FeedConnector)
        assert (connector.transport, connector.api_key) == ("file", None)


def test_bad_values_fail_when_the_definitions_load_naming_the_variable(
    clean_environment: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    carrier = importlib.import_module("orderwatch_dagster.defs.ingest.carrier.definitions")
    monkeypatch.setenv("ORDERWATCH_CARRIER_TRANSPORT", "ftp")
    with pytest.raises(ValueError, match="ORDERWATCH_CARRIER_TRANSPORT='ftp'"):
        carrier.connectors()
    monkeypatch.setenv("ORDERWATCH_CARRIER_TRANSPORT", "http")
    monkeypatch.setenv("ORDERWATCH_CARRIER_PAGE_SIZE", "lots")
    with pytest.raises(ValueError, match="ORDERWATCH_CARRIER_PAGE_SIZE='lots'"):
        carrier.connectors()


def test_one_feed_switched_to_http_by_environment_variables_alone(
    clean_environment: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ORDERWATCH_AS_OF", "2026-10-06T00:00:00Z")  # HTTP refuses a clock file
    trackers = [easypost_tracker(f"trk_{i:03d}", f"2026-10-05T1{i}:00:00Z") for i in range(3)]
    with ScriptedHTTPServer() as server:
        server.route("/v2/trackers", easypost_trackers_reply(trackers, api_key=KEY))
        monkeypatch.setenv("ORDERWATCH_CARRIER_TRANSPORT", "http")
        monkeypatch.setenv("ORDERWATCH_CARRIER_BASE_URL", server.url + "/v2")
        monkeypatch.setenv("ORDERWATCH_CARRIER_PAGE_SIZE", "2")
        monkeypatch.setenv("EASYPOST_API_KEY", KEY)
        from orderwatch_dagster.definitions import defs

        definitions = defs()
        resources = definitions.resources or {}
        connector = resources["carrier_trackers_source"]
        assert connector.api_key == dg.EnvVar("EASYPOST_API_KEY")  # bound by name, not value
        assert KEY not in repr(connector)
        assert resources["storefront_orders_source"].transport == "file"  # the others unchanged

        asset = definitions.get_assets_def(dg.AssetKey(["raw", "carrier_trackers"]))
        instance = dg.DagsterInstance.ephemeral()
        result = dg.materialize([asset], resources=resources, instance=instance)
        meta = metadata_by_feed(result)["carrier_trackers"]
        assert (meta["pages_read"], meta["rows_loaded"]) == (2, 3)
        assert [r.param("page_size") for r in server.requests] == ["2", "2"]
        logs = "\n".join(entry.message for entry in instance.all_logs(result.run_id))
        assert "carrier_trackers" in logs and KEY not in logs
    with DuckDBWarehouse().connect() as session:
        sources_seen = session.query("SELECT DISTINCT _source FROM raw.carrier_trackers")
    assert sources_seen and all(s.startswith(server.url + "/v2/trackers") for (s,) in sources_seen)


def test_a_key_set_only_at_launch_is_bound_when_the_definitions_load(
    clean_environment: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A code server without the key, the key injected into the run only: the HTTP feed still
    authenticates, because the key is bound by name once the transport is `http`."""
    monkeypatch.setenv("ORDERWATCH_AS_OF", "2026-10-06T00:00:00Z")
    trackers = [easypost_tracker("trk_001", "2026-10-05T10:00:00Z")]
    with ScriptedHTTPServer() as server:
        server.route("/v2/trackers", easypost_trackers_reply(trackers, api_key=KEY))
        monkeypatch.setenv("ORDERWATCH_CARRIER_TRANSPORT", "http")
        monkeypatch.setenv("ORDERWATCH_CARRIER_BASE_URL", server.url + "/v2")
        from orderwatch_dagster.definitions import defs

        definitions = defs()  # EASYPOST_API_KEY is not set here
        resources = definitions.resources or {}
        assert resources["carrier_trackers_source"].api_key == dg.EnvVar("EASYPOST_API_KEY")
        assert resources["storefront_orders_source"].api_key is None  # file: no key needed
        monkeypatch.setenv("EASYPOST_API_KEY", KEY)  # the run worker's environment
        asset = definitions.get_assets_def(dg.AssetKey(["raw", "carrier_trackers"]))
        result = dg.materialize(
            [asset], resources=resources, instance=dg.DagsterInstance.ephemeral()
        )
        assert result.success
        assert metadata_by_feed(result)["carrier_trackers"]["rows_loaded"] == 1
        assert len(server.requests) == 1


def test_postgres_password_is_bound_unless_trust_auth(
    clean_environment: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from orderwatch_dagster.defs.resources import PostgresWarehouse, warehouse_from_environment

    monkeypatch.setenv("ORDERWATCH_WAREHOUSE_ENGINE", "postgres")
    bound = warehouse_from_environment()  # ORDERWATCH_PG_PASSWORD unset where this loads
    assert isinstance(bound, PostgresWarehouse)
    assert bound.password == dg.EnvVar("ORDERWATCH_PG_PASSWORD")
    monkeypatch.setenv("ORDERWATCH_PG_AUTH", "trust")
    monkeypatch.setenv("ORDERWATCH_PG_PASSWORD", "ignored")
    assert warehouse_from_environment().password == ""


def test_postgres_password_set_at_launch_reaches_the_session(
    clean_environment: Path, monkeypatch: pytest.MonkeyPatch, scratch_database: str
) -> None:
    from orderwatch_dagster.defs.resources import warehouse_from_environment

    monkeypatch.setenv("ORDERWATCH_WAREHOUSE_ENGINE", "postgres")
    monkeypatch.setenv("ORDERWATCH_PG_DATABASE", scratch_database)
    warehouse = warehouse_from_environment()

    @dg.asset
    def probe(warehouse: PostgresWarehouse) -> str:
        with warehouse.connect() as session:
            session.query("select 1")
        return warehouse.password

    monkeypatch.setenv("ORDERWATCH_PG_PASSWORD", "set-at-launch")
    result = dg.materialize([probe], resources={"warehouse": warehouse})
    assert result.success and result.output_for_node("probe") == "set-at-launch"


@pytest.mark.parametrize("engine", ["duckdb", "postgres"])
def test_raw_assets_show_the_warehouse_engine_they_write_to(
    clean_environment: Path, monkeypatch: pytest.MonkeyPatch, engine: str
) -> None:
    monkeypatch.setenv("ORDERWATCH_WAREHOUSE_ENGINE", engine)
    from orderwatch_dagster.definitions import defs

    definitions = defs()
    for feed in FEEDS:
        (spec,) = definitions.get_assets_def(dg.AssetKey(["raw", feed])).specs
        assert spec.kinds == {engine}, feed


def test_a_page_size_below_one_fails_when_the_definitions_load(
    clean_environment: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    carrier = importlib.import_module("orderwatch_dagster.defs.ingest.carrier.definitions")
    monkeypatch.setenv("ORDERWATCH_CARRIER_PAGE_SIZE", "0")
    with pytest.raises(ValueError, match="ORDERWATCH_CARRIER_PAGE_SIZE='0': expected at least 1"):
        carrier.connectors()
    monkeypatch.setenv("ORDERWATCH_CARRIER_PAGE_SIZE", "1")
    (connector,) = (carrier.connectors().resources or {}).values()
    assert connector.page_size == 1


def test_replay_with_an_unknown_reason_is_refused(
    clean_environment: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from orderwatch_dagster.cli import main

    assert main(["replay-quarantine", "--reason", "unexpected_shap"]) == 2
    error = capsys.readouterr().err
    assert "unknown reason(s) unexpected_shap" in error and "unexpected_shape" in error


def test_raw_asset_refuses_an_unknown_replay_reason(clean_environment: Path) -> None:
    from orderwatch_dagster.defs.ingest.factory import build_ingest_asset

    asset = build_ingest_asset("returns")
    resources = {"warehouse": DuckDBWarehouse(), "returns_source": LoopConnector()}
    config = {"replay_quarantine": True, "replay_reasons": ["future_time", "typo"]}
    result = dg.materialize(
        [asset],
        resources=resources,
        run_config={"ops": {asset.op.name: {"config": config}}},
        raise_on_error=False,
    )
    assert not result.success
    (failure,) = [e for e in result.all_events if e.is_step_failure]
    assert "unknown quarantine reason(s) typo" in str(failure.step_failure_data.error)
    assert not (clean_environment / "warehouse.duckdb").exists()  # nothing was touched
