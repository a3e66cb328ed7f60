"""SMS consent and timing end to end: the action run's customer texts go through the real Twilio
sender to a local HTTP server (tests/http_server.py), each request checked against Twilio's
OpenAPI description.

- Twilio's error 21610 (the customer replied STOP) blocks the number after one request: the
  same customer's other orders in that run, and every later run, send it nothing.
- Quiet hours (the policy's `messages.quiet_hours`, in the customer's own time zone from the
  shipping province) hold a text without a trace in the ledger; the first run outside them
  sends it, once.

The world is a copy of the demo world (tests/conftest.py `demo_copy`) whose customers are given
phone numbers and one of three provinces, and whose policy texts instead of e-mailing.
"""

from __future__ import annotations

import json
from collections import Counter
from datetime import datetime, time, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import duckdb
import pytest
from http_server import RecordedRequest, Reply, ScriptedHTTPServer
from test_senders_http import ACCOUNT_SID, MESSAGES, _check_twilio, _vendor

from orderwatch_dagster.defs.actions.resources import ActionSink
from orderwatch_dagster.defs.actions.senders import TwilioSmsSender, senders_from_env
from orderwatch_dagster.defs.actions.senders.consent import quiet_rule
from orderwatch_dagster.lib import ledger as lg
from orderwatch_dagster.lib import settings
from orderwatch_dagster.lib.action_run import Controls, RunReport, run_actions
from orderwatch_dagster.lib.policy import DEFAULT_POLICY, Policy, parse_policy
from orderwatch_dagster.lib.warehouse import open_duckdb

STOPPED = "+15557770000"  # every CA customer's number (one household); it replied STOP
ZONES = {"NY": "America/New_York", "IL": "America/Chicago", "CA": "America/Los_Angeles"}


@pytest.fixture(name="home")
def _home(demo_copy: Path) -> Path:
    """NY, IL and CA customers in turn; NY and IL each their own number, CA all `STOPPED`."""
    db = demo_copy / "warehouse.duckdb"
    with duckdb.connect(str(db)) as con:
        rows = con.execute("select rowid, _key, payload from raw.storefront_orders").fetchall()
        for rowid, key, payload in rows:
            data = json.loads(payload)
            province = tuple(ZONES)[int(key) % 3]
            ship = dict(data.get("shipping_address") or {})
            ship["province_code"] = province
            # +1555 1… in New York, +1555 2… in Illinois; one number per order (all versions)
            ship["phone"] = (
                STOPPED
                if province == "CA"
                else f"+1555{1 + (province == 'IL')}{int(key) % 1_000_000:06d}"
            )
            data["shipping_address"] = ship
            con.execute(
                "update raw.storefront_orders set payload = ? where rowid = ?",
                [json.dumps(data), rowid],
            )
            # the zone the promise is made in (dbt_project/macros/promises.sql), as dbt would
            con.execute(
                "update marts.order_state set destination_time_zone = ? where order_id = ?",
                [ZONES[province], int(key)],
            )
    return demo_copy


@pytest.fixture(name="server")
def _server() -> Any:
    with ScriptedHTTPServer() as server:
        yield server


def _twilio(request: RecordedRequest) -> Reply:
    form = request.form()
    if form["To"] == [STOPPED]:
        error = {
            "code": 21610,
            "message": "Attempt to send to unsubscribed recipient",
            "more_info": "https://www.twilio.com/docs/errors/21610",
            "status": 400,
        }
        return Reply(400, error)
    return Reply(201, {**_vendor("twilio/message_1.json"), "to": form["To"][0]})


def _policy(start: time, end: time) -> Policy:
    text = DEFAULT_POLICY.read_text().replace("channel: email", "channel: sms")
    default = 'quiet_hours: {start: "21:00", end: "08:00"}'
    assert default in text
    window = f'quiet_hours: {{start: "{start:%H:%M}", end: "{end:%H:%M}"}}'
    return parse_policy(text.replace(default, window))


