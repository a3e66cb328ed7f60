"""The action job's tasks and escalations through the real senders, against a real local HTTP
server (tests/http_server.py): a task is a new Zendesk ticket in its queue's group, an
escalation a Slack incoming-webhook post; every failure class of the delivery contract
(lib/outbound.py) is played by the server over two runs of the job and counted on its side.

The world is a copy of the demo world (tests/conftest.py `demo_world`); its policy adds an
escalation to the ship-late rule, so ship-late orders are escalated as well as tasked.
"""

from __future__ import annotations

import itertools
import json
import time
from collections import Counter
from collections.abc import Iterable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import duckdb
import pytest
from http_server import RecordedRequest, Reply, ScriptedHTTPServer
from smtp_server import free_port

from orderwatch_dagster.defs.actions.resources import ActionSink
from orderwatch_dagster.defs.actions.senders import (
    ShopifyOrderTagSender,
    SlackWebhookSender,
    SmtpEmailSender,
    ZendeskTicketSender,
    senders_from_env,
)
from orderwatch_dagster.lib import settings
from orderwatch_dagster.lib.action_dispatch import delivery_key
from orderwatch_dagster.lib.action_run import Controls, RunReport, run_actions
from orderwatch_dagster.lib.outbound import FollowUp, Outbound, Outcome
from orderwatch_dagster.lib.policy import DEFAULT_POLICY, parse_policy
from orderwatch_dagster.lib.warehouse import open_duckdb

TICKETS = "/api/v2/tickets.json"
GRAPHQL = "/admin/api/2025-07/graphql.json"
HOOK = "/services/T000/B000/XXXXSECRET"
# generous enough for a loaded 2-core machine; the slow reply below is far beyond it
FAST = {"backoff_factor": 0.0, "read_timeout_s": 1.5, "connect_timeout_s": 2.0}
GROUPS = {"warehouse": 360001, "inventory": 360002, "carrier_ops": 360003}
SHIP_LATE = (
    "      - create_task: {queue: warehouse}\n"
    "      - notify_customer: {channel: email, template: delay_notice, min_severity: medium}\n"
)
POLICY = parse_policy(
    DEFAULT_POLICY.read_text().replace(SHIP_LATE, SHIP_LATE + "      - escalate: {to: ops_lead}\n")
)
# the wall clock a provider's Retry-After runs on (lib/action_run.py): each run an hour later
WALL_START = datetime(2026, 10, 11, tzinfo=UTC)
RUNS = itertools.count()


@pytest.fixture(name="home")
def _home(demo_copy: Path) -> Path:
    return demo_copy  # tests/conftest.py


@pytest.fixture(name="server")
def _server() -> Any:
    with ScriptedHTTPServer() as server:
        yield server


