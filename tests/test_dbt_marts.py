"""dbt marts on a small hand-written world: real raw tables in DuckDB / PostgreSQL, real dbt.

The world (`build_raw_world`) is written in each vendor's own shape (docs/feeds.md), one raw row per
record version, exactly as the ingest assets store them; each order exercises one behaviour of
fct_order_milestones / order_state (the as-of layer at now), asserted below.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import duckdb
import psycopg2
import pytest

from orderwatch_dagster.lib.feeds import FEEDS
from orderwatch_dagster.lib.warehouse import WarehouseSession, open_duckdb, open_postgres

ROOT = Path(__file__).resolve().parents[1]
DBT_DIR = ROOT / "dbt_project"
DBT_BIN = ROOT / ".venv" / "bin" / "dbt"
AS_OF = datetime(2026, 10, 20, 16, 0, tzinfo=UTC)  # Tue 12:00 America/New_York
# dbt unit tests check SQL, not data: the duck_world build runs them all once; later builds skip
# them (the order_state ones are the slow ones: the whole as-of query per test)
NO_UNIT_TESTS = ["--exclude", "test_type:unit"]
NO_STATE_UNIT_TESTS = [
    "--exclude",
    "order_state,test_type:unit",
    "order_state_snapshots,test_type:unit",
]


def ts(text: str) -> datetime:
    """'10-14 09:00' (UTC, October 2026) -> aware datetime."""
    return datetime.strptime(f"2026-{text}", "%Y-%m-%d %H:%M").replace(tzinfo=UTC)


def iso(moment: datetime | None) -> str | None:
    return None if moment is None else moment.isoformat().replace("+00:00", "Z")


class RawWorld:
    """Raw rows (one per record version) in the raw layer's column layout."""

    def __init__(self) -> None:
        self.rows: dict[str, list[dict[str, Any]]] = {feed: [] for feed in FEEDS}
        self._ingest_clock = ts("10-01 00:00")

    def add(self, feed: str, payload: dict[str, Any], updated_at: datetime, **keys: Any) -> None:
        text = json.dumps(payload, sort_keys=True, separators=(",", ":"))
        self._ingest_clock += timedelta(minutes=1)
        key_value = payload["id"]
        row = {
            "_key": str(key_value),
            "_updated_at": updated_at,
            "id": key_value,
            "updated_at": updated_at,
            **keys,
            "payload": text,
            "_record_hash": hashlib.sha256(text.encode()).hexdigest(),
            "_format": FEEDS[feed].format,
            "_source": f"fixture://{feed}",
            "_ingested_at": self._ingest_clock,
        }
        self.rows[feed].append(row)

    # -- vendor shapes -------------------------------------------------------------------
    def customer(self, cid: int, tags: str = "") -> None:
        payload = {
            "id": cid,
            "email": f"c{cid}@example.com",
            "tags": tags,
            "created_at": iso(ts("09-01 10:00")),
            "updated_at": iso(ts("09-01 10:00")),
            "default_address": {"province_code": "NY", "country_code": "US"},
        }
        self.add("storefront_customers", payload, ts("09-01 10:00"))

    def order(
        self,
        oid: int,
        placed: datetime,
        *,
        customer_id: int = 1,
        province: str = "NY",
        service: str = "ground",
        promised: str | None = None,
        skus: tuple[str, ...] = ("SKU-A",),
        cancelled: datetime | None = None,
        total: str = "50.00",
        updated: datetime | None = None,
    ) -> None:
        number = oid - 5000 + 1000
        payload = {
            "id": oid,
            "name": f"#{number}",
            "email": f"c{customer_id}@example.com",
            "created_at": iso(placed),
            "processed_at": iso(placed + timedelta(minutes=5)),
            "updated_at": iso(updated or placed + timedelta(minutes=5)),
            "cancelled_at": iso(cancelled),
            "cancel_reason": "customer" if cancelled else None,
            "financial_status": "voided" if cancelled else "paid",
            "fulfillment_status": None,
            "currency": "USD",
            "total_price": total,
            "customer": {"id": customer_id, "email": f"c{customer_id}@example.com", "tags": ""},
            "shipping_address": {
                "address1": "1 Main St",
                "city": "Town",
                "province": province,
                "province_code": province,
                "zip": "10001",
                "country": "United States",
                "country_code": "US",
            },
            "shipping_lines": [{"code": service, "title": service, "price": "5.00", "source": "x"}],
            "line_items": [
                {
                    "id": oid * 10 + i,
                    "variant_id": 900 + i,
                    "product_id": 800 + i,
                    "sku": sku,
                    "title": sku,
                    "quantity": 1,
                    "price": "20.00",
                    "grams": 100,
                    "fulfillment_status": None,
                }
                for i, sku in enumerate(skus)
            ],
            "fulfillments": [],
            "note_attributes": (
                [{"name": "promised_delivery_date", "value": promised}] if promised else []
            ),
            "tags": "",
        }
        upd = updated or placed + timedelta(minutes=5)
        self.add("storefront_orders", payload, upd, name=payload["name"])

    def fulfillment_order(
        self,
        foid: int,
        oid: int,
        at: datetime,
        *,
        warehouse: str = "Bethlehem (PA)",
        status: str = "in_progress",
        hold: str | None = None,
    ) -> None:
        payload = {
            "id": foid,
            "order_id": oid,
            "assigned_location_id": 103,
            "assigned_location": {"name": warehouse, "location_id": 103, "country_code": "US"},
            "request_status": "accepted",
            "status": "on_hold" if hold else status,
            "fulfill_at": iso(at),
            "fulfill_by": None,
            "created_at": iso(at),
            "updated_at": iso(at),
            "fulfillment_holds": [{"reason": hold, "reason_notes": "fixture"}] if hold else [],
            "destination": {"country_code": "US"},
            "line_items": [],
            "delivery_method": {"method_type": "shipping"},
        }
        self.add("oms_fulfillment_orders", payload, at, order_id=oid)

    def wms(
        self,
        wid: int,
        oid: int,
        created: datetime,
        shipments: list[dict[str, Any]],
    ) -> None:
        """One ShipBob order version; shipments: id, status, detail, at, tracking, shipped."""
        number = str(oid - 5000 + 1000)
        body = []
        for s in shipments:
            body.append(
                {
                    "id": s["id"],
                    "order_id": wid,
                    "reference_id": str(oid),
                    "created_date": iso(created),
                    "last_update_at": iso(s["at"]),
                    "last_tracking_update_at": None,
                    "status": s["status"],
                    "status_details": (
                        [{"id": 1, "name": s["detail"], "description": s["detail"]}]
                        if s.get("detail")
                        else []
                    ),
                    "location": {"id": 103, "name": s.get("warehouse", "Bethlehem (PA)")},
                    "tracking": (
                        {
                            "carrier": "USPS",
                            "tracking_number": s["tracking"],
                            "carrier_service": "Ground",
                            "tracking_url": None,
                            "shipping_date": iso(s.get("shipped")),
                        }
                        if s.get("tracking")
                        else None
                    ),
                    "estimated_fulfillment_date": iso(created + timedelta(days=1)),
                    "estimated_fulfillment_date_status": "PendingOnTime",
                    "actual_fulfillment_date": iso(s.get("shipped")),
                    "products": [],
                }
            )
        payload = {
            "id": wid,
            "created_date": iso(created),
            "purchase_date": iso(created),
            "reference_id": str(oid),
            "order_number": number,
            "status": "Processing",
            "shipping_method": "Ground",
            "recipient": {"name": "x", "address": {"state": "NY", "country": "US"}},
            "products": [],
            "shipments": body,
        }
        updated = max([s["at"] for s in shipments] or [created])
        self.add("wms_shipments", payload, updated, reference_id=str(oid))

    def tracker(
        self,
        tid: str,
        code: str,
        events: list[tuple[datetime, str, str]],
        *,
        updated: datetime | None = None,
    ) -> None:
        """One EasyPost Tracker version carrying its full history (status, status_detail)."""
        details = [
            {
                "object": "TrackingDetail",
                "message": f"{status} {detail}",
                "description": "",
                "status": status,
                "status_detail": detail,
                "datetime": iso(at),
                "source": "USPS",
                "carrier_code": "",
                "tracking_location": {"city": "X", "state": "NY", "country": "US", "zip": None},
            }
            for at, status, detail in events
        ]
        latest = max(events, key=lambda e: e[0])
        upd = updated or latest[0]
        payload = {
            "id": tid,
            "object": "Tracker",
            "mode": "test",
            "tracking_code": code,
            "status": latest[1],
            "status_detail": latest[2],
            "created_at": iso(min(e[0] for e in events)),
            "updated_at": iso(upd),
            "est_delivery_date": None,
            "shipment_id": None,
            "carrier": "USPS",
            "is_return": False,
            "finalized": latest[1] == "delivered",
            "tracking_details": details,
            "carrier_detail": {},
        }
        self.add("carrier_trackers", payload, upd, tracking_code=code)

    def ticket(
        self, tkid: int, at: datetime, *, external_id: str | None, field: str | None
    ) -> None:
        payload = {
            "id": tkid,
            "url": None,
            "external_id": external_id,
            "subject": "Where is my order?",
            "description": "",
            "status": "open",
            "priority": None,
            "type": "question",
            "tags": ["wismo"],
            "custom_fields": [{"id": 360012345678, "value": field}],
            "requester_id": 1,
            "created_at": iso(at),
            "updated_at": iso(at),
        }
        self.add("support_tickets", payload, at, external_id=external_id)

    def return_(self, rid: int, oid: int, at: datetime, outcome: str, tracking: str | None) -> None:
        payload = {
            "id": rid,
            "state": "open",
            "created_at": iso(at),
            "updated_at": iso(at),
            "order_id": 60_000 + oid,  # Loop's own order id
            "provider_order_id": str(oid),  # the storefront order
            "order_name": f"#{oid - 5000 + 1000}",
            "outcome": outcome,
            "tracking_number": tracking,
            "line_items": [],
        }
        self.add("returns", payload, at, order_id=60_000 + oid)


