"""Vendor semantics the connectors must honour, through the raw assets where the cursor is
involved, against the local HTTP server (tests/http_server.py), a raw socket server for bodies
cut short in transit, and a real DuckDB file."""

from __future__ import annotations

import json
import socket
import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import dagster as dg
import pytest
from http_server import RecordedRequest, Reply, ScriptedHTTPServer
from test_ingest import (
    ASSETS,
    easypost_tracker,
    easypost_trackers_reply,
    get_cursor,
    metadata_by_feed,
    query,
    shopify_order,
    write_page,
)

from orderwatch_dagster.cli import main
from orderwatch_dagster.defs.ingest.carrier.resources import EasyPostConnector
from orderwatch_dagster.defs.ingest.connector import ConnectorError
from orderwatch_dagster.defs.ingest.oms.resources import ShopifyFulfillmentOrdersConnector
from orderwatch_dagster.defs.ingest.returns.resources import LoopConnector
from orderwatch_dagster.defs.ingest.storefront.resources import ShopifyConnector
from orderwatch_dagster.defs.ingest.support.resources import ZendeskConnector
from orderwatch_dagster.defs.ingest.wms.resources import ShipBobConnector
from orderwatch_dagster.defs.resources import DuckDBWarehouse
from orderwatch_dagster.lib.feeds import LOOP_STATE
from orderwatch_dagster.lib.settings import write_clock

NOW = datetime(2026, 10, 6, tzinfo=UTC)  # "now" of these tests (ORDERWATCH_AS_OF)
KEY = "sk-semantics-test-key"
FAST: dict[str, Any] = {"backoff_factor": 0.0, "timeout_seconds": 5.0, "max_retries": 1}
SHOPIFY = "/admin/api/2025-07"


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("ORDERWATCH_HOME", str(tmp_path))
    monkeypatch.setenv("ORDERWATCH_AS_OF", NOW.isoformat())
    return tmp_path


@pytest.fixture
def warehouse(home: Path) -> DuckDBWarehouse:
    return DuckDBWarehouse(path=str(home / "warehouse.duckdb"))


@pytest.fixture
def server() -> Iterator[ScriptedHTTPServer]:
    with ScriptedHTTPServer() as scripted:
        yield scripted


def run(
    feed: str, warehouse: DuckDBWarehouse, source: Any, **kwargs: Any
) -> dg.ExecuteInProcessResult:
    resources = {"warehouse": warehouse, f"{feed}_source": source}
    return dg.materialize(
        [ASSETS[feed]], resources=resources, instance=dg.DagsterInstance.ephemeral(), **kwargs
    )


def quarantine(warehouse: DuckDBWarehouse, feed: str) -> list[tuple[Any, ...]]:
    return query(
        warehouse,
        "SELECT reason, record_index, original_text FROM raw._quarantine "
        f"WHERE feed = '{feed}' ORDER BY quarantined_at, record_index",
    )


# -- finding 4: EasyPost lists trackers by creation time ---------------------------------------


def test_an_old_tracker_updated_after_the_cursor_is_ingested(
    warehouse: DuckDBWarehouse, server: ScriptedHTTPServer
) -> None:
    old = easypost_tracker("trk_old", "2026-10-01T10:00:00Z", created="2026-10-01T09:00:00Z")
    new = easypost_tracker("trk_new", "2026-10-05T10:00:00Z", created="2026-10-05T09:00:00Z")
    trackers = [old, new]
    server.route("/v2/trackers", easypost_trackers_reply(trackers, api_key=KEY))
    connector = EasyPostConnector(
        transport="http", base_url=server.url + "/v2", api_key=KEY, **FAST
    )
    run("carrier_trackers", warehouse, connector)
    assert get_cursor(warehouse, "carrier_trackers") == datetime(2026, 10, 5, 10, tzinfo=UTC)

    # The tracker created on 10-01 gets a scan after the cursor (10-05 10:00).
    trackers[0] = easypost_tracker(
        "trk_old", "2026-10-05T18:00:00Z", status="delivered", created="2026-10-01T09:00:00Z"
    )
    server.requests.clear()
    run("carrier_trackers", warehouse, connector)
    versions = query(warehouse, "SELECT count(*) FROM raw.carrier_trackers WHERE _key = 'trk_old'")
    assert versions == [(2,)]
    assert {r.param("start_datetime") for r in server.requests} == {"2026-09-06T00:00:00Z"}
    assert get_cursor(warehouse, "carrier_trackers") == datetime(2026, 10, 5, 18, tzinfo=UTC)


