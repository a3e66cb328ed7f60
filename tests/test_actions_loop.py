"""Review findings on the action job (issue 11): no "on track" against the order state, the
local outbox never counted as sent, and the customers' own opt-out paths (an unsubscribe
link's key, a STOP reply to Twilio) reaching ops.contact_blocks. On a copy of the demo world
(tests/conftest.py `demo_copy`) where a run is needed."""

from __future__ import annotations

from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import duckdb
import pytest
from test_actions import query

from orderwatch_dagster.cli import main
from orderwatch_dagster.defs.actions.resources import OutboxSender
from orderwatch_dagster.lib import ledger as lg
from orderwatch_dagster.lib import settings
from orderwatch_dagster.lib.action_run import Controls, RunReport, run_actions
from orderwatch_dagster.lib.policy import load_policy
from orderwatch_dagster.lib.warehouse import open_duckdb
from orderwatch_dagster.lib.wismo import plan_tickets

POLICY = load_policy()
NOW = datetime(2026, 10, 10, 12, tzinfo=UTC)


def run(home: Path) -> RunReport:
    with open_duckdb(home / "warehouse.duckdb") as session:
        return run_actions(
            session,
            OutboxSender(home / "outbox").send,
            Controls(),
            POLICY,
            settings.now(),
            "test",
            home / "outbox",
            lambda _: None,
        )


# -- 1. no "on track" that the order state contradicts ------------------------------------------
def _order(milestone: str, promised_in_h: float, **extra: Any) -> dict[str, Any]:
    return {
        "current_milestone": milestone,
        "last_event": milestone,
        "promised_deliver_by": NOW + timedelta(hours=promised_in_h),
        "delivered_at": None,
        "carrier_est_delivery_at": None,
        "as_of": NOW,
        **extra,
    }


def test_a_status_question_is_never_answered_on_track_against_the_order_state() -> None:
    orders = {
        1: _order("in_transit", 48),  # on track
        2: _order("return_to_sender", 48),  # the carrier sends it back
        3: _order("in_transit", 48, last_event="return_to_sender"),  # the carrier's RTS scan
        4: _order("in_transit", -5),  # past its promise, no exception open (held, or none)
        5: _order("in_transit", 24, carrier_est_delivery_at=NOW + timedelta(hours=60)),
        6: _order("delivered", -5, delivered_at=NOW - timedelta(hours=1)),  # late, delivered
    }
    tickets = [
        {"ticket_id": 100 + oid, "status": "open", "is_wismo": True, "order_id": oid}
        for oid in orders
    ]
    got = {
        a.order_id: (a.channel, a.ticket_status) for a in plan_tickets(tickets, orders, set(), {})
    }
    assert got == {
        1: ("ticket_reply", "pending"),
        2: ("ticket_note", None),
        3: ("ticket_note", None),
        4: ("ticket_note", None),
        5: ("ticket_note", None),
        6: ("ticket_reply", "solved"),  # it arrived: the reply says delivered, not on track
    }


# -- 2. the carrier's estimate and tracking link, only as facts ---------------------------------
def test_only_a_current_estimate_and_a_plain_https_link_reach_a_customer() -> None:
    from orderwatch_dagster.lib.packets import SAFE_LINK, delivery_facts

    assert SAFE_LINK.match("https://track.easypost.com/djE6dHJrXzEyMw")
    # a carrier's query string is fine: text parts are not escaped (lib/templating.py)
    assert SAFE_LINK.match("https://www.ups.com/track?tracknum=1Z2345&loc=en_US")
    for bad in (
        "http://track.example.com/1",  # not https
        "javascript:alert(1)",
        'https://track.example.com/"><script>',
        "https://track.example.com/1?a=1&b=<x>",
        "https://track.example.com/a b",
        "https://user@evil.example/x",  # the host is the part after `//`, plain
        "https://track.example.com/x'onmouseover=1",
    ):
        assert not SAFE_LINK.match(bad), bad
    base = _order("in_transit", 48, tracking_url="https://track.easypost.com/x")
    ahead = {**base, "carrier_est_delivery_at": NOW + timedelta(days=1)}
    assert delivery_facts(ahead) == {
        "est_delivery_date": "2026-10-11",
        "tracking_url": "https://track.easypost.com/x",
    }
    behind = {**base, "carrier_est_delivery_at": NOW - timedelta(days=1)}  # no longer its word
    assert delivery_facts(behind)["est_delivery_date"] is None
    arrived = {**ahead, "current_milestone": "delivered", "delivered_at": NOW}
    assert delivery_facts(arrived)["est_delivery_date"] is None
    assert delivery_facts({})["tracking_url"] is None