def shipped_path(
    w: RawWorld, oid: int, sid: int, code: str, placed: datetime, *, version_gap_hours: int = 2
) -> datetime:
    """3PL versions released, Picked, Packed, LabeledCreated, Completed; returns ship time."""
    released = placed + timedelta(hours=1)
    steps = [
        ("Processing", None),
        ("Processing", "Picked"),
        ("Processing", "Packed"),
        ("LabeledCreated", None),
        ("Completed", None),
    ]
    shipped = released + timedelta(hours=version_gap_hours * (len(steps) - 1))
    for i, (status, detail) in enumerate(steps):
        at = released + timedelta(hours=version_gap_hours * i)
        shipment = {"id": sid, "status": status, "detail": detail, "at": at}
        if status in ("LabeledCreated", "Completed"):
            shipment["tracking"] = code
        if status == "Completed":
            shipment["shipped"] = shipped
        w.wms(sid + 70000, oid, released, [shipment])
    return shipped


def build_raw_world() -> RawWorld:
    """Eight orders, each one behaviour (promised dates are set explicitly: NY, end of day ET)."""
    w = RawWorld()
    w.customer(1)
    w.customer(2, tags="newsletter, vip")

    # 5001 delivered on time; a later tracker version carries a stray in_transit scan dated
    # after delivery (arrives late): the order must stay delivered.
    placed = ts("10-12 14:00")
    w.order(5001, placed, promised="2026-10-16")
    w.fulfillment_order(6001, 5001, placed + timedelta(minutes=10))
    shipped = shipped_path(w, 5001, 1, "TRK1", placed)
    ev = [
        (shipped + timedelta(hours=1), "pre_transit", "label_created"),
        (shipped + timedelta(hours=4), "in_transit", "arrived_at_facility"),
        (shipped + timedelta(hours=30), "out_for_delivery", "out_for_delivery"),
        (shipped + timedelta(hours=36), "delivered", "arrived_at_destination"),
    ]
    w.tracker("trk_1", "TRK1", ev[:2])
    w.tracker("trk_1", "TRK1", ev)
    stray = (shipped + timedelta(hours=40), "in_transit", "departed_facility")
    w.tracker("trk_1", "TRK1", [*ev, stray], updated=shipped + timedelta(hours=41))

    # 5002 two shipments: one delivered, the other still in transit → order is in_transit.
    placed = ts("10-15 13:00")
    w.order(5002, placed, promised="2026-10-23", skus=("SKU-A", "SKU-B"))
    w.fulfillment_order(6002, 5002, placed + timedelta(minutes=10))
    s_a = shipped_path(w, 5002, 2, "TRK2A", placed)
    s_b = shipped_path(w, 5002, 3, "TRK2B", placed)
    w.tracker(
        "trk_2a",
        "TRK2A",
        [
            (s_a + timedelta(hours=3), "in_transit", "arrived_at_facility"),
            (s_a + timedelta(hours=40), "delivered", "arrived_at_destination"),
        ],
    )
    w.tracker("trk_2b", "TRK2B", [(s_b + timedelta(hours=3), "in_transit", "arrived_at_facility")])

    # 5003 on an inventory hold since placement, never released: ship-late, hold, missed promise.
    placed = ts("10-09 15:00")
    w.order(5003, placed, promised="2026-10-16", skus=("SKU-OOS",))
    w.fulfillment_order(6003, 5003, placed + timedelta(minutes=10))
    w.fulfillment_order(6003, 5003, placed + timedelta(hours=2), hold="inventory_out_of_stock")

    # 5004 label created, never scanned by the carrier: no_first_scan active.
    placed = ts("10-14 12:00")
    w.order(5004, placed, promised="2026-10-21")
    w.fulfillment_order(6004, 5004, placed + timedelta(minutes=10))
    released = placed + timedelta(hours=1)
    for i, (status, detail) in enumerate(
        [("Processing", None), ("Processing", "Picked"), ("LabeledCreated", None)]
    ):
        shipment = {
            "id": 4,
            "status": status,
            "detail": detail,
            "at": released + timedelta(hours=i),
        }
        if status == "LabeledCreated":
            shipment["tracking"] = "TRK4"
        w.wms(70004, 5004, released, [shipment])

    # 5005 failed delivery attempt, then delivered after the promise: exception resolved, missed.
    placed = ts("10-12 14:00")
    w.order(5005, placed, promised="2026-10-15")
    w.fulfillment_order(6005, 5005, placed + timedelta(minutes=10))
    shipped = shipped_path(w, 5005, 5, "TRK5", placed)
    w.tracker(
        "trk_5",
        "TRK5",
        [
            (shipped + timedelta(hours=3), "in_transit", "arrived_at_facility"),
            (shipped + timedelta(hours=30), "failure", "delivery_exception"),
            (ts("10-17 18:00"), "delivered", "arrived_at_destination"),
        ],
    )

    # 5006 cancelled before release.
    placed = ts("10-16 10:00")
    w.order(5006, placed, promised="2026-10-23", cancelled=placed + timedelta(hours=3))

    # 5007 accepted, then silence for 8 days: lost + scan gap, open, past its promise.
    placed = ts("10-08 14:00")
    w.order(5007, placed, promised="2026-10-14", customer_id=2, total="500.00")
    w.fulfillment_order(6007, 5007, placed + timedelta(minutes=10))
    shipped = shipped_path(w, 5007, 7, "TRK7", placed)
    w.tracker(
        "trk_7",
        "TRK7",
        [
            (shipped + timedelta(hours=3), "in_transit", "arrived_at_facility"),
            (ts("10-12 09:00"), "in_transit", "departed_facility"),
        ],
    )
    # two WISMO tickets: one by external_id, one by the order-number custom field
    w.ticket(9001, ts("10-15 12:00"), external_id="#1007", field=None)
    w.ticket(9002, ts("10-16 12:00"), external_id=None, field="1007")

    # 5008 returned to sender by the carrier (and a Loop return with that outcome).
    placed = ts("10-10 14:00")
    w.order(5008, placed, promised="2026-10-16")
    w.fulfillment_order(6008, 5008, placed + timedelta(minutes=10))
    shipped = shipped_path(w, 5008, 8, "TRK8", placed)
    w.tracker(
        "trk_8",
        "TRK8",
        [
            (shipped + timedelta(hours=3), "in_transit", "arrived_at_facility"),
            (shipped + timedelta(hours=50), "return_to_sender", "return"),
        ],
    )
    w.return_(7008, 5008, shipped + timedelta(hours=51), "return_to_sender", "TRK8")
    return w


