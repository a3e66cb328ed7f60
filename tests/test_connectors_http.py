"""Connector resources against a real HTTP server on 127.0.0.1, and the file-drop transport.

No request mocking: every test runs requests + urllib3 against `http_server.ScriptedHTTPServer`.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import dagster as dg
import pytest
from http_server import RecordedRequest, Reply, ScriptedHTTPServer
from test_ingest import default_connectors

from orderwatch_dagster.defs.ingest.carrier.resources import EasyPostConnector
from orderwatch_dagster.defs.ingest.connector import (
    ConnectorAuthError,
    ConnectorError,
    FeedConnector,
    Page,
)
from orderwatch_dagster.defs.ingest.oms.resources import ShopifyFulfillmentOrdersConnector
from orderwatch_dagster.defs.ingest.returns.resources import LoopConnector
from orderwatch_dagster.defs.ingest.storefront.resources import ShopifyConnector
from orderwatch_dagster.defs.ingest.support.resources import ZendeskConnector
from orderwatch_dagster.defs.ingest.wms.resources import ShipBobConnector
from orderwatch_dagster.lib.feeds import FEED_FOLDERS, LOOP_STATE, feed_spec
from orderwatch_dagster.lib.parsers import parse_page

SINCE = datetime(2026, 10, 5, 14, 0, 0, tzinfo=UTC)
KEY = "sk-test-0123456789abcdef"  # must never show up in an error message
FAST = {"backoff_factor": 0.01, "timeout_seconds": 5.0}


@pytest.fixture(name="http_server")
def _http_server() -> Iterator[ScriptedHTTPServer]:
    with ScriptedHTTPServer() as server:
        yield server


def _stamp(i: int) -> str:
    return f"2026-10-05T{10 + i:02d}:00:00Z"


def _keys(feed: str, pages: list[Page]) -> list[str]:
    keys: list[str] = []
    for page in pages:
        parsed = parse_page(feed, page.body)
        assert parsed.rejected == []
        keys += [r.key for r in parsed.records]
    return keys


# -- pagination per vendor ------------------------------------------------------------------


def test_shopify_link_header_pagination(http_server: ScriptedHTTPServer) -> None:
    path = "/admin/api/2025-07/orders.json"

    def orders(request: RecordedRequest) -> Reply:
        page = {None: 0, "p2": 1, "p3": 2}[request.param("page_info")]
        body = {
            "orders": [{"id": 100 + page, "name": f"#{100 + page}", "updated_at": _stamp(page)}]
        }
        headers = {}
        if page < 2:
            nxt = f"{http_server.url}{path}?limit=2&page_info=p{page + 2}"
            headers["Link"] = f'<{nxt}>; rel="next"'
        if page > 0:
            prev = f"{http_server.url}{path}?limit=2&page_info=prev{page}"
            headers["Link"] = f'<{prev}>; rel="previous"' + (
                ", " + headers["Link"] if "Link" in headers else ""
            )
        return Reply(body=body, headers=headers)

    http_server.route(path, orders)
    connector = ShopifyConnector(
        transport="http",
        base_url=f"{http_server.url}/admin/api/2025-07",
        api_key=KEY,
        page_size=2,
        **FAST,
    )
    pages = list(connector.pages("storefront_orders", SINCE))

    assert len(pages) == 3
    assert _keys("storefront_orders", pages) == ["100", "101", "102"]
    first, *rest = http_server.requests
    assert first.param("updated_at_min") == "2026-10-05T14:00:00Z"
    assert first.param("status") == "any" and first.param("limit") == "2"
    # Follow-up requests are exactly the Link URLs: page_info only, no filters.
    assert [r.param("page_info") for r in rest] == ["p2", "p3"]
    assert all(r.param("updated_at_min") is None for r in rest)
    assert all(r.headers["X-Shopify-Access-Token"] == KEY for r in http_server.requests)
    for page in pages:
        assert page.name == page.source and page.name.startswith(http_server.url + path)
        assert page.content_hash == hashlib.sha256(page.body).hexdigest()


def test_shopify_customers_and_fulfillment_orders(http_server: ScriptedHTTPServer) -> None:
    base = "/admin/api/2025-07"
    http_server.route(
        f"{base}/customers.json",
        Reply(body={"customers": [{"id": 7, "updated_at": _stamp(0), "tags": "VIP"}]}),
    )
    nxt = f"{http_server.url}{base}/orders.json?limit=250&page_info=two"
    http_server.route(
        f"{base}/orders.json",
        Reply(body={"orders": [{"id": 1}, {"id": 2}]}, headers={"Link": f'<{nxt}>; rel="next"'}),
    )
    http_server.route(
        f"{base}/orders.json", Reply(body={"orders": [{"id": 3}]}), query={"page_info": "two"}
    )
    for order_id in (1, 2, 3):
        fos = [
            {
                "id": 900 + order_id,
                "order_id": order_id,
                "status": "open",
                "updated_at": _stamp(order_id),
            }
        ]
        http_server.route(
            f"{base}/orders/{order_id}/fulfillment_orders.json",
            Reply(body={"fulfillment_orders": fos}),
        )
    settings: dict[str, Any] = {
        "transport": "http",
        "base_url": http_server.url + base,
        "api_key": KEY,
        **FAST,
    }

    customers = list(ShopifyConnector(**settings).pages("storefront_customers", None))
    assert _keys("storefront_customers", customers) == ["7"]
    assert http_server.requests[0].param("updated_at_min") is None  # no cursor: full list
    assert http_server.requests[0].param("status") is None  # orders only

    fo_pages = list(
        ShopifyFulfillmentOrdersConnector(**settings).pages("oms_fulfillment_orders", SINCE)
    )
    assert _keys("oms_fulfillment_orders", fo_pages) == ["901", "902", "903"]
    order_lists = http_server.requests_to(f"{base}/orders.json")
    assert order_lists[0].param("updated_at_min") == "2026-10-05T14:00:00Z"
    assert order_lists[0].param("fields") == "id"
    assert [p.name.rsplit("/", 2)[-2] for p in fo_pages] == ["1", "2", "3"]


def test_easypost_has_more_before_id_pagination(http_server: ScriptedHTTPServer) -> None:
    all_ids = [f"trk_{i:03d}" for i in range(7, 0, -1)]  # newest first, like EasyPost

    def trackers(request: RecordedRequest) -> Reply:
        size = int(request.param("page_size") or 0)
        before = request.param("before_id")
        start = all_ids.index(before) + 1 if before else 0
        chunk = all_ids[start : start + size]
        body = {
            "trackers": [
                {
                    "id": t,
                    "object": "Tracker",
                    "tracking_code": f"EZ{t[-3:]}",
                    "status": "in_transit",
                    "updated_at": _stamp(1),
                }
                for t in chunk
            ],
            "has_more": start + size < len(all_ids),
        }
        return Reply(body=body)

    http_server.route("/v2/trackers", trackers)
    connector = EasyPostConnector(
        transport="http", base_url=f"{http_server.url}/v2", api_key=KEY, page_size=3, **FAST
    )
    pages = list(connector.pages("carrier_trackers", SINCE))

    assert len(pages) == 3
    assert _keys("carrier_trackers", pages) == all_ids
    assert [r.param("before_id") for r in http_server.requests] == [None, "trk_005", "trk_002"]
    assert all(r.param("start_datetime") == "2026-10-05T14:00:00Z" for r in http_server.requests)
    # EasyPost: HTTP basic auth with the key as username and an empty password.
    expected = "Basic " + base64.b64encode(f"{KEY}:".encode()).decode()
    assert all(r.headers["Authorization"] == expected for r in http_server.requests)


def test_zendesk_cursor_pagination(http_server: ScriptedHTTPServer) -> None:
    def tickets(request: RecordedRequest) -> Reply:
        after = request.param("page[after]")
        n = {None: 0, "c1": 1, "c2": 2}[after]
        more = n < 2
        body = {
            "tickets": [
                {
                    "id": 10 + n,
                    "status": "open",
                    "external_id": f"#{1000 + n}",
                    "updated_at": _stamp(n),
                }
            ],
            "meta": {"has_more": more, "after_cursor": f"c{n + 1}" if more else None},
            "links": {
                "next": f"{http_server.url}/api/v2/tickets.json?page%5Bafter%5D=c{n + 1}"
                if more
                else None
            },
        }
        return Reply(body=body)

    http_server.route("/api/v2/tickets.json", tickets)
    connector = ZendeskConnector(
        transport="http", base_url=f"{http_server.url}/api/v2", api_key=KEY, page_size=1, **FAST
    )
    pages = list(connector.pages("support_tickets", None))

    assert _keys("support_tickets", pages) == ["10", "11", "12"]
    assert [r.param("page[after]") for r in http_server.requests] == [None, "c1", "c2"]
    assert http_server.requests[0].param("page[size]") == "1"
    assert all(r.headers["Authorization"] == f"Bearer {KEY}" for r in http_server.requests)


def test_zendesk_incremental_export_with_start_time(http_server: ScriptedHTTPServer) -> None:
    path = "/api/v2/incremental/tickets/cursor.json"

    def export(request: RecordedRequest) -> Reply:
        n = {None: 0, "a1": 1, "a2": 2}[request.param("cursor")]
        body = {
            "tickets": [{"id": 20 + n, "status": "solved", "updated_at": _stamp(n)}],
            "after_url": f"{http_server.url}{path}?cursor=a{n + 1}",
            "after_cursor": f"a{n + 1}",
            "end_of_stream": n == 2,
        }
        return Reply(body=body)

    http_server.route(path, export)
    connector = ZendeskConnector(
        transport="http",
        base_url=f"{http_server.url}/api/v2",
        api_key=KEY,
        email="ops@example.com",
        **FAST,
    )
    pages = list(connector.pages("support_tickets", SINCE))

    assert _keys("support_tickets", pages) == ["20", "21", "22"]
    assert http_server.requests[0].param("start_time") == str(int(SINCE.timestamp()))
    assert [r.param("cursor") for r in http_server.requests] == [None, "a1", "a2"]
    expected = "Basic " + base64.b64encode(f"ops@example.com/token:{KEY}".encode()).decode()
    assert all(r.headers["Authorization"] == expected for r in http_server.requests)


def test_shipbob_page_headers(http_server: ScriptedHTTPServer) -> None:
    def orders(request: RecordedRequest) -> Reply:
        n = int(request.param("Page") or 1)
        body = [
            {
                "id": 500 + n,
                "reference_id": str(n),
                "created_date": _stamp(n),
                "shipments": [{"id": n, "status": "Processing", "last_update_at": _stamp(n + 1)}],
            }
        ]
        headers = {"Page-Number": str(n), "Total-Pages": "3", "Total-Count": "3"}
        return Reply(body=body, headers=headers)

    http_server.route("/1.0/order", orders)
    connector = ShipBobConnector(
        transport="http", base_url=f"{http_server.url}/1.0", api_key=KEY, page_size=1, **FAST
    )
    pages = list(connector.pages("wms_shipments", SINCE))

    assert _keys("wms_shipments", pages) == ["501", "502", "503"]
    assert [r.param("Page") for r in http_server.requests] == ["1", "2", "3"]
    assert all(
        r.param("LastUpdateStartDate") == "2026-10-05T14:00:00Z" for r in http_server.requests
    )
    assert all(r.param("Limit") == "1" for r in http_server.requests)
    assert all(r.headers["Authorization"] == f"Bearer {KEY}" for r in http_server.requests)


def test_shipbob_next_page_header(http_server: ScriptedHTTPServer) -> None:
    def orders(request: RecordedRequest) -> Reply:
        n = int(request.param("Page") or 1)
        body = [{"id": 600 + n, "reference_id": "1", "created_date": _stamp(n), "shipments": []}]
        headers = {"Next-Page": f"/order?Page={n + 1}&Limit=1"} if n < 3 else {}
        if n > 3:  # past the end: an empty page (page 3 was full, so it is asked for)
            body = []
        return Reply(body=body, headers=headers)

    http_server.route("/1.0/order", orders)
    connector = ShipBobConnector(
        transport="http", base_url=f"{http_server.url}/1.0", api_key=KEY, page_size=1, **FAST
    )
    pages = list(connector.pages("wms_shipments", None))
    assert _keys("wms_shipments", pages) == ["601", "602", "603"]
    assert http_server.requests[0].param("LastUpdateStartDate") is None


def test_loop_next_page_url(http_server: ScriptedHTTPServer) -> None:
    path = "/api/v1/warehouse/return/list"

    def returns(request: RecordedRequest) -> Reply:
        n = {None: 0, "r1": 1, "r2": 2}[request.param("cursor")]
        body = {
            "returns": [
                {
                    "id": str(30 + n),
                    "order_id": str(1000 + n),
                    "state": "open",
                    "updated_at": _stamp(n),
                }
            ],
            "nextPageUrl": f"{http_server.url}{path}?paginate=true&cursor=r{n + 1}"
            if n < 2
            else None,
            "previousPageUrl": None,
        }
        return Reply(body=body)

    http_server.route(path, returns)
    connector = LoopConnector(
        transport="http", base_url=f"{http_server.url}/api/v1", api_key=KEY, **FAST
    )
    pages = list(connector.pages("returns", SINCE))

    # one paged stream per state of the vocabulary (Loop's default leaves some out)
    states = sorted(LOOP_STATE)
    assert _keys("returns", pages) == ["30", "31", "32"] * len(states)
    first = http_server.requests[0]
    assert first.param("paginate") == "true"
    assert first.param("from") == "2026-10-05 14:00:00"
    assert first.param("filter") == "updated_at"
    to = datetime.strptime(first.param("to") or "", "%Y-%m-%d %H:%M:%S").replace(tzinfo=UTC)
    assert to > SINCE
    assert [r.param("cursor") for r in http_server.requests] == [None, "r1", "r2"] * len(states)
    firsts = [r for r in http_server.requests if r.param("cursor") is None]
    assert [r.param("state") for r in firsts] == states
    assert all(r.headers["X-Authorization"] == KEY for r in http_server.requests)


# -- retries, timeouts, auth ----------------------------------------------------------------


def _easypost(server: ScriptedHTTPServer, **overrides: Any) -> EasyPostConnector:
    settings: dict[str, Any] = {
        "transport": "http",
        "base_url": f"{server.url}/v2",
        "api_key": KEY,
        **FAST,
        **overrides,
    }
    return EasyPostConnector(**settings)


ONE_TRACKER = {
    "trackers": [{"id": "trk_1", "tracking_code": "EZ1", "updated_at": "2026-10-05T10:00:00Z"}],
    "has_more": False,
}


def test_429_honours_retry_after_then_succeeds(http_server: ScriptedHTTPServer) -> None:
    http_server.route(
        "/v2/trackers",
        Reply(429, body={"error": "rate limited"}, headers={"Retry-After": "1"}),
        Reply(body=ONE_TRACKER),
    )
    pages = list(_easypost(http_server).pages("carrier_trackers", None))

    assert _keys("carrier_trackers", pages) == ["trk_1"]
    first, second = http_server.requests
    waited = second.at - first.at
    assert 0.9 <= waited < 3.0, f"waited {waited:.2f}s for Retry-After: 1"


def test_500_then_success(http_server: ScriptedHTTPServer) -> None:
    http_server.route("/v2/trackers", Reply(500, body="oops"), Reply(body=ONE_TRACKER))
    pages = list(_easypost(http_server).pages("carrier_trackers", None))
    assert _keys("carrier_trackers", pages) == ["trk_1"]
    assert len(http_server.requests) == 2


def test_read_timeout_is_retried_then_succeeds(http_server: ScriptedHTTPServer) -> None:
    http_server.route("/v2/trackers", Reply(body=ONE_TRACKER, delay=6.0), Reply(body=ONE_TRACKER))
    connector = _easypost(http_server, timeout_seconds=2.0)
    pages = list(connector.pages("carrier_trackers", None))
    assert _keys("carrier_trackers", pages) == ["trk_1"]
    assert len(http_server.requests) == 2


def test_timeouts_exhausted_raise_connector_error(http_server: ScriptedHTTPServer) -> None:
    http_server.route("/v2/trackers", Reply(body=ONE_TRACKER, delay=1.0))
    connector = _easypost(http_server, timeout_seconds=0.2, max_retries=1)
    with pytest.raises(ConnectorError) as caught:
        list(connector.pages("carrier_trackers", None))
    assert not isinstance(caught.value, ConnectorAuthError)
    assert f"{http_server.url}/v2/trackers" in str(caught.value)
    assert len(http_server.requests) == 2  # the first try + max_retries


def test_permanent_5xx_raises_with_url_and_last_status(http_server: ScriptedHTTPServer) -> None:
    http_server.route("/v2/trackers", Reply(503, body="down for maintenance"))
    with pytest.raises(ConnectorError) as caught:
        list(_easypost(http_server, max_retries=2).pages("carrier_trackers", None))
    message = str(caught.value)
    assert "HTTP 503" in message and f"{http_server.url}/v2/trackers" in message
    assert len(http_server.requests) == 3


def test_401_raises_auth_error_without_retry_or_leaking_the_key(
    http_server: ScriptedHTTPServer,
) -> None:
    http_server.route("/admin/api/2025-07/orders.json", Reply(401, body={"errors": "bad token"}))
    connector = ShopifyConnector(
        transport="http", base_url=f"{http_server.url}/admin/api/2025-07", api_key=KEY, **FAST
    )
    with pytest.raises(ConnectorAuthError) as caught:
        list(connector.pages("storefront_orders", None))
    message = str(caught.value)
    assert message.startswith("storefront_orders: HTTP 401 from http://127.0.0.1:")
    assert "check the API key (env SHOPIFY_ACCESS_TOKEN)" in message
    assert KEY not in message
    assert len(http_server.requests) == 1


def test_403_and_missing_key_are_auth_errors(http_server: ScriptedHTTPServer) -> None:
    http_server.route("/1.0/order", Reply(403, body="forbidden"))
    with pytest.raises(ConnectorAuthError, match=r"HTTP 403 .*SHIPBOB_ACCESS_TOKEN"):
        list(
            ShipBobConnector(
                transport="http", base_url=f"{http_server.url}/1.0", api_key=KEY
            ).pages("wms_shipments", None)
        )
    with pytest.raises(ConnectorAuthError, match="LOOP_API_KEY"):
        list(LoopConnector(transport="http", base_url=http_server.url).pages("returns", None))


def test_non_json_body_is_yielded_then_paging_stops_with_error(
    http_server: ScriptedHTTPServer,
) -> None:
    http_server.route("/v2/trackers", Reply(body="<html>maintenance</html>"))
    pages: list[Page] = []
    with pytest.raises(ConnectorError, match="not JSON"):
        for page in _easypost(http_server).pages("carrier_trackers", None):
            pages.append(page)
    # The connector hands over the body before it stops; that the asset then stores it in
    # raw._quarantine and keeps the cursor is tests/test_ingest_cursor.py's business.
    assert [p.body for p in pages] == [b"<html>maintenance</html>"]


def test_pagination_loop_is_detected(http_server: ScriptedHTTPServer) -> None:
    url = f"{http_server.url}/api/v1/warehouse/return/list?paginate=true&pageSize=250"
    http_server.route(
        "/api/v1/warehouse/return/list", Reply(body={"returns": [], "nextPageUrl": url})
    )
    connector = LoopConnector(
        transport="http", base_url=f"{http_server.url}/api/v1", api_key=KEY, **FAST
    )
    with pytest.raises(ConnectorError, match="loops back"):
        list(connector.pages("returns", None))


def test_env_var_resource_in_a_materialization(
    http_server: ScriptedHTTPServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The resource as a deployment wires it: dg.EnvVar key, resolved at launch."""
    http_server.route(
        "/admin/api/2025-07/customers.json",
        Reply(body={"customers": [{"id": 1, "updated_at": _stamp(1)}]}),
    )
    monkeypatch.setenv("SHOPIFY_ACCESS_TOKEN", KEY)

    @dg.asset
    def probe(source: ShopifyConnector) -> int:
        return sum(
            len(parse_page("storefront_customers", p.body).records)
            for p in source.pages("storefront_customers", None)
        )

    resource = ShopifyConnector(
        transport="http",
        base_url=f"{http_server.url}/admin/api/2025-07",
        api_key=dg.EnvVar("SHOPIFY_ACCESS_TOKEN"),
    )
    result = dg.materialize([probe], resources={"source": resource})
    assert result.success
    assert result.output_for_node("probe") == 1
    assert http_server.requests[0].headers["X-Shopify-Access-Token"] == KEY


