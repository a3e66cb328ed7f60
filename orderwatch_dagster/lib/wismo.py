"""WISMO deflection (pure): for each open status-question ticket, exactly one answer.

On an order that is on track, a public reply with the real state (templates/ticket/
wismo_reply.j2) and the ticket set to the policy's `on_track_reply_status` (`pending` as
shipped; `solved` once delivered); on an order at risk, the packet's summary as an internal
note on that same ticket (wismo_note.j2), never a second ticket: the order's tasks go onto
that ticket too, as notes, the most severe assigning it to its queue's group
(lib/action_dispatch.py). The key is (ticket, kind, cycle), so a ticket is answered once
per cycle whatever the runs: cycle 0 is the first answer (reply or note); a cycle ends with the
on-track reply or with the follow-up after a recovery, and the next cycle holds only a fresh
at-risk note (the order went at risk again), never a second on-track reply.

Assignment alone does not stop the on-track reply: routing assigns most tickets on arrival,
and the reply states only facts the order state holds (the Zendesk sender sets it `pending`,
so the agent sees the customer answered).

"On track" is claimed only when nothing says otherwise. An order is at risk when the ledger
holds an exception of it still open, whatever a person decided about it (a snoozed or
acknowledged exception is a risk someone is watching, not a recovery; only a false alarm or a
resolved exception is not), or when its own state says so: returned to sender, not delivered
and past its promise, or a carrier estimate later than the promise (`state_risks`).

Closing the loop (`plan_recoveries`): a status ticket answered while its order was at risk
(the internal note) gets one follow-up once the order has recovered, keyed (ticket,
`wismo_recovered`, cycle): a public reply or an internal note, as the policy's `close_the_loop`
section says. Never on a cancelled or returned order (it did not recover), nor where an agent
compensated the customer; an internal note instead of the public reply once an agent has the
ticket (assigned, or set to pending / on hold), so orderwatch never talks over them. The note
it follows must have reached the ticket: `accepted` by Zendesk when that sender is live (a note
left in the local outbox from before is no note the agent saw).
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any

from orderwatch_dagster.lib.decide import CLOSED_MILESTONES, SENT_STATUSES
from orderwatch_dagster.lib.ledger import OPEN_STATUSES, key
from orderwatch_dagster.lib.packets import customer_zone, estimate_date, promised_day

OPEN_TICKET_STATUSES = ("new", "open")
# a customer's ticket still waiting on someone (an agent or the customer): worth an update
UNSOLVED_TICKET_STATUSES = ("new", "open", "pending", "hold")
# an order that ended without arriving: no "back on track" (a delivered one says delivered)
ENDED_UNDELIVERED = tuple(m for m in CLOSED_MILESTONES if m != "delivered")
RECOVERY_MODES = ("public_reply", "internal_note", "none")


@dataclass(frozen=True)
class TicketAnswer:
    idempotency_key: str
    ticket_id: Any
    order_id: Any
    channel: str  # ticket_reply (public) | ticket_note (internal)
    template: str  # wismo_reply | wismo_note | wismo_recovered
    ticket_status: str | None  # what the ticket is set to
    state_key: str
    reasons: tuple[str, ...] = ()  # why the order is at risk (internal notes only)


def _day(value: date | None) -> str | None:
    return value.isoformat() if value else None


def is_delivered(order: Mapping[str, Any]) -> bool:
    return order.get("current_milestone") == "delivered" or order.get("delivered_at") is not None


def state_risks(order: Mapping[str, Any], now: datetime | None = None) -> list[str]:
    """What the order's own state says against "on track" (facts of marts.order_state)."""
    if order.get("current_milestone") == "return_to_sender" or (
        order.get("last_event") == "return_to_sender"
    ):
        return ["the carrier is returning the parcel to us (return to sender)"]
    if is_delivered(order):
        return []
    reasons = []
    now = now or order.get("as_of")
    promised = order.get("promised_deliver_by")
    # days as the customer's messages state them (lib/packets.py): an estimate on a later day
    # than the promised one is against "on track", whatever the instants say
    day = promised_day(order)
    if isinstance(promised, datetime) and isinstance(now, datetime) and promised < now:
        reasons.append(f"past its promise (promised by {_day(day)})")
    estimate = estimate_date(order.get("carrier_est_delivery_at"), customer_zone(order))
    if estimate is not None and day is not None and estimate > day:
        reasons.append(f"the carrier estimates {_day(estimate)}, after the promise ({_day(day)})")
    return reasons


def ledger_risks(
    exceptions: Iterable[Mapping[str, Any]], ledger: Mapping[str, Mapping[str, Any]]
) -> dict[Any, list[str]]:
    """Order → its exceptions still open in the ledger, with what a person decided."""
    out: dict[Any, list[str]] = {}
    for exc in exceptions:
        entry = ledger.get(exc["exception_id"]) or {}
        if entry.get("status", "open") not in OPEN_STATUSES:
            continue  # resolved, or suppressed as a false alarm
        text = f"open exception {exc['exception_type']} ({exc.get('severity')})"
        decision = entry.get("human_decision")
        if decision == "snoozed":
            until = entry.get("snoozed_until")
            until_text = until.isoformat() if isinstance(until, datetime) else until
            text += f", snoozed by {entry.get('decided_by')} until {until_text}"
        elif decision:
            text += f", {decision} by {entry.get('decided_by')}"
        out.setdefault(exc["order_id"], []).append(text)
    return out