def write_raw(session: WarehouseSession, world: RawWorld) -> None:
    """Append every row of `world` to the project's own raw tables (`ensure_feed` makes them, as
    ingest does), keeping each row's explicit load time: the tests steer the watermark with it."""
    for feed, spec in FEEDS.items():
        session.ensure_feed(feed, spec.key_columns)
        names = ["_key", "_updated_at", *(c.name for c in spec.key_columns), "payload"]
        names += ["_record_hash", "_format", "_source", "_ingested_at"]
        marks = ", ".join(session.p for _ in names)
        for row in world.rows[feed]:
            session.execute(
                f"insert into raw.{feed} ({', '.join(names)}) values ({marks})",
                [row.get(n) for n in names],
            )


def run_dbt(args: list[str], env_extra: dict[str, str]) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, **env_extra}
    env["PATH"] = f"{DBT_BIN.parent}{os.pathsep}{env.get('PATH', '')}"
    return subprocess.run(
        [str(DBT_BIN), *args, "--profiles-dir", str(DBT_DIR), "--project-dir", str(DBT_DIR)],
        cwd=DBT_DIR,
        env=env,
        capture_output=True,
        text=True,
        timeout=900,
    )


def dbt_env(tmp: Path, warehouse: Path | None = None) -> dict[str, str]:
    env = {"DBT_TARGET_PATH": str(tmp / "target"), "DBT_LOG_PATH": str(tmp / "logs")}
    if warehouse is not None:
        env["ORDERWATCH_WAREHOUSE"] = str(warehouse)
    return env


