"""Per-order decisions (pure): which actions the policy asks for, which customer message (at
most one per order per state change), and what is held back and why.

The customer-facing state of an order is `<template>@<current milestone>`; the message's
idempotency key is (order, that state, channel:template), so a rerun, a replayed sensor tick
or a second exception on the same order can never produce a second message for one state.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from orderwatch_dagster.lib.ledger import key
from orderwatch_dagster.lib.policy import Policy

CLOSED_MILESTONES = ("delivered", "cancelled", "return_to_sender")
# a message in one of these states already went out (or may have): never send that key again
SENT_STATUSES = ("sending", "accepted", "outbox", "uncertain", "rejected")
# a message that went where this run's sink sends it (a provider, or the local outbox)
DELIVERED_STATUSES = ("accepted", "outbox")


@dataclass(frozen=True)
class PlannedAction:
    action_key: str
    exception_id: str
    kind: str
    target: str
    reason: str
    severity: str
    policy_rule: str


@dataclass(frozen=True)
class PlannedMessage:
    idempotency_key: str
    order_id: Any
    channel: str
    template: str
    state_key: str
    exception_ids: tuple[str, ...]
    driver_type: str  # the exception type whose facts the message states
    policy_rule: str


@dataclass
class OrderPlan:
    order_id: Any
    actions: list[PlannedAction] = field(default_factory=list)
    message: PlannedMessage | None = None
    held: list[tuple[str, str]] = field(default_factory=list)  # (exception_id or order, why)
    decisions: list[dict[str, Any]] = field(default_factory=list)


def order_closed(order: Mapping[str, Any] | None) -> bool:
    """Delivered, cancelled or returned (or unknown): no "delayed" message can be true."""
    if not order:
        return True
    return (
        not order.get("is_open", False)
        or order.get("delivered_at") is not None
        or order.get("current_milestone") in CLOSED_MILESTONES
    )


def _human_hold(entry: Mapping[str, Any] | None, now: datetime) -> str | None:
    if not entry:
        return None
    decision = entry.get("human_decision")
    if decision == "false_alarm" or entry.get("status") == "suppressed":
        return "false_alarm"
    until = entry.get("snoozed_until")
    if decision == "snoozed" and until is not None and until > now:
        return "snoozed"
    return None


def plan_order(
    order: Mapping[str, Any] | None,
    exceptions: Sequence[Mapping[str, Any]],
    ledger: Mapping[str, Mapping[str, Any]],
    messages: Sequence[Mapping[str, Any]],
    policy: Policy,
    now: datetime,
    stale_feeds: frozenset[str] = frozenset(),
) -> OrderPlan:
    """Decide for one order's open exceptions."""
    order_id = exceptions[0]["order_id"] if exceptions else (order or {}).get("order_id")
    plan = OrderPlan(order_id)
    candidates: list[tuple[int, str, str, Mapping[str, Any], str]] = []
    for exc in exceptions:
        eid = exc["exception_id"]
        entry = ledger.get(eid)
        hold = _human_hold(entry, now)
        stale = sorted(set(policy.feeds_for(exc["exception_type"])) & stale_feeds)
        if stale:
            hold = f"stale_feed:{','.join(stale)}"
        if hold:
            plan.held.append((eid, hold))
            continue
        tier, severity = exc["customer_tier"], exc["severity"]
        decision = policy.decide(exc["exception_type"], tier, severity, float(exc["order_value"]))
        plan.decisions.append(
            {
                "exception_id": eid,
                "exception_type": exc["exception_type"],
                "severity": severity,
                "recommended": decision.recommended,
                "why": decision.rule.why,
                "policy_line": decision.policy_line,
            }
        )
        # a person owns it (acknowledged) or settled it with the customer (compensated)
        acknowledged = bool(
            entry and entry.get("human_decision") in ("acknowledged", "compensated")
        )
        for action in decision.actions:
            if action.kind == "notify_customer":
                channel, template = action.params["channel"], action.params["template"]
                prio = policy.message_priority(template)
                candidates.append((prio, channel, template, exc, decision.policy_line))
                continue
            if acknowledged:
                plan.held.append((eid, f"acknowledged:{action.kind}"))
                continue  # a person owns it: no new tasks or escalations
            plan.actions.append(
                PlannedAction(
                    action_key=key(eid, action.kind, action.target),
                    exception_id=eid,
                    kind=action.kind,
                    target=action.target,
                    reason=str(action.params.get("reason") or decision.rule.why),
                    severity=severity,
                    policy_rule=decision.policy_line,
                )
            )
    plan.message = _message(plan, order, candidates, messages, policy, now)
    return plan


def _message(
    plan: OrderPlan,
    order: Mapping[str, Any] | None,
    candidates: list[tuple[int, str, str, Mapping[str, Any], str]],
    messages: Sequence[Mapping[str, Any]],
    policy: Policy,
    now: datetime,
) -> PlannedMessage | None:
    if not candidates:
        return None
    if order_closed(order):
        plan.held.append(("order", "order_closed"))
        return None
    window = timedelta(hours=float(policy.messages["backfill_window_hours"]))
    fresh = [c for c in candidates if c[3]["started_at"] >= now - window]
    if not fresh:
        plan.held.append(("order", "older_than_backfill_window"))
        return None
    fresh.sort(key=lambda c: (c[0], c[3]["started_at"]))
    _, channel, template, driver, policy_rule = fresh[0]
    assert order is not None
    state_key = f"{template}@{order.get('current_milestone')}"
    idem = key(order["order_id"], state_key, f"{channel}:{template}")
    previous = [m for m in messages if m["idempotency_key"] == idem]
    if previous and previous[0]["status"] in SENT_STATUSES:
        plan.held.append(("order", f"already_{previous[0]['status']}"))
        return None
    cooldown = timedelta(hours=float(policy.messages["cooldown_hours"].get(channel, 0)))
    recent = [
        m
        for m in messages
        if m["channel"] == channel
        and m["status"] in SENT_STATUSES
        and m["created_at"] is not None
        and m["created_at"] > now - cooldown
    ]
    if recent:
        plan.held.append(("order", f"cooldown:{channel}"))
        return None
    return PlannedMessage(
        idempotency_key=idem,
        order_id=order["order_id"],
        channel=channel,
        template=template,
        state_key=state_key,
        exception_ids=tuple(sorted({c[3]["exception_id"] for c in fresh})),
        driver_type=str(driver["exception_type"]),
        policy_rule=policy_rule,
    )
