"""What the action run hands to the teams' own systems (lib/action_run.py), beside the ops queue:
tasks as new Zendesk tickets in the queue's group, escalations to the ops lead's Slack webhook,
and the write-back that closes the loop (the storefront tag `orderwatch:delayed`, the task
ticket solved when its exception resolves).

Each delivery is one row of `ops.customer_messages` keyed per queue item × channel, sent through
the run's sink exactly like a customer message: the intent is committed before the sink is
called, a row `not_accepted` (the provider provably did not take it) is sent again by a later
run under the same key, one `accepted`, `uncertain` or `rejected` never again (lib/decide.py
`SENT_STATUSES`). Without an enabled sender the sink writes to the local outbox.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from orderwatch_dagster.lib import ledger as lg
from orderwatch_dagster.lib.decide import SENT_STATUSES
from orderwatch_dagster.lib.outbound import Outbound
from orderwatch_dagster.lib.packets import STATUS_TEXT, OrderContext, packet_name
from orderwatch_dagster.lib.templating import render_text

if TYPE_CHECKING:
    from orderwatch_dagster.lib.action_run import ActionRun

# queue kind → the provider channel that carries it (request_reroute: senders/shipbob.py, to come)
PROVIDER_CHANNEL = {"create_task": "ticket_create", "escalate": "slack"}
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
    run: ActionRun, item: Mapping[str, Any], order: Mapping[str, Any], exc: Mapping[str, Any]
) -> Outbound:
    channel = PROVIDER_CHANNEL[item["kind"]]
    promised = order.get("promised_deliver_by")
    facts = {
        "kind_text": KIND_TEXT[item["kind"]],
        "order_name": order.get("order_name"),
        "queue": item["target"],
        "status_text": STATUS_TEXT.get(str(order.get("current_milestone")), "in progress"),
        "carrier": order.get("carrier"),
        "promised_date": promised.date().isoformat() if promised is not None else None,
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


def dispatch_queue(
    run: ActionRun, ctx: OrderContext, by_id: Mapping[str, Mapping[str, Any]]
) -> None:
    """Every open task and escalation to its provider once (again only after a provable
    `not_accepted`); what the sink answers is in the ledger and on the item's exception."""
    for item in sorted(run.queue.values(), key=lambda q: str(q["action_key"])):
        channel = PROVIDER_CHANNEL.get(item["kind"])
        if channel is None or item["status"] != "open":
            continue
        previous = run.messages.get(delivery_key(item["action_key"], channel))
        if previous is not None and previous["status"] in SENT_STATUSES:
            continue
        order = _order(run, ctx, item)
        exc = by_id.get(item["exception_id"]) or run.ledger.get(item["exception_id"]) or {}
        outbound = _outbound(run, item, order, exc)
        run.report.actions[channel] += 1
        row = run.row(
            outbound.idempotency_key,
            order,
            channel,
            item["kind"],
            f"{item['kind']}:{item['target']}",
            [item["exception_id"]],
            outbound.recipient,
            outbound.subject,
            item.get("policy_rule") or "",
        )
        run.send_recorded(row, outbound)


# -- closing the loop ------------------------------------------------------------------------------
def tag_orders(run: ActionRun, open_orders: set[Any], ctx: OrderContext) -> None:
    """`orderwatch:delayed` on an order once its customer was told, removed when none of its
    exceptions is open any more (recovered, delivered, or a false alarm). Cycle n of an order
    is keyed (order, n)."""
    tags = [m for m in run.messages.values() if m["channel"] == "order_tags"]
    notified = {
        m["order_id"]
        for m in run.messages.values()
        if m["channel"] in ("email", "sms") and m["status"] == "accepted"
    }
    orders = notified | {m["order_id"] for m in tags}
    for oid in sorted(orders):
        mine = [m for m in tags if m["order_id"] == oid and m["status"] in SENT_STATUSES]
        cycle = sum(m["template"] == "untag_delayed" for m in mine)
        added = any(m["state_key"] == f"delayed#{cycle}" for m in mine)
        if not added and oid in open_orders and oid in notified:
            _tag(run, oid, ctx, cycle, add=True)
        elif added and oid not in open_orders:
            _tag(run, oid, ctx, cycle, add=False)


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
