"""What support agents decided, read back from the support feed (docs/architecture.md "Close
the loop"): a ticket tagged `false_alarm` or `compensated` by an agent, and a task ticket
orderwatch opened that an agent solved.

The tags are read from the newest version of each ticket in `raw.support_tickets` (code outside
dbt reads raw, marts and ops; the staging model keeps no tags), ranked as the staging macro
`latest_versions` ranks them (dbt_project/macros/staging.sql): vendor update time, then load
time, then the record hash. The ticket's order is the one staging linked it to
(`stg_support__tickets.order_name`: external id, else the order-number field), falling back to
the ticket's `external_id` (what orderwatch's own task tickets carry) before staging has been
rebuilt.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from orderwatch_dagster.lib.tables import table_exists
from orderwatch_dagster.lib.warehouse_session import WarehouseSession

DECISION_TAGS = ("false_alarm", "compensated")  # tag → the ledger's human_decision
SOLVED = ("solved", "closed")


@dataclass(frozen=True)
class TicketDecision:
    ticket_id: int
    order_name: str | None
    decision: str  # false_alarm | compensated | solved
    at: datetime  # the ticket version's update time (when the agent did it, at the latest)
    by: str  # "zendesk agent <assignee_id>"


def _latest_sql() -> str:
    return (
        "select _key, payload, _updated_at from ("
        " select _key, payload, _updated_at, row_number() over ("
        "  partition by _key order by _updated_at desc, _ingested_at desc, _record_hash desc"
        " ) as _rank from raw.support_tickets) as ranked where _rank = 1 order by _key"
    )


def _order_names(session: WarehouseSession) -> dict[int, str]:
    if not table_exists(session, "staging", "stg_support__tickets"):
        return {}
    rows = session.query(
        "select ticket_id, order_name from staging.stg_support__tickets"
        " where is_latest_version and order_name is not null"
    )
    return {int(t): str(n) for t, n in rows}


def read_ticket_decisions(session: WarehouseSession) -> list[TicketDecision]:
    """Every ticket whose newest version carries an agent's decision: each decision tag it
    has, and `solved` when it is solved or closed."""
    if not table_exists(session, "raw", "support_tickets"):
        return []
    names = _order_names(session)
    out: list[TicketDecision] = []
    for key, payload, updated_at in session.query(_latest_sql()):
        ticket: dict[str, Any] = json.loads(payload) if isinstance(payload, str) else payload
        tags = {str(t).lower() for t in ticket.get("tags") or []}
        found = [t for t in DECISION_TAGS if t in tags]
        if ticket.get("status") in SOLVED:
            found.append("solved")
        if not found:
            continue
        ticket_id = int(ticket.get("id") or key)
        external = str(ticket.get("external_id") or "").strip()
        name = names.get(ticket_id) or (f"#{external.lstrip('#')}" if external else None)
        by = f"zendesk agent {ticket.get('assignee_id') or 'unknown'}"
        out += [TicketDecision(ticket_id, name, d, updated_at, by) for d in found]
    return out