def test_customer_facing_days_are_the_customers_own() -> None:
    """The promise is the end of the promised day where the customer is (03:59:59Z the next
    UTC day in New York); a carrier's date-only estimate arrives as midnight UTC (EasyPost) and
    is that day everywhere; a real moment is read in the customer's zone."""
    from orderwatch_dagster.lib.packets import Contact, delivery_facts, message_facts

    promise = datetime(2026, 10, 14, 3, 59, 59, tzinfo=UTC)  # end of 13 October, EDT
    order = {
        **_order("in_transit", 48),
        "order_name": "#1001",
        "promised_deliver_by": promise,
        "last_scan_at": datetime(2026, 10, 10, 2, 30, tzinfo=UTC),  # 9 October, 19:30 PDT
        "carrier_est_delivery_at": datetime(2026, 10, 12, tzinfo=UTC),  # a date, no time
    }
    facts = message_facts(order, Contact(), "ship_late", "Shop", "America/New_York")
    assert facts["promised_date"] == "2026-10-13"
    assert facts["est_delivery_date"] == "2026-10-12"
    west = message_facts(order, Contact(), "ship_late", "Shop", "America/Los_Angeles")
    assert west["last_scan_date"] == "2026-10-09" and west["est_delivery_date"] == "2026-10-12"
    timed = {**order, "carrier_est_delivery_at": datetime(2026, 10, 12, 2, tzinfo=UTC)}
    assert delivery_facts(timed, "America/Los_Angeles")["est_delivery_date"] == "2026-10-11"
    assert message_facts(order, Contact(), "ship_late", "Shop")["promised_date"] == "2026-10-14"


# -- 6. the outbox is no delivery ------------------------------------------------------------------
def test_the_outbox_is_counted_apart_and_never_as_sent(home_copy: Path) -> None:
    from orderwatch_dagster.lib.summary import action_summary

    report = run(home_copy)
    statuses = dict(
        query(home_copy, "select status, count(*) from ops.customer_messages group by 1")
    )
    assert statuses.get("outbox", 0) > 0 and "accepted" not in statuses, statuses
    assert report.messages["outbox"] == statuses["outbox"] and not report.messages["accepted"]
    with duckdb.connect(str(home_copy / "warehouse.duckdb"), read_only=True) as con:
        lines = action_summary(con)
    text = "\n".join(lines)
    assert (
        f"written to the local outbox (no real sender on, reached nobody): {statuses['outbox']}"
        in text
    )
    assert "sent through a provider: 0" in text
    assert "status tickets avoided ≈" not in text  # no estimate resting on unsent messages
    before = Counter(
        r[0] for r in query(home_copy, "select idempotency_key from ops.customer_messages")
    )
    run(home_copy)  # the outbox is done for the ledger: nothing written twice
    after = Counter(
        r[0] for r in query(home_copy, "select idempotency_key from ops.customer_messages")
    )
    assert after == before
    log = (home_copy / "outbox" / "deliveries.jsonl").read_text().splitlines()
    assert len(log) == sum(statuses.values())


@pytest.fixture(name="home_copy")
def _home_copy(demo_copy: Path) -> Path:
    return demo_copy  # tests/conftest.py


