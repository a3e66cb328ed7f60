"""Closing the loop against the real local server (tests/http_server.py): what agents do in
Zendesk comes back through the support feed (a page ingested by the raw support asset, as the
connector would land it) into the ledger, and the next decision honours it; a recovered order's
task ticket is solved, its storefront tag removed and its queue entries done."""

from __future__ import annotations

import json
from datetime import timedelta
from pathlib import Path
from typing import Any

import dagster as dg
import duckdb
import pytest
from http_server import ScriptedHTTPServer
from smtp_server import RecordingHandler, SMTPServer
from test_ingest import ASSETS, default_connectors, write_page
from test_senders_job import GRAPHQL, POLICY, Provider, _home, _server, deliveries, queue, rows, run  # noqa: F401 (fixtures `home`, `server`)

from orderwatch_dagster.defs.resources import DuckDBWarehouse
from orderwatch_dagster.lib import settings
from orderwatch_dagster.lib.policy import DEFAULT_POLICY, parse_policy

PLAIN = parse_policy(DEFAULT_POLICY.read_text())  # no escalations: the first run's policy


def ingest_agent_ticket(home: Path, ticket: dict[str, Any], name: str) -> None:
    """One Zendesk list page in the landing folder, loaded by the raw support asset."""
    page = {
        "tickets": [ticket],
        "users": [],
        "meta": {"has_more": False, "after_cursor": None, "before_cursor": None},
        "links": {"next": None, "prev": None},
    }
    write_page(home / "landing", "support_tickets", name, page)
    resources = {
        "warehouse": DuckDBWarehouse(path=str(home / "warehouse.duckdb")),
        **default_connectors(),
    }
    result = dg.materialize(
        [ASSETS["support_tickets"]], resources=resources, instance=dg.DagsterInstance.ephemeral()
    )
    assert result.success


def zendesk_ticket(ticket_id: int, order_name: str, status: str, tags: list[str]) -> dict:
    at = (settings.now() - timedelta(minutes=30)).isoformat().replace("+00:00", "Z")
    return {
        "id": ticket_id,
        "external_id": order_name,
        "subject": f"orderwatch task: {order_name}",
        "description": "orderwatch task",
        "status": status,
        "type": "task",
        "priority": "normal",
        "tags": tags,
        "assignee_id": 900000007,
        "group_id": 360001,
        "via": {"channel": "api", "source": {"from": {}, "to": {}, "rel": None}},
        "custom_fields": [],
        "created_at": at,
        "updated_at": at,
    }


def first_task(home: Path) -> tuple[str, str, str, int]:
    """(action key, exception id, order name, Zendesk ticket id) of the ship-late task (the
    rule POLICY adds an escalation to)."""
    ((action_key, eid, order_name),) = rows(
        home,
        "select q.action_key, q.exception_id, q.order_name from ops.action_queue q"
        " join ops.exception_ledger l using (exception_id)"
        " where q.kind = 'create_task' and l.exception_type = 'ship_late'"
        " and exists (select 1 from ops.customer_messages m where m.channel = 'ticket_create'"
        " and m.exception_ids like '%' || q.exception_id || '%')"
        " order by q.action_key limit 1",
    )
    ((provider_id,),) = rows(
        home,
        "select provider_id from ops.customer_messages where channel = 'ticket_create'"
        f" and exception_ids like '%{eid}%'",
    )
    return action_key, eid, order_name, int(provider_id.split()[1])


def ledger(home: Path, eid: str) -> dict[str, Any]:
    cols = ("status", "human_decision", "decided_by", "owner", "suppressed_reason")
    (row,) = rows(
        home,
        f"select {', '.join(cols)} from ops.exception_ledger where exception_id = '{eid}'",
    )
    return dict(zip(cols, row, strict=True))


@pytest.mark.parametrize("tag", ["false_alarm", "compensated"])
def test_an_agents_tag_reaches_the_ledger_and_the_next_decision_honours_it(
    home: Path, server: ScriptedHTTPServer, tag: str
) -> None:
    Provider(server)
    run(home, server.url, PLAIN)
    _, eid, order_name, ticket_id = first_task(home)
    tags = ["orderwatch", "orderwatch_task", tag]
    ingest_agent_ticket(home, zendesk_ticket(ticket_id, order_name, "open", tags), "agent.json")
    # the next run escalates ship-late orders (POLICY): not this exception any more
    report = run(home, server.url, POLICY)
    assert report.agent_decisions == {tag: 1}
    entry = ledger(home, eid)
    assert entry["human_decision"] == tag and entry["decided_by"] == "zendesk agent 900000007"
    assert entry["owner"] == "zendesk agent 900000007"
    escalated = {e for _, e, _, _, _ in queue(home, "escalate")}
    assert eid not in escalated
    if tag == "false_alarm":
        assert entry["status"] == "suppressed" and str(ticket_id) in entry["suppressed_reason"]
        assert report.held["false_alarm"] >= 1
        statuses = rows(home, f"select status from ops.action_queue where exception_id = '{eid}'")
        assert {s for (s,) in statuses} == {"done"}
    else:
        assert entry["status"] == "actioned"  # still open; a person settled the customer side
        assert report.held["acknowledged"] >= 1  # the escalation is held: a person has it
    again = run(home, server.url, POLICY)  # read once, applied once
    assert again.agent_decisions == {}