def plan_tickets(
    tickets: Sequence[Mapping[str, Any]],
    orders: Mapping[Any, Mapping[str, Any]],
    at_risk: Mapping[Any, Sequence[str]] | Collection[Any],
    messages: Mapping[str, Mapping[str, Any]],
    now: datetime | None = None,
    reply_status: str = "pending",
) -> list[TicketAnswer]:
    """`at_risk`: the orders with an open exception (order → reasons, or just the orders);
    `reply_status`: what an on-track reply sets the ticket to (the policy's; delivered:
    solved)."""
    answers = []
    seen: set[Any] = set()
    for ticket in tickets:
        if not ticket.get("is_wismo") or ticket.get("status") not in OPEN_TICKET_STATUSES:
            continue
        if ticket["ticket_id"] in seen:  # one answer per ticket, whatever the input repeats
            continue
        seen.add(ticket["ticket_id"])
        order = orders.get(ticket["order_id"])
        if order is None or order.get("current_milestone") == "cancelled":
            continue
        reasons = list(state_risks(order, now))
        if ticket["order_id"] in at_risk:
            given = at_risk.get(ticket["order_id"]) if isinstance(at_risk, Mapping) else None
            reasons += list(given or ["open exception"])
        risky = bool(reasons)
        channel, template = (
            ("ticket_note", "wismo_note") if risky else ("ticket_reply", "wismo_reply")
        )
        cycle, previous = ticket_cycle(ticket["ticket_id"], messages)
        if previous is not None or (cycle > 0 and not risky):
            continue  # answered this cycle; a later cycle only for a fresh risk
        idem = answer_key(ticket["ticket_id"], "wismo", cycle)
        delivered = order.get("current_milestone") in CLOSED_MILESTONES
        status = None if risky else ("solved" if delivered else reply_status)
        answers.append(
            TicketAnswer(
                idempotency_key=idem,
                ticket_id=ticket["ticket_id"],
                order_id=ticket["order_id"],
                channel=channel,
                template=template,
                ticket_status=status,
                state_key=f"{template}@{order.get('current_milestone')}",
                reasons=tuple(reasons),
            )
        )
    return answers


def answer_key(ticket_id: Any, kind: str, cycle: int) -> str:
    """`kind` is wismo (the answer: reply or note) or wismo_recovered (the follow-up); cycle 0
    keeps the key it always had."""
    return key(ticket_id, kind) if cycle == 0 else key(ticket_id, kind, cycle)


def _sent(messages: Mapping[str, Mapping[str, Any]], idem: str) -> Mapping[str, Any] | None:
    row = messages.get(idem)
    return row if row is not None and row["status"] in SENT_STATUSES else None


def ticket_cycle(
    ticket_id: Any, messages: Mapping[str, Mapping[str, Any]]
) -> tuple[int, Mapping[str, Any] | None]:
    """The ticket's current cycle and its answer sent so far (None: not yet answered). A cycle
    is over once its answer was the on-track reply, or its at-risk note got its follow-up."""
    cycle = 0
    while True:
        answer = _sent(messages, answer_key(ticket_id, "wismo", cycle))
        if answer is None:
            return cycle, None
        closed = answer["template"] != "wismo_note" or (
            _sent(messages, answer_key(ticket_id, "wismo_recovered", cycle)) is not None
        )
        if not closed:
            return cycle, answer
        cycle += 1


def _agent_engaged(ticket: Mapping[str, Any]) -> bool:
    """An agent has the ticket (assigned, or waiting on the customer / a third party)."""
    return ticket.get("assignee_id") is not None or ticket.get("status") in ("pending", "hold")


def _recovered(order: Mapping[str, Any] | None, now: datetime | None) -> bool:
    if order is None or order.get("is_cancelled") or state_risks(order, now):
        return False
    return order.get("current_milestone") not in ENDED_UNDELIVERED


def plan_recoveries(
    tickets: Sequence[Mapping[str, Any]],
    orders: Mapping[Any, Mapping[str, Any]],
    at_risk: Collection[Any],
    recovered: Collection[Any],
    messages: Mapping[str, Mapping[str, Any]],
    mode: str,
    now: datetime | None = None,
    compensated: Collection[Any] = (),
    ticket_channel_live: bool = False,
) -> list[TicketAnswer]:
    """One follow-up per status ticket that got the at-risk note, once its order `recovered`
    (an exception of it resolved, none open in `at_risk`, and nothing in its state against).
    `compensated`: orders an agent compensated; `ticket_channel_live`: the Zendesk sender is on,
    so only a note Zendesk accepted counts as posted."""
    if mode == "none":
        return []
    posted = ("accepted",) if ticket_channel_live else ("accepted", "outbox")
    answers = []
    for ticket in tickets:
        if ticket.get("status") not in UNSOLVED_TICKET_STATUSES or not ticket.get("is_wismo"):
            continue
        oid = ticket["order_id"]
        order = orders.get(oid)
        if oid in at_risk or oid not in recovered or oid in compensated:
            continue
        if order is None or not _recovered(order, now):
            continue
        cycle, noted = ticket_cycle(ticket["ticket_id"], messages)
        if noted is None or noted["template"] != "wismo_note" or noted["status"] not in posted:
            continue  # the ticket holds no open at-risk note this cycle: nothing to follow up
        idem = answer_key(ticket["ticket_id"], "wismo_recovered", cycle)
        public = mode == "public_reply" and not _agent_engaged(ticket)
        status = ("solved" if is_delivered(order) else "pending") if public else None
        answers.append(
            TicketAnswer(
                idempotency_key=idem,
                ticket_id=ticket["ticket_id"],
                order_id=oid,
                channel="ticket_reply" if public else "ticket_note",
                template="wismo_recovered",
                ticket_status=status,
                state_key=f"wismo_recovered@{order.get('current_milestone')}",
            )
        )
    return answers