class Provider:
    """What the server answers, switchable between runs: `mode[path]` picks the reply."""

    def __init__(self, server: ScriptedHTTPServer, status_tickets: Iterable[int] = ()) -> None:
        self.mode = {TICKETS: "ok", HOOK: "ok"}
        self.ids = itertools.count(9001)
        self.created: dict[str, int] = {}  # Idempotency-Key -> ticket id (Zendesk replays it)
        server.route(TICKETS, self._zendesk)
        server.route(HOOK, self._slack)
        server.route(GRAPHQL, self._shopify)
        self.updates: list[tuple[int, dict[str, Any]]] = []  # (ticket id, ticket) of each PUT
        for ticket_id in [*range(9001, 9501), *status_tickets]:  # created here, or customers'
            server.route(f"/api/v2/tickets/{ticket_id}.json", self._update)

    def _fail(self, path: str) -> Reply | None:
        mode = self.mode[path]
        if mode == "throttle":
            return Reply(429, {"error": "slow down"}, {"Retry-After": "1"})
        if mode == "unavailable":
            return Reply(503, {"error": "maintenance"}, {"Retry-After": "1"})
        if mode == "error":
            return Reply(500, {"error": "boom"})
        if mode == "invalid":  # a definitive refusal of this request (its fields, its payload)
            if path == HOOK:
                return Reply(400, "invalid_payload", {"Content-Type": "text/plain"})
            details = {"group_id": [{"description": "Group is invalid"}]}
            return Reply(
                422,
                {"error": "RecordInvalid", "description": "Invalid", "details": details},
            )
        return None

    def _zendesk(self, request: RecordedRequest) -> Reply:
        failed = self._fail(TICKETS)
        if failed:
            return failed
        key = request.headers["Idempotency-Key"]
        replay = key in self.created
        ticket_id = self.created.setdefault(key, next(self.ids))
        headers = {"x-idempotency-lookup": "hit" if replay else "miss"}
        delay = 5.0 if self.mode[TICKETS] == "slow_once" and not replay else 0.0
        return Reply(201, {"ticket": {"id": ticket_id}}, headers, delay=delay)

    def _update(self, request: RecordedRequest) -> Reply:
        ticket_id = int(request.path.rsplit("/", 1)[1].split(".")[0])
        self.updates.append((ticket_id, request.json()["ticket"]))
        audit = {"events": [{"type": "Comment", "id": 77}]}
        return Reply(200, {"ticket": {"id": ticket_id}, "audit": audit})

    def _shopify(self, request: RecordedRequest) -> Reply:
        """Answers whichever set-semantics mutations were sent (senders/shopify.py)."""
        body = request.json()
        node = {"node": {"id": body["variables"]["id"]}, "userErrors": []}
        data: dict[str, Any] = {}
        for name in ("tagsAdd", "tagsRemove"):
            if f"{name}(" in body["query"]:
                data[name] = node
        if "metafieldsSet(" in body["query"]:
            data["metafieldsSet"] = {
                "metafields": [{"id": "gid://shopify/Metafield/1"}],
                "userErrors": [],
            }
        if "metafieldsDelete(" in body["query"]:
            data["metafieldsDelete"] = {"deletedMetafields": [None], "userErrors": []}
        return Reply(200, {"data": data})

    def _slack(self, request: RecordedRequest) -> Reply:
        return self._fail(HOOK) or Reply(200, "ok", {"Content-Type": "text/plain"})


def sink(home: Path, server_url: str, smtp_port: int | None = None) -> ActionSink:
    """Zendesk, Shopify and Slack on the local HTTP server; e-mail on a local SMTP server
    when `smtp_port` is given (else the outbox)."""
    senders = senders_from_env({})
    if smtp_port is not None:
        senders["email_sender"] = SmtpEmailSender(
            enabled=True,
            host="127.0.0.1",
            port=smtp_port,
            security="none",
            from_address="orders@shop.example.com",
            timeout_s=2.0,
        )
    senders["ticket_sender"] = ZendeskTicketSender(
        enabled=True,
        base_url=f"{server_url}/api/v2",
        email="ops@example.com",
        api_token="zd-token",
        group_ids=",".join(f"{q}={g}" for q, g in GROUPS.items()),
        **FAST,
    )
    senders["order_tag_sender"] = ShopifyOrderTagSender(
        enabled=True, base_url=f"{server_url}/admin/api/2025-07", access_token="shpat_t", **FAST
    )
    senders["slack_sender"] = SlackWebhookSender(
        enabled=True, webhook_url=server_url + HOOK, **FAST
    )
    return ActionSink(outbox=str(home / "outbox"), **senders)


def run(
    home: Path,
    server_url: str,
    policy: Any = POLICY,
    *,
    job_controls: bool = False,
    smtp_port: int | None = None,
    wall: datetime | None = None,
) -> RunReport:
    """`job_controls`: the live channels passed as the job passes them (defs/actions/jobs.py);
    `smtp_port`: e-mail to a local SMTP server (sink)."""
    senders = sink(home, server_url, smtp_port)
    live = frozenset(senders.live_channels()) if job_controls else frozenset()
    if wall is None:
        wall = WALL_START + timedelta(hours=next(RUNS))  # runs an hour apart, as scheduled
    controls = Controls(
        packet_base_url="https://ops.example.com/packets",
        live_channels=live,
        wall_clock=lambda: wall,
    )
    with open_duckdb(home / "warehouse.duckdb") as session:
        return run_actions(
            session,
            senders.send,
            controls,
            policy,
            settings.now(),
            "test",
            home / "outbox",
            lambda _: None,
        )


