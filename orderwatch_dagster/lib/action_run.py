"""One run of the action job, without Dagster: sync the ledger with marts.order_exceptions,
decide per order (lib/decide.py), act, record, write packets and the ops-queue page.

Safety, in the order it is checked: the kill-switch stops before anything is read; a replay
("now" an explicit past moment) and dry-run decide and report but write and send nothing (a
dry run still writes packets and the page, to preview them); a stale feed holds the exceptions
that depend on it and raises an alert; more planned customer messages than the per-run cap
stops all customer messages and alerts. Every message's intent (`sending`) is committed before
the sink is called; a `sending` row found by a later run is a delivery interrupted by a crash:
it becomes `uncertain` and goes to the human queue, never resent.
"""

from __future__ import annotations

import dataclasses
import json
from collections import defaultdict
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from orderwatch_dagster.lib import ledger as lg
from orderwatch_dagster.lib.action_dispatch import (
    close_task_tickets,
    dispatch_queue,
    honour_agent_decisions,
    tag_orders,
)
from orderwatch_dagster.lib.action_inputs import (
    Controls,
    RunReport,
    channel_for,
    json_value,
    open_status_tickets,
    read_exceptions,
    stale_feeds,
    stops_channel,
)
from orderwatch_dagster.lib.action_outputs import PacketsAndPage
from orderwatch_dagster.lib.decide import OrderPlan, PlannedMessage, plan_order
from orderwatch_dagster.lib.outbound import DeliveryResult, FollowUp, Outbound, Outcome
from orderwatch_dagster.lib.packets import (
    Contact,
    OrderContext,
    load_context,
    mask_email,
    mask_phone,
    message_facts,
    packet_name,
)
from orderwatch_dagster.lib.policy import HUMAN_KINDS, Policy
from orderwatch_dagster.lib.support_decisions import read_ticket_decisions
from orderwatch_dagster.lib.tables import table_exists
from orderwatch_dagster.lib.templating import render_message, render_text
from orderwatch_dagster.lib.warehouse_session import WarehouseSession
from orderwatch_dagster.lib.wismo import (
    UNSOLVED_TICKET_STATUSES,
    TicketAnswer,
    is_delivered,
    ledger_risks,
    plan_recoveries,
    plan_tickets,
)

Send = Callable[[Outbound], DeliveryResult]
CUSTOMER_CHANNELS = ("email", "sms")  # an opt-out blocks a customer's address, nothing else
MAX_THROTTLE_HOLD = timedelta(minutes=15)
# channel → the provider account behind it: a Retry-After holds every channel of that account
PROVIDER_OF = {
    "email": "smtp",
    "sms": "twilio",
    "ticket_note": "zendesk",
    "ticket_reply": "zendesk",
    "ticket_create": "zendesk",
    "order_tags": "shopify",
    "slack": "slack",
    "reroute": "shipbob",
}
Log = Callable[[str], None]


