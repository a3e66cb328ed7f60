"""The action job on a copy of the demo world (tests/conftest.py `demo_world`): decisions,
idempotency, safety switches, packets, templates. The crash test kills a real process between
delivery and record (tests/test_actions_crash.py)."""

from __future__ import annotations

import json
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import dagster as dg
import duckdb
import pytest

from orderwatch_dagster.defs.actions.resources import ActionSink, OutboxSender, is_replay
from orderwatch_dagster.defs.actions.senders import senders_from_env
from orderwatch_dagster.lib import settings
from orderwatch_dagster.lib.action_run import Controls, RunReport, run_actions
from orderwatch_dagster.lib.decide import plan_order
from orderwatch_dagster.lib.ledger import record_human_decision
from orderwatch_dagster.lib.outbound import DeliveryResult, FollowUp, Outbound, Outcome
from orderwatch_dagster.lib.packets import Contact, OrderContext, build_packet, message_facts
from orderwatch_dagster.lib.policy import DEFAULT_POLICY, load_policy, parse_policy
from orderwatch_dagster.lib.templating import render_message, render_page
from orderwatch_dagster.lib.warehouse import open_duckdb
from orderwatch_dagster.lib.wismo import plan_tickets

POLICY = load_policy()
EVIL = "{{7*7}}<script>alert(1)</script>"


@pytest.fixture
def home(demo_copy: Path) -> Path:
    return demo_copy  # tests/conftest.py


def deliveries(home: Path, channels: tuple[str, ...] = ()) -> Counter[str]:
    """Deliveries the outbox took, by idempotency key (only `channels` when given)."""
    log = home / "outbox" / "deliveries.jsonl"
    if not log.exists():
        return Counter()
    lines = [json.loads(line) for line in log.read_text().splitlines()]
    return Counter(d["idempotency_key"] for d in lines if not channels or d["channel"] in channels)


CUSTOMER = ("email", "sms")


def run(
    home: Path, controls: Controls | None = None, now: datetime | None = None, policy: Any = POLICY
) -> RunReport:
    controls = controls or Controls()
    sink = OutboxSender(home / "outbox")
    with open_duckdb(home / "warehouse.duckdb") as session:
        return run_actions(
            session,
            sink.send,
            controls,
            policy,
            now or settings.now(),
            "test",
            home / "outbox",
            lambda _: None,
        )


def query(home: Path, sql: str) -> list[tuple[Any, ...]]:
    with duckdb.connect(str(home / "warehouse.duckdb"), read_only=True) as con:
        return con.execute(sql).fetchall()


# -- the job, twice, in a real Dagster instance -------------------------------------------------
def test_job_twice_sends_each_message_once(home: Path) -> None:
    from orderwatch_dagster.definitions import defs

    job = defs().resolve_job_def("exception_actions_job")
    with dg.instance_for_test() as instance:
        assert job.execute_in_process(instance=instance).success
        first = deliveries(home)
        assert first and max(first.values()) == 1
        assert job.execute_in_process(instance=instance).success
    assert deliveries(home) == first
    ((messages, keys),) = query(
        home, "select count(*), count(distinct idempotency_key) from ops.customer_messages"
    )
    assert messages == keys == len(first)
    statuses = dict(query(home, "select status, count(*) from ops.exception_ledger group by 1"))
    assert statuses.get("actioned", 0) > 0
    # one message per order at most, however many exceptions it has
    per_order = query(
        home,
        "select order_id, count(*) from ops.customer_messages"
        " where channel in ('email', 'sms') group by 1",
    )
    assert all(n == 1 for _, n in per_order)


