"""What the action run hands to the teams' own systems (lib/action_run.py), beside the ops queue:
tasks as new Zendesk tickets in the queue's group, escalations to the ops lead's Slack webhook,
reroute requests to the 3PL (ShipBob, senders/shipbob.py), and the write-back that closes the
loop (the storefront tag `orderwatch:delayed`, the task ticket solved when its exception
resolves).

Each delivery is one row of `ops.customer_messages` keyed per queue item × channel, sent through
the run's sink exactly like a customer message: the intent is committed before the sink is
called, a row `not_accepted` (the provider provably did not take it) is sent again by a later
run under the same key, one `accepted`, `outbox` or `uncertain` never again (lib/decide.py
`SENT_STATUSES`). A task or escalation the provider refused (`rejected`) is not dropped: an
alert says why, it stays pending (follow-up `resend_once`, the row's `resend_key` set) and a
later run sends it once more under that key, and every retry after (a 429 in between) too;
refused again, it goes to the human queue (`rejected_delivery`). A refused row without
`resend_key` (from before it existed) is never resent: it goes to the human queue. Without an
enabled sender the sink writes to the local outbox.

A reroute goes to ShipBob only with every input it needs known (`reroute_request`); otherwise,
or when the sender answers `rejected` (with follow-up `open_task` when ShipBob cannot make the
change), it becomes a task for the 3PL queue (`REROUTE_TASK_QUEUE`), once per reroute item,
and the exception's ledger entry says so.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime
from pathlib import Path
from typing import Any, Protocol

from orderwatch_dagster.lib import ledger as lg
from orderwatch_dagster.lib.action_inputs import Controls, RunReport
from orderwatch_dagster.lib.decide import DELIVERED_STATUSES, SENT_STATUSES
from orderwatch_dagster.lib.outbound import Outbound, Outcome
from orderwatch_dagster.lib.packets import (
    STATUS_TEXT,
    Contact,
    OrderContext,
    packet_name,
    promised_day,
)
from orderwatch_dagster.lib.support_decisions import TicketDecision
from orderwatch_dagster.lib.tables import select_dicts, table_exists
from orderwatch_dagster.lib.templating import render_text
from orderwatch_dagster.lib.warehouse_session import WarehouseSession


class ActionRun(Protocol):
    """What these steps use of one action run (lib/action_run.py `ActionRun`; a protocol, so
    this module does not import that one, which imports it)."""

    s: WarehouseSession
    c: Controls
    writes: bool
    now: datetime
    outbox: Path
    report: RunReport
    ledger: dict[str, dict[str, Any]]
    messages: dict[str, dict[str, Any]]
    queue: dict[str, dict[str, Any]]

    def row(
        self,
        idem: str,
        order: Mapping[str, Any],
        channel: str,
        template: str,
        state_key: str,
        eids: list[str],
        recipient: str,
        subject: str | None,
        policy_rule: str,
    ) -> dict[str, Any]: ...

    def send_recorded(self, row: dict[str, Any], outbound: Outbound) -> None: ...

    def queue_item(
        self,
        eid: str,
        ref: Mapping[str, Any],
        kind: str,
        target: str,
        reason: str,
        policy_rule: str,
        action_key: str | None = None,
        severity: str | None = None,
    ) -> bool: ...

    def note_action(self, eid: str, kind: str, target: str, result: str) -> None: ...

    def alert(self, kind: str, detail: str) -> None: ...

    def throttled(self, channel: str) -> bool: ...

    def zone_of(self, contact: Contact, order: Mapping[str, Any] | None = None) -> str: ...

    def close_queue_items(self, eid: str, kinds: tuple[str, ...] | None = None) -> None: ...


# queue kind → the provider channel that carries it
PROVIDER_CHANNEL = {
    "create_task": "ticket_create",
    "escalate": "slack",
    "request_reroute": "reroute",
}
REROUTE_TASK_QUEUE = "warehouse"  # the team that works with the 3PL
LATE_TYPES = ("ship_late", "predicted_late")  # a faster service can still keep the promise
ZENDESK_PRIORITY = {"critical": "urgent", "high": "high", "medium": "normal", "low": "low"}
KIND_TEXT = {"create_task": "task", "escalate": "escalation"}


def delivery_key(action_key: str, channel: str) -> str:
    return lg.key(action_key, channel)


def packet_link(run: ActionRun, order_id: Any) -> str:
    """The packet's address for people outside this host (ORDERWATCH_PACKET_BASE_URL), else its
    file on the ops host (shown, not linked, by the Slack sender)."""
    name = f"{packet_name(order_id)}.html"
    if run.c.packet_base_url:
        return f"{run.c.packet_base_url.rstrip('/')}/{name}"
    return str(run.outbox / "packets" / name)


def _evidence_summary(evidence: Any) -> str:
    data = json.loads(evidence) if isinstance(evidence, str) else (evidence or {})
    keep = ("signal", "reason", "hold_category", "threshold_hours", "last_event")
    return ", ".join(f"{k}={data[k]}" for k in keep if data.get(k) is not None)


def _order(run: ActionRun, ctx: OrderContext, item: Mapping[str, Any]) -> dict[str, Any]:
    return ctx.orders.get(item["order_id"]) or {
        "order_id": item["order_id"],
        "order_name": item.get("order_name"),
    }


def _outbound(
    run: ActionRun,
    item: Mapping[str, Any],
    order: Mapping[str, Any],
    exc: Mapping[str, Any],
    status_ticket: Any = None,
    assigns: bool = True,
    zone: str | None = None,
) -> Outbound:
    channel = PROVIDER_CHANNEL[item["kind"]]
    # the promised day where the customer is, as their messages say it (lib/packets.py)
    promised = promised_day(order, zone)
    facts = {
        "kind_text": KIND_TEXT[item["kind"]],
        "order_name": order.get("order_name"),
        "queue": item["target"],
        "status_text": STATUS_TEXT.get(str(order.get("current_milestone")), "in progress"),
        "carrier": order.get("carrier"),
        "promised_date": promised.isoformat() if promised is not None else None,
        "exception_type": exc.get("exception_type"),
        "severity": item.get("severity"),
        "evidence_summary": _evidence_summary(exc.get("evidence")),
        "reason": item.get("reason"),
        "policy_rule": item.get("policy_rule"),
        "packet_link": packet_link(run, item["order_id"]),
    }
    subject = (
        f"orderwatch {facts['kind_text']}: {order.get('order_name')} {facts['exception_type']}"
        f" ({item.get('severity')})"
    )
    idem = delivery_key(item["action_key"], channel)
    if channel == "ticket_create":
        body = render_text("ticket/task.j2", **facts)
        tags = ["orderwatch", "orderwatch_task", f"orderwatch_{facts['exception_type']}"]
        meta: dict[str, Any] = {
            "queue": item["target"],
            "tags": tags,
            "type": "task",
            "priority": ZENDESK_PRIORITY.get(str(item.get("severity")), "normal"),
            "external_id": order.get("order_name"),  # the support feed links the ticket back
        }
        if status_ticket is not None:  # the customer already asked: onto that ticket, no second
            note: dict[str, Any] = {"queue": item["target"], "tags": tags}
            if not assigns:  # another task's queue has the ticket: tagged, not reassigned
                # (not `orderwatch_queue_<queue>`: a Zendesk trigger may route on that one)
                note = {"tags": [*tags, f"orderwatch_task_{item['target']}"]}
            return Outbound(idem, "ticket_note", str(status_ticket), body, metadata=note)
        return Outbound(idem, channel, str(order.get("order_name")), body, subject, metadata=meta)
    # Slack escapes mrkdwn itself (senders/slack.py): plain text, not the autoescaped template
    summary = (
        f"{facts['exception_type']} ({item.get('severity')}) on order {order.get('order_name')}:"
        f" {facts['status_text']}, promised by {facts['promised_date'] or 'unknown'}."
        f" {item.get('reason') or ''}".strip()
    )
    fields = {
        "Order": order.get("order_name"),
        "Severity": item.get("severity"),
        "Promised by": facts["promised_date"] or "unknown",
        "Tier": order.get("customer_tier") or exc.get("customer_tier"),
        "Carrier": facts["carrier"] or "-",
        "Policy": item.get("policy_rule"),
    }
    meta = {"fields": fields, "packet_url": facts["packet_link"]}
    return Outbound(idem, channel, str(item["target"]), summary, subject, metadata=meta)


# -- reroutes (senders/shipbob.py) -----------------------------------------------------------------
def latest_shipments(run: ActionRun, order_ids: set[Any]) -> dict[Any, dict[str, Any]]:
    """Order → its newest ShipBob shipment as the warehouse last saw it (latest order version)."""
    ids = sorted(int(o) for o in order_ids if isinstance(o, int))
    if not ids or not table_exists(run.s, "staging", "stg_wms__shipments"):
        return {}
    cols = ("order_id", "shipment_id", "status", "status_detail")
    sql = (
        f"select {', '.join(cols)} from staging.stg_wms__shipments"
        # ints only, so inlining them is safe on either warehouse backend
        f" where is_latest_version and order_id in ({', '.join(str(i) for i in ids)})"
        " order by order_id, created_at, shipment_id"
    )
    # ordered oldest first: the last row per order wins
    return {r["order_id"]: r for r in select_dicts(run.s, sql, cols)}


def reroute_request(
    run: ActionRun,
    item: Mapping[str, Any],
    exc: Mapping[str, Any],
    shipment: Mapping[str, Any] | None,
) -> Outbound | str:
    """The ShipBob request for a reroute item, or why orderwatch cannot make one (a person
    must): only inputs the warehouse knows are sent, none is guessed."""
    kind = exc.get("exception_type")
    if shipment is None or shipment.get("shipment_id") is None:
        return "no ShipBob shipment is known for the order"
    if kind == "address_issue":
        # no feed carries a corrected address: the customer's answer reaches a person
        return "no corrected address is known"
    if kind == "inventory_hold":
        # no feed carries stock per fulfillment center, so none is known to have the items
        return "no other fulfillment center is known to have the stock"
    if kind not in LATE_TYPES:
        return f"ShipBob offers no reroute for {kind}"
    if run.c.reroute_shipping_service_id is None:
        return "no faster shipping service is configured (ORDERWATCH_SHIPBOB_FASTER_SERVICE_ID)"
    detail = shipment.get("status_detail")
    meta: dict[str, Any] = {
        "action": "change_shipping_service",
        "shipment_status": shipment.get("status"),
        "status_details": [detail] if detail else [],
        "shipping_service_id": run.c.reroute_shipping_service_id,
        "reason": f"orderwatch: {kind} on order {item.get('order_name')}",
    }
    idem = delivery_key(item["action_key"], "reroute")
    body = str(item.get("reason") or meta["reason"])
    return Outbound(idem, "reroute", str(shipment["shipment_id"]), body, metadata=meta)


def reroute_task(run: ActionRun, item: Mapping[str, Any], why: str) -> None:
    """The reroute as a task for the 3PL queue, once per reroute item; noted on its exception."""
    reason = f"reroute for a person: {why}"
    key = lg.key(item["action_key"], "reroute_task")
    if run.queue_item(
        item["exception_id"],
        item,
        "create_task",
        REROUTE_TASK_QUEUE,
        reason,
        item.get("policy_rule") or "",
        action_key=key,
        severity=item.get("severity"),
    ):
        run.report.actions["reroute_task"] += 1
        run.note_action(item["exception_id"], "request_reroute", REROUTE_TASK_QUEUE, reason)


def _reroute(
    run: ActionRun,
    item: Mapping[str, Any],
    order: Mapping[str, Any],
    exc: Mapping[str, Any],
    shipments: Mapping[Any, Mapping[str, Any]],
) -> None:
    previous = run.messages.get(delivery_key(item["action_key"], "reroute"))
    if previous is not None and previous["status"] in SENT_STATUSES:
        if previous["status"] == "rejected":  # its task again, in case a crash lost it
            reroute_task(run, item, str(previous.get("detail")))
        return
    if lg.key(item["action_key"], "reroute_task") in run.queue:
        return  # already handed to a person
    outbound = reroute_request(run, item, exc, shipments.get(item["order_id"]))
    if isinstance(outbound, str):
        reroute_task(run, item, outbound)
        return
    if run.writes and run.throttled("reroute"):
        run.report.held["provider_throttled"] += 1  # no row: the next run decides again
        return
    run.report.actions["reroute"] += 1
    row = run.row(
        outbound.idempotency_key,
        order,
        "reroute",
        str(outbound.metadata["action"]),
        f"request_reroute:{item['target']}",
        [item["exception_id"]],
        outbound.recipient,
        None,
        item.get("policy_rule") or "",
    )
    run.send_recorded(row, outbound)
    # ShipBob cannot (follow-up open_task) or the request was bad: either way a person can
    if row["status"] == str(Outcome.REJECTED):
        reroute_task(run, item, str(row.get("detail")))


def dispatch_queue(
    run: ActionRun,
    ctx: OrderContext,
    by_id: Mapping[str, Mapping[str, Any]],
    status_tickets: Mapping[Any, Any],
) -> None:
    """Every open reroute, task and escalation to its provider once (again only after a
    provable `not_accepted`); what the sink answers is in the ledger and on the item's
    exception. Reroutes go first, so a task one of them opens is sent in the same run. A task
    on an order whose customer has an open status ticket (`status_tickets`: order → ticket) is
    an internal note on that ticket, assigned to the queue's group, not a second ticket."""
    reroutes = [
        q for q in run.queue.values() if q["kind"] == "request_reroute" and q["status"] == "open"
    ]
    shipments = latest_shipments(run, {q["order_id"] for q in reroutes}) if reroutes else {}
    for item in sorted(reroutes, key=lambda q: str(q["action_key"])):
        exc = by_id.get(item["exception_id"]) or run.ledger.get(item["exception_id"]) or {}
        _reroute(run, item, _order(run, ctx, item), exc, shipments)
    assigning = _assigning_tasks(run, status_tickets)
    for item in sorted(run.queue.values(), key=lambda q: str(q["action_key"])):
        channel = PROVIDER_CHANNEL.get(item["kind"])
        if channel in (None, "reroute") or item["status"] != "open":
            continue
        previous = run.messages.get(delivery_key(item["action_key"], channel))
        resend_key = _resend_key(run, item, channel, previous)
        if previous is not None and previous["status"] in SENT_STATUSES and not resend_key:
            continue
        resend = resend_key is not None
        order = _order(run, ctx, item)
        exc = by_id.get(item["exception_id"]) or run.ledger.get(item["exception_id"]) or {}
        assigns = item["action_key"] in assigning
        outbound = _outbound(
            run,
            item,
            order,
            exc,
            status_tickets.get(item["order_id"]),
            assigns=assigns,
            zone=run.zone_of(ctx.contacts.get(item["order_id"]) or Contact(), order),
        )
        if run.writes and run.throttled(outbound.channel):
            run.report.held["provider_throttled"] += 1  # no row: the next run decides again
            continue
        run.report.actions[outbound.channel] += 1
        tag_only = outbound.channel == "ticket_note" and "queue" not in outbound.metadata
        row = run.row(
            outbound.idempotency_key,
            order,
            outbound.channel,
            item["kind"],
            # a note that did not move the status ticket to its group says so (_assigning_tasks)
            f"{item['kind']}:{item['target']}{TAG_ONLY if tag_only else ''}",
            [item["exception_id"]],
            outbound.recipient,
            outbound.subject,
            item.get("policy_rule") or "",
        )
        if resend_key:  # the refused request created nothing: a fresh key cannot duplicate it
            # (the ledger row keeps its key; only the provider sees the new one)
            outbound = dataclasses.replace(outbound, idempotency_key=resend_key)
        run.send_recorded(row, outbound)
        if row["status"] == str(Outcome.REJECTED):
            _refused(run, item, channel, row, again=resend)


