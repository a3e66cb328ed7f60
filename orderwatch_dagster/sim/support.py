"""After the shipments: the order's outcome, its support tickets and its customer returns.

WISMO tickets are driven by what the customer can see, day by day: days since the order, no
shipping confirmation yet, tracking that stalled, an estimate past the promised date, the
promised date arriving or passed. Never by the ground truth. A quarter of status questions
carry no `wismo` tag, and about a third name no order (Zendesk then links them through the
requester's e-mail, sideloaded with `include=users`).
"""

from __future__ import annotations

import random
from typing import Protocol

from orderwatch_dagster.sim.model import (
    DAY,
    HOUR,
    OrderPlan,
    ReturnPlan,
    StateEvent,
    TicketPlan,
    pick,
    ri,
)


class World(Protocol):
    """What settling an order reads from the world (sim/world.py `World` implements it; a
    protocol, so this module does not import world.py, which imports it)."""

    def attribute(self, plan: OrderPlan) -> None: ...


WISMO_TAGGED = 0.75
TICKET_LINK = (("external_id", "field", "none"), (0.5, 0.65, 1.0))
# Shares of status questions (a few hundred in a 3,000-order world: wide ranges; sim/shipment.py
# NOISE_RANGES explains them): without the `wismo` tag (1 - WISMO_TAGGED), naming no order
# (TICKET_LINK "none", 35 %).
TICKET_NOISE_RANGES = {
    "wismo_untagged": (0.15, 0.35),
    "wismo_no_order_number": (0.25, 0.45),
}


def settle(world: World, plan: OrderPlan, rng: random.Random) -> None:
    times = [s.delivered_at for s in plan.shipments]
    plan.delivered_at = None if None in times else max(t for t in times if t is not None)
    world.attribute(plan)
    _status_questions(plan, rng)
    if rng.random() < 0.01:
        opened = plan.placed_at + ri(rng, HOUR, 3 * DAY)
        plan.tickets.append(_ticket(len(plan.tickets), opened, False, rng))
    if plan.delivered_at is not None and rng.random() < 0.06:
        created = plan.delivered_at + ri(rng, 2 * DAY, 14 * DAY)
        closed = created + ri(rng, 4 * DAY, 10 * DAY)
        plan.returns.append(
            ReturnPlan(
                k=len(plan.returns),
                outcome=pick(rng, ("refund", "exchange", "credit"), (0.6, 0.85, 1.0)),
                line_index=rng.randrange(len(plan.lines)),
                reason=rng.choice(("too_small", "too_large", "changed_mind", "defective")),
                events=[StateEvent(created, "open"), StateEvent(closed, "closed")],
                tracking_number=f"9202{(plan.index * 7 + 3) % 10**18:018d}",
            )
        )


def _hazard(plan: OrderPlan, t: int) -> float:
    """Daily chance the customer asks where the order is, from what they can see at t."""
    days = (t - plan.placed_at) / DAY
    labelled = [s for s in plan.shipments if s.label_at is not None and s.label_at <= t]
    hazard = 0.002 + (0.004 if days > 4 else 0.0)
    if not labelled:
        return hazard + (0.03 if days > 3 else 0.0)
    seen = [scan.arrival for s in labelled for scan in s.scans if scan.arrival <= t]
    if seen and t - max(seen) > 2 * DAY:
        hazard += 0.03  # tracking stalled
    estimates = [e.day for s in labelled for e in s.edd if e.known_at <= t and e.day is not None]
    if estimates and estimates[-1] > plan.promised:
        hazard += 0.02
    if t > plan.deadline:
        hazard += 0.09
    elif plan.deadline - t < DAY:
        hazard += 0.015
    return hazard


def _status_questions(plan: OrderPlan, rng: random.Random) -> None:
    end = plan.delivered_at if plan.delivered_at is not None else plan.deadline + 10 * DAY
    t = plan.placed_at + ri(rng, 12 * HOUR, 30 * HOUR)
    asked = 0
    while t < end and asked < 2:
        if rng.random() < _hazard(plan, t):
            plan.tickets.append(_ticket(len(plan.tickets), t, True, rng))
            asked += 1
            t += 2 * DAY  # a follow-up, if any, comes days later
        t += DAY


def _ticket(k: int, opened: int, wismo: bool, rng: random.Random) -> TicketPlan:
    replied = opened + ri(rng, 10 * 60, 6 * HOUR)
    solved = replied + ri(rng, HOUR, 30 * HOUR)
    return TicketPlan(
        k=k,
        created_at=opened,
        wismo=wismo,
        channel=rng.choice(("email", "web", "chat")),
        link=pick(rng, *TICKET_LINK),
        events=[
            StateEvent(opened, "new"),
            StateEvent(replied, "open"),
            StateEvent(solved, "solved"),
        ],
        tagged=rng.random() < WISMO_TAGGED,
    )