def test_sensor_run_key_is_per_materialization(home: Path) -> None:
    from orderwatch_dagster.definitions import defs
    from orderwatch_dagster.defs.actions.sensors import exception_actions_sensor

    definitions = defs()
    asset = definitions.get_assets_def(dg.AssetKey(["marts", "order_exceptions"]))
    with dg.instance_for_test() as instance:
        assert dg.materialize([asset], resources=definitions.resources, instance=instance).success

        def tick(cursor: str | None) -> list[dg.RunRequest]:
            context = dg.build_sensor_context(
                instance=instance, cursor=cursor, definitions=definitions
            )
            return list(exception_actions_sensor(context) or [])

        first, replayed = tick(None), tick(None)  # the same tick evaluated twice
        assert len(first) == 1 and [r.run_key for r in replayed] == [first[0].run_key]
        assert dg.materialize([asset], resources=definitions.resources, instance=instance).success
        second = tick(None)
        assert second and second[0].run_key != first[0].run_key
    assert exception_actions_sensor.default_status == dg.DefaultSensorStatus.STOPPED


# -- safety switches: nothing sent ----------------------------------------------------------------
@pytest.mark.parametrize(
    "controls", [Controls(dry_run=True), Controls(replay=True), Controls(kill_switch=True)]
)
def test_dry_run_replay_and_kill_switch_send_nothing(home: Path, controls: Controls) -> None:
    report = run(home, controls)
    assert deliveries(home) == Counter()
    tables = {
        t
        for (t,) in query(
            home, "select table_name from information_schema.tables where table_schema = 'ops'"
        )
    }
    if tables:
        assert query(home, "select count(*) from ops.customer_messages") == [(0,)]
        assert query(home, "select count(*) from ops.action_queue") == [(0,)]
    if controls.dry_run:
        assert report.would_send > 0  # it did decide
        assert (home / "outbox" / "queue.html").exists()
    if controls.kill_switch:
        assert report.mode == "kill_switch" and report.alerts


