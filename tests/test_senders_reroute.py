"""The action job's reroute requests through the real ShipBob sender, against a real local HTTP
server (tests/http_server.py): a late shipment still at the warehouse is moved to a faster
service; one ShipBob cannot change, or one whose input orderwatch does not know, becomes a task
for the 3PL queue (lib/action_dispatch.py).

The world is a copy of the demo world (tests/conftest.py `demo_world`): its reroute items are
inventory holds (no stock per fulfillment center is known: always a task); the policy here adds
a reroute to both ship-late rules, whose shipments are partly Processing, partly Completed.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from http_server import RecordedRequest, Reply, ScriptedHTTPServer
from test_senders_job import _home, _server, rows  # noqa: F401 (fixtures `home`, `server`)

from orderwatch_dagster.defs.actions.resources import ActionSink
from orderwatch_dagster.defs.actions.senders import ShipBobRerouteSender, senders_from_env
from orderwatch_dagster.lib import ledger as lg
from orderwatch_dagster.lib import settings
from orderwatch_dagster.lib.action_dispatch import REROUTE_TASK_QUEUE, delivery_key
from orderwatch_dagster.lib.action_run import Controls, RunReport, run_actions
from orderwatch_dagster.lib.policy import DEFAULT_POLICY, parse_policy
from orderwatch_dagster.lib.warehouse import open_duckdb

BASE = "/2026-01"
BULK = f"{BASE}/shipment:bulkUpdateShippingService"
FASTER = 7  # the configured faster ShipBob shipping service id
FAST = {"backoff_factor": 0.0, "read_timeout_s": 0.5, "connect_timeout_s": 1.0}
SHIP_LATE = (
    "      - create_task: {queue: warehouse}\n"
    "      - notify_customer: {channel: email, template: delay_notice, min_severity: medium}\n"
)
SHIP_LATE_VIP = (
    "    match: {types: [ship_late], tiers: [vip], min_severity: critical}\n    actions:\n"
)
REROUTE = "      - request_reroute: {}\n"
POLICY = parse_policy(
    DEFAULT_POLICY.read_text()
    .replace(SHIP_LATE, SHIP_LATE + REROUTE)
    .replace(SHIP_LATE_VIP, SHIP_LATE_VIP + REROUTE)
)


def bulk_answer(success: bool) -> Any:
    """ShipBob's bulk answer for the one shipment asked about (senders/shipbob.py)."""

    def answer(request: RecordedRequest) -> Reply:
        (shipment_id,) = request.json()["shipment_ids"]
        error = None if success else {"code": "NotAllowed", "message": "service not available"}
        entry = {"id": shipment_id, "is_success": success, "error": error}
        return Reply(200, {"results": [entry]})

    return answer


def run(
    home: Path, server_url: str, service_id: int | None = FASTER, *, shipbob: bool = True
) -> RunReport:
    senders = senders_from_env({})  # everything else off: the outbox
    if shipbob:
        senders["reroute_sender"] = ShipBobRerouteSender(
            enabled=True, base_url=server_url + BASE, access_token="sb-token", **FAST
        )
    sink = ActionSink(outbox=str(home / "outbox"), **senders)
    controls = Controls(reroute_shipping_service_id=service_id)
    with open_duckdb(home / "warehouse.duckdb") as session:
        return run_actions(
            session,
            sink.send,
            controls,
            POLICY,
            settings.now(),
            "test",
            home / "outbox",
            lambda _: None,
        )


def reroute_items(home: Path) -> dict[str, dict[str, Any]]:
    """Each request_reroute item with its exception type and the order's latest shipment."""
    cols = ("action_key", "exception_id", "exception_type", "shipment_id", "status")
    found = rows(
        home,
        "select q.action_key, q.exception_id, e.exception_type, s.shipment_id, s.status"
        " from ops.action_queue q join ops.exception_ledger e using (exception_id)"
        " left join staging.stg_wms__shipments s on s.order_id = q.order_id"
        " and s.is_latest_version where q.kind = 'request_reroute'"
        " qualify row_number() over (partition by q.action_key"
        " order by s.created_at desc, s.shipment_id desc) = 1 order by 1",
    )
    return {r[0]: dict(zip(cols, r, strict=True)) for r in found}


def reroute_rows(home: Path) -> dict[str, tuple[Any, ...]]:
    found = rows(
        home,
        "select idempotency_key, recipient, status, follow_up, template"
        " from ops.customer_messages where channel = 'reroute'",
    )
    return {r[0]: r[1:] for r in found}


def follow_up_tasks(home: Path) -> dict[str, tuple[Any, ...]]:
    found = rows(
        home,
        "select action_key, target, status, reason from ops.action_queue"
        " where kind = 'create_task'",
    )
    return {r[0]: r[1:] for r in found}


def task_key(item_key: str) -> str:
    return lg.key(item_key, "reroute_task")


def ledger_actions(home: Path, eid: str) -> list[dict[str, Any]]:
    ((actions,),) = rows(
        home, f"select actions from ops.exception_ledger where exception_id = '{eid}'"
    )
    return json.loads(actions)