class ActionRun(PacketsAndPage):
    def __init__(
        self,
        session: WarehouseSession,
        send: Send,
        controls: Controls,
        policy: Policy,
        now: datetime,
        run_id: str,
        outbox: Path,
        log: Log,
    ) -> None:
        self.s, self.send, self.c, self.policy = session, send, controls, policy
        self.now, self.run_id, self.outbox, self.log = now, run_id, outbox, log
        self.writes = not (controls.dry_run or controls.replay)
        mode = "replay" if controls.replay else "dry_run" if controls.dry_run else "live"
        self.report = RunReport(mode=mode, as_of=now.isoformat())
        self.ledger: dict[str, dict[str, Any]] = {}
        self.messages: dict[str, dict[str, Any]] = {}
        self.queue: dict[str, dict[str, Any]] = {}
        self.blocks: set[str] = set()
        self.time_zones: dict[str, str] = {}
        self.throttles: dict[str, datetime] = {}  # provider → retry at (wall clock)

    # -- reading -------------------------------------------------------------------
    def load(self) -> list[dict[str, Any]]:
        if self.writes:
            lg.ensure_ops(self.s)
        if table_exists(self.s, "ops", "exception_ledger"):
            self.ledger = lg.read_ledger(self.s)
            self.messages = lg.read_messages(self.s)
            self.queue = lg.read_queue(self.s)
        if table_exists(self.s, "ops", "contact_blocks"):
            self.blocks = lg.read_blocks(self.s)
        if table_exists(self.s, "ops", "provider_throttles"):
            self.throttles = lg.read_throttles(self.s, MAX_THROTTLE_HOLD)
        if table_exists(self.s, "staging", "destination_regions"):
            rows = self.s.query("select province_code, time_zone from staging.destination_regions")
            self.time_zones = {str(p): str(z) for p, z in rows if z}
        return read_exceptions(self.s)

    def alert(self, kind: str, detail: str) -> None:
        self.report.alerts.append(f"{kind}: {detail}")
        self.log(f"ALERT {kind}: {detail}")
        if self.writes:
            lg.write_alert(self.s, kind, detail, self.run_id, self.now)

    # -- crash recovery and ledger sync ------------------------------------------------
    def recover_interrupted(self) -> None:
        for message in self.messages.values():
            if message["status"] != "sending":
                continue
            self.report.uncertain_recovered += 1
            if not self.writes:
                continue
            message.update(
                status="uncertain",
                detail="interrupted between delivery and record: not resent",
                updated_at=self.now,
            )
            lg.write_message(self.s, message)
            for eid in message["exception_ids"][:1] or [message["idempotency_key"]]:
                self.queue_item(
                    eid,
                    message,
                    "human_review",
                    "uncertain_delivery",
                    f"message {message['template']} may or may not have reached the customer",
                    message.get("policy_rule") or "",
                )
            self.alert("uncertain_delivery", f"{message['order_name']} {message['template']}")

    def sync(self, rows: Sequence[Mapping[str, Any]]) -> None:
        for exc in rows:
            entry = self.ledger.get(exc["exception_id"])
            if entry is None:
                entry = {
                    **{c: exc.get(c) for c in lg.LEDGER_COLUMNS if c in exc},
                    "status": "open",
                    "owner": "orderwatch",
                    "actions": [],
                    "opened_at": exc["started_at"],
                    "packet_path": str(self._packet_path(exc["order_id"])),
                    "updated_at": self.now,
                }
            if exc.get("ended_at") is not None and entry["status"] in lg.OPEN_STATUSES:
                entry.update(status="resolved", resolved_at=exc["ended_at"], updated_at=self.now)
                self.report.resolved += 1
                self.close_queue_items(exc["exception_id"])
            elif exc.get("ended_at") is None:
                entry["severity"] = exc["severity"]
            self.ledger[exc["exception_id"]] = entry
            if self.writes:
                lg.write_ledger(self.s, entry)

    def close_queue_items(self, eid: str, kinds: tuple[str, ...] | None = None) -> None:
        for item in self.queue.values():
            if kinds is not None and item["kind"] not in kinds:
                continue
            if item["exception_id"] == eid and item["status"] == "open":
                item.update(status="done", updated_at=self.now)
                if self.writes:
                    lg.write_queue(self.s, item)

    # -- acting --------------------------------------------------------------------------
    def _packet_path(self, order_id: Any) -> Path:
        return self.outbox / "packets" / f"{packet_name(order_id)}.json"

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
    ) -> bool:
        action_key = action_key or lg.key(eid, kind, target, ref.get("idempotency_key", ""))
        if action_key in self.queue:
            return False
        item = {
            "action_key": action_key,
            "exception_id": eid,
            "order_id": ref["order_id"],
            "order_name": ref.get("order_name"),
            "kind": kind,
            "target": target,
            "status": "open",
            "reason": reason,
            "severity": severity or ref.get("severity"),
            "policy_rule": policy_rule,
            "packet_path": str(self._packet_path(ref["order_id"])),
            "breach_at": ref.get("breach_at"),
            "run_id": self.run_id,
            "created_at": self.now,
            "updated_at": self.now,
        }
        self.queue[action_key] = item
        if self.writes:
            lg.write_queue(self.s, item)
        return True

    def note_action(self, eid: str, kind: str, target: str, result: str) -> None:
        entry = self.ledger.get(eid)
        if entry is None:
            return
        entry["actions"] = [
            *entry["actions"],
            {"kind": kind, "target": target, "at": self.now.isoformat(), "result": result},
        ]
        if entry["status"] == "open":
            entry.update(status="actioned", actioned_at=self.now)
        if kind in HUMAN_KINDS:
            entry["owner"] = target if kind == "escalate" else "human_review"
        entry["updated_at"] = self.now
        if self.writes:
            lg.write_ledger(self.s, entry)

    def act(self, plan: OrderPlan, by_id: Mapping[str, Mapping[str, Any]]) -> None:
        for why in (h for _, h in plan.held):
            self.report.held[why.split(":")[0]] += 1
        for action in plan.actions:
            exc = by_id[action.exception_id]
            added = self.queue_item(
                action.exception_id,
                exc,
                action.kind,
                action.target,
                action.reason,
                action.policy_rule,
                action_key=action.action_key,
                severity=action.severity,
            )
            if added:
                self.report.actions[action.kind] += 1
                self.note_action(action.exception_id, action.kind, action.target, "queued")

    def deliver(self, message: PlannedMessage, ctx: OrderContext) -> None:
        order = ctx.orders[message.order_id]
        contact = ctx.contacts.get(message.order_id)
        channel, recipient = channel_for(message.channel, contact)
        if not recipient or contact is None:
            self.report.held["no_contact"] += 1
            return
        quiet = self.c.quiet_until
        if channel == "sms" and quiet is not None and quiet(self.now, self.zone_of(contact, order)):
            self.report.held["quiet_hours"] += 1  # decided again on a later run
            return
        if channel != message.channel:
            message = dataclasses.replace(message, channel=channel)
        if lg.block_key(message.channel, recipient) in self.blocks:
            self.report.held["opted_out"] += 1
            return
        if self.writes and self.throttled(message.channel):
            self.report.held["provider_throttled"] += 1  # decided again on a later run
            return
        facts = message_facts(
            order, contact, message.driver_type, self.c.shop_name, self.zone_of(contact, order)
        )
        rendered = render_message(message.template, message.channel, facts)
        self.report.actions["notify_customer"] += 1
        masked = mask_email(recipient) if message.channel == "email" else mask_phone(recipient)
        row = self.row(
            message.idempotency_key,
            order,
            message.channel,
            message.template,
            message.state_key,
            list(message.exception_ids),
            masked,
            rendered.subject,
            message.policy_rule,
        )
        meta: dict[str, Any] = {"order_id": message.order_id, "order_name": order["order_name"]}
        if message.channel == "email" and self.writes:  # the List-Unsubscribe key (smtp.py)
            meta["unsubscribe_token"] = lg.unsubscribe_token(self.s, "email", recipient, self.now)
        outbound = Outbound(
            idempotency_key=message.idempotency_key,
            channel=message.channel,
            recipient=recipient,
            body_text=rendered.text,
            subject=rendered.subject,
            body_html=rendered.html,
            metadata=meta,
        )
        self.send_recorded(row, outbound)

    def answer_ticket(
        self, answer: TicketAnswer, ctx: OrderContext, plans: Mapping[Any, OrderPlan]
    ) -> None:
        if self.writes and self.throttled(answer.channel):
            self.report.held["provider_throttled"] += 1  # answered by a later run
            return
        order = ctx.orders[answer.order_id]
        contact = ctx.contacts.get(answer.order_id) or Contact()
        plan = plans.get(answer.order_id)
        facts = message_facts(
            order, contact, "predicted_late", self.c.shop_name, self.zone_of(contact, order)
        )
        body = render_text(
            f"ticket/{answer.template}.j2",
            **facts,
            delivered=is_delivered(order),
            public=answer.channel == "ticket_reply",
            reasons=list(answer.reasons),
            decisions=plan.decisions if plan else [],
            packet_path=str(self._packet_path(answer.order_id)),
        )
        self.report.actions[answer.channel] += 1
        eids = [d["exception_id"] for d in plan.decisions] if plan else []
        row = self.row(
            answer.idempotency_key,
            order,
            answer.channel,
            answer.template,
            answer.state_key,
            eids,
            f"ticket {answer.ticket_id}",
            None,
            "wismo deflection (lib/wismo.py)",
        )
        meta: dict[str, Any] = {"tags": ["orderwatch"], "public": answer.channel == "ticket_reply"}
        if answer.ticket_status:
            meta["status"] = answer.ticket_status
        outbound = Outbound(
            answer.idempotency_key, answer.channel, str(answer.ticket_id), body, metadata=meta
        )
        self.send_recorded(row, outbound)

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
    ) -> dict[str, Any]:
        return {
            "idempotency_key": idem,
            "order_id": order["order_id"],
            "order_name": order["order_name"],
            "exception_ids": eids,
            "state_key": state_key,
            "state": {k: json_value(v) for k, v in order.items()},
            "channel": channel,
            "template": template,
            "recipient": recipient,
            "subject": subject,
            "status": "sending",
            "attempts": 0,
            "policy_rule": policy_rule,
            "packet_path": str(self._packet_path(order["order_id"])),
            "run_id": self.run_id,
            "created_at": self.now,
            "updated_at": self.now,
        }

    def zone_of(self, contact: Contact, order: Mapping[str, Any] | None = None) -> str:
        """The customer's time zone: the one the order's promise was made in (order_state
        `destination_time_zone`, dbt_project/macros/promises.sql), else the shipping
        province's, else the shop's."""
        zone = (order or {}).get("destination_time_zone")
        return zone or self.time_zones.get(contact.province_code, self.c.default_time_zone)

    def wall_now(self) -> datetime:
        return self.c.wall_clock() if self.c.wall_clock else datetime.now(UTC)

    def throttled(self, channel: str) -> bool:
        """The channel's provider asked for a pause (Retry-After) that has not passed yet."""
        provider = PROVIDER_OF.get(channel, channel)
        retry_at = self.throttles.get(provider)
        return retry_at is not None and self.wall_now() < retry_at

    def send_recorded(self, row: dict[str, Any], outbound: Outbound) -> None:
        if not self.writes:
            self.report.would_send += 1
            return
        if self.throttled(outbound.channel):  # nothing recorded: a later run decides it again
            self.report.held["provider_throttled"] += 1
            return
        earlier = self.messages.get(row["idempotency_key"])
        if earlier is not None:  # a pending delivery tried again: its earlier tries stay on record
            row.update(
                history=list(earlier.get("history") or []),
                attempts=earlier["attempts"] or 0,
                resend_key=earlier.get("resend_key"),
            )
        lg.write_message(self.s, row)  # the intent, committed before the sink is called
        self.messages[row["idempotency_key"]] = row
        result = self.send(outbound)
        self._record(row, result)
        if stops_channel(result) and outbound.channel in CUSTOMER_CHANNELS:
            lg.write_block(
                self.s,
                outbound.channel,
                outbound.recipient,
                row["recipient"],
                str(result.follow_up),
                self.now,
            )
            self.blocks.add(lg.block_key(outbound.channel, outbound.recipient))

    def _record(self, row: dict[str, Any], result: DeliveryResult) -> None:
        row.update(
            status=str(result.outcome),
            detail=result.detail,
            provider_id=result.provider_id,
            attempts=(row.get("attempts") or 0) + result.attempts,
            history=[*(row.get("history") or []), *(a.__dict__ for a in result.history)],
            follow_up=str(result.follow_up) if result.follow_up else None,
            updated_at=self.now,
        )
        lg.write_message(self.s, row)
        self.report.messages[str(result.outcome)] += 1
        if result.outcome == Outcome.NOT_ACCEPTED and result.retry_after_s is not None:
            # the rest of this run holds the provider too (its sender retries 429s in-send
            # only when configured to), and later runs until Retry-After has passed
            provider = PROVIDER_OF.get(row["channel"], row["channel"])
            wall = self.wall_now()
            # at most MAX_THROTTLE_HOLD: an odd Retry-After must not silence a provider for a
            # day (a later 429 holds it again); Retry-After 0: held past this moment only
            wait = min(max(result.retry_after_s, 0.0), MAX_THROTTLE_HOLD.total_seconds())
            retry_at = wall + max(timedelta(seconds=wait), timedelta(microseconds=1))
            self.throttles[provider] = retry_at
            detail = f"{row['channel']}: {result.detail}"[:300]
            lg.write_throttle(self.s, provider, retry_at, detail, wall)
            asked = f"Retry-After {result.retry_after_s:g} s"
            self.alert(
                "provider_throttled", f"{provider} until {retry_at.isoformat()} ({asked}; {detail})"
            )
        if result.follow_up == FollowUp.FIX_CONFIG:  # pending until a person fixes a setting
            self.alert("fix_config", f"{row['channel']}: {result.detail}"[:300])
        for eid in row["exception_ids"]:
            kind = "notify_customer" if row["channel"] in ("email", "sms") else row["channel"]
            self.note_action(eid, kind, row["template"], str(result.outcome))
        if result.outcome == Outcome.UNCERTAIN:
            eid = row["exception_ids"][0] if row["exception_ids"] else row["idempotency_key"]
            reason = f"delivery of {row['template']} uncertain: {result.detail}"
            self.queue_item(eid, row, "human_review", "uncertain_delivery", reason, "")
            self.alert("uncertain_delivery", f"{row['order_name']} {row['template']}")


