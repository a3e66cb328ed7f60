"""Over the whole demo world (tests/conftest.py `demo_world`): every action in the ledger has a
packet with evidence for each reached milestone; human coverage stays small and every human
route shows its policy line; the ops-queue page and a packet read right in headless Chromium."""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Iterator
from pathlib import Path

import duckdb
import pytest
from conftest import DemoWorld
from playwright.sync_api import Browser, expect, sync_playwright
from test_ui import CHROMIUM, CHROMIUM_ARGS, IN_CI

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