SEVERITY_RANK = {"low": 0, "medium": 1, "high": 2, "critical": 3}
# state_key suffix of a task note that only tagged the status ticket (a note without it set the
# ticket's group: every note did, before tag-only notes existed)
TAG_ONLY = ":tag_only"


def _assigning_tasks(run: ActionRun, status_tickets: Mapping[Any, Any]) -> set[str]:
    """The tasks whose note moves the customer's status ticket to their queue's group: per
    ticket, the most severe task going out now (the first by key among equals), and only when
    it is more severe than every task already noted there. Several tasks on one order so never
    flip the ticket between groups run after run; a more urgent one takes it over."""

    def rank(item: Mapping[str, Any]) -> int:
        return SEVERITY_RANK.get(str(item.get("severity")), SEVERITY_RANK["medium"])

    noted: dict[Any, int] = {}
    going: dict[Any, list[Mapping[str, Any]]] = {}
    for item in sorted(run.queue.values(), key=lambda q: str(q["action_key"])):
        ticket = status_tickets.get(item["order_id"])
        if item["kind"] != "create_task" or ticket is None:
            continue
        sent = run.messages.get(delivery_key(item["action_key"], "ticket_create"))
        status = sent["status"] if sent is not None else None
        if status in SENT_STATUSES and status != str(Outcome.REJECTED):
            # only a note that set the group counts: a tag-only one moved nothing
            assigned = not str(sent.get("state_key") or "").endswith(TAG_ONLY)
            if assigned and sent["recipient"] == str(ticket):
                noted[ticket] = max(noted.get(ticket, -1), rank(item))
            continue
        resend = (  # as `_resend_key` sends it again: refused once, with its resend key
            status == str(Outcome.REJECTED)
            and sent.get("follow_up") == "resend_once"
            and bool(sent.get("resend_key"))
        )
        if item["status"] == "open" and (status not in SENT_STATUSES or resend):
            going.setdefault(ticket, []).append(item)
    out = set()
    for ticket, items in going.items():
        top = max(items, key=rank)  # the first of the most severe
        if rank(top) > noted.get(ticket, -1):
            out.add(str(top["action_key"]))
    return out