def open_orders_of(run: ActionRun, by_order: Mapping[Any, list[dict[str, Any]]]) -> set[Any]:
    """Orders with an exception still open in the ledger (a false alarm or a resolved one no
    longer counts, so its storefront tag comes off)."""
    return {
        oid
        for oid, rows in by_order.items()
        if any(
            run.ledger.get(r["exception_id"], {}).get("status", "open") in lg.OPEN_STATUSES
            for r in rows
        )
    }


def _plan_orders(
    run: ActionRun, ctx: OrderContext, by_order: Mapping[Any, list[dict[str, Any]]], stale: set[str]
) -> dict[Any, OrderPlan]:
    messages_by_order: dict[Any, list[dict[str, Any]]] = defaultdict(list)
    for m in run.messages.values():
        messages_by_order[m["order_id"]].append(m)
    return {
        oid: plan_order(
            ctx.orders.get(oid),
            rows,
            run.ledger,
            messages_by_order[oid],
            run.policy,
            run.now,
            frozenset(stale),
        )
        for oid, rows in sorted(by_order.items())
    }


def _send_all(
    run: ActionRun,
    ctx: OrderContext,
    plans: Mapping[Any, OrderPlan],
    answers: list[TicketAnswer],
) -> None:
    """Customer messages and public ticket replies, unless there are more than the cap."""
    planned = [p.message for p in plans.values() if p.message is not None]
    cap = run.c.max_messages
    if cap is None:
        cap = int(run.policy.messages["max_per_run"])
    total = len(planned) + sum(a.channel == "ticket_reply" for a in answers)
    if total > cap:
        run.alert("message_cap", f"{total} customer messages planned, cap {cap}: none sent")
        run.report.held["message_cap"] += total
        run.report.failure = "message_cap"
        return
    for message in planned:
        run.deliver(message, ctx)
    for answer in answers:
        run.answer_ticket(answer, ctx, plans)