def run(home: Path, server: ScriptedHTTPServer, policy: Policy, now: datetime) -> RunReport:
    senders = senders_from_env({})
    senders["sms_sender"] = TwilioSmsSender(
        enabled=True,
        base_url=server.url,
        account_sid=ACCOUNT_SID,
        auth_token="tw-token",
        from_number="+15005550006",
        backoff_factor=0.0,
        read_timeout_s=1.5,
        connect_timeout_s=2.0,
    )
    sink = ActionSink(outbox=str(home / "outbox"), **senders)
    controls = Controls(
        quiet_until=quiet_rule(policy.quiet_hours),  # as the job builds it (defs/actions/jobs.py)
        live_channels=frozenset(sink.live_channels()),
    )
    with open_duckdb(home / "warehouse.duckdb") as session:
        return run_actions(
            session, sink.send, controls, policy, now, "test", home / "outbox", lambda _: None
        )


def texts(server: ScriptedHTTPServer) -> Counter[str]:
    return Counter(r.form()["To"][0] for r in server.requests_to(MESSAGES))


def province_of(number: str) -> str:
    return "CA" if number == STOPPED else {"1": "NY", "2": "IL"}[number[5]]


def test_a_stop_reply_blocks_the_number_and_quiet_hours_hold_a_text_until_they_end(
    home: Path, server: ScriptedHTTPServer
) -> None:
    server.route(MESSAGES, _twilio)
    now = settings.now()
    # a window around New York's local time now: NY customers are in quiet hours; Chicago
    # (an hour behind) and Los Angeles (three) are not; 35 minutes later nobody is in them
    local = now.astimezone(ZoneInfo(ZONES["NY"]))
    start = (local - timedelta(minutes=15)).time().replace(second=0, microsecond=0)
    end = (local + timedelta(minutes=30)).time().replace(second=0, microsecond=0)
    policy = _policy(start, end)
    quiet = quiet_rule(policy.quiet_hours)
    assert quiet(now, ZONES["NY"]) is not None
    assert quiet(now, ZONES["IL"]) is None and quiet(now, ZONES["CA"]) is None
    later = now + timedelta(minutes=35)
    assert all(quiet(later, zone) is None for zone in ZONES.values())

    first = run(home, server, policy, now)
    sent = texts(server)
    by_province = Counter(province_of(n) for n in sent.elements())
    assert sent[STOPPED] == 1, sent  # one request, answered 21610
    assert by_province["NY"] == 0 and by_province["IL"] > 0, by_province
    assert all(n == 1 for n in sent.values())
    assert first.held["quiet_hours"] > 0 and first.held["opted_out"] > 0, first.held
    with duckdb.connect(str(home / "warehouse.duckdb"), read_only=True) as con:
        blocks = con.execute(
            "select block_key, reason from ops.contact_blocks where channel = 'sms'"
        ).fetchall()
        rejected = con.execute(
            "select count(*) from ops.customer_messages where channel = 'sms'"
            " and status = 'rejected' and follow_up = 'opt_out'"
        ).fetchone()
    assert blocks == [(lg.block_key("sms", STOPPED), "opt_out")]
    assert rejected == (1,)
    with duckdb.connect(str(home / "warehouse.duckdb"), read_only=True) as con:
        held_rows = con.execute(  # New York's orders (key % 3 == 0): held, so no row
            "select count(*) from ops.customer_messages where channel = 'sms' and order_id % 3 = 0"
        ).fetchone()
    assert held_rows == (0,)

    second = run(home, server, policy, later)
    again = texts(server) - sent
    assert sum(again.values()) == first.held["quiet_hours"], (again, first.held)
    assert {province_of(n) for n in again} == {"NY"} and all(n == 1 for n in again.values())
    assert second.held["opted_out"] >= first.held["opted_out"]
    assert second.held["quiet_hours"] == 0

    total = texts(server)
    run(home, server, policy, later + timedelta(minutes=5))
    assert texts(server) == total  # nobody texted twice
    for request in server.requests_to(MESSAGES):
        _check_twilio(request.form())  # each one as Twilio's OpenAPI description has it