def _refused_again_key(item: Mapping[str, Any], channel: str) -> str:
    return lg.key(item["action_key"], channel, "refused_again")


def _resend_key(
    run: ActionRun, item: Mapping[str, Any], channel: str, previous: Mapping[str, Any] | None
) -> str | None:
    """The key a delivery goes out under when it is the one resend of a refused task or
    escalation: at its first refusal the row got `resend_key` and follow-up `resend_once`; a
    resend the provider did not accept (429, 503) keeps the key and is tried again under it.
    None: not a resend (a first send, a plain not_accepted retry, or done for good)."""
    if previous is None or not previous.get("resend_key"):
        if previous is not None and previous["status"] == str(Outcome.REJECTED):
            _refused_unmarked(run, item, channel, previous)
        return None
    if _refused_again_key(item, channel) in run.queue:
        return None  # refused twice: a person has it
    waiting = previous["status"] == str(Outcome.REJECTED) and previous["follow_up"] == "resend_once"
    if waiting or previous["status"] == str(Outcome.NOT_ACCEPTED):
        return str(previous["resend_key"])
    return None


def _refused_unmarked(
    run: ActionRun, item: Mapping[str, Any], channel: str, previous: Mapping[str, Any]
) -> None:
    """A refusal recorded before resends carried `resend_key`: whether it was resent already
    is unknown, so it is never sent again; a person reviews it (once)."""
    if previous.get("follow_up") != "resend_once" or _refused_again_key(item, channel) in run.queue:
        return
    _review_refusal(
        run, item, channel, f"refused by the provider, not sent again: {previous.get('detail')}"
    )