def test_the_lookback_reaches_back_to_an_older_cursor(home: Path) -> None:
    connector = EasyPostConnector(lookback_days=30)
    assert connector.created_since(None) == NOW - timedelta(days=30)
    old_cursor = NOW - timedelta(days=45)  # a poller that was down for 45 days
    assert connector.created_since(old_cursor) == old_cursor


# -- finding 5: a cursor belongs to its source; the simulator's clock is not "now" for APIs ----


def test_switching_a_feed_from_files_to_http_reads_the_vendor_in_full(
    home: Path, warehouse: DuckDBWarehouse, server: ScriptedHTTPServer
) -> None:
    landing = home / "landing"
    landing.mkdir()
    simulated = {"customers": [{"id": 1, "updated_at": "2026-10-05T20:00:00Z"}]}
    write_page(landing, "storefront_customers", "p1.json", simulated)
    run("storefront_customers", warehouse, ShopifyConnector())
    assert get_cursor(warehouse, "storefront_customers") == datetime(2026, 10, 5, 20, tzinfo=UTC)

    # The real shop's customers were last updated before the simulated high-water mark.
    real = {"customers": [{"id": 501, "updated_at": "2026-09-20T08:00:00Z"}]}
    server.route(f"{SHOPIFY}/customers.json", Reply(body=real))
    http = ShopifyConnector(transport="http", base_url=server.url + SHOPIFY, api_key=KEY, **FAST)
    meta = metadata_by_feed(run("storefront_customers", warehouse, http))["storefront_customers"]
    assert [r.param("updated_at_min") for r in server.requests] == [None]  # a full read
    assert "dropped" in meta["cursor_check"]
    assert query(warehouse, "SELECT _key FROM raw.storefront_customers WHERE _key = '501'")
    assert get_cursor(warehouse, "storefront_customers") == datetime(2026, 9, 20, 8, tzinfo=UTC)

    # Same source again: the cursor is used.
    server.requests.clear()
    run("storefront_customers", warehouse, http)
    assert [r.param("updated_at_min") for r in server.requests] == ["2026-09-20T07:00:00Z"]


