"""Raw ingest assets against a real DuckDB file, real landing pages and a real local HTTP server."""

from __future__ import annotations

import base64
import hashlib
import importlib
import json
import os
import shutil
import subprocess
import sys
from collections.abc import Callable, Iterator, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import dagster as dg
import pytest
from http_server import RecordedRequest, Reply, ScriptedHTTPServer

from orderwatch_dagster.defs.ingest.carrier.resources import EasyPostConnector
from orderwatch_dagster.defs.ingest.factory import build_ingest_asset, build_quarantine_check
from orderwatch_dagster.defs.resources import DuckDBWarehouse, Warehouse
from orderwatch_dagster.lib.feeds import FEED_FOLDERS, feed_spec, sources
from orderwatch_dagster.lib.records import QuarantineReason
from orderwatch_dagster.lib.settings import parse_timestamp

ALL_ASSETS = [build_ingest_asset(feed) for feed in FEED_FOLDERS]
ALL_CHECKS = [build_quarantine_check(feed) for feed in FEED_FOLDERS]
ASSETS = {feed: asset for feed, asset in zip(FEED_FOLDERS, ALL_ASSETS, strict=True)}
CORE_FEEDS = ("storefront_orders", "oms_fulfillment_orders", "wms_shipments", "carrier_trackers")
SIM_ARGS = ["--days", "2", "--orders-per-day", "20", "--seed", "1"]


# -- helpers (also used by other test modules) -------------------------------------------------


def default_connectors() -> dict[str, Any]:
    """Every source folder's connectors as the code location binds them from the environment
    (`defs/ingest/<source>/definitions.py`; nothing set: the file-drop transport)."""
    resources: dict[str, Any] = {}
    for source in sources():
        module = importlib.import_module(f"orderwatch_dagster.defs.ingest.{source}.definitions")
        resources.update(module.connectors().resources)
    return resources


def query(warehouse: Warehouse, sql: str) -> list[tuple[Any, ...]]:
    with warehouse.connect() as session:
        return session.query(sql)


def get_cursor(warehouse: Warehouse, feed: str) -> datetime | None:
    with warehouse.connect() as session:
        return session.get_cursor(feed)


def shopify_order(order_id: int, updated: str, **extra: Any) -> dict[str, Any]:
    order = {
        "id": order_id,
        "name": f"#{order_id}",
        "created_at": "2026-10-05T09:00:00-04:00",
        "updated_at": updated,
        "financial_status": "paid",
        "fulfillment_status": None,
        "total_price": "42.00",
    }
    order.update(extra)
    return order


def easypost_tracker(
    tracker_id: str,
    updated: str,
    status: str = "in_transit",
    created: str = "2026-10-05T12:00:00Z",
) -> dict[str, Any]:
    return {
        "id": tracker_id,
        "object": "Tracker",
        "tracking_code": f"1Z{tracker_id[-6:].upper()}",
        "status": status,
        "status_detail": "arrived_at_facility",
        "created_at": created,
        "updated_at": updated,
        "carrier": "UPS",
        "tracking_details": [
            {
                "object": "TrackingDetail",
                "status": status,
                "status_detail": "arrived_at_facility",
                "datetime": updated,
                "message": "scan",
            }
        ],
    }


def write_page(landing: Path, feed: str, name: str, body: Any) -> Path:
    path = landing / feed / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(body if isinstance(body, str) else json.dumps(body))
    return path


def materialize(
    assets: Sequence[dg.AssetsDefinition],
    resources: dict[str, Any],
    instance: dg.DagsterInstance,
    *,
    raise_on_error: bool = True,
) -> dg.ExecuteInProcessResult:
    return dg.materialize(
        list(assets), resources=resources, instance=instance, raise_on_error=raise_on_error
    )


def metadata_by_feed(result: dg.ExecuteInProcessResult) -> dict[str, dict[str, Any]]:
    """feed -> {metadata key: plain value} of each raw asset materialization in the run."""
    out: dict[str, dict[str, Any]] = {}
    for event in result.get_asset_materialization_events():
        materialization = event.materialization
        feed = materialization.asset_key.path[-1]
        out[feed] = {key: value.value for key, value in materialization.metadata.items()}
    return out


def assert_balanced(meta: dict[str, Any]) -> None:
    assert meta["rows_read"] == (
        meta["rows_loaded"] + meta["rows_duplicate"] + meta["rows_quarantined"]
    ), meta