def _review_refusal(run: ActionRun, item: Mapping[str, Any], channel: str, why: str) -> None:
    """A person reviews a delivery the provider refused (once per item and channel)."""
    run.queue_item(
        item["exception_id"],
        item,
        "human_review",
        "rejected_delivery",
        why,
        item.get("policy_rule") or "",
        action_key=_refused_again_key(item, channel),
        severity=item.get("severity"),
    )


def _refused(
    run: ActionRun, item: Mapping[str, Any], channel: str, row: dict[str, Any], *, again: bool
) -> None:
    what = f"{channel} {item['kind']} for {row.get('order_name')}: {row.get('detail')}"[:300]
    if again:
        _review_refusal(
            run,
            item,
            channel,
            f"refused twice by the provider, not sent again: {row.get('detail')}",
        )
        run.alert("rejected_delivery", f"{what} (refused again: human review)")
        row["follow_up"] = "human_review"
    else:
        run.alert("rejected_delivery", f"{what} (pending: sent once more on the next run)")
        row["follow_up"] = "resend_once"
        row["resend_key"] = f"{row['idempotency_key']}:resend"
    if run.writes:
        lg.write_message(run.s, row)


# -- closing the loop ------------------------------------------------------------------------------
def tag_orders(run: ActionRun, open_orders: set[Any], ctx: OrderContext) -> None:
    """`orderwatch:delayed` on an order once its customer was told, removed when none of its
    exceptions is open any more (recovered, delivered, or a false alarm). Cycle n of an order
    is keyed (order, n)."""
    tags = [m for m in run.messages.values() if m["channel"] == "order_tags"]
    notified = notified_orders(run.messages.values(), "order_tags" in run.c.live_channels)
    orders = notified | {m["order_id"] for m in tags}
    for oid in sorted(orders):
        mine = [m for m in tags if m["order_id"] == oid and m["status"] in SENT_STATUSES]
        cycle = sum(m["template"] == "untag_delayed" for m in mine)
        added = any(m["state_key"] == f"delayed#{cycle}" for m in mine)
        if not added and oid in open_orders and oid in notified:
            _tag(run, oid, ctx, cycle, add=True)
        elif added and oid not in open_orders:
            _tag(run, oid, ctx, cycle, add=False)


