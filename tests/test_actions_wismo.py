"""WISMO deflection on the demo world (tests/conftest.py `demo_world`), against Zendesk played
by the real local HTTP server. A 3-day world has no status ticket yet (customers ask after days
of waiting), so its customers ask now: status tickets in Zendesk's list shape are loaded by the
raw support asset and staged by dbt (`stg_support__tickets`), as a poll would bring them.

Every open status ticket on an on-track order gets exactly one public reply that states only
facts of `marts.order_state`; every one on an at-risk order gets the packet as an internal
note (and the order's task as a note assigning the ticket to the queue's group), and no second
ticket; an older version of a ticket solved since is not answered."""

from __future__ import annotations

import re
import shutil
from collections import defaultdict
from datetime import timedelta
from pathlib import Path
from typing import Any

import dagster as dg
import duckdb
import pytest
from conftest import DemoWorld
from http_server import RecordedRequest, Reply, ScriptedHTTPServer
from test_dbt_staging import run_dbt
from test_ingest import ASSETS, default_connectors, write_page
from test_senders_job import GROUPS, TICKETS, Provider, rows, run

from orderwatch_dagster.defs.resources import DuckDBWarehouse
from orderwatch_dagster.lib import settings
from orderwatch_dagster.lib.packets import STATUS_TEXT
from orderwatch_dagster.lib.summary import tickets_avoided

FIRST_TICKET = 300_000


def _zulu(moment: Any) -> str:
    return moment.isoformat().replace("+00:00", "Z")


def _ticket(ticket_id: int, order_name: str, status: str, at: Any) -> dict[str, Any]:
    return {
        "id": ticket_id,
        "external_id": order_name,
        "subject": f"Where is my order {order_name}?",
        "description": "Hi, it still hasn't arrived. When will it be delivered?",
        "status": status,
        "type": "question",
        "priority": "normal",
        "tags": ["order_status", "wismo"],
        "assignee_id": None if status == "new" else 900000002,
        "group_id": 360000000111,
        "via": {"channel": "web", "source": {"from": {}, "to": {}, "rel": None}},
        "custom_fields": [],
        "created_at": _zulu(at - timedelta(hours=3)),
        "updated_at": _zulu(at),
    }


