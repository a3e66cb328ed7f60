"""`read = loaded + duplicate + quarantined`, checked against the landing pages themselves.

The records in every page are counted by DuckDB (`read_text` + its JSON functions), not by
the project's parser: an element of the vendor's list envelope (or of a bare array, or a line
of NDJSON) is one record; a page that is not JSON is one (it is quarantined whole). Those counts
must equal what the ingest reports, what its ledger stores, and the rows it stored.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import dagster as dg
import duckdb
import pytest
from conftest import World
from test_ingest import ALL_ASSETS, default_connectors, metadata_by_feed, simulate_world

from orderwatch_dagster.defs.resources import DuckDBWarehouse
from orderwatch_dagster.lib.feeds import FEEDS


def landing_counts(landing: Path) -> dict[str, tuple[int, int]]:
    """Feed -> (records in its pages, distinct records), counted by DuckDB alone."""
    counts: dict[str, tuple[int, int]] = {}
    with duckdb.connect() as con:
        for feed, spec in FEEDS.items():
            # a sideload (support_users) reads the pages of the feed it rides on
            folder = landing / spec.landing_folder
            files = [p for p in folder.rglob("*") if p.suffix in (".json", ".ndjson")]
            if not files:
                counts[feed] = (0, 0)
                continue
            envelope = f"$.{spec.list_key}" if spec.list_key else "$"
            # a host page that carries no sideloaded list holds no record of the sideload
            # (a Zendesk ticket page without `include=users`); it is not a broken page
            hosted = "false"
            if spec.pages_of is not None:
                host = FEEDS[spec.pages_of]
                tests = []
                if host.list_key:
                    tests.append(f"json_type(content, '$.{host.list_key}') = 'ARRAY'")
                if host.single_key:
                    tests.append(f"json_type(content, '$.{host.single_key}') = 'OBJECT'")
                if tests:
                    hosted = " or ".join(tests)
            elements = f"""
                with pages as (
                    select
                        content,
                        filename like '%.ndjson' as lines,
                        case when json_valid(content) then json_type(content, '{envelope}') end
                            = 'ARRAY' as listed,
                        case when json_valid(content) then {hosted} end as hosted
                    from read_text(?)
                ),
                items as (
                    select unnest(string_split(content, chr(10))) as item from pages where lines
                    union all  -- not JSON, or no list envelope: the page is one record
                    select content from pages
                    where not lines and not coalesce(listed, false) and not coalesce(hosted, false)
                    union all
                    select unnest(cast(json_extract(content, '{envelope}') as json[]))::varchar
                    from pages where not lines and listed
                )
                select count(*), count(distinct item) from items where trim(item) <> ''
            """
            (total, distinct) = con.execute(elements, [[str(p) for p in files]]).fetchone()
            counts[feed] = (int(total), int(distinct))
    return counts


def stored_counts(warehouse: Path) -> dict[str, dict[str, int]]:
    with duckdb.connect(str(warehouse), read_only=True) as con:

        def one(sql: str, feed: str) -> int:
            return int(con.execute(sql, [feed]).fetchone()[0])

        return {
            feed: {
                "loaded": int(con.execute(f"select count(*) from raw.{feed}").fetchone()[0]),
                "quarantined": one("select count(*) from raw._quarantine where feed = ?", feed),
                "ledger_read": one(
                    "select coalesce(sum(rows_read), 0) from raw._ingest_files where feed = ?",
                    feed,
                ),
            }
            for feed in FEEDS
        }


def check_counts(landing: Path, warehouse: Path, reported: dict[str, dict[str, Any]]) -> None:
    pages = landing_counts(landing)
    stored = stored_counts(warehouse)
    for feed in FEEDS:
        total, distinct = pages[feed]
        meta, rows = reported[feed], stored[feed]
        assert meta["rows_read"] == rows["ledger_read"] == total, feed
        assert (meta["rows_loaded"], meta["rows_quarantined"]) == (
            rows["loaded"],
            rows["quarantined"],
        ), feed
        assert total == rows["loaded"] + meta["rows_duplicate"] + rows["quarantined"], feed
        # every distinct element is one stored version or one quarantined record
        assert distinct == rows["loaded"] + rows["quarantined"], feed


def test_counts_on_a_small_world_with_bad_records(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ORDERWATCH_HOME", str(tmp_path))
    monkeypatch.delenv("ORDERWATCH_AS_OF", raising=False)
    landing = tmp_path / "landing"
    simulate_world(landing, "--inject-bad-records")
    # an NDJSON page with a broken line, and one page repeated under another name
    (landing / "returns" / "late.ndjson").write_text(
        '{"id": 1, "order_id": 5, "state": "open", "updated_at": "2026-10-02T10:00:00Z"}\n'
        '{"id": 2, "order_id"\n\n'
    )
    page = sorted((landing / "storefront_orders").glob("*.json"))[0]
    (landing / "storefront_orders" / "again.json").write_bytes(page.read_bytes())
    warehouse = tmp_path / "warehouse.duckdb"
    resources = {"warehouse": DuckDBWarehouse(path=str(warehouse)), **default_connectors()}
    result = dg.materialize(ALL_ASSETS, resources=resources)
    reported = metadata_by_feed(result)
    assert sum(m["rows_quarantined"] for m in reported.values()) >= 5  # 4 injected + 1 line
    assert reported["storefront_orders"]["rows_duplicate"] > 0
    check_counts(landing, warehouse, reported)


@pytest.mark.slow
def test_counts_on_the_reference_world(reference_world: World) -> None:
    everything = metadata_by_feed(reference_world.run)  # the pipeline job: raw assets and dbt
    reported = {feed: everything[feed] for feed in FEEDS}
    assert sum(m["rows_read"] for m in reported.values()) > 50_000  # ~85,000 at 14 x 400
    check_counts(reference_world.landing, reference_world.warehouse, reported)