# -- file transport -------------------------------------------------------------------------


def _drop(folder: Path, name: str, body: bytes) -> Path:
    path = folder / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(body)
    return path


def test_file_transport_yields_sorted_json_and_ndjson(tmp_path: Path) -> None:
    feed_dir = tmp_path / "carrier_trackers"
    b = _drop(feed_dir, "2026-10-05T1100-0002.json", json.dumps(ONE_TRACKER).encode())
    a = _drop(feed_dir, "2026-10-05T1000-0001.ndjson", b'{"id": "trk_2"}\n')
    c = _drop(feed_dir, "late/2026-10-06-0001.json", b"{}")
    _drop(feed_dir, "notes.txt", b"ignored")
    _drop(feed_dir, ".partial.json", b"{")  # a writer's temp file
    _drop(tmp_path / "returns", "r.json", b"[]")  # another feed's folder

    connector = EasyPostConnector(landing_dir=str(tmp_path))
    pages = list(connector.pages("carrier_trackers", SINCE))  # updated_since ignored for files

    assert [p.name for p in pages] == [
        "carrier_trackers/2026-10-05T1000-0001.ndjson",
        "carrier_trackers/2026-10-05T1100-0002.json",
        "carrier_trackers/late/2026-10-06-0001.json",
    ]
    assert [p.source for p in pages] == [str(a.resolve()), str(b.resolve()), str(c.resolve())]
    assert pages[1].body == b.read_bytes()
    assert pages[1].content_hash == hashlib.sha256(b.read_bytes()).hexdigest()