def test_a_task_solved_by_an_agent_is_done_and_not_reopened(
    home: Path, server: ScriptedHTTPServer
) -> None:
    provider = Provider(server)
    run(home, server.url, PLAIN)
    action_key, eid, order_name, ticket_id = first_task(home)
    ticket = zendesk_ticket(ticket_id, order_name, "solved", ["orderwatch", "orderwatch_task"])
    ingest_agent_ticket(home, ticket, "solved.json")
    report = run(home, server.url, PLAIN)
    assert report.agent_decisions == {"solved": 1}
    ((status,),) = rows(
        home, f"select status from ops.action_queue where action_key = '{action_key}'"
    )
    assert status == "done"
    assert ledger(home, eid)["human_decision"] == "acknowledged"
    assert provider.updates == []  # orderwatch does not touch a ticket an agent solved


def test_a_recovered_order_solves_its_task_untags_the_order_and_closes_its_queue(
    home: Path, server: ScriptedHTTPServer
) -> None:
    """Every channel live, as the job runs them (e-mail to a local SMTP server, the rest to the
    local HTTP server): the store tags the orders whose customer's e-mail was accepted; once
    every order recovers, each task is solved, each tag removed, the queue done; a third run
    sends nothing."""
    status_tickets = {
        t for (t,) in rows(home, "select distinct ticket_id from staging.stg_support__tickets")
    }
    provider = Provider(server, status_tickets)  # tasks on asked orders are notes on those
    handler = RecordingHandler()
    with SMTPServer(handler) as smtp:
        live: dict[str, Any] = {"job_controls": True, "smtp_port": smtp.port}
        run(home, server.url, PLAIN, **live)
        emailed = {
            str(o)
            for (o,) in rows(
                home,
                "select distinct order_id from ops.customer_messages"
                " where channel = 'email' and status = 'accepted'",
            )
        }
        assert emailed and len(handler.messages) >= len(emailed)
        tags_added = [
            r.json()["variables"]
            for r in server.requests_to(GRAPHQL)
            if "tagsAdd(" in r.json()["query"]
        ]
        assert tags_added and all(v["add"] == ["orderwatch:delayed"] for v in tags_added)
        tagged = {v["id"].rsplit("/", 1)[1] for v in tags_added}
        assert tagged == emailed  # a live store is tagged only for customers really told
        task_tickets = deliveries(home, "ticket_create")  # the rest are notes on status tickets
        order_ids = {
            str(o)
            for (o,) in rows(
                home, "select distinct order_id from ops.action_queue where kind = 'create_task'"
            )
        }
        with duckdb.connect(str(home / "warehouse.duckdb")) as con:  # every order recovered
            con.execute("update marts.order_exceptions set ended_at = as_of where ended_at is null")
        report = run(home, server.url, PLAIN, **live)
        assert report.resolved > 0
        # each task ticket solved once, with a note saying why
        task_updates = [(t, ticket) for t, ticket in provider.updates if t not in status_tickets]
        # a customer's own status ticket gets notes, never orderwatch's "solved"
        assert not [
            t for t, ticket in provider.updates if t in status_tickets and "status" in ticket
        ]
        solved = {t for t, ticket in task_updates if ticket.get("status") == "solved"}
        assert task_tickets and len(task_updates) == len(solved) == len(task_tickets)
        for _, ticket in task_updates:
            assert (
                ticket["comment"]["public"] is False
                and "orderwatch_resolved" in ticket["additional_tags"]
            )
        # the storefront tag is removed from every order it was added to
        removed = {
            r.json()["variables"]["id"].rsplit("/", 1)[1]
            for r in server.requests_to(GRAPHQL)
            if "tagsRemove(" in r.json()["query"]
        }
        assert removed == tagged
        assert {s for (s,) in rows(home, "select distinct status from ops.action_queue")} == {
            "done"
        }
        assert order_ids  # the tasks' orders are off the ops-queue page
        page = (home / "outbox" / "queue.html").read_text().split('id="queue"')[1]
        assert not any(f"order-{o}.html" in page for o in order_ids)
        notes = deliveries(home, "ticket_note")
        assert {d["status"] for d in notes.values()} == {"accepted"}
        before, mails = len(server.requests), len(handler.messages)
        run(home, server.url, PLAIN, **live)
        assert (len(server.requests), len(handler.messages)) == (before, mails)  # nothing twice
    message_ids = [m.message["Message-ID"] for m in handler.messages]
    accepted = rows(
        home,
        "select count(*) from ops.customer_messages where channel = 'email'"
        " and status = 'accepted'",
    )[0][0]
    assert len(message_ids) == len(set(message_ids)) == accepted
    assert json.loads(json.dumps(report.as_metadata()))["resolved"] == report.resolved
