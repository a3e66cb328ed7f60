"""Over the whole demo world (tests/conftest.py `demo_world`): every action in the ledger has a
packet with evidence for each reached milestone; human coverage stays small and every human
route shows its policy line; the ops-queue page and a packet read right in headless Chromium;
an old carrier version landing after the delivered one, through ingest and dbt, brings no
"delayed" message."""

from __future__ import annotations

import json
import shutil
from collections import defaultdict
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import dagster as dg
import duckdb
import pytest
from conftest import DemoWorld, run_pipeline
from playwright.sync_api import Browser, expect, sync_playwright
from test_ui import CHROMIUM, CHROMIUM_ARGS, IN_CI

from orderwatch_dagster.lib import settings
from orderwatch_dagster.lib.policy import HUMAN_KINDS


def _rows(world: DemoWorld, sql: str) -> list[tuple]:
    with duckdb.connect(str(world.warehouse), read_only=True) as con:
        return con.execute(sql).fetchall()


def test_every_action_carries_a_packet_with_evidence_per_milestone(demo_world: DemoWorld) -> None:
    actioned = _rows(
        demo_world,
        "select exception_id, order_id, packet_path, actions from ops.exception_ledger"
        " where json_array_length(actions) > 0",
    )
    assert actioned
    reached: dict[int, set[str]] = defaultdict(set)
    for order_id, milestone in _rows(
        demo_world,
        "select order_id, milestone from marts.fct_order_milestones"
        " where is_reached and actual_at is not null",
    ):
        reached[order_id].add(milestone)
    for exception_id, order_id, packet_path, _ in actioned:
        packet = json.loads(Path(packet_path).read_text())
        assert packet["order"]["order_id"] == order_id and packet["order"]["order_name"]
        evidenced = {m["milestone"] for m in packet["timeline"] if m["evidence"] and m["at"]}
        assert reached[order_id] <= evidenced, (exception_id, reached[order_id] - evidenced)
        assert {e["exception_id"] for e in packet["exceptions"]} >= {exception_id}
        assert Path(packet_path).with_suffix(".html").exists()
    for (packet_path,) in _rows(demo_world, "select packet_path from ops.customer_messages"):
        assert Path(packet_path).exists()


def test_human_coverage_is_small_and_justified(demo_world: DemoWorld) -> None:
    ((orders,),) = _rows(demo_world, "select count(*) from marts.order_state")
    human = _rows(
        demo_world,
        "select order_id, exception_id, policy_rule, packet_path from ops.action_queue"
        f" where kind in {tuple(HUMAN_KINDS)}",
    )
    assert len({r[0] for r in human}) <= 0.03 * orders
    for _, exception_id, policy_rule, packet_path in human:
        packet = json.loads(Path(packet_path).read_text())
        lines = {d["policy_line"] for d in packet["decisions"] if d["exception_id"] == exception_id}
        assert policy_rule in lines and "policy.yaml v" in policy_rule
    assert "human coverage:" in demo_world.output


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    if not CHROMIUM.is_file():
        message = f"{CHROMIUM} is missing (apt-get install chromium)"
        if IN_CI:
            pytest.fail(message + " (CI=true: the browser test must run)")
        pytest.skip(message)
    chromium = CHROMIUM
    with sync_playwright() as p:
        browser = p.chromium.launch(
            executable_path=str(chromium), headless=True, args=CHROMIUM_ARGS
        )
        yield browser
        browser.close()


def test_ops_queue_page_and_a_packet_in_chromium(demo_world: DemoWorld, browser: Browser) -> None:
    queue = demo_world.home / "outbox" / "queue.html"
    open_ids = {
        eid
        for (eid,) in _rows(
            demo_world,
            "select exception_id from ops.exception_ledger where status in ('open', 'actioned')",
        )
    }
    page = browser.new_page()
    page.goto(queue.as_uri())
    expect(page.locator("h1")).to_have_text("Ops queue")
    rows = page.locator("#queue tr.exception")
    shown = {rows.nth(i).get_attribute("data-exception-id") for i in range(rows.count())}
    assert shown == open_ids and shown
    first_severity = rows.nth(0).locator("td").nth(0).inner_text()
    assert first_severity in ("critical", "high", "medium", "low")
    rows.nth(0).locator("a.packet").click()
    expect(page.locator("h1#order")).to_contain_text("Order #")
    for section in (
        "#recommended",
        "#summary",
        "#lines",
        "#timeline",
        "#risk",
        "#tickets",
        "#done",
    ):
        expect(page.locator(section)).to_be_visible()
    expect(page.locator("#recommended .policy-line").first).to_contain_text("policy.yaml v")
    assert page.locator("#timeline tr").count() > 1
    expect(page.locator("#summary")).to_contain_text("***@")  # contact masked
    page.close()