def test_http_ingest_refuses_the_simulators_clock_file(
    home: Path,
    warehouse: DuckDBWarehouse,
    server: ScriptedHTTPServer,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    write_clock(NOW, home / "clock")
    monkeypatch.delenv("ORDERWATCH_AS_OF")
    server.route(f"{SHOPIFY}/customers.json", Reply(body={"customers": []}))
    http = ShopifyConnector(transport="http", base_url=server.url + SHOPIFY, api_key=KEY, **FAST)
    failed = run("storefront_customers", warehouse, http, raise_on_error=False)
    assert not failed.success
    (failure,) = failed.get_step_failure_events()
    assert "clock file" in str(failure.step_failure_data.error)
    assert server.requests == []
    # The file transport (the simulated world) keeps using it.
    assert run("storefront_customers", warehouse, ShopifyConnector()).success


# -- finding 7: a body cut short in transit -----------------------------------------------------


class ShortWriteServer:
    """A socket server on 127.0.0.1 that announces a Content-Length and sends fewer bytes for
    the first `short` requests, then the whole body."""

    def __init__(self, body: bytes, short: int) -> None:
        self.body, self.short, self.served = body, short, 0
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.thread = threading.Thread(target=self._serve, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.sock.getsockname()[1]}"

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            with conn:
                conn.recv(65536)
                cut = self.served < self.short
                self.served += 1
                head = (
                    "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
                    f"Content-Length: {len(self.body)}\r\nConnection: close\r\n\r\n"
                )
                conn.sendall(head.encode() + (self.body[:14] if cut else self.body))

    def __enter__(self) -> ShortWriteServer:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.sock.close()


TRACKERS = {"trackers": [easypost_tracker("trk_a1", "2026-10-05T10:00:00Z")], "has_more": False}


def test_a_body_cut_short_is_read_again() -> None:
    with ShortWriteServer(json.dumps(TRACKERS).encode(), short=2) as short:
        connector = EasyPostConnector(
            transport="http", base_url=short.url + "/v2", api_key=KEY, **{**FAST, "max_retries": 3}
        )
        (page,) = connector.pages("carrier_trackers", None)
        assert json.loads(page.body) == TRACKERS
        assert short.served == 3


def test_a_body_cut_short_on_every_try_is_quarantined_and_holds_the_cursor(
    warehouse: DuckDBWarehouse,
) -> None:
    body = json.dumps(TRACKERS).encode()
    with ShortWriteServer(body, short=99) as short:
        connector = EasyPostConnector(
            transport="http", base_url=short.url + "/v2", api_key=KEY, **{**FAST, "max_retries": 2}
        )
        failed = run("carrier_trackers", warehouse, connector, raise_on_error=False)
        assert short.served == 3  # the first try + max_retries
    assert not failed.success
    (failure,) = failed.get_step_failure_events()
    assert "cut short on 3 tries" in str(failure.step_failure_data.error)
    [(reason, index, original)] = quarantine(warehouse, "carrier_trackers")
    assert (reason, index, original) == ("bad_json", -1, body[:14].decode())
    assert get_cursor(warehouse, "carrier_trackers") is None


# -- finding 8: replay never puts an older state on top; a future cursor comes back ------------


def test_replay_skips_a_future_version_that_a_later_load_superseded(
    home: Path, warehouse: DuckDBWarehouse, monkeypatch: pytest.MonkeyPatch
) -> None:
    landing = home / "landing"
    landing.mkdir()
    ahead = (NOW + timedelta(minutes=20)).isoformat()  # quarantined as future_time
    write_page(landing, "storefront_orders", "a.json", {"orders": [shopify_order(7, ahead)]})
    run("storefront_orders", warehouse, ShopifyConnector())
    assert [r[0] for r in quarantine(warehouse, "storefront_orders")] == ["future_time"]

    # A minute later a fetch has the newer state, stamped 5 minutes ahead (within tolerance).
    monkeypatch.setenv("ORDERWATCH_AS_OF", (NOW + timedelta(minutes=1)).isoformat())
    soon = (NOW + timedelta(minutes=5)).isoformat()
    newer = shopify_order(7, soon, financial_status="refunded")
    write_page(landing, "storefront_orders", "b.json", {"orders": [newer]})
    run("storefront_orders", warehouse, ShopifyConnector())

    # Later, "now" has caught up; the replay must not load the older, further-ahead version.
    monkeypatch.setenv("ORDERWATCH_AS_OF", (NOW + timedelta(hours=1)).isoformat())
    config = {"replay_quarantine": True}
    result = run(
        "storefront_orders",
        warehouse,
        ShopifyConnector(),
        run_config={"ops": {ASSETS["storefront_orders"].op.name: {"config": config}}},
    )
    replay = metadata_by_feed(result)["storefront_orders"]["replay"]
    assert replay.splitlines()[-1].split("|")[1:-1][-1].strip() == "1"  # superseded
    versions = query(warehouse, "SELECT count(*) FROM raw.storefront_orders WHERE _key = '7'")
    assert versions == [(1,)]
    assert [r[0] for r in quarantine(warehouse, "storefront_orders")] == ["future_time"]


def test_a_cursor_ahead_of_now_is_brought_back_and_can_be_reset(
    home: Path, warehouse: DuckDBWarehouse, server: ScriptedHTTPServer
) -> None:
    orders = {"orders": [shopify_order(1, "2026-10-05T10:00:00Z")]}
    server.route(f"{SHOPIFY}/orders.json", Reply(body=orders))
    http = ShopifyConnector(transport="http", base_url=server.url + SHOPIFY, api_key=KEY, **FAST)
    run("storefront_orders", warehouse, http)
    with warehouse.connect() as session:  # a cursor pushed to 2031 before future times held
        session.execute("UPDATE raw._cursors SET cursor = TIMESTAMPTZ '2031-01-01 00:00:00+00'")

    server.requests.clear()
    meta = metadata_by_feed(run("storefront_orders", warehouse, http))["storefront_orders"]
    assert "ahead of now" in meta["cursor_check"]
    assert [r.param("updated_at_min") for r in server.requests] == ["2026-10-05T09:00:00Z"]
    assert get_cursor(warehouse, "storefront_orders") == datetime(2026, 10, 5, 10, tzinfo=UTC)

    assert main(["reset-cursor", "--feed", "storefront_orders", "--to", "2026-10-01T00:00Z"]) == 0
    assert get_cursor(warehouse, "storefront_orders") == datetime(2026, 10, 1, tzinfo=UTC)
    assert main(["reset-cursor", "--feed", "storefront_orders"]) == 0
    assert get_cursor(warehouse, "storefront_orders") is None
    assert main(["reset-cursor", "--feed", "nope"]) == 2


# -- finding 9: Loop's first run and states ------------------------------------------------------


def test_loop_first_run_backfills_every_state_in_120_day_windows(
    home: Path, server: ScriptedHTTPServer
) -> None:
    server.route("/api/v1/warehouse/return/list", Reply(body={"returns": [], "nextPageUrl": None}))
    connector = LoopConnector(
        transport="http", base_url=server.url + "/api/v1", api_key=KEY, backfill_days=200, **FAST
    )
    assert len(list(connector.pages("returns", None))) == 2 * len(LOOP_STATE)

    def when(text: str | None) -> datetime:
        return datetime.strptime(text or "", "%Y-%m-%d %H:%M:%S").replace(tzinfo=UTC)

    asked = {(r.param("from"), r.param("to"), r.param("state")) for r in server.requests}
    windows = sorted({(when(f), when(t)) for f, t, _ in asked})
    assert windows[0][0] == NOW - timedelta(days=200) and windows[-1][1] == NOW
    assert windows[0][1] == windows[1][0]
    assert {state for _, _, state in asked} == set(LOOP_STATE) >= {"cancelled", "review"}
    assert len(asked) == len(server.requests)  # every window x state asked once
    assert {r.param("filter") for r in server.requests} == {"updated_at"}


# -- finding 10: "more" without a way to get it is an error ------------------------------------


def test_more_without_a_next_page_fails_instead_of_ending(server: ScriptedHTTPServer) -> None:
    server.route("/v2/trackers", Reply(body={"trackers": [], "has_more": True}))
    server.route(
        "/api/v2/tickets.json",
        Reply(body={"tickets": [], "meta": {"has_more": True}, "links": {"next": None}}),
    )
    server.route(
        "/api/v2/incremental/tickets/cursor.json",
        Reply(body={"tickets": [], "end_of_stream": False, "after_url": None}),
    )
    easypost = EasyPostConnector(transport="http", base_url=server.url + "/v2", api_key=KEY, **FAST)
    with pytest.raises(ConnectorError, match="has_more but gives no tracker id"):
        list(easypost.pages("carrier_trackers", None))
    zendesk = ZendeskConnector(
        transport="http", base_url=server.url + "/api/v2", api_key=KEY, **FAST
    )
    with pytest.raises(ConnectorError, match=r"has_more but has no links\.next"):
        list(zendesk.pages("support_tickets", None))
    with pytest.raises(ConnectorError, match="end_of_stream false, no after_url"):
        list(zendesk.pages("support_tickets", NOW))


def test_shipbob_without_paging_headers_pages_while_a_page_is_full(
    server: ScriptedHTTPServer,
) -> None:
    orders = [
        {"id": 700 + i, "reference_id": str(i), "created_date": "2026-10-05T10:00:00Z"}
        for i in range(5)
    ]

    def page(request: RecordedRequest) -> Reply:
        n, size = int(request.param("Page") or 1), int(request.param("Limit") or 0)
        return Reply(body=orders[(n - 1) * size : n * size])  # no paging headers at all

    server.route("/1.0/order", page)
    connector = ShipBobConnector(
        transport="http", base_url=server.url + "/1.0", api_key=KEY, page_size=2, **FAST
    )
    pages = list(connector.pages("wms_shipments", None))
    assert [r.param("Page") for r in server.requests] == ["1", "2", "3"]
    assert sum(len(json.loads(p.body)) for p in pages) == 5


def test_shipbob_ignoring_page_fails_instead_of_looping(server: ScriptedHTTPServer) -> None:
    full = [{"id": 1, "reference_id": "1", "created_date": "2026-10-05T10:00:00Z"}]
    server.route("/1.0/order", Reply(body=full))  # the same full page whatever Page says
    connector = ShipBobConnector(
        transport="http", base_url=server.url + "/1.0", api_key=KEY, page_size=1, **FAST
    )
    with pytest.raises(ConnectorError, match="repeats the previous page"):
        list(connector.pages("wms_shipments", None))
    assert len(server.requests) == 2


# -- finding 11: an unreadable Shopify order list is kept ----------------------------------------


def test_an_unreadable_order_list_is_quarantined_before_the_run_fails(
    warehouse: DuckDBWarehouse, server: ScriptedHTTPServer
) -> None:
    server.route(f"{SHOPIFY}/orders.json", Reply(body="<html>busy</html>"))
    connector = ShopifyFulfillmentOrdersConnector(
        transport="http", base_url=server.url + SHOPIFY, api_key=KEY, **FAST
    )
    failed = run("oms_fulfillment_orders", warehouse, connector, raise_on_error=False)
    assert not failed.success
    [(reason, index, original)] = quarantine(warehouse, "oms_fulfillment_orders")
    assert (reason, index, original) == ("bad_json", -1, "<html>busy</html>")
    assert get_cursor(warehouse, "oms_fulfillment_orders") is None


# -- finding 12: Zendesk's export without deleted tickets ----------------------------------------


def test_zendesk_export_excludes_deleted_tickets(server: ScriptedHTTPServer) -> None:
    server.route(
        "/api/v2/incremental/tickets/cursor.json",
        Reply(body={"tickets": [], "end_of_stream": True, "after_url": None}),
    )
    connector = ZendeskConnector(
        transport="http", base_url=server.url + "/api/v2", api_key=KEY, **FAST
    )
    list(connector.pages("support_tickets", NOW))
    assert [r.param("exclude_deleted") for r in server.requests] == ["true"]


# -- finding 13: an API body is never read as NDJSON ---------------------------------------------


def test_a_multi_line_api_body_is_one_unreadable_page(
    warehouse: DuckDBWarehouse, server: ScriptedHTTPServer
) -> None:
    tracker = easypost_tracker("trk_a1", "2026-10-05T10:00:00Z")
    body = json.dumps(tracker) + "\n" + '{"trackers": ['  # the first line parses on its own
    server.route("/v2/trackers", Reply(body=body))
    connector = EasyPostConnector(
        transport="http", base_url=server.url + "/v2", api_key=KEY, **FAST
    )
    failed = run("carrier_trackers", warehouse, connector, raise_on_error=False)
    assert not failed.success  # paging cannot read it either
    [(reason, index, original)] = quarantine(warehouse, "carrier_trackers")
    assert (reason, index, original) == ("bad_json", -1, body)  # the whole page, not line 2
    assert query(warehouse, "SELECT count(*) FROM raw.carrier_trackers") == [(0,)]
    assert get_cursor(warehouse, "carrier_trackers") is None
