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
from datetime import UTC, time, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import dagster as dg
import duckdb
import pytest
from conftest import DemoWorld
from http_server import RecordedRequest, Reply, ScriptedHTTPServer
from test_dbt_staging import run_dbt
from test_ingest import ASSETS, default_connectors, write_page
from test_senders_job import (
    GROUPS,
    POLICY,
    TICKETS,
    Provider,
    rows,
    run,
    sink,
    status_tickets,
)

from orderwatch_dagster.defs.resources import DuckDBWarehouse
from orderwatch_dagster.lib import settings
from orderwatch_dagster.lib.action_run import Controls, run_actions
from orderwatch_dagster.lib.packets import STATUS_TEXT
from orderwatch_dagster.lib.policy import DEFAULT_POLICY, parse_policy
from orderwatch_dagster.lib.summary import tickets_avoided
from orderwatch_dagster.lib.warehouse import open_duckdb

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
                # parcels with a current carrier estimate first, so replies have one to state
                "select order_id from (select order_id, current_milestone, row_number() over"
                " (partition by current_milestone order by"
                " coalesce(carrier_est_delivery_at >= as_of, false) desc, order_id) as n"
                " from marts.order_state"
                " where current_milestone in ('in_transit', 'released_to_warehouse', 'delivered')"
                # on track by its state too: the carrier's estimate (when known) keeps the promise
                " and coalesce(carrier_est_delivery_at <= promised_deliver_by, true)"
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

    def __init__(
        self, server: ScriptedHTTPServer, ticket_ids: list[int], home: Path | None = None
    ) -> None:
        # the world's own earlier customer tickets answer too (tasks become notes on them)
        world = status_tickets(home) - set(ticket_ids) if home is not None else set()
        super().__init__(server, world)
        self.puts: dict[int, list[dict[str, Any]]] = defaultdict(list)
        for ticket_id in ticket_ids:
            server.route(f"/api/v2/tickets/{ticket_id}.json", self._put)

    def puts_all(self) -> list[dict[str, Any]]:
        """Every ticket update received, on the test's tickets and the world's own."""
        return [t for puts in self.puts.values() for t in puts] + [t for _, t in self.updates]

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
    cols = (
        "order_id",
        "current_milestone",
        "carrier",
        "promised_deliver_by",
        "last_scan_at",
        "carrier_est_delivery_at",
        "as_of",
        "last_event",
        "delivered_at",
    )
    found = rows(home, f"select {', '.join(cols)} from marts.order_state")
    states = {r[0]: dict(zip(cols, r, strict=True)) for r in found}
    # the carrier's tracking page, read from the raw EasyPost trackers themselves (newest
    # version of each, linked by the newest ShipBob shipment's tracking number)
    links: dict[int, set[str]] = defaultdict(set)
    for order_id, url in rows(
        home,
        "select s.order_id, t.payload ->> 'public_url' from staging.stg_wms__shipments s"
        " join (select * from raw.carrier_trackers qualify row_number() over"
        " (partition by _key order by _updated_at desc) = 1) t"
        " on t.payload ->> 'tracking_code' = s.tracking_number"
        " where s.is_latest_version and t.payload ->> 'public_url' is not null",
    ):
        links[order_id].add(url)
    # the day the customer was promised (the storefront's, else computed from the service) and
    # the customer's time zone (the shipping province's; the shop's when unknown)
    days = dict(
        rows(home, "select order_id, promised_delivery_date from intermediate.int_order_promises")
    )
    zones = dict(
        rows(
            home,
            "select o.order_id, coalesce(r.time_zone, 'America/New_York')"
            " from staging.stg_storefront__orders o left join staging.destination_regions r"
            " on r.province_code = o.destination_province_code where o.is_latest_version",
        )
    )
    for order_id, state in states.items():
        found_links = links.get(order_id, set())
        state["tracking_url"] = next(iter(found_links)) if len(found_links) == 1 else None
        state["promised_day"] = days.get(order_id)
        state["zone"] = ZoneInfo(zones[order_id])
    return states