def rows(home: Path, sql: str) -> list[tuple[Any, ...]]:
    with duckdb.connect(str(home / "warehouse.duckdb"), read_only=True) as con:
        return con.execute(sql).fetchall()


def deliveries(home: Path, channel: str) -> dict[str, dict[str, Any]]:
    cols = ("key", "status", "attempts", "history", "provider_id", "exception_ids", "follow_up")
    found = rows(
        home,
        "select idempotency_key, status, attempts, history, provider_id, exception_ids,"
        f" follow_up from ops.customer_messages where channel = '{channel}'",
    )
    out = {}
    for row in found:
        item = dict(zip(cols, row, strict=True))
        item["history"] = json.loads(item["history"] or "[]")
        item["exception_ids"] = json.loads(item["exception_ids"] or "[]")
        out[item["key"]] = item
    return out


def queue(home: Path, kind: str) -> list[tuple[Any, ...]]:
    return rows(
        home,
        "select action_key, exception_id, order_name, target, status from ops.action_queue"
        f" where kind = '{kind}' order by 1",
    )


def status_tickets(home: Path) -> set[int]:
    """The world's own customer tickets (a task on an order that has one is a note on it)."""
    return {t for (t,) in rows(home, "select distinct ticket_id from staging.stg_support__tickets")}


def test_tasks_are_zendesk_tickets_and_escalations_slack_posts(
    home: Path, server: ScriptedHTTPServer
) -> None:
    provider = Provider(server, status_tickets(home))
    report = run(home, server.url)
    tasks, escalations = queue(home, "create_task"), queue(home, "escalate")
    assert tasks and escalations
    creates = server.requests_to(TICKETS)
    by_key = {delivery_key(t[0], "ticket_create"): t for t in tasks}
    # a task on an order whose customer already asked is a note on that status ticket, not a
    # second ticket (lib/action_dispatch.py)
    notes = {k: d for k, d in deliveries(home, "ticket_note").items() if k in by_key}
    assert notes and len(creates) == report.actions["ticket_create"] == len(tasks) - len(notes)
    assert {d["status"] for d in notes.values()} == {"accepted"}
    noted = [t for t, _ in provider.updates]  # one PUT per note, onto the customer's ticket
    assert len(noted) >= len(notes) and set(noted) <= status_tickets(home)
    for request in creates:
        ticket = request.json()["ticket"]
        _, _, order_name, target, _ = by_key[request.headers["Idempotency-Key"]]
        assert ticket["external_id"] == order_name  # the support feed links it back
        assert ticket["group_id"] == GROUPS[target]
        assert {"orderwatch", "orderwatch_task", f"orderwatch_queue_{target}"} <= set(
            ticket["tags"]
        )
        assert ticket["type"] == "task" and ticket["comment"]["public"] is False
        assert order_name in ticket["subject"] and order_name in ticket["comment"]["body"]
        assert "https://ops.example.com/packets/order-" in ticket["comment"]["body"]
    posts = server.requests_to(HOOK)
    assert len(posts) == len(escalations)
    blocks = posts[0].json()["blocks"]
    assert blocks[0]["type"] == "header" and escalations[0][2] in blocks[0]["text"]["text"]
    (button,) = blocks[-1]["elements"]
    assert button["url"].startswith("https://ops.example.com/packets/order-")
    made = deliveries(home, "ticket_create")
    assert {d["status"] for d in made.values()} == {"accepted"}
    assert all(d["provider_id"].startswith("ticket 90") for d in made.values())
    # every delivery is on its exception's ledger entry
    for d in made.values():
        ((actions,),) = rows(
            home,
            "select actions from ops.exception_ledger"
            f" where exception_id = '{d['exception_ids'][0]}'",
        )
        assert any(a["kind"] == "ticket_create" for a in json.loads(actions))
    before = len(server.requests)
    run(home, server.url)  # nothing new: nothing sent again
    assert len(server.requests) == before