def notified_orders(messages: Iterable[Mapping[str, Any]], tags_live: bool) -> set[Any]:
    """Orders whose customer was told. A real Shopify (`tags_live`) is tagged only for
    messages a provider accepted: an outbox e-mail reached nobody, and the tag on a live store
    would tell an agent the customer knows. Without it the tag goes to the outbox too, where the
    message went (the demo)."""
    told = ("accepted",) if tags_live else DELIVERED_STATUSES
    return {
        m["order_id"] for m in messages if m["channel"] in ("email", "sms") and m["status"] in told
    }


def _tag(run: ActionRun, oid: Any, ctx: OrderContext, cycle: int, *, add: bool) -> None:
    known = next((m for m in run.messages.values() if m["order_id"] == oid), {})
    order = ctx.orders.get(oid) or {"order_id": oid, "order_name": known.get("order_name")}
    template = "tag_delayed" if add else "untag_delayed"
    idem = lg.key(oid, template, cycle)
    state_key = f"delayed#{cycle}" if add else f"recovered#{cycle}"
    meta: dict[str, Any] = (
        {"add_tags": ["orderwatch:delayed"], "note": f"orderwatch: see packet order-{oid}"}
        if add
        else {"remove_tags": ["orderwatch:delayed"], "clear_note": True}
    )
    if run.writes and run.throttled("order_tags"):
        run.report.held["provider_throttled"] += 1  # no row: the next run decides again
        return
    run.report.actions[template] += 1
    row = run.row(
        idem,
        order,
        "order_tags",
        template,
        state_key,
        [],
        str(oid),
        None,
        "close the loop (lib/action_dispatch.py)",
    )
    run.send_recorded(row, Outbound(idem, "order_tags", str(oid), template, metadata=meta))