def simulate_world(out: Path, *extra: str) -> None:
    """The simulator's CLI into `out` (a landing folder), as `make demo` runs it."""
    completed = subprocess.run(
        [sys.executable, "-m", "orderwatch_dagster.sim", *SIM_ARGS, "--out", str(out), *extra],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert completed.returncode == 0, completed.stderr[-2000:]


def table_counts(warehouse: Any) -> dict[str, int]:
    """Row counts of every raw table the ingest writes (engine-independent)."""
    counts: dict[str, int] = {}
    with warehouse.connect() as session:
        for feed in FEED_FOLDERS:
            counts[feed] = session.row_count(feed)
        for table in ("_quarantine", "_ingest_files", "_cursors"):
            counts[table] = int(session.query(f"SELECT count(*) FROM raw.{table}")[0][0])
    return counts


# -- fixtures ---------------------------------------------------------------------------------


CLOCK = datetime(2026, 11, 1, tzinfo=UTC)  # "now" of these tests: after every hand-made page


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("ORDERWATCH_HOME", str(tmp_path))
    # not the wall clock (the pages are from 2026); an explicit "now", since a clock file is
    # the simulator's and HTTP ingest refuses it (defs/ingest/factory.py)
    monkeypatch.setenv("ORDERWATCH_AS_OF", CLOCK.isoformat())
    return tmp_path


@pytest.fixture
def landing(home: Path) -> Path:
    path = home / "landing"
    path.mkdir()
    return path


@pytest.fixture
def warehouse(home: Path) -> DuckDBWarehouse:
    return DuckDBWarehouse(path=str(home / "warehouse.duckdb"))


@pytest.fixture
def resources(warehouse: DuckDBWarehouse) -> dict[str, Any]:
    return {"warehouse": warehouse, **default_connectors()}


@pytest.fixture
def server() -> Iterator[ScriptedHTTPServer]:
    """The shared scripted HTTP server (tests/http_server.py) on 127.0.0.1."""
    with ScriptedHTTPServer() as scripted:
        yield scripted


@pytest.fixture
def instance() -> dg.DagsterInstance:
    # in-memory run/event storage: the warehouse is what these tests look at
    return dg.DagsterInstance.ephemeral()


# -- definitions ------------------------------------------------------------------------------


def test_assets_have_keys_groups_and_resources() -> None:
    for feed, asset in ASSETS.items():
        key = dg.AssetKey(["raw", feed])
        assert asset.key == key
        assert asset.group_names_by_key[key] == "ingest"
        assert asset.specs_by_key[key].kinds == {"duckdb"}
        assert {"warehouse", f"{feed}_source"} <= set(asset.required_resource_keys)
        assert asset.descriptions_by_key[key]


def test_registry_generates_every_raw_asset_and_check_and_each_source_binds_its_feeds() -> None:
    from orderwatch_dagster.defs.ingest.assets import raw_assets

    generated = raw_assets()
    keys = {key for asset in generated.assets or [] for key in asset.keys}  # type: ignore[union-attr]
    checks = {key for check in generated.asset_checks or [] for key in check.check_keys}
    assert keys == {dg.AssetKey(["raw", feed]) for feed in FEED_FOLDERS}
    assert {check.asset_key for check in checks} == keys
    assert sorted(default_connectors()) == sorted(f"{feed}_source" for feed in FEED_FOLDERS)


def test_code_location_binds_duckdb_by_default_and_postgres_on_request(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from orderwatch_dagster.defs.resources import PostgresWarehouse, warehouse_resources

    monkeypatch.delenv("ORDERWATCH_WAREHOUSE_ENGINE", raising=False)
    assert isinstance(warehouse_resources(None).resources["warehouse"], DuckDBWarehouse)
    monkeypatch.setenv("ORDERWATCH_WAREHOUSE_ENGINE", "postgres")
    monkeypatch.setenv("ORDERWATCH_PG_DATABASE", "orderwatch_prod")
    monkeypatch.setenv("ORDERWATCH_PG_PASSWORD", "s3cret")
    bound = warehouse_resources(None).resources["warehouse"]
    assert isinstance(bound, PostgresWarehouse)
    assert bound.database == "orderwatch_prod"
    assert bound.password == dg.EnvVar("ORDERWATCH_PG_PASSWORD")  # resolved at launch


# -- file drop: idempotence, versions, ledger -------------------------------------------------


def test_changed_record_adds_one_version_and_keeps_the_old(
    landing: Path, warehouse: DuckDBWarehouse, resources: dict[str, Any], instance: Any
) -> None:
    asset = [ASSETS["storefront_orders"]]
    write_page(
        landing,
        "storefront_orders",
        "p1.json",
        {
            "orders": [
                shopify_order(1001, "2026-10-05T10:00:00-04:00"),
                shopify_order(1002, "2026-10-05T11:00:00-04:00"),
            ]
        },
    )
    first = metadata_by_feed(materialize(asset, resources, instance))["storefront_orders"]
    assert (first["rows_read"], first["rows_loaded"], first["rows_duplicate"]) == (2, 2, 0)
    assert first["dagster/row_count"] == 2

    # The same pages again: nothing new (the ledger skips the page).
    again = metadata_by_feed(materialize(asset, resources, instance))["storefront_orders"]
    assert (again["pages_read"], again["pages_skipped"], again["rows_loaded"]) == (0, 1, 0)
    assert again["dagster/row_count"] == 2

    # A later page with order 1001 changed (refunded) and 1002 unchanged.
    write_page(
        landing,
        "storefront_orders",
        "p2.json",
        {
            "orders": [
                shopify_order(1001, "2026-10-06T08:00:00-04:00", financial_status="refunded"),
                shopify_order(1002, "2026-10-05T11:00:00-04:00"),
            ]
        },
    )
    changed = metadata_by_feed(materialize(asset, resources, instance))["storefront_orders"]
    assert (changed["rows_loaded"], changed["rows_duplicate"], changed["pages_skipped"]) == (
        1,
        1,
        1,
    )
    assert_balanced(changed)
    rows = query(
        warehouse,
        "SELECT _updated_at, payload->>'financial_status', id, name, _source "
        "FROM raw.storefront_orders WHERE _key = '1001' ORDER BY _updated_at",
    )
    assert [row[1] for row in rows] == ["paid", "refunded"]
    assert rows[1][0] == datetime(2026, 10, 6, 12, 0, tzinfo=UTC)  # stored in UTC
    assert rows[1][2:4] == (1001, "#1001")
    assert rows[1][4].endswith("p2.json")
    cursor = get_cursor(warehouse, "storefront_orders")
    assert cursor == datetime(2026, 10, 6, 12, 0, tzinfo=UTC)
    assert changed["cursor"] == cursor.isoformat()


def test_same_content_under_another_name_adds_ledger_row_only(
    landing: Path, warehouse: DuckDBWarehouse, resources: dict[str, Any], instance: Any
) -> None:
    asset = [ASSETS["storefront_orders"]]
    page = write_page(
        landing,
        "storefront_orders",
        "a.json",
        {"orders": [shopify_order(7, "2026-10-05T10:00:00Z"), shopify_order(8, "bad time")]},
    )
    materialize(asset, resources, instance)
    shutil.copy(page, page.with_name("copy-of-a.json"))
    meta = metadata_by_feed(materialize(asset, resources, instance))["storefront_orders"]
    assert (meta["pages_read"], meta["pages_skipped"]) == (1, 1)
    assert (meta["rows_loaded"], meta["rows_duplicate"], meta["rows_quarantined"]) == (0, 1, 1)
    ledger = query(
        warehouse,
        "SELECT name, rows_read, rows_loaded, rows_quarantined FROM raw._ingest_files "
        "WHERE feed = 'storefront_orders' ORDER BY name",
    )
    assert ledger == [
        ("storefront_orders/a.json", 2, 1, 1),
        ("storefront_orders/copy-of-a.json", 2, 0, 1),
    ]
    assert query(warehouse, "SELECT count(*) FROM raw.storefront_orders") == [(1,)]
    # Same content hash and index: the copy's bad record is not quarantined twice.
    assert query(warehouse, "SELECT count(*) FROM raw._quarantine") == [(1,)]


@pytest.mark.parametrize(
    ("batch_pages", "batch_bytes", "lease_s"),
    [(1, 10**9, 0.0), (500, 1, 1e9), (1, 10**9, 1e9), (500, 10**9, 1e9)],
    ids=["batch-per-page-session-per-batch", "bytes-bound", "one-session", "one-batch"],
)
def test_counts_and_cursor_do_not_depend_on_batching(
    batch_pages: int,
    batch_bytes: int,
    lease_s: float,
    landing: Path,
    warehouse: DuckDBWarehouse,
    resources: dict[str, Any],
    instance: Any,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from orderwatch_dagster.lib import ingest
    from orderwatch_dagster.lib.warehouse_session import WarehouseSession

    monkeypatch.setattr(ingest, "BATCH_PAGES", batch_pages)
    monkeypatch.setattr(ingest, "BATCH_BYTES", batch_bytes)
    monkeypatch.setattr(ingest, "WRITE_LEASE_S", lease_s)
    real_load = WarehouseSession.load_pages
    batches: list[int] = []  # pages per load

    def counting_load(self: WarehouseSession, feed: str, keys: Any, pages: Any, **kw: Any) -> Any:
        batches.append(len(pages))
        return real_load(self, feed, keys, pages, **kw)

    monkeypatch.setattr(WarehouseSession, "load_pages", counting_load)
    # file order: the newest record comes first, the last page repeats a version of the first
    pages = {
        "1.json": [shopify_order(1, "2026-10-09T10:00:00Z"), shopify_order(2, "2026-10-01T10:00Z")],
        "2.json": [shopify_order(3, "2026-10-02T10:00:00Z")],
        "3.json": [shopify_order(1, "2026-10-09T10:00:00Z"), shopify_order(4, "2026-10-03T10:00Z")],
    }
    for name, orders in pages.items():
        write_page(landing, "storefront_orders", name, {"orders": orders})
    meta = metadata_by_feed(materialize([ASSETS["storefront_orders"]], resources, instance))
    meta = meta["storefront_orders"]
    assert (meta["rows_read"], meta["rows_loaded"], meta["rows_duplicate"]) == (5, 4, 1)
    assert meta["pages_read"] == 3
    # a batch per page (by pages or by bytes) and the last, empty one with the cursor; or one
    assert batches == ([3] if batch_pages == 500 and batch_bytes > 1 else [1, 1, 1, 0])
    assert get_cursor(warehouse, "storefront_orders") == datetime(2026, 10, 9, 10, tzinfo=UTC)
    assert query(warehouse, "SELECT name, rows_loaded FROM raw._ingest_files ORDER BY name") == [
        ("storefront_orders/1.json", 2),
        ("storefront_orders/2.json", 1),
        ("storefront_orders/3.json", 1),
    ]


# -- quarantine and unknown enums -------------------------------------------------------------

BAD_PAGES: dict[QuarantineReason, tuple[str, str]] = {
    # reason -> (page body, text the quarantined original must contain)
    QuarantineReason.BAD_JSON: ('{"orders": [ {"id": 1,', '{"orders": [ {"id": 1,'),
    QuarantineReason.UNEXPECTED_SHAPE: ('{"products": []}', '"products"'),
    QuarantineReason.NOT_AN_OBJECT: ('{"orders": ["just a string"]}', "just a string"),
    QuarantineReason.MISSING_KEY: (
        '{"orders": [{"name": "#9", "updated_at": "2026-10-05T10:00:00Z"}]}',
        '"#9"',
    ),
    QuarantineReason.WRONG_TYPE: (
        '{"orders": [{"id": "abc", "updated_at": "2026-10-05T10:00:00Z"}]}',
        '"abc"',
    ),
    QuarantineReason.UNPARSEABLE_TIME: (
        '{"orders": [{"id": 77, "updated_at": "last tuesday"}]}',
        "last tuesday",
    ),
}


def test_every_quarantine_reason_lands_with_original_text(
    landing: Path, warehouse: DuckDBWarehouse, resources: dict[str, Any], instance: Any
) -> None:
    for reason, (body, _) in BAD_PAGES.items():
        write_page(landing, "storefront_orders", f"bad-{reason}.json", body)
    write_page(
        landing,
        "storefront_orders",
        "good.json",
        {"orders": [shopify_order(5, "2026-10-05T10:00:00Z")]},
    )
    check = build_quarantine_check("storefront_orders")
    result = materialize([ASSETS["storefront_orders"], check], resources, instance)
    meta = metadata_by_feed(result)["storefront_orders"]
    assert (meta["rows_loaded"], meta["rows_quarantined"]) == (1, len(BAD_PAGES))
    assert_balanced(meta)
    for reason in BAD_PAGES:
        assert f"| {reason} | 1 |" in meta["quarantine_reasons"]

    rows = query(
        warehouse,
        "SELECT reason, feed, original_text, detail, source, record_index FROM raw._quarantine",
    )
    by_reason = {row[0]: row for row in rows}
    assert set(by_reason) == {str(reason) for reason in BAD_PAGES}
    for reason, (_, expected_text) in BAD_PAGES.items():
        _, feed, original, detail, source, _ = by_reason[str(reason)]
        assert feed == "storefront_orders"
        assert expected_text in original
        assert detail
        assert source.endswith(f"bad-{reason}.json")
    assert by_reason["bad_json"][5] == -1  # whole page

    (evaluation,) = result.get_asset_check_evaluations()
    assert not evaluation.passed
    assert evaluation.severity == dg.AssetCheckSeverity.WARN
    assert evaluation.metadata["quarantined"].value == len(BAD_PAGES)

    # Re-reading changes nothing; new copies of a bad page do not duplicate its quarantine rows.
    write_page(landing, "storefront_orders", "again.json", BAD_PAGES[QuarantineReason.BAD_JSON][0])
    materialize([ASSETS["storefront_orders"]], resources, instance)
    assert query(warehouse, "SELECT count(*) FROM raw._quarantine") == [(len(BAD_PAGES),)]


def test_nan_payload_is_quarantined_not_fatal(
    landing: Path, warehouse: DuckDBWarehouse, resources: dict[str, Any], instance: Any
) -> None:
    """Python's json reads NaN; the warehouse JSON types do not: quarantine, load the rest."""
    write_page(
        landing,
        "storefront_orders",
        "nan.json",
        '{"orders": [{"id": 88, "updated_at": "2026-10-05T10:00:00Z", "total_price": NaN},'
        ' {"id": 89, "updated_at": "2026-10-05T10:00:00Z", "total_price": "1.00"}]}',
    )
    for _ in range(2):  # the second run re-reads nothing and quarantines nothing new
        materialize([ASSETS["storefront_orders"]], resources, instance)
    assert query(warehouse, "SELECT _key FROM raw.storefront_orders") == [("89",)]
    assert query(warehouse, "SELECT reason, original_text LIKE '%NaN%' FROM raw._quarantine") == [
        ("bad_json", True)
    ]


def test_unknown_enum_values_are_loaded_and_counted(
    landing: Path, warehouse: DuckDBWarehouse, resources: dict[str, Any], instance: Any
) -> None:
    write_page(
        landing,
        "carrier_trackers",
        "trackers.json",
        {
            "trackers": [
                easypost_tracker("trk_aaa111", "2026-10-05T10:00:00Z", status="teleported"),
                easypost_tracker("trk_bbb222", "2026-10-05T11:00:00Z"),
            ],
            "has_more": False,
        },
    )
    check = build_quarantine_check("carrier_trackers")
    result = materialize([ASSETS["carrier_trackers"], check], resources, instance)
    meta = metadata_by_feed(result)["carrier_trackers"]
    assert (meta["rows_loaded"], meta["rows_quarantined"]) == (2, 0)
    # status and tracking_details[].status both carry the unknown value
    assert meta["unknown_enum_values"] == 2
    assert "| status | teleported | 1 |" in meta["unknown_enums"]
    assert "| tracking_details[].status | teleported | 1 |" in meta["unknown_enums"]
    assert query(
        warehouse,
        "SELECT payload->>'status', tracking_code FROM raw.carrier_trackers "
        "WHERE _key = 'trk_aaa111'",
    ) == [("teleported", "1ZAAA111")]
    assert query(warehouse, "SELECT count(*) FROM raw._quarantine") == [(0,)]
    (evaluation,) = result.get_asset_check_evaluations()
    assert evaluation.passed


# -- the simulated world ----------------------------------------------------------------------


def test_simulated_world_loads_every_feed_and_reingest_is_idempotent(
    landing: Path, warehouse: DuckDBWarehouse, resources: dict[str, Any], instance: Any
) -> None:
    simulate_world(landing, "--inject-bad-records")
    result = materialize([*ALL_ASSETS, *ALL_CHECKS], resources, instance)
    meta = metadata_by_feed(result)
    assert set(meta) == set(FEED_FOLDERS)
    counts = table_counts(warehouse)
    for feed in FEED_FOLDERS:
        assert_balanced(meta[feed])
        if feed in CORE_FEEDS:  # a 2-day world may have no returns or tickets yet
            assert meta[feed]["rows_loaded"] > 0, feed
        assert meta[feed]["dagster/row_count"] == counts[feed] == meta[feed]["rows_loaded"]
        assert meta[feed]["pages_read"] == len(
            [
                p
                for p in (landing / feed_spec(feed).landing_folder).rglob(
                    "*"
                )  # sideloads: parent's
                if p.suffix in (".json", ".ndjson")
            ]
        )
    quarantined = sum(m["rows_quarantined"] for m in meta.values())
    assert quarantined > 0  # --inject-bad-records
    assert counts["_quarantine"] == quarantined
    assert sum(not e.passed for e in result.get_asset_check_evaluations()) >= 1
    # ground_truth.csv sits beside the feed folders and is never read as a page
    assert not query(warehouse, "SELECT 1 FROM raw._ingest_files WHERE name LIKE '%ground_truth%'")

    again = metadata_by_feed(materialize(ALL_ASSETS, resources, instance))
    for feed in FEED_FOLDERS:
        assert again[feed]["rows_loaded"] == again[feed]["pages_read"] == 0
        assert again[feed]["pages_skipped"] == meta[feed]["pages_read"]
    assert table_counts(warehouse) == counts

    # Forget the ledger: every page is re-read, and still nothing new lands.
    query(warehouse, "DELETE FROM raw._ingest_files RETURNING 1")
    reread = metadata_by_feed(materialize(ALL_ASSETS, resources, instance))
    for feed in FEED_FOLDERS:
        assert reread[feed]["rows_loaded"] == 0
        assert reread[feed]["rows_duplicate"] == meta[feed]["rows_loaded"] + meta[feed].get(
            "rows_duplicate", 0
        )
        assert reread[feed]["rows_quarantined"] == meta[feed]["rows_quarantined"]
    assert table_counts(warehouse) == counts


# -- HTTP transport against a real local server -----------------------------------------------


def easypost_trackers_reply(
    trackers: list[dict[str, Any]], api_key: str, page_size: int = 2
) -> Callable[[RecordedRequest], Reply]:
    """EasyPost's GET /v2/trackers: basic auth (key as user), before_id paging, and
    start_datetime filtering on *creation* time, as EasyPost does."""
    expected = "Basic " + base64.b64encode(f"{api_key}:".encode()).decode()

    def answer(request: RecordedRequest) -> Reply:
        if request.headers.get("Authorization") != expected:
            return Reply(401, {"error": {"code": "APIKEY.INVALID", "message": "bad key"}})
        items = sorted(trackers, key=lambda t: t["id"], reverse=True)
        since = request.param("start_datetime")
        if since is not None:
            items = [t for t in items if parse_timestamp(t["created_at"]) >= parse_timestamp(since)]
        before = request.param("before_id")
        if before is not None:
            items = [t for t in items if t["id"] < before]
        page = items[:page_size]
        return Reply(200, {"trackers": page, "has_more": len(items) > len(page)})

    return answer


def test_http_ingest_sets_cursor_and_sends_updated_since(
    warehouse: DuckDBWarehouse, instance: Any, server: ScriptedHTTPServer
) -> None:
    trackers = [
        easypost_tracker(f"trk_{i:03d}", f"2026-10-05T{10 + i:02d}:30:00Z") for i in range(5)
    ]
    server.route("/v2/trackers", easypost_trackers_reply(trackers, api_key="sekret"))
    base_url = server.url + "/v2"
    connector = EasyPostConnector(
        transport="http", base_url=base_url, api_key="sekret", backoff_factor=0
    )
    resources = {"warehouse": warehouse, "carrier_trackers_source": connector}
    asset = [ASSETS["carrier_trackers"]]

    first = metadata_by_feed(materialize(asset, resources, instance))["carrier_trackers"]
    assert (first["pages_read"], first["rows_loaded"]) == (3, 5)  # 2 + 2 + 1 per page
    # EasyPost filters by creation time: every poll asks for the lookback window (30 days
    # before "now", defs/ingest/carrier/resources.py), not for the update cursor.
    assert [r.param("start_datetime") for r in server.requests] == ["2026-10-02T00:00:00Z"] * 3
    cursor = get_cursor(warehouse, "carrier_trackers")
    assert cursor == datetime(2026, 10, 5, 14, 30, tzinfo=UTC)

    # A tracker changes at the source; the next run asks for the same creation window again.
    trackers[4] = easypost_tracker("trk_004", "2026-10-05T15:10:00Z", status="delivered")
    server.requests.clear()
    second = metadata_by_feed(materialize(asset, resources, instance))["carrier_trackers"]
    assert {r.param("start_datetime") for r in server.requests} == {"2026-10-02T00:00:00Z"}
    assert second["updated_since"] == "2026-10-05T13:30:00+00:00"  # the cursor - 1h, as before
    # the first page (trk_004, trk_003) changed; the two unchanged pages are in the ledger
    assert (second["rows_read"], second["rows_loaded"], second["rows_duplicate"]) == (2, 1, 1)
    assert second["pages_skipped"] == 2
    assert get_cursor(warehouse, "carrier_trackers") == datetime(2026, 10, 5, 15, 10, tzinfo=UTC)
    assert query(warehouse, "SELECT count(*) FROM raw.carrier_trackers WHERE _key = 'trk_004'") == [
        (2,)
    ]
    sources = query(warehouse, "SELECT DISTINCT _source FROM raw.carrier_trackers")
    assert all(source.startswith(base_url) for (source,) in sources)


def test_http_bodies_are_spooled_and_the_archive_reads_as_file_drops_with_the_same_verdicts(
    landing: Path, warehouse: DuckDBWarehouse, instance: Any, server: ScriptedHTTPServer
) -> None:
    trackers = [
        easypost_tracker(f"trk_{i:03d}", f"2026-10-05T{10 + i:02d}:30:00Z") for i in range(5)
    ]
    trackers[2]["updated_at"] = "soon"  # quarantined over HTTP and from the archive alike
    server.route("/v2/trackers", easypost_trackers_reply(trackers, api_key="sekret"))
    connector = EasyPostConnector(
        transport="http", base_url=server.url + "/v2", api_key="sekret", backoff_factor=0
    )
    asset = [ASSETS["carrier_trackers"]]
    resources = {"warehouse": warehouse, "carrier_trackers_source": connector}
    over_http = metadata_by_feed(materialize(asset, resources, instance))["carrier_trackers"]
    assert (over_http["pages_read"], over_http["rows_loaded"]) == (3, 4)

    # Every response body is in the landing folder exactly as the ledger saw it.
    spooled = sorted((landing / "carrier_trackers" / "http").rglob("*.json"))
    ledger = query(warehouse, "SELECT content_hash FROM raw._ingest_files")
    assert sorted(hashlib.sha256(p.read_bytes()).hexdigest() for p in spooled) == sorted(
        content_hash for (content_hash,) in ledger
    )
    verdicts = "SELECT reason, record_index, original_text FROM raw._quarantine"
    quarantined = query(warehouse, verdicts)

    # Read as file drops, the archive yields nothing new: the same versions, the same verdicts.
    files = {"warehouse": warehouse, "carrier_trackers_source": EasyPostConnector()}
    from_files = metadata_by_feed(materialize(asset, files, instance))["carrier_trackers"]
    assert (from_files["pages_read"], from_files["rows_loaded"]) == (3, 0)
    assert from_files["rows_duplicate"] == 4 and from_files["rows_quarantined"] == 1
    assert [row[:2] for row in quarantined] == [("unparseable_time", 0)]
    assert json.loads(quarantined[0][2]) == trackers[2]
    assert query(warehouse, verdicts) == quarantined


def test_http_401_fails_the_asset_with_the_connector_message(
    warehouse: DuckDBWarehouse, instance: Any, server: ScriptedHTTPServer
) -> None:
    server.route("/v2/trackers", easypost_trackers_reply([], api_key="right"))
    connector = EasyPostConnector(
        transport="http", base_url=server.url + "/v2", api_key="wrong", backoff_factor=0
    )
    resources = {"warehouse": warehouse, "carrier_trackers_source": connector}
    result = materialize([ASSETS["carrier_trackers"]], resources, instance, raise_on_error=False)
    assert not result.success
    assert len(server.requests) == 1  # an auth error is not retried
    (failure,) = result.get_step_failure_events()
    error = failure.step_failure_data.error
    assert error is not None
    messages = []
    while error is not None:
        messages.append(error.message)
        error = error.cause
    text = "\n".join(messages)
    assert "ConnectorAuthError" in text
    assert "HTTP 401" in text and "EASYPOST_API_KEY" in text
    assert "wrong" not in text  # the key itself is never shown
    assert get_cursor(warehouse, "carrier_trackers") is None
    assert query(warehouse, "SELECT count(*) FROM raw._ingest_files") == [(0,)]


def test_timestamps_are_stored_in_utc_whatever_the_session_zone(
    landing: Path, warehouse: DuckDBWarehouse, resources: dict[str, Any], instance: Any
) -> None:
    write_page(
        landing,
        "storefront_orders",
        "tz.json",
        {"orders": [shopify_order(1, "2026-10-05T23:30:00-07:00")]},
    )
    materialize([ASSETS["storefront_orders"]], resources, instance)
    import duckdb

    with duckdb.connect(warehouse.path) as con:
        con.execute("SET TimeZone = 'UTC'")
        (value,) = con.execute(
            "SELECT strftime(_updated_at, '%Y-%m-%d %H:%M') FROM raw.storefront_orders"
        ).fetchone()
    assert value == "2026-10-06 06:30"
    assert os.path.exists(warehouse.path)


def test_ingest_started_before_another_process_releases_the_lock(
    landing: Path, warehouse: DuckDBWarehouse, resources: dict[str, Any], instance: Any
) -> None:
    """dbt (another process) may hold the DuckDB file: ingest waits for it instead of failing."""
    write_page(
        landing, "storefront_orders", "p.json", {"orders": [shopify_order(1, "2026-10-05T10:00Z")]}
    )
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import duckdb, sys, time; c = duckdb.connect(sys.argv[1]); print('ok', flush=True);"
            " time.sleep(2); c.close()",
            str(warehouse.path),
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert holder.stdout is not None and holder.stdout.readline().strip() == "ok"
    started = datetime.now(UTC)
    meta = metadata_by_feed(materialize([ASSETS["storefront_orders"]], resources, instance))
    holder.wait(timeout=30)
    assert meta["storefront_orders"]["rows_loaded"] == 1
    assert datetime.now(UTC) - started >= timedelta(seconds=1)


class _SlowPages:
    """A page source that hands out one page every `gap_s` (a slow vendor API)."""

    def __init__(self, pages: list[Any], gap_s: float) -> None:
        self.bodies, self.gap_s = pages, gap_s
        self.handed_out: list[float] = []  # when each page was handed out (time.time())

    def cursor_source(self, feed: str) -> str:
        return "test:slow"

    def pages(self, feed: str, updated_since: datetime | None) -> Iterator[Any]:
        import time

        from orderwatch_dagster.defs.ingest.connector import Page

        for number, body in enumerate(self.bodies):
            time.sleep(self.gap_s)
            self.handed_out.append(time.time())
            yield Page.of(f"{feed}/{number}.json", f"test:{number}", json.dumps(body).encode())


_LOCK_PROBE = """
import os, sys, time
from orderwatch_dagster.lib.warehouse_duckdb import open_duckdb
path, stop = sys.argv[1], sys.argv[2]
print("ready", flush=True)
seen = []
while not os.path.exists(stop):
    with open_duckdb(path, lock_timeout_s=60) as session:  # waits as every session does
        seen.append(session.query("SELECT count(*) FROM raw.storefront_orders")[0][0])
    time.sleep(0.05)
print(" ".join(map(str, seen)), flush=True)
"""


def _probe(warehouse: DuckDBWarehouse, stop: Path) -> subprocess.Popen[str]:
    """Another process opening the DuckDB file as the project's sessions do (waiting for the
    lock with open_duckdb's retries), again and again until `stop` exists; it prints the row
    counts it saw."""
    probe = subprocess.Popen(
        [sys.executable, "-c", _LOCK_PROBE, str(warehouse.path), str(stop)],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert probe.stdout is not None and probe.stdout.readline().strip() == "ready"
    return probe


@pytest.mark.parametrize(
    ("gap_s", "lease_s"),
    [(0.0, 0.0), (0.4, 1e9)],
    ids=["writer-bound-lease-ends", "slow-source-writer-idle"],
)
def test_a_long_ingest_lets_another_process_open_the_file_between_batches(
    gap_s: float,
    lease_s: float,
    home: Path,
    warehouse: DuckDBWarehouse,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The writer does not hold the DuckDB file for a whole feed: when its lease ends it leaves
    the file alone for LOCK_YIELD_S, and idle for IDLE_RELEASE_S (a slow source) it closes its
    session. A process waiting for the file (another ingest, a check) gets it mid-ingest and
    sees the batches committed so far."""
    from orderwatch_dagster.lib import ingest

    monkeypatch.setattr(ingest, "BATCH_PAGES", 1)
    monkeypatch.setattr(ingest, "WRITE_LEASE_S", lease_s)
    monkeypatch.setattr(ingest, "IDLE_RELEASE_S", 0.1)
    spec = feed_spec("storefront_orders")
    pages = [{"orders": [shopify_order(n, "2026-10-05T10:00:00Z")]} for n in range(1, 7)]
    connect = warehouse.connect
    with connect() as session:  # the file and its tables exist before the probe starts
        session.ensure_feed(spec.name, spec.key_columns)
    stop = home / "stop-probe"
    probe = _probe(warehouse, stop)
    try:
        result = ingest.ingest_feed(
            spec, _SlowPages(pages, gap_s), connect, now=datetime(2026, 10, 6, tzinfo=UTC)
        )
    finally:
        stop.touch()
        out, _ = probe.communicate(timeout=60)
    assert result.stats.rows_loaded == 6
    assert result.row_count == 6
    # the probe opened the file between batches: it saw partial loads (with one session for the
    # whole feed it would see only 0 before and 6 after)
    partial = {int(n) for n in out.split()} - {0, 6}
    assert len(partial) >= 3, out


def test_a_fast_source_keeps_one_writer_session_for_the_feed(
    warehouse: DuckDBWarehouse, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Batches coming back to back share the writer's session (one checkpoint, not one per
    batch): the run opens two sessions, its set-up and the writer's."""
    from orderwatch_dagster.lib import ingest

    monkeypatch.setattr(ingest, "BATCH_PAGES", 1)
    monkeypatch.setattr(ingest, "IDLE_RELEASE_S", 60.0)
    opened: list[int] = []

    def counting_connect() -> Any:
        opened.append(1)
        return warehouse.connect()

    spec = feed_spec("storefront_orders")
    pages = [{"orders": [shopify_order(n, "2026-10-05T10:00:00Z")]} for n in range(1, 7)]
    result = ingest.ingest_feed(
        spec, _SlowPages(pages, 0.0), counting_connect, now=datetime(2026, 10, 6, tzinfo=UTC)
    )
    assert result.stats.rows_loaded == 6
    assert len(opened) == 2


def test_a_failed_batch_write_closes_the_session_and_leaves_the_cursor(
    home: Path, warehouse: DuckDBWarehouse, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A batch whose write fails inside its transaction (fault injected after its versions were
    inserted): the error reaches the caller, the batch is rolled back and the one before it
    stays, the session's context sees the error, the cursor does not move, the writer thread
    ends and the file is free."""
    import threading

    from orderwatch_dagster.lib import ingest
    from orderwatch_dagster.lib.warehouse_duckdb import DuckDBSession

    monkeypatch.setattr(ingest, "BATCH_PAGES", 1)
    monkeypatch.setattr(ingest, "WRITE_LEASE_S", 1e9)
    real_ledger = DuckDBSession._insert_ledger
    calls: list[int] = []

    def failing_second_ledger(self: DuckDBSession, rows: Any) -> None:
        calls.append(1)
        if len(calls) == 2:
            raise RuntimeError("disk full")
        real_ledger(self, rows)

    real_release = ingest._Lease.release
    released_with: list[BaseException | None] = []

    def recording_release(self: Any, error: BaseException | None = None) -> None:
        if self.current is not None:
            released_with.append(error)
        real_release(self, error)

    monkeypatch.setattr(DuckDBSession, "_insert_ledger", failing_second_ledger)
    monkeypatch.setattr(ingest._Lease, "release", recording_release)
    spec = feed_spec("storefront_orders")
    pages = [{"orders": [shopify_order(n, "2026-10-05T10:00:00Z")]} for n in range(1, 5)]
    with pytest.raises(RuntimeError, match="disk full"):
        ingest.ingest_feed(
            spec, _SlowPages(pages, 0.0), warehouse.connect, now=datetime(2026, 10, 6, tzinfo=UTC)
        )
    assert [str(e) for e in released_with] == ["disk full"]  # closed once, with the error
    assert not [t for t in threading.enumerate() if t.name.startswith("ingest-")]
    checked = subprocess.run(
        [
            sys.executable,
            "-c",
            "import duckdb, sys; duckdb.connect(sys.argv[1]).close()",
            str(warehouse.path),
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert checked.returncode == 0, checked.stderr
    assert get_cursor(warehouse, "storefront_orders") is None
    assert query(warehouse, "SELECT id FROM raw.storefront_orders") == [(1,)]
    assert query(warehouse, "SELECT count(*) FROM raw._ingest_files") == [(1,)]


def test_the_cycle_collector_is_paused_while_a_page_is_parsed_and_restored_after(
    warehouse: DuckDBWarehouse, monkeypatch: pytest.MonkeyPatch
) -> None:
    import gc

    from orderwatch_dagster.lib import ingest

    real_parse = ingest.parse_page
    while_parsing: list[bool] = []
    while_reading: list[bool] = []

    def recording_parse(*args: Any, **kwargs: Any) -> Any:
        while_parsing.append(gc.isenabled())
        return real_parse(*args, **kwargs)

    class Broken(_SlowPages):
        def pages(self, feed: str, updated_since: datetime | None) -> Iterator[Any]:
            for page in super().pages(feed, updated_since):
                while_reading.append(gc.isenabled())
                yield page
            raise OSError("connection reset")

    monkeypatch.setattr(ingest, "parse_page", recording_parse)
    spec = feed_spec("storefront_orders")
    pages = [{"orders": [shopify_order(n, "2026-10-05T10:00:00Z")]} for n in (1, 2)]
    assert gc.isenabled()
    with pytest.raises(ingest.SourceInterrupted) as interrupted:
        ingest.ingest_feed(
            spec, Broken(pages, 0.0), warehouse.connect, now=datetime(2026, 10, 6, tzinfo=UTC)
        )
    assert isinstance(interrupted.value.__cause__, OSError)
    assert while_parsing == [False, False]  # paused for each page's parse
    assert while_reading == [True, True]  # not while the source reads (HTTP, retries)
    assert gc.isenabled()
    gc.disable()
    try:  # a caller that had paused it keeps it paused
        ingest.ingest_feed(
            spec, _SlowPages(pages, 0.0), warehouse.connect, now=datetime(2026, 10, 6, tzinfo=UTC)
        )
        assert not gc.isenabled()
    finally:
        gc.enable()