@pytest.mark.parametrize("failure", ["refused", "throttle", "unavailable"])
def test_not_accepted_stays_pending_and_goes_once_on_the_next_run(
    home: Path, server: ScriptedHTTPServer, failure: str
) -> None:
    provider = Provider(server, status_tickets(home))  # customers' tickets: notes
    dead = f"http://127.0.0.1:{free_port()}"
    if failure != "refused":
        provider.mode = {TICKETS: failure, HOOK: failure}
    start = datetime(2026, 10, 11, 3, tzinfo=UTC)
    first = run(home, dead if failure == "refused" else server.url, wall=start)
    pending = {**deliveries(home, "ticket_create"), **deliveries(home, "slack")}
    assert pending and {d["status"] for d in pending.values()} == {"not_accepted"}
    assert first.messages["not_accepted"] >= len(pending)
    for d in pending.values():  # every try is in the ledger
        assert d["attempts"] == len(d["history"]) >= 1
        if failure == "refused":
            assert all(a["status"] is None and a["error"] for a in d["history"])
        else:
            assert d["history"][-1]["status"] in (429, 503)
    tried = Counter(r.path for r in server.requests)
    throttled = {p for (p,) in rows(home, "select provider from ops.provider_throttles")}
    if failure == "refused":  # nothing said "not now": every delivery was tried
        assert throttled == set() and first.held["provider_throttled"] == 0
    else:  # Retry-After: one request per provider, the rest of the run holds it (no row)
        assert throttled == {"zendesk", "slack"}
        assert len(pending) == 2  # one create, one post: all the requests there were
        assert tried[TICKETS] + tried[HOOK] == sum(d["attempts"] for d in pending.values())
        assert first.held["provider_throttled"] > 0
        assert any(a.startswith("provider_throttled: zendesk") for a in first.alerts)
        # a run within the Retry-After sends nothing to either provider, the retry included
        soon = run(home, server.url, wall=start + timedelta(milliseconds=500))
        assert Counter(r.path for r in server.requests) == tried
        assert soon.held["provider_throttled"] >= first.held["provider_throttled"] + 2
    provider.mode = {TICKETS: "ok", HOOK: "ok"}
    run(home, server.url, wall=start + timedelta(hours=1))  # Retry-After (1 s) has passed
    sent = {**deliveries(home, "ticket_create"), **deliveries(home, "slack")}
    assert set(sent) >= set(pending) and {d["status"] for d in sent.values()} == {"accepted"}
    assert len(sent) - len(pending) <= first.held["provider_throttled"]
    # exactly one request per pending delivery in the second run
    now_sent = Counter(r.path for r in server.requests) - tried
    assert now_sent[TICKETS] == len(deliveries(home, "ticket_create"))
    assert now_sent[HOOK] == len(deliveries(home, "slack"))
    run(home, server.url)
    assert Counter(r.path for r in server.requests) - tried == now_sent  # and never again