def vars_arg(as_of: datetime = AS_OF) -> list[str]:
    return ["--vars", json.dumps({"as_of": iso(as_of)})]


def assert_ok(done: subprocess.CompletedProcess[str]) -> None:
    assert done.returncode == 0, done.stdout[-6000:] + done.stderr[-3000:]


@pytest.fixture(scope="module")
def duck_world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Path, Path]]:
    """The fixture world in a DuckDB file after a full `dbt build` (data + unit tests)."""
    tmp = tmp_path_factory.mktemp("dbt_marts")
    warehouse = tmp / "warehouse.duckdb"
    with open_duckdb(warehouse) as session:
        write_raw(session, build_raw_world())
    assert_ok(run_dbt(["build", *vars_arg()], dbt_env(tmp, warehouse)))
    yield tmp, warehouse


def query(warehouse: Path, sql: str) -> list[dict[str, Any]]:
    con = duckdb.connect(str(warehouse), read_only=True)
    try:
        cur = con.execute(sql)
        names = [d[0] for d in cur.description]
        return [dict(zip(names, row, strict=True)) for row in cur.fetchall()]
    finally:
        con.close()


def states(warehouse: Path) -> dict[int, dict[str, Any]]:
    return {r["order_id"]: r for r in query(warehouse, "select * from marts.order_state")}