# -- 4. the customers' own opt-out paths ---------------------------------------------------
def test_an_unsubscribe_keys_opt_out_holds_that_customers_email(home_copy: Path) -> None:
    run(home_copy)
    emails = [
        e
        for (e,) in query(
            home_copy,
            "select distinct o.email from ops.customer_messages m join"
            " staging.stg_storefront__orders o on o.order_id = m.order_id and o.is_latest_version"
            " where m.channel = 'email' order by 1",
        )
    ]
    assert len(emails) >= 2
    # a key derived from the address (what anyone could compute) or a malformed one: refused
    forged = lg.block_key("email", emails[0])
    assert main(["opt-out", "--channel", "email", "--key", forged]) == 2
    assert main(["opt-out", "--channel", "email", "--key", "x' or 1=1 --"]) == 2
    assert not query(home_copy, "select 1 from ops.contact_blocks")
    # the link's key (senders/smtp.py List-Unsubscribe) for the first, an address for the rest
    ((token,),) = query(
        home_copy,
        f"select token from ops.unsubscribe_tokens where block_key = '{forged}'",
    )
    assert lg.UNSUBSCRIBE_TOKEN.match(token) and not token.startswith("-")
    assert main(["opt-out", "--channel", "sms", "--key", token]) == 2  # an e-mail's key
    assert main(["opt-out", "--channel", "email", "--key", token]) == 0
    for email in emails[1:]:
        assert main(["opt-out", "--channel", "email", "--recipient", email]) == 0
    blocks = query(home_copy, "select channel, reason from ops.contact_blocks")
    assert Counter(blocks) == {("email", "opt_out"): len(emails)}
    with duckdb.connect(str(home_copy / "warehouse.duckdb")) as con:
        con.execute("delete from ops.customer_messages")  # as if each state were new
    log = home_copy / "outbox" / "deliveries.jsonl"
    sent_before = len(log.read_text().splitlines())
    report = run(home_copy)
    assert report.held["opted_out"] > 0
    assert not query(home_copy, "select 1 from ops.customer_messages where channel = 'email'")
    new = log.read_text().splitlines()[sent_before:]
    assert not any('"channel": "email"' in line for line in new)


def test_a_stop_reply_to_twilio_blocks_the_number_and_start_lifts_it(tmp_path: Path) -> None:
    def form(**fields: str) -> str:  # Twilio's incoming-message webhook body
        base = {"MessageSid": "SM1", "AccountSid": "AC1", "To": "+15005550006"}
        return urlencode({**base, **fields})

    inbound = tmp_path / "inbound.txt"
    inbound.write_text(
        "\n".join(
            [
                form(From="+15551230001", Body="Stop"),  # default keyword, any case
                form(From="+15551230002", Body="please stop", OptOutType="STOP"),
                form(From="+15551230003", Body="stop texting me maybe"),  # not a keyword
                form(From="+15551230004", Body="UNSUBSCRIBE"),
                form(From="+15551230006", Body="stop  all"),  # spaced STOPALL: blocked
                form(From="+15551230007", Body="STOP"),
            ]
        )
    )
    assert main(["opt-out", "--twilio-inbound", str(inbound)]) == 0
    home = Path(str(settings.home()))
    with open_duckdb(home / "warehouse.duckdb") as session:
        blocks = lg.read_blocks(session)
        # a number that cannot receive SMS stays blocked whatever it replies
        lg.write_block(session, "sms", "+15551230005", "***05", "invalid_recipient", NOW)
    expected = {lg.block_key("sms", f"+1555123000{i}") for i in (1, 2, 4, 6, 7)}
    assert blocks == expected
    inbound.write_text(
        "\n".join(
            [
                form(From="+15551230001", Body="START", OptOutType="START"),
                form(From="+15551230005", Body="START", OptOutType="START"),
                # no OptOutType: an opt-in word is not taken as one (the block stays)
                form(From="+15551230007", Body="START"),
            ]
        )
    )
    assert main(["opt-out", "--twilio-inbound", str(inbound)]) == 0
    with open_duckdb(home / "warehouse.duckdb") as session:
        after = lg.read_blocks(session)
    assert after == (expected - {lg.block_key("sms", "+15551230001")}) | {
        lg.block_key("sms", "+15551230005")
    }


