"""What one action run reads and reports (pure helpers of lib/action_run.py): the run's
controls and report, the inputs (exceptions, status tickets, feed freshness) and the channel
a customer can be reached on."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from orderwatch_dagster.lib.exceptions import COLUMNS as EXCEPTION_COLUMNS
from orderwatch_dagster.lib.outbound import DeliveryResult, FollowUp
from orderwatch_dagster.lib.packets import Contact
from orderwatch_dagster.lib.policy import Policy
from orderwatch_dagster.lib.tables import select_dicts, table_exists
from orderwatch_dagster.lib.warehouse_session import WarehouseSession, ident


@dataclass(frozen=True)
class Controls:
    kill_switch: bool = False
    dry_run: bool = False
    replay: bool = False
    max_messages: int | None = None  # None: the policy's messages.max_per_run
    shop_name: str = "our shop"
    # (now, customer time zone) -> when quiet hours end, or None outside them; SMS only
    quiet_until: Callable[[datetime, str], datetime | None] | None = None
    default_time_zone: str = "America/New_York"  # the shop's, where the province is unknown
    packet_base_url: str | None = None  # where outbox/packets/ is served; None: the file path
    # ShipBob shipping service id a late shipment is moved to; None: such reroutes go to a person
    reroute_shipping_service_id: int | None = None
    # the channels a real sender is enabled for (ActionSink.live_channels); empty: the outbox
    live_channels: frozenset[str] = frozenset()
    # the wall clock a provider's Retry-After runs on (not the run's as-of); None: the system's
    wall_clock: Callable[[], datetime] | None = None


@dataclass
class RunReport:
    mode: str  # live | dry_run | replay | kill_switch | busy (another run holds the ledger)
    as_of: str
    exceptions_open: int = 0
    exceptions_by_type: Counter[str] = field(default_factory=Counter)
    actions: Counter[str] = field(default_factory=Counter)  # kind → count (this run)
    messages: Counter[str] = field(default_factory=Counter)  # outcome → count
    held: Counter[str] = field(default_factory=Counter)  # why → count
    agent_decisions: Counter[str] = field(default_factory=Counter)  # read back from support
    would_send: int = 0
    resolved: int = 0
    uncertain_recovered: int = 0
    alerts: list[str] = field(default_factory=list)
    stale_feeds: dict[str, float] = field(default_factory=dict)
    packets: int = 0
    failure: str | None = None

    def as_metadata(self) -> dict[str, Any]:
        return {
            "mode": self.mode,
            "as_of": self.as_of,
            "exceptions_open": self.exceptions_open,
            "exceptions_by_type": dict(sorted(self.exceptions_by_type.items())),
            "actions": dict(sorted(self.actions.items())),
            "messages": dict(sorted(self.messages.items())),
            "held": dict(sorted(self.held.items())),
            "agent_decisions": dict(sorted(self.agent_decisions.items())),
            "would_send": self.would_send,
            "resolved": self.resolved,
            "uncertain_recovered": self.uncertain_recovered,
            "alerts": list(self.alerts),
            "stale_feeds": self.stale_feeds,
            "packets": self.packets,
        }


def stale_feeds(session: WarehouseSession, policy: Policy, now: datetime) -> dict[str, float]:
    """Feeds whose newest record (vendor update time) is older than the policy allows."""
    out: dict[str, float] = {}
    for feed, max_age in policy.feed_max_age_hours().items():
        if not table_exists(session, "raw", feed):
            continue
        ((newest,),) = session.query(f"select max(_updated_at) from raw.{ident(feed)}")
        if newest is None:
            continue
        age = (now - newest).total_seconds() / 3600.0
        if age > max_age:
            out[feed] = round(age, 1)
    return out


def channel_for(channel: str, contact: Contact | None) -> tuple[str, str]:
    """The policy's channel when the customer has it, else the other one they have."""
    if contact is None:
        return channel, ""
    have = {"email": contact.email, "sms": contact.phone}
    if have.get(channel):
        return channel, have[channel]
    other = "sms" if channel == "email" else "email"
    return other, have.get(other, "")


def stops_channel(result: DeliveryResult) -> bool:
    """The recipient opted out (a STOP reply) or cannot receive this channel: never again
    (the same test as defs/actions/senders/consent.py, kept here so lib/ needs no Dagster)."""
    return result.follow_up in (FollowUp.OPT_OUT, FollowUp.INVALID_RECIPIENT)


def open_status_tickets(
    session: WarehouseSession, statuses: tuple[str, ...] = ("new", "open")
) -> list[dict[str, Any]]:
    """Status-question (WISMO) tickets in one of `statuses`, linked to an order by its name:
    each ticket's newest version only (staging keeps every version; an older `new` one of a
    ticket solved since must not be answered, nor one ticket answered once per version)."""
    if not table_exists(session, "staging", "stg_support__tickets"):
        return []
    cols = ("ticket_id", "status", "is_wismo", "order_id", "created_at", "assignee_id")
    sql = (
        "select t.ticket_id, t.status, t.is_wismo, o.order_id, t.created_at, t.assignee_id"
        " from staging.stg_support__tickets t"
        " inner join marts.order_state o on o.order_name = t.order_name"
        f" where t.is_latest_version and t.is_wismo and t.status in ({_in(session, statuses)})"
        " order by t.ticket_id"
    )
    return select_dicts(session, sql, cols, list(statuses))


def _in(session: WarehouseSession, values: tuple[str, ...]) -> str:
    return ", ".join([session.p] * len(values))


def read_exceptions(session: WarehouseSession) -> list[dict[str, Any]]:
    if not table_exists(session, "marts", "order_exceptions"):
        return []
    sql = f"select {', '.join(EXCEPTION_COLUMNS)} from marts.order_exceptions"
    return select_dicts(session, sql, EXCEPTION_COLUMNS)


def json_value(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.isoformat()
    if hasattr(value, "is_finite"):
        return float(value)
    return value