# -- what agents decided (lib/support_decisions.py) ------------------------------------------------
def _ticket_id(provider_id: Any) -> int | None:
    """`ticket 9001` / `ticket 9001 comment 5` (senders/zendesk.py) → 9001."""
    parts = str(provider_id or "").split()
    return (
        int(parts[1]) if len(parts) >= 2 and parts[0] == "ticket" and parts[1].isdigit() else None
    )


def task_tickets(run: ActionRun) -> dict[int, dict[str, Any]]:
    """Zendesk ticket id → the queue item orderwatch opened it for."""
    out: dict[int, dict[str, Any]] = {}
    for item in run.queue.values():
        if item["kind"] != "create_task":
            continue
        made = run.messages.get(delivery_key(item["action_key"], "ticket_create"))
        ticket_id = _ticket_id(made.get("provider_id")) if made else None
        # a task delivered as a note on a customer's ticket is not a task ticket of ours
        created = made and made["channel"] == "ticket_create" and made["status"] == "accepted"
        if created and ticket_id is not None:
            out[ticket_id] = item
    return out


def honour_agent_decisions(run: ActionRun, decisions: Sequence[TicketDecision]) -> None:
    """An agent's `false_alarm` suppresses the exception (its queue items done, no further
    actions); `compensated` records that a person settled it (no new tasks or escalations, its
    human reviews done; customer updates go on, as for `acknowledged`); a task ticket solved
    by an agent closes that task. A decision on a ticket orderwatch opened applies to that
    ticket's exception; on any other ticket linked to an order (a customer's own), to the
    order's exceptions open when the agent decided."""
    ours = task_tickets(run)
    for decision in decisions:
        item = ours.get(decision.ticket_id)
        if item is not None:
            targets = [item["exception_id"]]
        elif decision.decision != "solved" and decision.order_name:
            targets = [
                eid
                for eid, entry in run.ledger.items()
                if entry.get("order_name") == decision.order_name
                and entry["status"] in lg.OPEN_STATUSES
                and entry["opened_at"] <= decision.at
            ]
        else:
            continue
        for eid in targets:
            if _apply(run, run.ledger[eid], decision, item):
                run.report.agent_decisions[decision.decision] += 1


