"""WISMO deflection (pure): for each open status-question ticket, exactly one answer.

On an order that is on track, a public reply with the real state (templates/ticket/
wismo_reply.j2) and the ticket set to `pending` (`solved` once delivered); on an order at risk,
the packet's summary as an internal note on that same ticket (wismo_note.j2), never a second
ticket: the order's tasks go onto that ticket too, as notes that assign it to the task queue's
group (lib/action_dispatch.py). The key is (ticket, kind), so a ticket is answered once
whatever the runs.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from orderwatch_dagster.lib.decide import CLOSED_MILESTONES, SENT_STATUSES
from orderwatch_dagster.lib.ledger import key

OPEN_TICKET_STATUSES = ("new", "open")


@dataclass(frozen=True)
class TicketAnswer:
    idempotency_key: str
    ticket_id: Any
    order_id: Any
    channel: str  # ticket_reply (public) | ticket_note (internal)
    template: str  # wismo_reply | wismo_note
    ticket_status: str | None  # what the ticket is set to
    state_key: str


def plan_tickets(
    tickets: Sequence[Mapping[str, Any]],
    orders: Mapping[Any, Mapping[str, Any]],
    at_risk: set[Any],
    messages: Mapping[str, Mapping[str, Any]],
) -> list[TicketAnswer]:
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
        risky = ticket["order_id"] in at_risk
        channel, template = (
            ("ticket_note", "wismo_note") if risky else ("ticket_reply", "wismo_reply")
        )
        idem = key(ticket["ticket_id"], "wismo")
        previous = messages.get(idem)
        if previous is not None and previous["status"] in SENT_STATUSES:
            continue
        delivered = order.get("current_milestone") in CLOSED_MILESTONES
        status = None if risky else ("solved" if delivered else "pending")
        answers.append(
            TicketAnswer(
                idempotency_key=idem,
                ticket_id=ticket["ticket_id"],
                order_id=ticket["order_id"],
                channel=channel,
                template=template,
                ticket_status=status,
                state_key=f"{template}@{order.get('current_milestone')}",
            )
        )
    return answers