def test_every_order_has_one_state_and_seventeen_milestones(duck_world: tuple[Path, Path]) -> None:
    _, warehouse = duck_world
    assert sorted(states(warehouse)) == list(range(5001, 5009))
    per_order = query(
        warehouse,
        "select order_id, count(*) as n, count(*) filter (where is_current) as current"
        " from marts.fct_order_milestones group by order_id",
    )
    assert {r["n"] for r in per_order} == {17}
    assert {r["current"] for r in per_order} == {1}


def test_late_scan_after_delivery_keeps_order_delivered(duck_world: tuple[Path, Path]) -> None:
    _, warehouse = duck_world
    s = states(warehouse)[5001]
    assert s["current_milestone"] == "delivered"
    assert s["last_event"] == "delivered"
    assert not s["is_open"]
    assert not s["missed_promise"]
    assert not s["scan_gap_active"] and not s["lost_active"]


def test_furthest_behind_shipment_decides(duck_world: tuple[Path, Path]) -> None:
    _, warehouse = duck_world
    s = states(warehouse)[5002]
    assert s["current_milestone"] == "in_transit"
    assert s["shipment_count"] == 2
    assert s["is_open"]
    delivered = query(
        warehouse,
        "select is_reached, actual_at from marts.fct_order_milestones"
        " where order_id = 5002 and milestone = 'delivered'",
    )[0]
    assert delivered == {"is_reached": False, "actual_at": None}