def _apply(
    run: ActionRun,
    entry: dict[str, Any],
    decision: TicketDecision,
    item: Mapping[str, Any] | None,
) -> bool:
    if entry["status"] not in lg.OPEN_STATUSES:
        return False  # resolved or already suppressed: nothing left to decide
    current = entry.get("human_decision")
    eid = entry["exception_id"]
    who = {"decided_by": decision.by, "decided_at": decision.at, "updated_at": run.now}
    if decision.decision == "false_alarm":
        reason = f"false_alarm (Zendesk ticket {decision.ticket_id})"
        entry.update(who, human_decision="false_alarm", owner=decision.by, status="suppressed")
        entry["suppressed_reason"] = reason
        run.close_queue_items(eid)
    elif decision.decision == "compensated":
        if current == "compensated":
            return False
        entry.update(who, human_decision="compensated", owner=decision.by)
        run.close_queue_items(eid, kinds=("human_review",))
    else:  # an agent solved the task orderwatch opened
        if item is None or item["status"] != "open":
            return False
        run.close_queue_items(eid, kinds=("create_task",))
        if current is None:
            entry.update(who, human_decision="acknowledged", owner=decision.by)
    if run.writes:
        lg.write_ledger(run.s, entry)
    return True


def close_task_tickets(run: ActionRun, ctx: OrderContext, solved_by_agents: set[int]) -> None:
    """A task ticket whose exception resolved (the order recovered or was delivered) is solved
    with a note saying so, once; one an agent already solved, or a false alarm, is left as is."""
    for ticket_id, item in sorted(task_tickets(run).items()):
        entry = run.ledger.get(item["exception_id"], {})
        if entry.get("status") != "resolved" or ticket_id in solved_by_agents:
            continue
        key = delivery_key(item["action_key"], "ticket_resolve")
        previous = run.messages.get(key)
        if previous is not None and previous["status"] in SENT_STATUSES:
            continue
        order = _order(run, ctx, item)
        milestone = STATUS_TEXT.get(str(order.get("current_milestone")), "back on track")
        body = (
            f"orderwatch: order {order.get('order_name')} is {milestone}; its"
            f" {entry.get('exception_type')} exception ended at {entry.get('resolved_at')}."
            " Nothing left to do on this task: solved by orderwatch."
        )
        meta = {"status": "solved", "tags": ["orderwatch_resolved"]}
        if run.writes and run.throttled("ticket_note"):
            run.report.held["provider_throttled"] += 1  # no row: the next run decides again
            continue
        run.report.actions["ticket_resolve"] += 1
        row = run.row(
            key,
            order,
            "ticket_note",
            "task_resolved",
            f"resolved:{item['action_key']}",
            [item["exception_id"]],
            f"ticket {ticket_id}",
            None,
            "close the loop (lib/action_dispatch.py)",
        )
        run.send_recorded(row, Outbound(key, "ticket_note", str(ticket_id), body, metadata=meta))