def risky_by_state(state: dict[str, Any]) -> bool:
    """What the order state says against "on track": returned to sender, or not delivered and
    past its promise or with a carrier estimate after it."""
    if "return_to_sender" in (state["current_milestone"], state["last_event"]):
        return True
    if state["current_milestone"] == "delivered" or state["delivered_at"] is not None:
        return False
    estimate = state["carrier_est_delivery_at"]
    return state["promised_deliver_by"] < state["as_of"] or (
        estimate is not None and estimate > state["promised_deliver_by"]
    )


def stated_facts(reply: str) -> dict[str, Any]:
    """What a public reply (lib/templates/ticket/wismo_reply.j2) states, read back from its text."""
    status = re.search(
        r"\bIt is (.+?)(?: \((?!last carrier)([^)]*)\))?(?: \(last carrier update ([\d-]+)\))?\.",
        reply,
    )
    assert status, reply
    promised = re.search(r"on track to arrive by ([\d-]+)", reply)
    estimate = re.search(r"The carrier expects to deliver it on ([\d-]+)\.", reply)
    return {
        "est_delivery_date": estimate.group(1) if estimate else None,
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
    zendesk = Zendesk(server, list(kinds), home)
    report = run(home, server.url)
    states = order_state(home)
    created_for = {r.json()["ticket"]["external_id"] for r in server.requests_to(TICKETS)}
    names = dict(rows(home, "select order_id, order_name from marts.order_state"))
    rank = {"low": 0, "medium": 1, "high": 2, "critical": 3}
    task_groups: dict[int, set[int]] = defaultdict(set)  # order → its tasks' Zendesk groups
    top_groups: dict[int, set[int]] = defaultdict(set)  # … of its most severe tasks
    tasks = rows(
        home,
        "select order_id, target, severity from ops.action_queue where kind = 'create_task'",
    )
    top = {o: max(rank[s] for oo, _, s in tasks if oo == o) for o, _, _ in tasks}
    for order_id, target, severity in tasks:
        task_groups[order_id].add(GROUPS[target])
        if rank[severity] == top[order_id]:
            top_groups[order_id].add(GROUPS[target])
    several = 0
    assigned = 0
    stated = {"estimate": 0, "link": 0}
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
            # days as the customer lives them: in their own time zone
            scan = state["last_scan_at"]
            scan_day = scan.astimezone(state["zone"]).date().isoformat() if scan else None
            assert facts["last_scan_date"] == scan_day
            promised = state["promised_day"].isoformat()
            assert facts["promised_date"] == (None if delivered else promised)
            assert facts["delivered"] is delivered
            # the carrier's estimate, only while on its way and not already behind "now"
            estimate = state["carrier_est_delivery_at"]
            zone = state["zone"]
            # EasyPost's date-only estimate is midnight UTC: that day; a moment, the local day
            midnight = estimate is not None and estimate.astimezone(UTC).time() == time(0)
            day = (
                None
                if estimate is None
                else estimate.date()
                if midnight
                else estimate.astimezone(zone).date()
            )
            today = state["as_of"].astimezone(zone).date()
            current = day is not None and not delivered and day >= today
            assert facts["est_delivery_date"] == (day.isoformat() if current and day else None)
            stated["estimate"] += facts["est_delivery_date"] is not None
            # no other date, and the tracking link only when the carrier's tracker has one
            allowed = {facts["last_scan_date"], facts["promised_date"], facts["est_delivery_date"]}
            assert facts["dates"] <= allowed
            assert facts["links"] == ([state["tracking_url"]] if state["tracking_url"] else [])
            stated["link"] += bool(facts["links"])
        else:
            assert public == [] and puts, (ticket_id, puts)  # internal notes only
            bodies = [p["comment"]["body"] for p in puts]
            assert sum("this order is at risk" in b for b in bodies) == 1  # the packet note
            assert names[order_id] not in created_for, "no second ticket for the order"
            # the order's task is a note that hands the ticket to the task queue's group (onto
            # the customer's earlier ticket when the world has one)
            # one group, the most severe task's, whatever number of tasks: never flipping
            grouped = [p["group_id"] for p in puts if "group_id" in p]
            if names[order_id] not in asked_before:
                assert len(grouped) == bool(task_groups.get(order_id)), (ticket_id, puts)
                assert set(grouped) <= top_groups.get(order_id, set()), (ticket_id, puts)
                assigned += bool(grouped)
                several += len(task_groups.get(order_id, ())) > 1
    assert assigned > 0, "no at-risk ticket was handed to a task queue's group"
    assert several > 0, "no order had tasks in two queues: the one-group check is vacuous"
    assert stated["estimate"] > 0 and stated["link"] > 0, stated  # the check is not vacuous
    assert report.actions["ticket_reply"] == sum(k == "on_track" for _, k in kinds.values())
    before = len(server.requests)
    run(home, server.url)
    assert len(server.requests) == before, "every ticket answered once, whatever the runs"


def test_the_summary_counts_answers_and_estimates_tickets_avoided(
    home: Path, server: ScriptedHTTPServer, asking: dict[str, Any]
) -> None:
    zendesk = Zendesk(server, list(asking["kinds"]), home)
    run(home, server.url)
    from orderwatch_dagster.lib.summary import action_summary

    with duckdb.connect(str(home / "warehouse.duckdb"), read_only=True) as con:
        lines = action_summary(con)
        sent = tickets_avoided(con)
        # the e-mails went to the local outbox (no SMTP sender here): what the estimate would be
        estimate = tickets_avoided(con, "outbox")
    # counted where Zendesk received them (the world's own open status tickets included)
    comments = [t["comment"] for t in zendesk.puts_all()]
    on_track = sum(c["public"] and "Thanks for checking" in c["body"] for c in comments)
    at_risk = sum(not c["public"] and "this order is at risk" in c["body"] for c in comments)
    assert on_track >= sum(k == "on_track" for _, k in asking["kinds"].values())
    assert at_risk >= sum(k == "at_risk" for _, k in asking["kinds"].values())
    assert any(
        f"status tickets: {on_track} answered automatically, {at_risk} packets" in line
        for line in lines
    ), lines
    # no message reached a customer: no ticket is claimed avoided, the would-be figure is shown
    assert sent is not None and sent["messaged_first"] == 0 and estimate is not None
    (avoided,) = [line for line in lines if "status tickets avoided" in line]
    assert avoided.strip().startswith("status tickets avoided: none (")
    # the would-be figure only when an outbox message came before its customer asked
    assert ("≈" in avoided) is bool(estimate["messaged_first"])
    # the estimator's parts, recomputed by hand from the tables
    messaged = {
        o
        for (o,) in rows(
            home,
            "select distinct order_id from ops.customer_messages"
            " where channel in ('email', 'sms') and status = 'outbox'",
        )
    }
    excepted = {o for (o,) in rows(home, "select distinct order_id from marts.order_exceptions")}
    assert estimate["unmessaged"] == len(excepted - messaged)
    assert estimate["avoided"] == max(
        0.0, estimate["rate"] * estimate["messaged_first"] - estimate["asked_after"]
    )


def test_a_snoozed_exception_is_still_at_risk_never_on_track(
    home: Path, server: ScriptedHTTPServer, asking: dict[str, Any]
) -> None:
    """Ops snoozed the exception (`orderwatch decide <id> snoozed`): the order is still at risk,
    so its customer's status question gets the internal note saying so, not "on track"."""
    from orderwatch_dagster.cli import main

    kinds: dict[int, tuple[int, str]] = asking["kinds"]
    zendesk = Zendesk(server, list(kinds), home)
    # a first run that records the exceptions but answers nobody (message cap 0)
    with open_duckdb(home / "warehouse.duckdb") as session:
        first = run_actions(
            session,
            sink(home, server.url).send,
            Controls(max_messages=0),
            POLICY,
            settings.now(),
            "test",
            home / "outbox",
            lambda _: None,
        )
    assert first.failure == "message_cap"
    assert not [p for puts in zendesk.puts.values() for p in puts if p["comment"]["public"]]
    ticket_id, (order_id, _) = next((t, k) for t, k in kinds.items() if k[1] == "at_risk")
    eids = [
        e
        for (e,) in rows(
            home,
            "select exception_id from ops.exception_ledger"
            f" where order_id = {order_id} and status in ('open', 'actioned')",
        )
    ]
    assert eids
    until = (settings.now() + timedelta(days=2)).isoformat()
    for eid in eids:
        assert main(["decide", eid, "snoozed", "--by", "ops-lead", "--until", until]) == 0
    zendesk.puts.clear()
    run(home, server.url)
    puts = zendesk.puts[ticket_id]
    assert puts and not [p for p in puts if p["comment"]["public"]], puts
    (note,) = [
        p["comment"]["body"] for p in puts if "this order is at risk" in p["comment"]["body"]
    ]
    assert "snoozed by ops-lead" in note


@pytest.mark.parametrize("mode", ["public_reply", "internal_note"])
def test_a_recovered_orders_status_ticket_gets_one_follow_up(
    home: Path, server: ScriptedHTTPServer, asking: dict[str, Any], mode: str
) -> None:
    """Closing the loop on the customer's ticket: the at-risk note first; once the order
    recovers, one follow-up as policy.yaml `close_the_loop` says, and never a second."""
    kinds: dict[int, tuple[int, str]] = asking["kinds"]
    zendesk = Zendesk(server, list(kinds), home)
    policy = parse_policy(
        DEFAULT_POLICY.read_text().replace("status_ticket: public_reply", f"status_ticket: {mode}")
    )
    run(home, server.url, policy)
    at_risk = {t: o for t, (o, k) in kinds.items() if k == "at_risk"}
    noted = {
        t
        for t in at_risk
        if any("this order is at risk" in p["comment"]["body"] for p in zendesk.puts[t])
    }
    assert noted
    before = {t: len(zendesk.puts[t]) for t in kinds}
    with duckdb.connect(str(home / "warehouse.duckdb")) as con:  # every order recovered
        con.execute("update marts.order_exceptions set ended_at = as_of where ended_at is null")
        # the demo's agents hold every open ticket: half of them let go, so both paths run
        unassigned = sorted(noted)[::2]
        con.execute(
            "update staging.stg_support__tickets set assignee_id = null"
            f" where ticket_id in ({', '.join(map(str, unassigned))})"
        )
    run(home, server.url, policy)
    states = order_state(home)
    with duckdb.connect(str(home / "warehouse.duckdb"), read_only=True) as con:
        engaged = {
            t: a is not None or st in ("pending", "hold")
            for t, a, st in con.execute(
                "select ticket_id, assignee_id, status from staging.stg_support__tickets"
                " where is_latest_version"
            ).fetchall()
        }
    followed = public = internal = 0
    for ticket_id, order_id in at_risk.items():
        new = zendesk.puts[ticket_id][before[ticket_id] :]
        ups = [
            p
            for p in new
            if "has recovered" in p["comment"]["body"]
            or "An update on order" in p["comment"]["body"]
        ]
        state = states[order_id]
        risky = risky_by_state(state)
        if ticket_id not in noted or risky:
            assert ups == [], (ticket_id, risky, new)
            continue
        assert len(ups) == 1, (ticket_id, new)
        (up,) = ups
        followed += 1
        if mode == "public_reply" and engaged[ticket_id]:  # an agent has it: never over them
            assert up["comment"]["public"] is False and "status" not in up
            internal += 1
        elif mode == "public_reply":
            public += 1
            delivered = state["current_milestone"] == "delivered"
            assert up["comment"]["public"] is True
            assert up["status"] == ("solved" if delivered else "pending")
            facts = stated_facts(up["comment"]["body"].replace("back on track", "on track"))
            assert facts["status_text"] == STATUS_TEXT[state["current_milestone"]]
            assert facts["links"] == ([state["tracking_url"]] if state["tracking_url"] else [])
        else:
            assert up["comment"]["public"] is False and "status" not in up
            assert "has recovered" in up["comment"]["body"]
    assert followed > 0
    if mode == "public_reply":
        assert public > 0 and internal > 0, (public, internal)
    requests = len(server.requests)
    run(home, server.url, policy)
    assert len(server.requests) == requests, "one follow-up per ticket, whatever the runs"