def _latest_tracker(landing: Path, tracking_code: str) -> dict:
    """The newest version of a tracker among the landing pages (the bytes the vendor sent)."""
    versions = [
        tracker
        for page in sorted((landing / "carrier_trackers").rglob("*.json"))
        for tracker in json.loads(page.read_text()).get("trackers", [])
        if tracker.get("tracking_code") == tracking_code
    ]
    return max(versions, key=lambda t: t["updated_at"])


def _iso(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def test_an_old_tracker_version_landing_late_sends_no_delay_message(
    demo_world: DemoWorld, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """EasyPost resends an older version of a delivered parcel's tracker (in transit, with a
    delivery-exception scan) after the delivered one was loaded. It goes through ingest and dbt
    like any page: the delivered version stays the newest, and the action job sends that order
    nothing. Were versions ranked by arrival, the order would read in transit with a fresh
    carrier exception (an exception, and a carrier_issue message)."""
    home = tmp_path / "home"
    shutil.copytree(demo_world.home, home, ignore=shutil.ignore_patterns("dagster", "logs"))
    (home / "dagster").mkdir()
    monkeypatch.setenv("DAGSTER_HOME", str(home / "dagster"))
    monkeypatch.setenv("ORDERWATCH_HOME", str(home))
    monkeypatch.delenv("ORDERWATCH_AS_OF", raising=False)
    now = settings.parse_timestamp((home / "clock").read_text().strip())
    found = _rows_at(
        home,
        "select o.order_id, t.tracking_number, o.delivered_at from marts.order_state o"
        " join staging.stg_wms__shipment_status_changes s on s.order_id = o.order_id"
        " join staging.stg_carrier__trackers t on t.tracking_number = s.tracking_number"
        "  and t.is_latest_version and t.status = 'delivered'"
        " where o.current_milestone = 'delivered' and o.order_id not in"
        "  (select order_id from ops.customer_messages)"
        " order by o.delivered_at desc limit 1",
    )
    assert found, "the demo world has a delivered order with no message yet"
    ((order_id, code, delivered_at),) = found
    delivered = _latest_tracker(home / "landing", code)
    stale_at = delivered_at - timedelta(hours=2)
    scan = {
        **delivered["tracking_details"][-1],
        "message": "Delivery exception: business closed",
        "status": "failure",
        "status_detail": "business_closed",
        "datetime": _iso(stale_at - timedelta(hours=1)),
    }
    older = {
        **delivered,
        "status": "failure",
        "status_detail": "business_closed",
        "updated_at": _iso(stale_at),
        "est_delivery_date": _iso(now + timedelta(days=3)),
        "tracking_details": [
            *(d for d in delivered["tracking_details"] if d["datetime"] < scan["datetime"]),
            scan,
        ],
    }
    page = home / "landing" / "carrier_trackers" / "zz-resent-older-version.json"
    page.write_text(json.dumps({"trackers": [older], "has_more": False}))
    before = _rows_at(home, "select count(*) from ops.customer_messages")[0][0]

    run_pipeline(home)  # ingest + dbt + order_exceptions, as the hourly job does
    ((versions,),) = _rows_at(
        home,
        f"select count(*) from staging.stg_carrier__trackers where tracking_number = '{code}'"
        f" and updated_at = timestamptz '{older['updated_at']}'",
    )
    assert versions == 1, "the older version was loaded"
    state = f"select current_milestone, is_open from marts.order_state where order_id = {order_id}"
    assert _rows_at(home, state) == [("delivered", False)]
    assert not _rows_at(
        home,
        "select exception_type from marts.order_exceptions"
        f" where order_id = {order_id} and ended_at is null",
    )
    from orderwatch_dagster.definitions import defs

    job = defs().resolve_job_def("exception_actions_job")
    with dg.instance_for_test() as instance:
        assert job.execute_in_process(instance=instance).success
    assert _rows_at(home, "select count(*) from ops.customer_messages")[0][0] >= before
    assert not _rows_at(
        home, f"select template, status from ops.customer_messages where order_id = {order_id}"
    )


def _rows_at(home: Path, sql: str) -> list[tuple]:
    with duckdb.connect(str(home / "warehouse.duckdb"), read_only=True) as con:
        con.execute("SET TimeZone = 'UTC'")
        return con.execute(sql).fetchall()