def test_rule_flags(duck_world: tuple[Path, Path]) -> None:
    _, warehouse = duck_world
    s = states(warehouse)
    # inventory hold, never released: held, ship-late and past the promise, all still active
    assert (
        s[5003]["fulfillment_hold_active"] and s[5003]["fulfillment_hold_category"] == "inventory"
    )
    assert s[5003]["ship_late_active"] and s[5003]["promise_missed_active"]
    assert s[5003]["current_milestone"] == "payment_captured"
    # labelled, never scanned
    assert s[5004]["no_first_scan_active"] and s[5004]["current_milestone"] == "label_created"
    assert not s[5004]["missed_promise"]
    # failed attempt then delivered late: the exception occurred, is over; the promise was missed
    assert s[5005]["carrier_exception_occurred"] and not s[5005]["carrier_exception_active"]
    assert s[5005]["carrier_exception_reason"] == "delivery_failed"
    assert s[5005]["missed_promise"] and not s[5005]["is_open"]
    # cancelled: closed, never "missed", no rule active
    assert s[5006]["current_milestone"] == "cancelled" and not s[5006]["is_open"]
    assert not s[5006]["missed_promise"] and not s[5006]["ship_late_active"]
    # silent for 8 days: lost + scan gap, VIP, two WISMO tickets (external_id and custom field)
    last_scan = ts("10-12 09:00")
    assert s[5007]["lost_active"] and s[5007]["scan_gap_active"] and s[5007]["missed_promise"]
    assert s[5007]["hours_since_last_scan"] == pytest.approx(
        (AS_OF - last_scan) / timedelta(hours=1)
    )
    assert s[5007]["customer_tier"] == "vip" and s[5007]["wismo_ticket_count"] == 2
    # returned to sender
    assert s[5008]["current_milestone"] == "return_to_sender"
    assert s[5008]["carrier_exception_occurred"] and s[5008]["missed_promise"]
    # the delivered-on-time order fired nothing
    quiet = ["ship_late", "no_first_scan", "carrier_exception", "fulfillment_hold", "lost"]
    assert not any(s[5001][f"{rule}_occurred"] for rule in quiet)


def test_failure_modes_daily_counts(duck_world: tuple[Path, Path]) -> None:
    _, warehouse = duck_world
    rows = query(
        warehouse,
        "select dimension_type, dimension_value, sum(orders) as orders,"
        " sum(missed_promises) as missed, sum(wismo_tickets) as wismo"
        " from marts.fct_failure_modes_daily group by 1, 2",
    )
    by = {(r["dimension_type"], r["dimension_value"]): r for r in rows}
    assert sum(r["orders"] for r in rows if r["dimension_type"] == "warehouse") == 8
    assert by[("reason", "promise_missed")]["orders"] == 4  # 5003, 5005, 5007, 5008
    assert by[("reason", "fulfillment_hold:inventory")]["orders"] == 1
    assert by[("sku", "SKU-B")]["orders"] == 1
    assert sum(r["wismo"] for r in rows if r["dimension_type"] == "carrier") == 2


def test_incremental_recomputes_only_touched_orders(
    duck_world: tuple[Path, Path], tmp_path: Path
) -> None:
    _tmp, built = duck_world
    warehouse = tmp_path / "warehouse.duckdb"
    shutil.copy(built, warehouse)
    env = dbt_env(tmp_path, warehouse)
    # a sentinel on an order nobody touches: an incremental run must leave that row alone
    con = duckdb.connect(str(warehouse))
    con.execute(
        "update marts.fct_order_milestones set evidence = 'sentinel'"
        " where order_id = 5001 and milestone = 'order_placed'"
    )
    # the second parcel of 5002 is delivered: a new tracker version arrives
    world = build_raw_world()
    s_b = ts("10-15 22:00")
    events = [
        (s_b + timedelta(hours=3), "in_transit", "arrived_at_facility"),
        (ts("10-19 15:00"), "delivered", "arrived_at_destination"),
    ]
    extra = RawWorld()
    extra._ingest_clock = ts("10-20 12:00")
    extra.tracker("trk_2b", "TRK2B", events)
    con.close()
    del world
    with open_duckdb(warehouse) as session:
        write_raw(session, extra)
    # order_state reads the intermediate models through the as-of macro, not this mart: both
    # are selected, as the pipeline's dbt build does
    select = ["--select", "+fct_order_milestones", "+order_state"]
    assert_ok(run_dbt(["build", *select, *NO_UNIT_TESTS, *vars_arg()], env))
    after = query(warehouse, "select * from marts.fct_order_milestones order by order_milestone_id")
    by_id = {r["order_milestone_id"]: r for r in after}
    assert by_id["5001:order_placed"]["evidence"] == "sentinel"  # untouched order not rewritten
    assert by_id["5002:delivered"]["is_reached"]
    assert by_id["5002:delivered"]["actual_at"] == ts("10-19 15:00")
    assert states(warehouse)[5002]["current_milestone"] == "delivered"
    # and the incremental result equals a full rebuild (sentinel aside)
    assert_ok(
        run_dbt(["run", "--select", "fct_order_milestones", "--full-refresh", *vars_arg()], env)
    )
    full = query(warehouse, "select * from marts.fct_order_milestones order by order_milestone_id")
    for row_inc, row_full in zip(after, full, strict=True):
        if row_inc["order_milestone_id"] != "5001:order_placed":
            assert row_inc == row_full