def test_late_shipments_get_a_faster_service_once(home: Path, server: ScriptedHTTPServer) -> None:
    server.route(BULK, bulk_answer(True))
    run(home, server.url)
    items = reroute_items(home)
    late = {k: i for k, i in items.items() if i["exception_type"] == "ship_late"}
    editable = {k: i for k, i in late.items() if i["status"] == "Processing"}
    shipped = {k: i for k, i in late.items() if i["status"] == "Completed"}
    assert editable and shipped  # the world has both kinds, or this test proves nothing
    # exactly one bulk request per editable late shipment, for its latest shipment id
    sent = server.requests_to(BULK)
    assert sorted(r.json()["shipment_ids"][0] for r in sent) == sorted(
        i["shipment_id"] for i in editable.values()
    )
    for request in sent:
        assert request.method == "PUT"
        assert request.headers["Authorization"] == "Bearer sb-token"
        body = request.json()
        assert body["requested_shipping_service_id"] == FASTER
        assert body["reason"].startswith("orderwatch: ship_late on order ")
    assert len(server.requests) == len(sent)  # nothing else asked of ShipBob
    recorded = reroute_rows(home)
    expected = {
        **{
            delivery_key(k, "reroute"): (
                str(i["shipment_id"]),
                "accepted",
                None,
                "change_shipping_service",
            )
            for k, i in editable.items()
        },
        # a shipment in the carrier's hands: the sender asks nothing and says open a task
        **{
            delivery_key(k, "reroute"): (
                str(i["shipment_id"]),
                "rejected",
                "open_task",
                "change_shipping_service",
            )
            for k, i in shipped.items()
        },
    }
    assert recorded == expected
    tasks = follow_up_tasks(home)
    for key in shipped:
        target, status, reason = tasks[task_key(key)]
        assert (target, status) == (REROUTE_TASK_QUEUE, "open") and "Completed" in reason
    assert not any(task_key(k) in tasks for k in editable)
    before = len(server.requests)
    run(home, server.url)  # a rerun: nothing sent twice, no second task
    assert len(server.requests) == before
    assert reroute_rows(home) == expected and follow_up_tasks(home) == tasks


def test_a_refused_change_opens_a_task_for_the_3pl_queue(
    home: Path, server: ScriptedHTTPServer
) -> None:
    server.route(BULK, bulk_answer(False))
    run(home, server.url)
    items = reroute_items(home)
    editable = {
        k: i
        for k, i in items.items()
        if i["exception_type"] == "ship_late" and i["status"] == "Processing"
    }
    assert editable and len(server.requests_to(BULK)) == len(editable)
    recorded, tasks = reroute_rows(home), follow_up_tasks(home)
    for key, item in editable.items():
        _, status, follow_up, _ = recorded[delivery_key(key, "reroute")]
        assert (status, follow_up) == ("rejected", "open_task")
        target, task_status, reason = tasks[task_key(key)]
        assert (target, task_status) == (REROUTE_TASK_QUEUE, "open")
        assert "NotAllowed service not available" in reason
        assert any(
            a["kind"] == "request_reroute" and a["target"] == REROUTE_TASK_QUEUE
            for a in ledger_actions(home, item["exception_id"])
        )
    # the task itself goes out in the same run (the outbox here: the Zendesk sender is off)
    for key in editable:
        task = home / "outbox" / "messages" / "ticket_create"
        assert (task / f"{delivery_key(task_key(key), 'ticket_create')}.json").is_file()
    before = len(server.requests)
    run(home, server.url)
    assert len(server.requests) == before and follow_up_tasks(home) == tasks


def test_an_unknown_input_asks_shipbob_nothing_and_goes_to_a_person(
    home: Path, server: ScriptedHTTPServer
) -> None:
    server.route(BULK, bulk_answer(True))
    run(home, server.url, service_id=None)  # no faster service configured
    items = reroute_items(home)
    kinds = {i["exception_type"] for i in items.values()}
    assert kinds == {"inventory_hold", "ship_late"}
    assert server.requests == []  # nothing guessed, nothing asked
    assert reroute_rows(home) == {}
    tasks = follow_up_tasks(home)
    why = {
        "inventory_hold": "no other fulfillment center is known to have the stock",
        "ship_late": "no faster shipping service is configured",
    }
    for key, item in items.items():
        target, status, reason = tasks[task_key(key)]
        assert (target, status) == (REROUTE_TASK_QUEUE, "open")
        assert why[item["exception_type"]] in reason
        noted = [
            a for a in ledger_actions(home, item["exception_id"]) if a["kind"] == "request_reroute"
        ]
        assert [a["result"] for a in noted if a["target"] == REROUTE_TASK_QUEUE] == [reason]
    run(home, server.url, service_id=None)
    assert server.requests == [] and follow_up_tasks(home) == tasks
    for item in items.values():  # noted once, not once per run
        noted = ledger_actions(home, item["exception_id"])
        assert (
            sum(a["kind"] == "request_reroute" and a["target"] == REROUTE_TASK_QUEUE for a in noted)
            == 1
        )


def test_with_shipbob_off_reroutes_go_to_the_outbox(home: Path, server: ScriptedHTTPServer) -> None:
    server.route(BULK, bulk_answer(True))
    run(home, server.url, shipbob=False)  # ORDERWATCH_SHIPBOB_ENABLED unset, as in the demo
    assert server.requests == []
    late = {k for k, i in reroute_items(home).items() if i["exception_type"] == "ship_late"}
    written = {p.stem for p in (home / "outbox" / "messages" / "reroute").glob("*.json")}
    assert late and written == {delivery_key(k, "reroute") for k in late}
    assert {r[1] for r in reroute_rows(home).values()} == {"outbox"}  # as every outbox channel