def test_a_key_issued_before_hex_tokens_that_starts_with_a_dash_is_accepted(
    tmp_path: Path,
) -> None:
    # token_urlsafe keys (issued before lib/ledger.py switched to token_hex) may begin with "-"
    legacy = "-" + "Ab_9" * 7 + "xyz"
    assert lg.UNSUBSCRIBE_TOKEN.match(legacy)
    home = Path(str(settings.home()))
    block = lg.block_key("email", "someone@example.com")
    with open_duckdb(home / "warehouse.duckdb") as session:
        lg.ensure_ops(session)
        session.execute(
            "insert into ops.unsubscribe_tokens (token, channel, block_key, created_at)"
            " values (?, 'email', ?, ?)",
            [legacy, block, NOW],
        )
        fresh = lg.unsubscribe_token(session, "email", "other@example.com", NOW)
    assert len(fresh) == 32 and lg.UNSUBSCRIBE_TOKEN.match(fresh) and fresh[0] != "-"
    assert main(["opt-out", "--channel", "email", f"--key={legacy}"]) == 0
    with open_duckdb(home / "warehouse.duckdb") as session:
        assert lg.read_blocks(session) == {block}


# -- plain-text parts are not HTML-escaped; HTML parts are ----------------------------------
def test_a_name_with_an_apostrophe_and_a_query_link_reach_each_part_as_written() -> None:
    from orderwatch_dagster.lib.templating import render_message, render_text

    link = "https://www.ups.com/track?tracknum=1Z2345&loc=en_US"
    facts = {
        "first_name": "Siobhán O'Neil",
        "order_name": "#1001",
        "status_text": "on its way with the carrier",
        "carrier": "UPS",
        "promised_date": "2026-10-12",
        "what_happened": "the carrier reported a delay in transit.",
        "what_we_do": "we are following up with the carrier.",
        "last_scan_date": "2026-10-09",
        "est_delivery_date": "2026-10-13",
        "tracking_url": link,
        "shop_name": "Barnes & Daughters",
        "delivered": False,
    }
    email = render_message("carrier_issue", "email", facts)
    sms = render_message("delay_notice", "sms", facts)
    reply = render_text("ticket/wismo_reply.j2", **facts)
    for text in (email.text, sms.text, reply):
        assert "&#39;" not in text and "&amp;" not in text, text
        assert link in text and "Barnes & Daughters" in text
    assert "Siobhán O'Neil" in email.text and "Siobhán O'Neil" in reply
    html = email.html or ""
    assert "Siobhán O&#39;Neil" in html and "Siobhán O'Neil" not in html
    assert f'href="{link.replace("&", "&amp;")}"' in html  # HTML's own escaping of `&`
    assert "Barnes &amp; Daughters" in html


def test_injection_stays_inert_in_the_unescaped_text_parts() -> None:
    from orderwatch_dagster.lib.templating import render_message, render_text

    evil = "{{7*7}}{% raw %}<script>alert(1)</script>"
    facts = {
        "first_name": evil,
        "order_name": "#1",
        "status_text": "on its way",
        "carrier": evil,
        "promised_date": "2026-10-08",
        "what_happened": "x.",
        "what_we_do": "y.",
        "address_line": evil,
        "last_scan_date": None,
        "est_delivery_date": None,
        "tracking_url": None,
        "shop_name": "Shop",
        "delivered": False,
    }
    for template in ("delay_notice", "carrier_issue", "address_check", "lost_parcel"):
        for channel in ("email", "sms"):
            r = render_message(template, channel, facts)
            assert "49" not in r.text  # data, never template code
            assert channel == "sms" or evil in r.text  # SMS carry no name
            if r.html:
                assert "<script>" not in r.html and "{{7*7}}{% raw %}&lt;script&gt;" in r.html
    reply = render_text("ticket/wismo_reply.j2", **facts)
    assert evil in reply and "49" not in reply