@pytest.mark.parametrize("then", ["ok", "invalid"])
def test_a_refused_task_or_escalation_stays_pending_and_goes_once_more_later(
    home: Path, server: ScriptedHTTPServer, then: str
) -> None:
    """A 4xx refusal (Zendesk 422, Slack 400 invalid_payload) drops nothing: an alert row, the
    delivery pending (`resend_once`) and its queue item open; the next run sends each once
    more (a fresh Zendesk key: the refused create made no ticket). Refused again, it is a
    human review and never sent a third time."""
    provider = Provider(server, status_tickets(home))  # tasks onto customers' tickets: notes
    provider.mode = {TICKETS: "invalid", HOOK: "invalid"}
    first = run(home, server.url)
    refused = {**deliveries(home, "ticket_create"), **deliveries(home, "slack")}
    assert deliveries(home, "ticket_create") and deliveries(home, "slack")
    assert {(d["status"], d["follow_up"]) for d in refused.values()} == {
        ("rejected", "resend_once")
    }
    alerts = rows(home, "select kind, detail from ops.alerts where kind = 'rejected_delivery'")
    # one alert per refusal (rows with the same text on the same day are one row)
    assert alerts and sum(a.startswith("rejected_delivery") for a in first.alerts) == len(refused)
    assert all("pending: sent once more" in detail for _, detail in alerts)
    open_items = {
        k for k, _, _, _, s in queue(home, "create_task") + queue(home, "escalate") if s == "open"
    }
    assert {delivery_key(k, c) for k in open_items for c in ("ticket_create", "slack")} >= set(
        refused
    )
    tried = Counter(r.path for r in server.requests)
    provider.mode = {TICKETS: then, HOOK: then}
    run(home, server.url)
    second = Counter(r.path for r in server.requests) - tried
    assert second[TICKETS] == len(deliveries(home, "ticket_create"))  # once each
    assert second[HOOK] == len(deliveries(home, "slack"))
    keys = [r.headers["Idempotency-Key"] for r in server.requests_to(TICKETS)]
    assert all(k.endswith(":resend") for k in keys[tried[TICKETS] :])
    after = {**deliveries(home, "ticket_create"), **deliveries(home, "slack")}
    human = rows(
        home,
        "select count(*) from ops.action_queue where kind = 'human_review'"
        " and target = 'rejected_delivery' and status = 'open'",
    )
    if then == "ok":
        assert {d["status"] for d in after.values()} == {"accepted"}
        assert human == [(0,)]
    else:
        assert {(d["status"], d["follow_up"]) for d in after.values()} == {
            ("rejected", "human_review")
        }
        assert human == [(len(refused),)]
    for d in after.values():  # both runs' tries on record
        assert d["attempts"] == len(d["history"]) == 2
    total = len(server.requests)
    run(home, server.url)
    assert len(server.requests) == total  # never a third time


def test_a_refused_task_resent_into_a_429_is_still_resent_only_once(
    home: Path, server: ScriptedHTTPServer
) -> None:
    """refused → the resend throttled (429, not_accepted) → the retry goes under the same
    `:resend` key and, refused again, is a human review: never a first refusal a second time."""
    provider = Provider(server, status_tickets(home))
    keys_by_run: list[Counter[str]] = []

    def step(mode: str) -> None:
        before = len(server.requests_to(TICKETS))
        provider.mode = {TICKETS: mode, HOOK: mode}
        run(home, server.url)
        keys = [r.headers["Idempotency-Key"] for r in server.requests_to(TICKETS)[before:]]
        keys_by_run.append(Counter("resend" if k.endswith(":resend") else "first" for k in keys))

    step("invalid")
    created = deliveries(home, "ticket_create")
    assert created and {d["follow_up"] for d in created.values()} == {"resend_once"}
    step("throttle")  # the first resend is throttled; Zendesk's Retry-After holds the others
    throttled = {(d["status"], d["follow_up"]) for d in deliveries(home, "ticket_create").values()}
    assert ("not_accepted", None) in throttled  # still under its resend_key
    assert throttled <= {("not_accepted", None), ("rejected", "resend_once")}
    step("invalid")
    step("invalid")  # done: nothing goes out any more
    assert keys_by_run[0]["first"] > 0 and not keys_by_run[0]["resend"]
    assert keys_by_run[1]["resend"] > 0 and not keys_by_run[1]["first"]
    assert keys_by_run[2] == Counter(resend=len(created))  # the one resend, under its key
    assert keys_by_run[3] == Counter()
    after = deliveries(home, "ticket_create")
    assert {(d["status"], d["follow_up"]) for d in after.values()} == {("rejected", "human_review")}
    human = rows(
        home,
        "select count(*) from ops.action_queue where kind = 'human_review'"
        " and target = 'rejected_delivery' and status = 'open'",
    )
    assert human[0][0] >= len(created)


def test_a_live_store_is_not_tagged_for_e_mails_left_in_the_outbox(
    home: Path, server: ScriptedHTTPServer
) -> None:
    """Shopify live, no e-mail sender: the customers' messages reach the outbox only, so no
    order is tagged `orderwatch:delayed` (lib/action_dispatch.py `notified_orders`)."""
    Provider(server, status_tickets(home))
    report = run(home, server.url, job_controls=True)
    assert report.messages["outbox"] > 0 and deliveries(home, "email")
    assert not [r for r in server.requests_to(GRAPHQL) if "tagsAdd(" in r.json()["query"]]
    assert deliveries(home, "order_tags") == {}


