"""The feed registry (lib/feeds.py) is the one list of feeds: dbt's raw sources, the staging
models that read them and the staging `accepted_values` tests must agree with it.

The dbt side is read from whatever YAML and SQL files under dbt_project/models define it (no
file is named here), so the staging models can be rewritten and moved freely.
"""

from __future__ import annotations

import re
import shutil
from collections import defaultdict
from pathlib import Path
from typing import Any

import dagster as dg
import yaml

from orderwatch_dagster.lib.feeds import FEEDS

MODELS = Path(__file__).resolve().parents[1] / "dbt_project" / "models"
SOURCE_CALL = re.compile(r"""source\(\s*['"]raw['"]\s*,\s*['"](\w+)['"]\s*\)""")


def _documents(models: Path) -> list[dict[str, Any]]:
    return [
        doc
        for path in sorted(models.rglob("*.yml"))
        if isinstance(doc := yaml.safe_load(path.read_text()), dict)
    ]


def _raw_sources(models: Path) -> dict[str, str]:
    """Table name -> schema of dbt's source `raw`."""
    tables: dict[str, str] = {}
    for doc in _documents(models):
        for source in doc.get("sources") or []:
            if source.get("name") == "raw":
                for table in source.get("tables") or []:
                    tables[table["name"]] = source.get("schema", "raw")
    return tables


def _readers(models: Path) -> dict[str, set[str]]:
    """Feed -> the models that select from source('raw', feed)."""
    readers: dict[str, set[str]] = defaultdict(set)
    for path in models.rglob("*.sql"):
        for feed in SOURCE_CALL.findall(path.read_text()):
            readers[feed].add(path.stem)
    return readers


def _accepted_values(models: Path) -> dict[tuple[str, str], list[set[str]]]:
    """(model, column) -> the value sets of its accepted_values tests."""
    found: dict[tuple[str, str], list[set[str]]] = defaultdict(list)
    for doc in _documents(models):
        for model in doc.get("models") or []:
            for column in model.get("columns") or []:
                for test in column.get("data_tests") or column.get("tests") or []:
                    if isinstance(test, dict) and "accepted_values" in test:
                        spec = test["accepted_values"]
                        values = (spec.get("arguments") or spec).get("values") or []
                        found[(model["name"], column["name"])].append({str(v) for v in values})
    return found


def registry_disagreements(models: Path) -> list[str]:
    """Every way the dbt project under `models` disagrees with FEEDS ([] when it agrees)."""
    problems: list[str] = []
    sources = _raw_sources(models)
    if set(sources) != set(FEEDS):
        problems.append(
            f"dbt source raw: missing {sorted(set(FEEDS) - set(sources))}, "
            f"not in FEEDS {sorted(set(sources) - set(FEEDS))}"
        )
    problems += [f"source raw.{t} has schema {s!r}" for t, s in sources.items() if s != "raw"]
    readers = _readers(models)
    tests = _accepted_values(models)
    for feed, spec in FEEDS.items():
        if not readers.get(feed):
            problems.append(f"no staging model selects from source('raw', '{feed}')")
        expected: dict[str, set[str]] = defaultdict(set)
        for enum in spec.enums:
            if enum.staged_column is not None:
                expected[enum.staged_column] |= enum.values
        for column, values in expected.items():
            found = [
                (model, staged)
                for model in sorted(readers.get(feed, ()))
                for staged in tests.get((model, column), [])
            ]
            if not found:
                problems.append(f"{feed}: no accepted_values test on a staged `{column}`")
            for model, staged in found:
                if staged != values:
                    problems.append(
                        f"{model}.{column}: accepted_values lacks {sorted(values - staged)}, "
                        f"has {sorted(staged - values)} beyond lib/feeds.py"
                    )
    return problems


def test_dbt_sources_and_staging_vocabularies_agree_with_the_registry() -> None:
    assert registry_disagreements(MODELS) == []


def test_the_comparison_sees_drift(tmp_path: Path) -> None:
    """A value added on one side only, and a feed missing from the sources, are both reported."""
    models = tmp_path / "models"
    shutil.copytree(MODELS, models)
    edited = 0
    for path in models.rglob("*.yml"):
        text = path.read_text()
        changed = text.replace(
            "values: [new, open, pending, hold, solved, closed]", "values: [new]"
        )
        changed = changed.replace("      - name: returns\n", "      - name: returns_v2\n")
        if changed != text:
            edited += 1
            path.write_text(changed)
    assert edited == 2
    problems = registry_disagreements(models)
    assert any("missing ['returns']" in p and "not in FEEDS ['returns_v2']" in p for p in problems)
    assert any(p.startswith("stg_support__tickets.status: accepted_values lacks") for p in problems)


def test_every_feed_has_its_raw_asset_check_and_connector_in_the_code_location() -> None:
    from orderwatch_dagster.definitions import defs

    definitions = defs()
    graph = definitions.get_repository_def().asset_graph
    for feed in FEEDS:
        key = dg.AssetKey(["raw", feed])
        assert graph.get(key).is_materializable
        assert dg.AssetCheckKey(key, f"raw_{feed}_quarantine_check") in graph.asset_check_keys
        assert f"{feed}_source" in (definitions.resources or {})