def _plan_answers(
    run: ActionRun,
    ctx: OrderContext,
    open_rows: Sequence[Mapping[str, Any]],
    plans: Mapping[Any, OrderPlan],
    tickets: Sequence[Mapping[str, Any]],
    unsolved: Sequence[Mapping[str, Any]],
) -> list[TicketAnswer]:
    """Status tickets' answers (lib/wismo.py), then the follow-ups on recovered orders'. An
    order is at risk while the ledger holds an open exception of it, snoozed or acknowledged
    included: only a resolved exception or a false alarm takes the risk away."""
    at_risk: dict[Any, list[str]] = ledger_risks(open_rows, run.ledger)
    for oid, plan in plans.items():
        if plan.decisions:
            at_risk.setdefault(oid, ["open exception"])
    answers = plan_tickets(
        tickets, ctx.orders, at_risk, run.messages, run.now, run.policy.on_track_reply_status
    )
    recovered = {e["order_id"] for e in run.ledger.values() if e["status"] == "resolved"}
    compensated = {
        e["order_id"] for e in run.ledger.values() if e.get("human_decision") == "compensated"
    }
    answered = {a.ticket_id for a in answers}
    return answers + [
        a
        for a in plan_recoveries(
            unsolved,
            ctx.orders,
            set(at_risk),
            recovered,
            run.messages,
            run.policy.recovery_update,
            run.now,
            compensated,
            "ticket_note" in run.c.live_channels,
        )
        if a.ticket_id not in answered
    ]