def test_as_of_behind_the_clock_is_a_replay(home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    clock = settings.now()
    assert not is_replay()
    monkeypatch.setenv("ORDERWATCH_AS_OF", (clock - timedelta(hours=6)).isoformat())
    assert is_replay()
    from orderwatch_dagster.definitions import defs

    with dg.instance_for_test() as instance:
        assert (
            defs()
            .resolve_job_def("exception_actions_job")
            .execute_in_process(instance=instance)
            .success
        )
    assert deliveries(home) == Counter()


def test_message_cap_stops_and_alerts(home: Path) -> None:
    report = run(home, Controls(max_messages=0))
    assert report.failure == "message_cap" and deliveries(home, CUSTOMER) == Counter()
    assert query(home, "select kind from ops.alerts") == [("message_cap",)]
    customer = "select count(*) from ops.customer_messages where channel in ('email', 'sms')"
    assert query(home, customer) == [(0,)]
    assert query(home, "select count(*) from ops.action_queue")[0][0] > 0  # internal work goes on
    assert deliveries(home, ("ticket_create",))  # tasks still reach the teams' tickets


def test_stale_feed_suppresses_dependent_exceptions(home: Path) -> None:
    later = settings.now() + timedelta(hours=13)  # carrier and 3PL feeds silent for 13 h
    report = run(home, now=later)
    assert {"carrier_trackers", "wms_shipments"} <= set(report.stale_feeds)
    assert "storefront_orders" not in report.stale_feeds
    # every open exception is held (and any status-ticket answer: it would state stale facts)
    assert report.held["stale_feed"] >= report.exceptions_open > 0
    assert deliveries(home) == Counter() and sum(report.actions.values()) == 0
    kinds = {k for (k,) in query(home, "select kind from ops.alerts")}
    assert kinds == {"stale_feed"}


def test_backfill_window_sends_no_old_news(home: Path) -> None:
    text = DEFAULT_POLICY.read_text().replace(
        "backfill_window_hours: 72", "backfill_window_hours: 0"
    )
    report = run(home, policy=parse_policy(text))
    assert deliveries(home, CUSTOMER) == Counter()
    assert report.held["older_than_backfill_window"] > 0
    assert report.actions["create_task"] > 0  # the teams still get their tasks


def test_human_decisions_are_honoured(home: Path) -> None:
    run(home, Controls(dry_run=True))  # nothing recorded
    report = run(home)
    assert report.actions
    rows = query(
        home, "select exception_id from ops.exception_ledger where status = 'actioned' order by 1"
    )
    target = rows[0][0]
    now = settings.now()
    with open_duckdb(home / "warehouse.duckdb") as session:
        record_human_decision(session, target, "false_alarm", by="ana", at=now)
    ((status, owner),) = query(
        home, f"select status, owner from ops.exception_ledger where exception_id = '{target}'"
    )
    assert (status, owner) == ("suppressed", "ana")
    # a later episode update must not reopen it, and the next plan holds it
    with open_duckdb(home / "warehouse.duckdb") as session:
        from orderwatch_dagster.lib.ledger import read_ledger

        ledger = read_ledger(session)
    exc = {
        "exception_id": target,
        "order_id": 1,
        "exception_type": "scan_gap",
        "customer_tier": "standard",
        "severity": "high",
        "order_value": 10.0,
        "started_at": now,
    }
    plan = plan_order(
        {"order_id": 1, "order_name": "#1", "is_open": True, "current_milestone": "in_transit"},
        [exc],
        ledger,
        [],
        POLICY,
        now,
    )
    assert plan.actions == [] and plan.message is None and plan.held == [(target, "false_alarm")]


# -- decisions (pure) ------------------------------------------------------------------------------
def _exc(
    eid: str, etype: str, severity: str = "high", started: datetime | None = None
) -> dict[str, Any]:
    return {
        "exception_id": eid,
        "order_id": 7,
        "order_name": "#7",
        "exception_type": etype,
        "customer_tier": "standard",
        "severity": severity,
        "order_value": 50.0,
        "started_at": started or datetime(2026, 10, 5, tzinfo=UTC),
    }


NOW = datetime(2026, 10, 5, 12, tzinfo=UTC)
OPEN = {"order_id": 7, "order_name": "#7", "is_open": True, "current_milestone": "in_transit"}


def test_several_exceptions_one_message_and_the_most_important_kind() -> None:
    plan = plan_order(
        OPEN, [_exc("a", "scan_gap"), _exc("b", "carrier_exception")], {}, [], POLICY, NOW
    )
    assert plan.message is not None and plan.message.template == "carrier_issue"
    assert plan.message.exception_ids == ("a", "b")


def test_no_delay_message_once_delivered_even_if_an_exception_is_still_open() -> None:
    # a late, out-of-order in-transit scan can leave a gap flag behind a delivered order
    delivered = {**OPEN, "is_open": False, "current_milestone": "delivered", "delivered_at": NOW}
    plan = plan_order(delivered, [_exc("a", "scan_gap")], {}, [], POLICY, NOW)
    assert plan.message is None and ("order", "order_closed") in plan.held


def test_one_message_per_state_and_cooldown() -> None:
    first = plan_order(OPEN, [_exc("a", "scan_gap")], {}, [], POLICY, NOW)
    assert first.message is not None
    sent = {
        "idempotency_key": first.message.idempotency_key,
        "status": "accepted",
        "channel": "email",
        "created_at": NOW - timedelta(hours=30),
    }
    again = plan_order(
        OPEN, [_exc("a", "scan_gap"), _exc("c", "predicted_late")], {}, [sent], POLICY, NOW
    )
    assert again.message is None and ("order", "already_accepted") in again.held
    # a new state (a carrier exception) inside the e-mail cooldown waits
    recent = {**sent, "created_at": NOW - timedelta(hours=2)}
    later = plan_order(
        OPEN, [_exc("a", "scan_gap"), _exc("b", "carrier_exception")], {}, [recent], POLICY, NOW
    )
    assert later.message is None and ("order", "cooldown:email") in later.held


def test_acknowledged_keeps_customer_updates_but_no_new_tasks() -> None:
    ledger = {"a": {"human_decision": "acknowledged", "status": "actioned"}}
    plan = plan_order(OPEN, [_exc("a", "scan_gap")], ledger, [], POLICY, NOW)
    assert plan.actions == [] and plan.message is not None


# -- templates and packets ------------------------------------------------------------
def test_template_injection_is_inert() -> None:
    facts = {
        "first_name": EVIL,
        "order_name": "#1",
        "status_text": "on its way",
        "carrier": EVIL,
        "promised_date": "2026-10-08",
        "what_happened": "x.",
        "what_we_do": "y.",
        "address_line": EVIL,
        "last_scan_date": None,
        "est_delivery_date": "2026-10-09",
        "tracking_url": EVIL,  # never trusted either (lib/packets.py also checks the link)
        "shop_name": "Shop",
    }
    for template in ("delay_notice", "carrier_issue", "address_check", "lost_parcel"):
        for channel in ("email", "sms"):
            rendered = render_message(template, channel, facts)
            for part in (rendered.subject, rendered.text, rendered.html):
                if part:
                    assert "49" not in part  # data is never rendered as template code
            # plain text is not escaped (lib/templating.py): the name comes out as written
            assert channel == "sms" or EVIL in rendered.text  # SMS carry no name
            assert "<script>" not in (rendered.html or "")
    html = render_message("address_check", "email", facts).html or ""
    assert "{{7*7}}&lt;script&gt;alert(1)&lt;/script&gt;" in html
    ctx = OrderContext(
        orders={1: {"order_id": 1, "order_name": EVIL}},
        contacts={1: Contact(first_name=EVIL, address=EVIL)},
    )
    packet = build_packet(ctx, 1, [], [], [], NOW, NOW)
    page = render_page("packet", p=packet)
    assert "<script>" not in page and "49" not in page.replace("2026", "")


def test_customer_messages_state_facts_and_never_compensation() -> None:
    order = {
        "order_id": 1,
        "order_name": "#1001",
        "current_milestone": "in_transit",
        "carrier": "UPS",
        "promised_deliver_by": NOW,
        "last_scan_at": NOW,
    }
    contact = Contact(first_name="Lena", email="lena@example.com", address="1 Elm St")
    words = ("refund", "credit", "discount", "voucher", "free", "compensat", "sorry for")
    for etype in ("scan_gap", "lost", "address_issue", "carrier_exception", "promise_missed"):
        facts = message_facts(order, contact, etype, "Shop")
        for template in ("delay_notice", "carrier_issue", "address_check", "lost_parcel"):
            for channel in ("email", "sms"):
                r = render_message(template, channel, facts)
                text = " ".join(p for p in (r.subject, r.text, r.html) if p).lower()
                assert not any(w in text for w in words), (template, channel)
                assert "#1001" in text


def test_sink_routes_to_an_enabled_sender_only(tmp_path: Path) -> None:
    sink = ActionSink(outbox=str(tmp_path), **senders_from_env({}))
    assert sink.live_channels() == []
    result = sink.send(Outbound("k1", "email", "a@example.com", "hi", subject="s"))
    # the outbox reached nobody: its own outcome, never counted as accepted (lib/summary.py)
    assert result.outcome == "outbox" and (tmp_path / "messages/email/k1.json").exists()


# -- issue 11: WISMO deflection and consent ---------------------------------------------------
def test_each_open_status_ticket_gets_exactly_one_answer() -> None:
    tickets = [
        {"ticket_id": 1, "status": "open", "is_wismo": True, "order_id": 10},  # on track
        {"ticket_id": 2, "status": "new", "is_wismo": True, "order_id": 11},  # at risk
        {"ticket_id": 3, "status": "solved", "is_wismo": True, "order_id": 10},
        {"ticket_id": 4, "status": "open", "is_wismo": False, "order_id": 10},
        {"ticket_id": 5, "status": "open", "is_wismo": True, "order_id": 12},  # delivered
    ]
    orders = {
        10: {"current_milestone": "in_transit"},
        11: {"current_milestone": "released_to_warehouse"},
        12: {"current_milestone": "delivered"},
    }
    answers = plan_tickets(tickets, orders, {11}, {})
    got = {(a.ticket_id, a.channel, a.ticket_status) for a in answers}
    assert got == {
        (1, "ticket_reply", "pending"),
        (2, "ticket_note", None),
        (5, "ticket_reply", "solved"),
    }
    sent = {a.idempotency_key: {"status": "accepted", "template": a.template} for a in answers}
    assert plan_tickets(tickets, orders, {11}, sent) == []


def test_an_opt_out_stops_the_channel_for_that_customer(home: Path) -> None:
    def opted_out(message: Outbound) -> DeliveryResult:
        return DeliveryResult(Outcome.REJECTED, detail="21610", follow_up=FollowUp.OPT_OUT)

    with open_duckdb(home / "warehouse.duckdb") as session:
        report = run_actions(
            session, opted_out, Controls(), POLICY, settings.now(), "t1", home / "outbox", print
        )
    # the ledger keeps recipients masked (two addresses can share a mask): count the orders'
    # own e-mail addresses (the policy sends no SMS)
    assert not query(home, "select 1 from ops.customer_messages where channel = 'sms'")
    refused = query(
        home,
        "select count(distinct o.email) from ops.customer_messages m"
        " join staging.stg_storefront__orders o on o.order_id = m.order_id and o.is_latest_version"
        " where m.status = 'rejected' and m.channel = 'email'",
    )
    assert report.messages["rejected"] > 0 and refused[0][0] > 0
    blocked = query(
        home,
        "select count(*) from ops.contact_blocks where reason = 'opt_out' and channel = 'email'",
    )
    assert blocked == refused  # one block per customer address; a task ticket blocks nothing
    # a new state for the same customers would need a new message: the block holds it
    with duckdb.connect(str(home / "warehouse.duckdb")) as con:
        con.execute("delete from ops.customer_messages")
    report = run(home)
    assert report.held["opted_out"] > 0 and deliveries(home, CUSTOMER) == Counter()


def test_a_recovered_order_closes_the_loop(home: Path) -> None:
    run(home)
    tagged = query(
        home,
        "select order_id from ops.customer_messages where channel = 'order_tags'"
        " and template = 'tag_delayed' and status = 'outbox' order by 1 limit 1",
    )
    assert tagged, "a notified order gets orderwatch:delayed"
    order_id = tagged[0][0]
    with duckdb.connect(str(home / "warehouse.duckdb")) as con:  # the order recovered
        con.execute(
            "update marts.order_exceptions set ended_at = as_of where order_id = ?", [order_id]
        )
    report = run(home)
    assert report.resolved > 0
    statuses = {
        s
        for (s,) in query(
            home, f"select status from ops.exception_ledger where order_id = {order_id}"
        )
    }
    assert statuses == {"resolved"}
    queue = {
        s
        for (s,) in query(home, f"select status from ops.action_queue where order_id = {order_id}")
    }
    assert queue <= {"done"}
    untag = query(
        home,
        "select count(*) from ops.customer_messages where channel = 'order_tags'"
        f" and template = 'untag_delayed' and order_id = {order_id}",
    )
    assert untag == [(1,)]
    page = (home / "outbox" / "queue.html").read_text()
    assert f"order-{order_id}.html" not in page.split('id="queue"')[1]
    run(home)  # nothing more to do
    assert query(
        home,
        "select count(*) from ops.customer_messages where channel = 'order_tags'"
        f" and order_id = {order_id}",
    ) == [(2,)]


def test_the_channel_falls_back_to_what_the_customer_has(home: Path) -> None:
    # the policy asks for SMS; the demo world's customers have only an e-mail address
    text = DEFAULT_POLICY.read_text().replace("channel: email", "channel: sms")
    quiet_checked: list[str] = []

    def quiet(now: datetime, zone: str) -> datetime | None:
        quiet_checked.append(zone)
        return now  # always quiet: no SMS may go out

    report = run(home, Controls(quiet_until=quiet), policy=parse_policy(text))
    channels = {
        c
        for (c,) in query(
            home,
            "select distinct channel from ops.customer_messages where channel in ('email', 'sms')",
        )
    }
    assert channels == {"email"} and report.messages["outbox"] > 0
    assert quiet_checked == []  # quiet hours apply to SMS only