def test_a_refusal_recorded_before_resend_keys_is_never_resent(
    home: Path, server: ScriptedHTTPServer
) -> None:
    """A refused row without `resend_key` (written before it existed) may have been resent
    already: it goes to a person instead of out again."""
    provider = Provider(server, status_tickets(home))
    provider.mode = {TICKETS: "invalid", HOOK: "invalid"}
    run(home, server.url)
    refused = {**deliveries(home, "ticket_create"), **deliveries(home, "slack")}
    with duckdb.connect(str(home / "warehouse.duckdb")) as con:
        con.execute("update ops.customer_messages set resend_key = null")
    tried = len(server.requests)
    provider.mode = {TICKETS: "ok", HOOK: "ok"}
    run(home, server.url)
    assert len(server.requests) == tried
    human = rows(
        home,
        "select count(*) from ops.action_queue where kind = 'human_review'"
        " and target = 'rejected_delivery' and status = 'open'",
    )
    assert human == [(len(refused),)]


def test_fate_unknown_retried_under_the_key_where_honoured_else_uncertain_never_twice(
    home: Path, server: ScriptedHTTPServer
) -> None:
    provider = Provider(server)
    provider.mode = {TICKETS: "slow_once", HOOK: "error"}
    report = run(home, server.url)
    # Zendesk: the create timed out, was retried under the same Idempotency-Key, replayed
    made = deliveries(home, "ticket_create")
    assert made and {d["status"] for d in made.values()} == {"accepted"}
    keys = Counter(r.headers["Idempotency-Key"] for r in server.requests_to(TICKETS))
    assert set(keys.values()) == {2}
    for d in made.values():
        assert d["attempts"] == 2 and "Timeout" in (d["history"][0]["error"] or "")
    # Slack: no key, so a 500 is uncertain after one request, in the human queue, alerted
    posted = deliveries(home, "slack")
    assert posted and {d["status"] for d in posted.values()} == {"uncertain"}
    assert len(server.requests_to(HOOK)) == len(posted)  # one request each: never retried
    assert all(d["attempts"] == 1 for d in posted.values())
    human = rows(
        home,
        "select target, status from ops.action_queue where kind = 'human_review'"
        " and target = 'uncertain_delivery'",
    )
    assert human == [("uncertain_delivery", "open")] * len(posted)
    assert any(a.startswith("uncertain_delivery") for a in report.alerts)
    provider.mode = {TICKETS: "ok", HOOK: "ok"}
    run(home, server.url)
    assert len(server.requests_to(HOOK)) == len(posted)  # never twice
    assert Counter(r.headers["Idempotency-Key"] for r in server.requests_to(TICKETS)) == keys


def test_a_refused_credential_keeps_tasks_pending_and_alerts(
    home: Path, server: ScriptedHTTPServer
) -> None:
    server.route(TICKETS, Reply(401, {"error": "Couldn't authenticate you"}))
    server.route(HOOK, Reply(200, "ok", {"Content-Type": "text/plain"}))
    report = run(home, server.url)
    made = deliveries(home, "ticket_create")
    assert {(d["status"], d["follow_up"]) for d in made.values()} == {
        ("not_accepted", "fix_config")
    }
    assert any(a.startswith("fix_config: ticket_create") for a in report.alerts)
    assert "zd-token" not in json.dumps(report.alerts)


def test_zendesk_group_map_is_checked_before_sending() -> None:
    sender = ZendeskTicketSender(
        enabled=True, base_url="http://127.0.0.1:9/api/v2", api_token="t", group_ids="warehouse"
    )
    message = Outbound("k", "ticket_create", "#1", "body", "subject", metadata={"queue": "x"})
    result = sender.send(message)
    assert result.outcome is Outcome.NOT_ACCEPTED and result.follow_up is FollowUp.FIX_CONFIG
    assert "ORDERWATCH_ZENDESK_GROUP_IDS" in result.detail and result.attempts == 0
    assert ZendeskTicketSender(group_ids="warehouse=1,*=9").group_for("other") == 9