def test_file_transport_defaults_to_orderwatch_home(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ORDERWATCH_HOME", str(tmp_path / "home"))
    connector = LoopConnector()
    assert list(connector.pages("returns", None)) == []  # no folder yet: nothing, no error
    _drop(tmp_path / "home" / "landing" / "returns", "p1.json", b'{"returns": []}')
    assert [p.name for p in connector.pages("returns", None)] == ["returns/p1.json"]


def test_connector_refuses_other_feeds_and_unknown_transport(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="not 'returns'"):
        list(ShopifyConnector(landing_dir=str(tmp_path)).pages("returns", None))
    with pytest.raises(ValueError, match="transport"):
        list(LoopConnector(transport="ftp").pages("returns", None))
    with pytest.raises(ConnectorError, match="base_url"):
        list(LoopConnector(transport="http", api_key=KEY).pages("returns", None))


def test_source_folders_bind_every_feed_with_file_transport_by_default(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ORDERWATCH_HOME", str(tmp_path))
    connectors = default_connectors()
    assert list(connectors) == [f"{feed}_source" for feed in FEED_FOLDERS]
    for feed in FEED_FOLDERS:
        connector = connectors[f"{feed}_source"]
        assert isinstance(connector, FeedConnector)
        assert connector.transport == "file"
        folder = feed_spec(feed).landing_folder  # a sideload reads its parent feed's pages
        _drop(tmp_path / "landing" / folder, "page.json", b"{}")
        assert [p.name for p in connector.pages(feed, None)] == [f"{folder}/page.json"]
    assert isinstance(connectors["storefront_orders_source"], ShopifyConnector)
    assert isinstance(connectors["wms_shipments_source"], ShipBobConnector)
    assert isinstance(connectors["carrier_trackers_source"], EasyPostConnector)
    assert isinstance(connectors["returns_source"], LoopConnector)
    assert isinstance(connectors["support_tickets_source"], ZendeskConnector)


def test_http_page_names_are_the_urls(http_server: ScriptedHTTPServer) -> None:
    http_server.route("/v2/trackers", Reply(body=ONE_TRACKER))
    (page,) = _easypost(http_server).pages("carrier_trackers", SINCE)
    parts = urlsplit(page.name)
    assert parts.path == "/v2/trackers"
    assert parse_qs(parts.query)["start_datetime"] == ["2026-10-05T14:00:00Z"]
    assert "api_key" not in page.name.lower() and KEY not in page.name
    assert os.path.basename(parts.path) == "trackers"


def test_loop_long_ranges_are_split_into_120_day_windows(http_server: ScriptedHTTPServer) -> None:
    http_server.route(
        "/api/v1/warehouse/return/list", Reply(body={"returns": [], "nextPageUrl": None})
    )
    connector = LoopConnector(
        transport="http", base_url=f"{http_server.url}/api/v1", api_key=KEY, **FAST
    )
    since = datetime.now(UTC) - timedelta(days=200)
    assert len(list(connector.pages("returns", since))) == 2 * len(LOOP_STATE)

    def when(text: str | None) -> datetime:
        return datetime.strptime(text or "", "%Y-%m-%d %H:%M:%S").replace(tzinfo=UTC)

    windows = sorted({(when(r.param("from")), when(r.param("to"))) for r in http_server.requests})
    assert len(windows) == 2
    assert windows[0][0] == since.replace(microsecond=0)
    assert windows[0][1] == windows[1][0]  # contiguous: nothing falls between two windows
    assert all(timedelta(0) < end - start <= timedelta(days=120) for start, end in windows)