# -- the recovery follow-up: never "back on track" on an ended order, never over an agent ------
def test_a_recovery_follow_up_respects_the_order_the_agent_and_the_ticket_channel() -> None:
    from orderwatch_dagster.lib.ledger import key
    from orderwatch_dagster.lib.wismo import plan_recoveries

    orders = {
        1: _order("in_transit", 48),  # recovered, new and unassigned: the public reply
        2: _order("cancelled", 48, is_cancelled=True),
        3: _order("return_to_sender", 48),
        4: _order("delivered", -5, delivered_at=NOW - timedelta(hours=1)),
        5: _order("in_transit", 48),  # an agent compensated the customer
        6: _order("in_transit", 48),  # the ticket is pending: an agent is on it
        7: _order("in_transit", 48),  # assigned
        8: _order("in_transit", 48),  # the at-risk note only reached the outbox
    }
    status = {6: "pending"}
    tickets = [
        {
            "ticket_id": 100 + oid,
            "status": status.get(oid, "new"),
            "is_wismo": True,
            "order_id": oid,
            "assignee_id": 900 if oid == 7 else None,
        }
        for oid in orders
    ]
    note = {"template": "wismo_note", "status": "accepted"}
    messages = {key(100 + oid, "wismo"): note for oid in orders}
    messages[key(108, "wismo")] = {**note, "status": "outbox"}
    got = {
        a.order_id: (a.channel, a.ticket_status)
        for a in plan_recoveries(
            tickets,
            orders,
            set(),
            set(orders),
            messages,
            "public_reply",
            NOW,
            compensated={5},
            ticket_channel_live=True,
        )
    }
    assert got == {
        1: ("ticket_reply", "pending"),
        4: ("ticket_reply", "solved"),  # says delivered (templates/ticket/wismo_recovered.j2)
        6: ("ticket_note", None),
        7: ("ticket_note", None),
    }
    # the demo (no sender live): the outbox note is the one there is
    demo = plan_recoveries(tickets, orders, set(), set(orders), messages, "public_reply", NOW)
    assert 8 in {a.order_id for a in demo}


def test_the_policy_decides_what_an_answered_on_track_ticket_is_set_to() -> None:
    from orderwatch_dagster.lib.policy import DEFAULT_POLICY, parse_policy

    text = DEFAULT_POLICY.read_text()
    assert "on_track_reply_status: pending" in text and POLICY.on_track_reply_status == "pending"
    solved = parse_policy(
        text.replace("on_track_reply_status: pending", "on_track_reply_status: solved")
    )
    orders = {1: _order("in_transit", 48), 2: _order("in_transit", -5)}
    tickets = [
        {"ticket_id": 100 + oid, "status": "open", "is_wismo": True, "order_id": oid}
        for oid in orders
    ]
    got = plan_tickets(tickets, orders, set(), {}, NOW, solved.on_track_reply_status)
    assert {a.order_id: a.ticket_status for a in got} == {1: "solved", 2: None}  # 2: at risk
    with pytest.raises(Exception, match="on_track_reply_status"):
        parse_policy(
            text.replace("on_track_reply_status: pending", "on_track_reply_status: closed")
        )


def test_a_ticket_gets_a_fresh_note_each_time_its_order_goes_at_risk_again() -> None:
    """Risk → note → recovery → follow-up → risk again: a second note (and later a second
    follow-up), never a second on-track reply; an on-track reply then a risk: the note."""
    from orderwatch_dagster.lib.ledger import key
    from orderwatch_dagster.lib.wismo import answer_key, plan_recoveries

    ticket = {"ticket_id": 100, "status": "open", "is_wismo": True, "order_id": 1}
    on_track = {1: _order("in_transit", 48)}
    at_risk = {1: ["open exception ship_late (high)"]}
    messages: dict[str, dict[str, Any]] = {}

    def step(risky: bool) -> list[Any]:
        answers = plan_tickets([ticket], on_track, at_risk if risky else {}, messages, NOW)
        if not risky and not answers:
            answers = plan_recoveries([ticket], on_track, set(), {1}, messages, "public_reply", NOW)
        for a in answers:  # what the run records once the sink accepted it
            messages[a.idempotency_key] = {"template": a.template, "status": "accepted"}
        return [(a.template, a.idempotency_key) for a in answers]

    assert step(True) == [("wismo_note", key(100, "wismo"))]
    assert step(True) == []  # the same risk: answered
    assert step(False) == [("wismo_recovered", key(100, "wismo_recovered"))]
    assert step(False) == []  # recovered and told: no on-track reply on top
    assert step(True) == [("wismo_note", answer_key(100, "wismo", 1))]
    assert step(True) == []
    assert step(False) == [("wismo_recovered", answer_key(100, "wismo_recovered", 1))]
    assert step(False) == []
    assert len(messages) == 4 and len(set(messages)) == 4

    messages.clear()
    assert [t for t, _ in step(False)] == ["wismo_reply"]
    assert step(False) == []  # one on-track reply, ever
    assert step(True) == [("wismo_note", answer_key(100, "wismo", 1))]
    # a note that is still waiting for its provider keeps its cycle open: no third answer
    messages[answer_key(100, "wismo", 1)]["status"] = "uncertain"
    assert step(True) == []