def test_pending_then_sent_once_across_two_runs_of_the_job(
    home: Path, server: ScriptedHTTPServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The code location's own job, its senders switched on by environment variables alone
    (README "Outbound channels"): the first run's e-mails meet an SMTP 4xx before DATA and its
    tasks a Zendesk 503 + Retry-After; all stay pending in the ledger; the second run sends
    each once, and the ledger keeps both runs' tries."""
    import dagster as dg
    from smtp_server import RecordingHandler, SMTPServer

    from orderwatch_dagster.definitions import defs

    provider = Provider(server)
    provider.mode = {TICKETS: "unavailable", HOOK: "ok"}
    handler = RecordingHandler(rcpt_reply="451 4.3.0 Mailbox busy, try again later")
    with SMTPServer(handler) as smtp:
        env = {
            "ORDERWATCH_SMTP_ENABLED": "true",
            "ORDERWATCH_SMTP_HOST": "127.0.0.1",
            "ORDERWATCH_SMTP_PORT": str(smtp.port),
            "ORDERWATCH_SMTP_SECURITY": "none",
            "ORDERWATCH_SMTP_FROM": "orders@shop.example",
            "ORDERWATCH_ZENDESK_ENABLED": "true",
            "ORDERWATCH_ZENDESK_URL": f"{server.url}/api/v2",
            "ZENDESK_EMAIL": "ops@example.com",
            "ZENDESK_API_TOKEN": "zd-token",
            "ORDERWATCH_SHOPIFY_ENABLED": "true",
            "ORDERWATCH_SHOPIFY_URL": f"{server.url}/admin/api/2025-07",
            "SHOPIFY_ACCESS_TOKEN": "shpat_t",
        }
        for name, value in env.items():
            monkeypatch.setenv(name, value)
        job = defs().resolve_job_def("exception_actions_job")
        with dg.instance_for_test() as instance:
            assert job.execute_in_process(instance=instance).success
            emails, tasks = deliveries(home, "email"), deliveries(home, "ticket_create")
            assert emails and tasks
            for pending in (emails, tasks):
                assert {d["status"] for d in pending.values()} == {"not_accepted"}
            assert handler.messages == [] and deliveries(home, "order_tags") == {}
            handler.rcpt_reply = "250 OK"
            provider.mode = {TICKETS: "ok", HOOK: "ok"}
            time.sleep(1.0)  # Zendesk's Retry-After (1 s, on the wall clock) passes
            assert job.execute_in_process(instance=instance).success
            assert job.execute_in_process(instance=instance).success  # a third: nothing new
    for channel, before in (("email", emails), ("ticket_create", tasks)):
        after = deliveries(home, channel)
        # (after a 503 + Retry-After the first run held Zendesk's other tasks: no row yet)
        assert set(after) >= set(before) and {d["status"] for d in after.values()} == {"accepted"}
        assert channel == "ticket_create" or set(after) == set(before)
        for key, d in before.items():  # the first run's refusal is still on record
            assert after[key]["attempts"] == len(after[key]["history"]) == d["attempts"] + 1
    message_ids = [m.message["Message-ID"] for m in handler.messages]
    assert len(message_ids) == len(set(message_ids)) == len(emails)
    # run 1: every try a 503 (retried within the send: a create under its key is safe to
    # retry), the other tasks held; later runs: exactly one request each, answered 201
    keys = Counter(r.headers["Idempotency-Key"] for r in server.requests_to(TICKETS))
    created = deliveries(home, "ticket_create")
    first = {key: d["attempts"] for key, d in tasks.items()}
    assert keys == {key: first.get(key, 0) + 1 for key in created}
    tagged = [r for r in server.requests_to(GRAPHQL) if "tagsAdd(" in r.json()["query"]]
    assert len(tagged) == len({d["key"] for d in deliveries(home, "order_tags").values()}) > 0