def recomputed_orders(warehouse: Path, table: str, column: str) -> set[int]:
    """Orders whose rows no longer carry the sentinel, i.e. were rewritten by the last run."""
    rows = query(warehouse, f"select distinct order_id from {table} where {column} <> 'sentinel'")
    return {r["order_id"] for r in rows}


def test_incremental_picks_up_late_records_with_old_vendor_times(
    duck_world: tuple[Path, Path], tmp_path: Path
) -> None:
    """A retried ShipBob webhook and a late EasyPost scan, both with vendor times OLDER than
    what the tables already hold, are picked up by a plain incremental build (the watermark
    is the load time), and only their two orders are recomputed."""
    _tmp, built = duck_world
    warehouse = tmp_path / "warehouse.duckdb"
    shutil.copy(built, warehouse)
    env = dbt_env(tmp_path, warehouse)
    con = duckdb.connect(str(warehouse))
    (vendor_max,) = con.execute(
        "select max(source_updated_at) from marts.fct_order_milestones"
    ).fetchone()
    # every row gets a sentinel: a row that loses it was rewritten by the incremental run
    con.execute("update marts.fct_order_milestones set evidence = 'sentinel'")
    con.execute(
        "update intermediate.int_shipment_milestones_unioned set evidence_message = 'sentinel'"
    )
    before = {
        r[0]: r[1]
        for r in con.execute(
            "select order_milestone_id, actual_at from marts.fct_order_milestones"
        ).fetchall()
    }
    late = RawWorld()
    late._ingest_clock = ts("10-20 12:00")  # loaded now, long after everything else
    # 5004: the 3PL's "Packed" webhook, retried a day late, with its original (old) time; not
    # the latest version of the ShipBob order (LabeledCreated at 15:00 is newer)
    packed_at = ts("10-14 14:30")
    late.wms(
        70004,
        5004,
        ts("10-14 13:00"),
        [{"id": 4, "status": "Processing", "detail": "Packed", "at": packed_at}],
    )
    # 5007: a late EasyPost scan (out for delivery) in a tracker version with an old time
    ofd_at = ts("10-13 10:00")
    shipped = ts("10-08 14:00") + timedelta(hours=9)
    late.tracker(
        "trk_7",
        "TRK7",
        [
            (shipped + timedelta(hours=3), "in_transit", "arrived_at_facility"),
            (ts("10-12 09:00"), "in_transit", "departed_facility"),
            (ofd_at, "out_for_delivery", "out_for_delivery"),
        ],
    )
    for rows in late.rows.values():
        for row in rows:
            assert (
                row["_updated_at"] < vendor_max
            )  # old by vendor time: the old watermark skipped it
    con.close()
    with open_duckdb(warehouse) as session:
        write_raw(session, late)
    assert before["5004:packed"] is None  # implied by the label, no time of its own yet
    assert before["5007:out_for_delivery"] is None

    # plain incremental build, no --full-refresh
    assert_ok(run_dbt(["build", *NO_UNIT_TESTS, *vars_arg()], env))
    after = {
        r["order_milestone_id"]: r
        for r in query(
            warehouse, "select * from marts.fct_order_milestones order by order_milestone_id"
        )
    }
    assert after["5004:packed"]["actual_at"] == packed_at
    assert after["5004:packed"]["evidence_id"] == "shipbob:shipment:4"
    assert after["5007:out_for_delivery"]["is_reached"]
    assert after["5007:out_for_delivery"]["actual_at"] == ofd_at
    assert states(warehouse)[5007]["current_milestone"] == "out_for_delivery"
    # only the two touched orders were rewritten, in both incremental models
    assert recomputed_orders(warehouse, "marts.fct_order_milestones", "evidence") == {5004, 5007}
    assert recomputed_orders(
        warehouse, "intermediate.int_shipment_milestones_unioned", "evidence_message"
    ) == {5004, 5007}
    (watermark,) = query(
        warehouse, "select max(source_ingested_at) as m from marts.fct_order_milestones"
    )[0].values()
    assert watermark == ts("10-20 12:02")  # the second late row's load time

    # a second plain run with nothing new loaded recomputes nothing
    con = duckdb.connect(str(warehouse))
    con.execute("update marts.fct_order_milestones set evidence = 'sentinel'")
    con.close()
    assert_ok(run_dbt(["run", "--select", "int_shipment_milestones_unioned+", *vars_arg()], env))
    assert recomputed_orders(warehouse, "marts.fct_order_milestones", "evidence") == set()

    # and the incremental tables equal a full rebuild (evidence aside: sentinels)
    incremental = query(
        warehouse,
        "select * exclude (evidence) from marts.fct_order_milestones order by order_milestone_id",
    )
    assert_ok(run_dbt(["run", "--full-refresh", *vars_arg()], env))
    full = query(
        warehouse,
        "select * exclude (evidence) from marts.fct_order_milestones order by order_milestone_id",
    )
    assert incremental == full