def test_one_task_sets_the_status_tickets_group_whatever_the_runs() -> None:
    """Several tasks on an order with a status ticket: the most severe one going out sets the
    group; an equal or lower one later does not; a refused one that was to set it still does
    when resent (a tag-only sibling set nothing); a more severe one takes the ticket over."""
    from types import SimpleNamespace

    from orderwatch_dagster.lib.action_dispatch import TAG_ONLY, _assigning_tasks, delivery_key

    def task(key: str, severity: str) -> dict[str, Any]:
        return {
            "action_key": key,
            "kind": "create_task",
            "order_id": 1,
            "status": "open",
            "severity": severity,
        }

    def note(key: str, status: str, assigned: bool, **extra: Any) -> dict[str, dict[str, Any]]:
        state_key = "create_task:warehouse" + ("" if assigned else TAG_ONLY)
        row = {"status": status, "state_key": state_key, "recipient": "77", **extra}
        return {delivery_key(key, "ticket_create"): row}

    tickets = {1: 77}

    def assigning(queue: list[dict[str, Any]], messages: dict[str, Any]) -> set[str]:
        run = SimpleNamespace(queue={q["action_key"]: q for q in queue}, messages=messages)
        return _assigning_tasks(run, tickets)

    a, b = task("a", "high"), task("b", "high")
    assert assigning([b, a], {}) == {"a"}  # one of the most severe: the first by key
    assert assigning([a, b, task("c", "low")], note("a", "accepted", True)) == set()
    # a was to set the group but was refused; b went out tag-only: a's resend sets it
    refused = note("a", "rejected", True, follow_up="resend_once", resend_key="a:resend")
    assert assigning([a, b], {**refused, **note("b", "accepted", False)}) == {"a"}
    # a refusal recorded before resend keys is never resent: it cannot hold the group back
    legacy = note("a", "rejected", True, follow_up="resend_once")
    assert assigning([a, b], legacy) == {"b"}
    # a more severe task takes the ticket over; a less severe one never
    done = note("a", "accepted", True)
    assert assigning([a, task("d", "critical")], done) == {"d"}
    assert assigning([a, task("e", "medium")], done) == set()
    assert assigning([task("f", "low")], note("b", "accepted", False)) == {"f"}
    # a note from before tag-only notes existed set the group: it keeps its weight
    legacy_note = {
        delivery_key("a", "ticket_create"): {
            "status": "accepted",
            "state_key": "create_task:warehouse",
            "recipient": "77",
        }
    }
    assert assigning([a, b], legacy_note) == set()


def test_an_sms_opt_out_by_hand_matches_the_number_however_it_is_written(tmp_path: Path) -> None:
    assert main(["opt-out", "--channel", "sms", "--recipient", "+1 (555) 123-0009"]) == 0
    assert main(["opt-out", "--channel", "sms", "--recipient", "555-0009"]) == 2  # not E.164
    home = Path(str(settings.home()))
    with open_duckdb(home / "warehouse.duckdb") as session:
        blocks = lg.read_blocks(session)
    assert lg.block_key("sms", "+15551230009") in blocks  # how the run sees the number


def test_a_live_store_is_tagged_only_for_messages_a_provider_accepted() -> None:
    from orderwatch_dagster.lib.action_dispatch import notified_orders

    messages = [
        {"order_id": 1, "channel": "email", "status": "accepted"},
        {"order_id": 2, "channel": "email", "status": "outbox"},  # reached nobody
        {"order_id": 3, "channel": "sms", "status": "not_accepted"},
        {"order_id": 4, "channel": "ticket_note", "status": "accepted"},
    ]
    assert notified_orders(messages, tags_live=True) == {1}
    assert notified_orders(messages, tags_live=False) == {1, 2}  # the demo: all in the outbox
