"""Nothing is lost through the cursor: unreadable pages, future update times, offset-less times,
and replaying quarantined records after a parser fix, all through the raw assets
(lib/ingest.py) against a real DuckDB file and the local HTTP server (tests/http_server.py)."""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import dagster as dg
import pytest
from http_server import RecordedRequest, Reply, ScriptedHTTPServer
from test_ingest import (
    ASSETS,
    easypost_tracker,
    get_cursor,
    materialize,
    metadata_by_feed,
    query,
    shopify_order,
    write_page,
)

from orderwatch_dagster.cli import main
from orderwatch_dagster.defs.ingest.carrier.resources import EasyPostConnector
from orderwatch_dagster.defs.ingest.oms.resources import ShopifyFulfillmentOrdersConnector
from orderwatch_dagster.defs.ingest.storefront.resources import ShopifyConnector
from orderwatch_dagster.defs.resources import DuckDBWarehouse
from orderwatch_dagster.lib import feeds
from orderwatch_dagster.lib.ingest import CURSOR_OVERLAP, FUTURE_TOLERANCE

CLOCK = datetime(2026, 10, 6, tzinfo=UTC)  # "now" of these tests (the clock file)
KEY = "sk-cursor-test-key"
FAST = {"backoff_factor": 0.0, "timeout_seconds": 5.0, "max_retries": 1}
SHOPIFY_BASE = "/admin/api/2025-07"