def test_as_of_defaults_to_now(duck_world: tuple[Path, Path], tmp_path: Path) -> None:
    _tmp, built = duck_world
    warehouse = tmp_path / "warehouse.duckdb"
    shutil.copy(built, warehouse)
    before = datetime.now(UTC)
    done = run_dbt(["run", "--select", "order_state"], dbt_env(tmp_path, warehouse))
    assert_ok(done)
    as_of = {r["as_of"] for r in query(warehouse, "select distinct as_of from marts.order_state")}
    assert len(as_of) == 1
    (value,) = as_of
    assert before - timedelta(minutes=1) <= value <= datetime.now(UTC) + timedelta(minutes=1)


@pytest.mark.postgres
def test_postgres_matches_duckdb(
    duck_world: tuple[Path, Path],
    postgres_server: dict[str, Any],
    scratch_database: str,
    tmp_path: Path,
) -> None:
    _, warehouse = duck_world
    server = {key: value for key, value in postgres_server.items() if key != "dbname"}
    with open_postgres(
        host=server["host"],
        port=server["port"],
        user=server["user"],
        password="",
        database=scratch_database,
    ) as session:
        write_raw(session, build_raw_world())
    env = {
        **dbt_env(tmp_path),
        "ORDERWATCH_DBT_TARGET": "postgres",
        "ORDERWATCH_PG_DATABASE": scratch_database,
    }
    # the order_state unit tests ran on DuckDB (duck_world); here the models and data tests,
    # and the promise and milestone unit tests
    assert_ok(run_dbt(["build", *NO_STATE_UNIT_TESTS, *vars_arg()], env))
    # incremental path on PostgreSQL too (delete+insert on (order_id, milestone))
    assert_ok(run_dbt(["run", "--select", "fct_order_milestones", *vars_arg()], env))
    columns = (
        "order_id, current_milestone, last_event, is_open, missed_promise, shipment_count,"
        " wismo_ticket_count, ship_late_occurred, no_first_scan_occurred, scan_gap_occurred,"
        " carrier_exception_occurred, fulfillment_hold_occurred, lost_occurred,"
        " round(cast(deliver_slack_hours as numeric), 3) as deliver_slack"
    )
    sql = f"select {columns} from marts.order_state order by order_id"
    with psycopg2.connect(dbname=scratch_database, **server) as con, con.cursor() as cur:
        cur.execute(sql)
        pg_rows = [
            tuple(float(v) if k == 13 else v for k, v in enumerate(r)) for r in cur.fetchall()
        ]
        cur.execute("select count(*) from marts.fct_order_milestones")
        pg_milestones = cur.fetchone()[0]
    duck_rows = [
        tuple(float(v) if k == 13 else v for k, v in enumerate(r.values()))
        for r in query(warehouse, sql)
    ]
    assert pg_rows == duck_rows
    assert pg_milestones == 8 * 17