@pytest.fixture(scope="module")
def asking(demo_world: DemoWorld, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """The demo world with its customers' status tickets ingested and staged (built once; each
    test copies it): ticket id → (order id, kind), kind on_track | at_risk | solved."""
    base = tmp_path_factory.mktemp("wismo_world")
    shutil.copy(demo_world.warehouse, base / "warehouse.duckdb")
    shutil.copy(demo_world.home / "clock", base / "clock")
    with duckdb.connect(str(base / "warehouse.duckdb")) as con:
        con.execute("drop schema if exists ops cascade")
        at_risk = [
            r[0]
            for r in con.execute(
                "select distinct order_id from marts.order_exceptions where ended_at is null"
                " order by 1"
            ).fetchall()
        ]
        on_track = [
            r[0]
            for r in con.execute(
                "select order_id from (select order_id, current_milestone, row_number() over"
                " (partition by current_milestone order by order_id) as n from marts.order_state"
                " where current_milestone in ('in_transit', 'released_to_warehouse', 'delivered')"
                " and order_id not in (select order_id from marts.order_exceptions))"
                " where n <= 2 order by order_id"
            ).fetchall()
        ]
        names = dict(con.execute("select order_id, order_name from marts.order_state").fetchall())
    assert at_risk and len(on_track) >= 4
    now = settings.parse_timestamp((base / "clock").read_text().strip())
    tickets: list[dict[str, Any]] = []
    kinds: dict[int, tuple[int, str]] = {}
    for index, (order_id, kind) in enumerate(
        [(o, "on_track") for o in on_track] + [(o, "at_risk") for o in at_risk]
    ):
        ticket_id = FIRST_TICKET + index
        kinds[ticket_id] = (order_id, kind)
        # two versions: `new`, then opened by an agent an hour later (one answer, not two)
        tickets.append(_ticket(ticket_id, names[order_id], "new", now - timedelta(hours=2)))
        tickets.append(_ticket(ticket_id, names[order_id], "open", now - timedelta(hours=1)))
    solved_id = FIRST_TICKET + len(kinds)  # asked, then solved by an agent: nothing to answer
    kinds[solved_id] = (on_track[0], "solved")
    tickets.append(_ticket(solved_id, names[on_track[0]], "open", now - timedelta(hours=5)))
    tickets.append(_ticket(solved_id, names[on_track[0]], "solved", now - timedelta(hours=4)))
    page = {
        "tickets": tickets,
        "users": [],
        "meta": {"has_more": False, "after_cursor": None, "before_cursor": None},
        "links": {"next": None, "prev": None},
    }
    write_page(base / "landing", "support_tickets", "asking.json", page)
    resources = {"warehouse": DuckDBWarehouse(path=str(base / "warehouse.duckdb"))}
    mp = pytest.MonkeyPatch()  # module scope: no function-scoped monkeypatch
    mp.setenv("ORDERWATCH_HOME", str(base))
    mp.delenv("ORDERWATCH_AS_OF", raising=False)
    try:
        result = dg.materialize(
            [ASSETS["support_tickets"]],
            resources={**resources, **default_connectors()},
            instance=dg.DagsterInstance.ephemeral(),
        )
        assert result.success
        run_dbt(
            base,
            {"ORDERWATCH_WAREHOUSE": str(base / "warehouse.duckdb")},
            "run",
            "--select",
            "stg_support__tickets",
        )
    finally:
        mp.undo()
    return {"base": base, "kinds": kinds}


@pytest.fixture(name="home")
def _home(asking: dict[str, Any], tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    shutil.copy(asking["base"] / "warehouse.duckdb", tmp_path / "warehouse.duckdb")
    shutil.copy(asking["base"] / "clock", tmp_path / "clock")
    monkeypatch.setenv("ORDERWATCH_HOME", str(tmp_path))
    monkeypatch.delenv("ORDERWATCH_AS_OF", raising=False)
    return tmp_path


class Zendesk(Provider):
    """Provider (test_senders_job.py) plus the customers' tickets: every PUT recorded."""

    def __init__(self, server: ScriptedHTTPServer, ticket_ids: list[int]) -> None:
        super().__init__(server)
        self.puts: dict[int, list[dict[str, Any]]] = defaultdict(list)
        for ticket_id in ticket_ids:
            server.route(f"/api/v2/tickets/{ticket_id}.json", self._put)

    def _put(self, request: RecordedRequest) -> Reply:
        ticket_id = int(request.path.rsplit("/", 1)[1].split(".")[0])
        self.puts[ticket_id].append(request.json()["ticket"])
        audit = {"events": [{"type": "Comment", "id": 500 + len(self.puts)}]}
        return Reply(200, {"ticket": {"id": ticket_id}, "audit": audit})


@pytest.fixture(name="server")
def _server() -> Any:
    with ScriptedHTTPServer() as server:
        yield server


def order_state(home: Path) -> dict[int, dict[str, Any]]:
    cols = ("order_id", "current_milestone", "carrier", "promised_deliver_by", "last_scan_at")
    found = rows(home, f"select {', '.join(cols)} from marts.order_state")
    return {r[0]: dict(zip(cols, r, strict=True)) for r in found}


def stated_facts(reply: str) -> dict[str, Any]:
    """What a public reply (lib/templates/ticket/wismo_reply.j2) states, read back from its text."""
    status = re.search(
        r"\bIt is (.+?)(?: \((?!last carrier)([^)]*)\))?(?: \(last carrier update ([\d-]+)\))?\.",
        reply,
    )
    assert status, reply
    promised = re.search(r"on track to arrive by ([\d-]+)", reply)
    return {
        "status_text": status.group(1),
        "carrier": status.group(2),
        "last_scan_date": status.group(3),
        "promised_date": promised.group(1) if promised else None,
        "delivered": "shows it as delivered" in reply,
        "dates": set(re.findall(r"\d{4}-\d{2}-\d{2}", reply)),
        "links": re.findall(r"https?://\S+", reply),
    }


def test_every_open_status_ticket_is_answered_once_with_facts_of_the_order_state(
    home: Path, server: ScriptedHTTPServer, asking: dict[str, Any]
) -> None:
    kinds: dict[int, tuple[int, str]] = asking["kinds"]
    zendesk = Zendesk(server, list(kinds))
    report = run(home, server.url)
    states = order_state(home)
    created_for = {r.json()["ticket"]["external_id"] for r in server.requests_to(TICKETS)}
    names = dict(rows(home, "select order_id, order_name from marts.order_state"))
    task_groups: dict[int, set[int]] = defaultdict(set)  # order → its tasks' Zendesk groups
    for order_id, target in rows(
        home, "select order_id, target from ops.action_queue where kind = 'create_task'"
    ):
        task_groups[order_id].add(GROUPS[target])
    assigned = 0
    asked_before = {  # orders whose customers had a status ticket in the world already
        name
        for ticket_id, name in rows(
            home, "select ticket_id, order_name from staging.stg_support__tickets"
        )
        if ticket_id not in kinds
    }
    for ticket_id, (order_id, kind) in kinds.items():
        puts = zendesk.puts.get(ticket_id, [])
        if kind == "solved":
            assert puts == [], "a ticket solved by an agent is not answered"
            continue
        public = [p for p in puts if p["comment"]["public"]]
        if kind == "on_track":
            assert len(puts) == len(public) == 1, (ticket_id, puts)
            (reply,) = public
            state = states[order_id]
            delivered = state["current_milestone"] == "delivered"
            assert reply["status"] == ("solved" if delivered else "pending")
            facts = stated_facts(reply["comment"]["body"])
            assert facts["status_text"] == STATUS_TEXT[state["current_milestone"]]
            assert facts["carrier"] == state["carrier"]  # None when order_state has none
            scan = state["last_scan_at"]
            assert facts["last_scan_date"] == (scan.date().isoformat() if scan else None)
            promised = state["promised_deliver_by"].date().isoformat()
            assert facts["promised_date"] == (None if delivered else promised)
            assert facts["delivered"] is delivered
            # no other date, and no tracking link: order_state has neither
            assert facts["dates"] <= {facts["last_scan_date"], facts["promised_date"]}
            assert facts["links"] == []
        else:
            assert public == [] and puts, (ticket_id, puts)  # internal notes only
            bodies = [p["comment"]["body"] for p in puts]
            assert sum("this order is at risk" in b for b in bodies) == 1  # the packet note
            assert names[order_id] not in created_for, "no second ticket for the order"
            # the order's task is a note that hands the ticket to the task queue's group (onto
            # the customer's earlier ticket when the world has one)
            grouped = {p["group_id"] for p in puts if "group_id" in p}
            if names[order_id] not in asked_before:
                assert grouped == task_groups.get(order_id, set()), (ticket_id, puts)
                assigned += bool(grouped)
    assert assigned > 0, "no at-risk ticket was handed to a task queue's group"
    assert report.actions["ticket_reply"] == sum(k == "on_track" for _, k in kinds.values())
    before = len(server.requests)
    run(home, server.url)
    assert len(server.requests) == before, "every ticket answered once, whatever the runs"


def test_the_summary_counts_answers_and_estimates_tickets_avoided(
    home: Path, server: ScriptedHTTPServer, asking: dict[str, Any]
) -> None:
    Zendesk(server, list(asking["kinds"]))
    run(home, server.url)
    from orderwatch_dagster.lib.summary import action_summary

    with duckdb.connect(str(home / "warehouse.duckdb"), read_only=True) as con:
        lines = action_summary(con)
        estimate = tickets_avoided(con)
    on_track = sum(k == "on_track" for _, k in asking["kinds"].values())
    at_risk = sum(k == "at_risk" for _, k in asking["kinds"].values())
    assert any(
        f"status tickets: {on_track} answered automatically, {at_risk} packets" in line
        for line in lines
    ), lines
    assert estimate is not None and any("status tickets avoided ≈" in line for line in lines)
    # the estimator's parts, recomputed by hand from the tables
    messaged = {
        o
        for (o,) in rows(
            home,
            "select distinct order_id from ops.customer_messages"
            " where channel in ('email', 'sms') and status = 'accepted'",
        )
    }
    excepted = {o for (o,) in rows(home, "select distinct order_id from marts.order_exceptions")}
    assert estimate["unmessaged"] == len(excepted - messaged)
    assert estimate["avoided"] == max(
        0.0, estimate["rate"] * estimate["messaged_first"] - estimate["asked_after"]
    )