@pytest.fixture
def warehouse(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> DuckDBWarehouse:
    monkeypatch.setenv("ORDERWATCH_HOME", str(tmp_path))
    # not the wall clock (the pages are from 2026); an explicit "now", since a clock file is
    # the simulator's and HTTP ingest refuses it (defs/ingest/factory.py)
    monkeypatch.setenv("ORDERWATCH_AS_OF", CLOCK.isoformat())
    return DuckDBWarehouse(path=str(tmp_path / "warehouse.duckdb"))


@pytest.fixture
def server() -> Any:
    with ScriptedHTTPServer() as scripted:
        yield scripted


def _quarantine(warehouse: DuckDBWarehouse, feed: str) -> list[tuple[Any, ...]]:
    return query(
        warehouse,
        "SELECT reason, record_index, source, original_text FROM raw._quarantine "
        f"WHERE feed = '{feed}' ORDER BY source, record_index",
    )


def _log_text(instance: dg.DagsterInstance, result: dg.ExecuteInProcessResult) -> str:
    """Every log line of the run, as the UI shows them."""
    return "\n".join(entry.message for entry in instance.all_logs(result.run_id))


def _trackers_page(*trackers: dict[str, Any], more: bool) -> dict[str, Any]:
    return {"trackers": list(trackers), "has_more": more}


# -- an unreadable HTTP page ------------------------------------------------------------------


@pytest.mark.parametrize(
    "bad_body",
    ['{"trackers": [{"id": "trk_b1", "object": "Tracker", "upd', "<html>maintenance</html>"],
    ids=["truncated", "not-json"],
)
def test_unreadable_http_page_is_quarantined_and_the_cursor_does_not_pass_it(
    bad_body: str, warehouse: DuckDBWarehouse, server: ScriptedHTTPServer
) -> None:
    first = easypost_tracker("trk_a1", "2026-10-05T10:00:00Z")
    later = easypost_tracker("trk_c1", "2026-10-05T16:00:00Z")
    pages = {None: Reply(body=_trackers_page(first, more=True))}

    def trackers(request: RecordedRequest) -> Reply:
        return pages.get(request.param("before_id"), pages[None])

    server.route("/v2/trackers", trackers)
    connector = EasyPostConnector(
        transport="http", base_url=server.url + "/v2", api_key=KEY, page_size=1, **FAST
    )
    resources = {"warehouse": warehouse, "carrier_trackers_source": connector}
    asset = [ASSETS["carrier_trackers"]]

    # Run 1: one good page; the cursor moves to it.
    pages[None] = Reply(body=_trackers_page(first, more=False))
    materialize(asset, resources, dg.DagsterInstance.ephemeral())
    cursor = get_cursor(warehouse, "carrier_trackers")
    assert cursor == datetime(2026, 10, 5, 10, tzinfo=UTC)

    # Run 2: the first page says there is more; the second is unreadable. The run fails, the
    # good page and the bad body are stored, the cursor stays where it was.
    pages[None] = Reply(body=_trackers_page(later, more=True))
    pages["trk_c1"] = Reply(body=bad_body)
    instance = dg.DagsterInstance.ephemeral()
    failed = materialize(asset, resources, instance, raise_on_error=False)
    assert not failed.success
    (failure,) = failed.get_step_failure_events()
    error = failure.step_failure_data.error
    assert error is not None and "the pages read are stored" in error.message
    assert "cursor not advanced" in _log_text(instance, failed)
    assert KEY not in _log_text(instance, failed) + error.to_string()
    [(reason, index, source, original)] = _quarantine(warehouse, "carrier_trackers")
    assert (reason, index, original) == ("bad_json", -1, bad_body)
    assert "before_id=trk_c1" in source
    stored = query(warehouse, "SELECT _key FROM raw.carrier_trackers ORDER BY _key")
    assert stored == [("trk_a1",), ("trk_c1",)]
    assert get_cursor(warehouse, "carrier_trackers") == cursor

    # Run 3: the source answers again; everything since the old cursor is asked for and read.
    server.requests.clear()
    pages["trk_c1"] = Reply(body=_trackers_page(later, more=False))
    done = metadata_by_feed(materialize(asset, resources, dg.DagsterInstance.ephemeral()))
    assert done["carrier_trackers"]["updated_since"] == "2026-10-05T09:00:00+00:00"
    # EasyPost is asked by creation time: the lookback window before "now" (30 days)
    assert {r.param("start_datetime") for r in server.requests} == {"2026-09-06T00:00:00Z"}
    assert done["carrier_trackers"]["cursor_held"] == ""
    assert get_cursor(warehouse, "carrier_trackers") == datetime(2026, 10, 5, 16, tzinfo=UTC)


def test_unreadable_page_holds_the_cursor_even_when_the_ledger_skips_it(
    warehouse: DuckDBWarehouse, server: ScriptedHTTPServer
) -> None:
    """Shopify pages by Link header, so paging goes on past a body that is not JSON; the page
    is quarantined, and while it is, a run that meets it again never moves the cursor."""
    path = f"{SHOPIFY_BASE}/orders.json"
    nxt = f'<{server.url}{path}?limit=250&page_info=two>; rel="next"'
    good = {"orders": [shopify_order(1, "2026-10-05T10:00:00Z")]}
    server.route(path, Reply(body=good, headers={"Link": nxt}))
    server.route(path, Reply(body="<html>oops</html>"), query={"page_info": "two"})
    connector = ShopifyConnector(
        transport="http", base_url=server.url + SHOPIFY_BASE, api_key=KEY, **FAST
    )
    resources = {"warehouse": warehouse, "storefront_orders_source": connector}
    asset = [ASSETS["storefront_orders"]]

    for _ in range(2):  # the second run skips both pages (same URL, same body)
        meta = metadata_by_feed(materialize(asset, resources, dg.DagsterInstance.ephemeral()))
        assert meta["storefront_orders"]["pages_unreadable"] == 1
        assert "could not be read" in meta["storefront_orders"]["cursor_held"]
        assert get_cursor(warehouse, "storefront_orders") is None
    assert meta["storefront_orders"]["pages_skipped"] == 2
    assert [row[:2] for row in _quarantine(warehouse, "storefront_orders")] == [("bad_json", -1)]


# -- future update times ----------------------------------------------------------------------


def _fulfillment_orders_server(server: ScriptedHTTPServer, stamps: dict[int, str]) -> None:
    server.route(f"{SHOPIFY_BASE}/orders.json", Reply(body={"orders": [{"id": i} for i in stamps]}))
    for order_id, stamp in stamps.items():
        fulfillment_order = {
            "id": 900 + order_id,
            "order_id": order_id,
            "status": "open",
            "updated_at": stamp,
        }
        server.route(
            f"{SHOPIFY_BASE}/orders/{order_id}/fulfillment_orders.json",
            Reply(body={"fulfillment_orders": [fulfillment_order]}),
        )


def test_a_future_update_time_is_quarantined_and_never_moves_the_cursor(
    warehouse: DuckDBWarehouse, server: ScriptedHTTPServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    just_ahead = (CLOCK + FUTURE_TOLERANCE / 2).isoformat()  # vendor clock skew: loads
    _fulfillment_orders_server(
        server, {1: "2026-10-05T10:00:00Z", 2: "2031-01-01T00:00:00Z", 3: just_ahead}
    )
    connector = ShopifyFulfillmentOrdersConnector(
        transport="http", base_url=server.url + SHOPIFY_BASE, api_key=KEY, **FAST
    )
    resources = {"warehouse": warehouse, "oms_fulfillment_orders_source": connector}
    asset = [ASSETS["oms_fulfillment_orders"]]

    meta = metadata_by_feed(materialize(asset, resources, dg.DagsterInstance.ephemeral()))
    feed = meta["oms_fulfillment_orders"]
    assert (feed["rows_loaded"], feed["rows_quarantined"]) == (2, 1)
    assert "| future_time | 1 |" in feed["quarantine_reasons"]
    assert get_cursor(warehouse, "oms_fulfillment_orders") == CLOCK + FUTURE_TOLERANCE / 2
    [(reason, _, _, original)] = _quarantine(warehouse, "oms_fulfillment_orders")
    assert reason == "future_time" and '"2031-01-01T00:00:00Z"' in original

    # The next poll asks from the real high-water mark, not from 2031.
    server.requests.clear()
    materialize(asset, resources, dg.DagsterInstance.ephemeral())
    lists = server.requests_to(f"{SHOPIFY_BASE}/orders.json")
    assert lists[0].param("updated_at_min") == (
        (CLOCK + FUTURE_TOLERANCE / 2 - CURSOR_OVERLAP).isoformat().replace("+00:00", "Z")
    )

    # Once "now" has caught up, a replay loads it and it leaves the quarantine.
    monkeypatch.setenv("ORDERWATCH_AS_OF", "2031-01-01T00:05:00Z")
    config = {"ops": {"raw__oms_fulfillment_orders": {"config": {"replay_quarantine": True}}}}
    replayed = dg.materialize(
        asset, resources=resources, run_config=config, instance=dg.DagsterInstance.ephemeral()
    )
    assert "| 1 | 1 | 1 | 0 | 0 |" in metadata_by_feed(replayed)["oms_fulfillment_orders"]["replay"]
    assert _quarantine(warehouse, "oms_fulfillment_orders") == []
    assert query(warehouse, "SELECT count(*) FROM raw.oms_fulfillment_orders") == [(3,)]


def test_timestamps_without_offset_are_counted_as_a_data_quality_warning(
    warehouse: DuckDBWarehouse, tmp_path: Path
) -> None:
    landing = tmp_path / "landing"
    write_page(
        landing,
        "storefront_orders",
        "p.json",
        {
            "orders": [
                shopify_order(1, "2026-10-05T10:00:00"),  # no offset
                shopify_order(2, "2026-10-05T10:00:00-04:00"),
            ]
        },
    )
    resources = {
        "warehouse": warehouse,
        "storefront_orders_source": ShopifyConnector(landing_dir=str(landing)),
    }
    instance = dg.DagsterInstance.ephemeral()
    result = materialize([ASSETS["storefront_orders"]], resources, instance)
    meta = metadata_by_feed(result)["storefront_orders"]
    assert (meta["rows_loaded"], meta["timestamps_without_offset"]) == (2, 1)
    assert "1 timestamp(s) without a UTC offset, read as UTC" in _log_text(instance, result)
    assert query(warehouse, "SELECT _key, _updated_at FROM raw.storefront_orders ORDER BY 1") == [
        ("1", datetime(2026, 10, 5, 10, tzinfo=UTC)),  # read as UTC, not dropped
        ("2", datetime(2026, 10, 5, 14, tzinfo=UTC)),
    ]


# -- replay after a parser fix ------------------------------------------------------------------


def test_replay_command_loads_records_a_fixed_parser_now_reads(
    warehouse: DuckDBWarehouse, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: Any
) -> None:
    """A page in an envelope the parser did not know is quarantined whole; after the fix (an
    `envelope` hook on the feed's spec) `orderwatch replay-quarantine` loads its records,
    quarantines its one bad element in its place, and the page leaves the quarantine."""
    monkeypatch.setenv("DAGSTER_HOME", str(tmp_path / "dagster"))
    (tmp_path / "dagster").mkdir()
    landing = tmp_path / "landing"
    graphql = {
        "data": {
            "orders": {
                "nodes": [
                    shopify_order(7, "2026-10-05T10:00:00Z"),
                    shopify_order(8, "2026-10-05T11:00:00Z"),
                    {"name": "#9", "updated_at": "2026-10-05T12:00:00Z"},  # no id
                ]
            }
        }
    }
    write_page(landing, "storefront_orders", "graphql.json", graphql)
    resources = {
        "warehouse": warehouse,
        "storefront_orders_source": ShopifyConnector(landing_dir=str(landing)),
    }
    materialize([ASSETS["storefront_orders"]], resources, dg.DagsterInstance.ephemeral())
    assert [row[:2] for row in _quarantine(warehouse, "storefront_orders")] == [
        ("unexpected_shape", -1)
    ]
    assert query(warehouse, "SELECT count(*) FROM raw.storefront_orders") == [(0,)]

    # The fix: the storefront spec learns the envelope (as a hook in lib/feed_hooks.py would).
    spec = feeds.FEEDS["storefront_orders"]
    fixed = dataclasses.replace(spec, envelope=lambda page: page["data"]["orders"]["nodes"])
    monkeypatch.setitem(feeds.FEEDS, "storefront_orders", fixed)

    assert main(["replay-quarantine", "--feed", "storefront_orders"]) == 0
    assert "| 1 | 1 | 2 | 0 | 1 |" in capsys.readouterr().out  # replayed, released, loaded, ...
    stored = query(warehouse, "SELECT _key, _source FROM raw.storefront_orders ORDER BY 1")
    assert [key for key, _ in stored] == ["7", "8"]
    assert all(source.endswith("storefront_orders/graphql.json") for _, source in stored)
    [(reason, index, _, original)] = _quarantine(warehouse, "storefront_orders")
    assert (reason, index) == ("missing_key", 2) and '"#9"' in original

    # Replaying again changes nothing.
    assert main(["replay-quarantine", "--feed", "storefront_orders"]) == 0
    assert query(warehouse, "SELECT count(*) FROM raw.storefront_orders") == [(2,)]
    assert len(_quarantine(warehouse, "storefront_orders")) == 1
