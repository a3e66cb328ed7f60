"""Configuration by environment variables: the README tables are the code's, the code location
reads them when it loads, and one feed switches to HTTP through them alone."""

from __future__ import annotations

import importlib
import re
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import dagster as dg
import pytest
from http_server import ScriptedHTTPServer
from test_ingest import easypost_tracker, easypost_trackers_reply, metadata_by_feed

from orderwatch_dagster.defs.ingest.connector import FeedConnector
from orderwatch_dagster.defs.resources import WAREHOUSE_SETTINGS, DuckDBWarehouse
from orderwatch_dagster.lib.feeds import FEEDS, sources
from orderwatch_dagster.lib.settings import GENERAL_SETTINGS, EnvSetting, write_clock

README = Path(__file__).resolve().parents[1] / "README.md"
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


def readme_settings(text: str) -> dict[str, list[tuple[str, str | None, bool]]]:
    """System -> (variable, default, secret) rows of the README's "Configuration" tables."""
    section = text.split("\n## Configuration\n", 1)[1].split("\n## ", 1)[0]
    tables: dict[str, list[tuple[str, str | None, bool]]] = {}
    system = ""
    for line in section.splitlines():
        if line.startswith("### "):
            system = line[4:].split()[0]
            tables[system] = []
        elif system and re.match(r"^\| `", line):
            name, default, secret = (cell.strip() for cell in line.strip("|").split("|")[:3])
            value = None if default == "—" else default.strip("`")
            tables[system].append((name.strip("`"), value, secret == "yes"))
    return tables


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
        system: [(s.name, s.default, s.secret) for s in settings]
        for system, settings in code_settings().items()
    }
    assert documented == declared


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
    home = clean_environment
    write_clock(datetime(2026, 10, 6, tzinfo=UTC), home / "clock")
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