def run_actions(
    session: WarehouseSession,
    send: Send,
    controls: Controls,
    policy: Policy,
    now: datetime,
    run_id: str,
    outbox: Path,
    log: Log = print,
) -> RunReport:
    if controls.kill_switch:
        report = RunReport(mode="kill_switch", as_of=now.isoformat())
        report.alerts.append("kill_switch: ORDERWATCH_ACTIONS_KILL_SWITCH is on; nothing done")
        return report
    run = ActionRun(session, send, controls, policy, now, run_id, outbox, log)
    if not run.writes:  # dry-run and replay write and send nothing: no lock to take
        return _act(run)
    # Two live runs deciding at once would each read the ledger before the other's intent and
    # both send: one run at a time; the other does nothing and says so (`failure`: the job
    # fails, so an operator sees the skipped materialization and re-executes it).
    with session.exclusive(ACTIONS_LOCK) as held:
        if not held:
            report = RunReport(mode="busy", as_of=now.isoformat())
            report.failure = "busy: another action run holds the ledger; nothing done"
            report.alerts.append(report.failure)
            return report
        return _act(run)


ACTIONS_LOCK = "orderwatch:exception_actions"


def _act(run: ActionRun) -> RunReport:
    session, controls, policy, now = run.s, run.c, run.policy, run.now
    rows = run.load()
    run.recover_interrupted()
    run.sync(rows)
    decisions = read_ticket_decisions(session)
    honour_agent_decisions(run, decisions)
    open_rows = [r for r in rows if r.get("ended_at") is None]
    run.report.exceptions_open = len(open_rows)
    run.report.exceptions_by_type.update(r["exception_type"] for r in open_rows)
    stale = stale_feeds(session, policy, now)
    run.report.stale_feeds = stale
    for feed, age in stale.items():
        run.alert("stale_feed", f"{feed}: newest record {age} h old")
    by_order: dict[Any, list[dict[str, Any]]] = defaultdict(list)
    for row in open_rows:
        by_order[row["order_id"]].append(row)
    tickets = open_status_tickets(session)
    unsolved = open_status_tickets(session, UNSOLVED_TICKET_STATUSES)
    ctx = load_context(session, set(by_order) | {t["order_id"] for t in unsolved})
    plans = _plan_orders(run, ctx, by_order, set(stale))
    by_id = {r["exception_id"]: r for r in open_rows}
    for plan in plans.values():
        run.act(plan, by_id)
    asked = {t["order_id"]: t["ticket_id"] for t in reversed(tickets)}  # the oldest ticket
    dispatch_queue(run, ctx, by_id, asked)
    solved = {d.ticket_id for d in decisions if d.decision == "solved"}
    close_task_tickets(run, ctx, solved)
    answers = _plan_answers(run, ctx, open_rows, plans, tickets, unsolved)
    if stale and answers:  # a reply would state a state that may be out of date
        run.report.held["stale_feed"] += len(answers)
        answers = []
    _send_all(run, ctx, plans, answers)
    tag_orders(run, open_orders_of(run, by_order), ctx)
    if not controls.replay:
        for answer in answers:  # an answered ticket's order gets its packet too
            by_order.setdefault(answer.order_id, [])
        run.packets(by_order, plans, ctx)
        run.page(open_rows)
    return run.report


def summary_json(report: RunReport) -> str:
    return json.dumps(report.as_metadata(), indent=2, sort_keys=True, default=str)
