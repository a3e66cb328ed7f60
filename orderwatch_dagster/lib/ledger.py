"""The ops tables (docs/architecture.md "Storage contract"): `ops.exception_ledger` (the
lifecycle and ownership of every exception, and what people decided), `ops.customer_messages`
(every outbound message, keyed by its idempotency key, with the state it was based on),
`ops.action_queue` (tasks, reroute requests, escalations and human reviews: the embedded ops
queue), `ops.alerts`, `ops.contact_blocks` (opt-outs) and `ops.unsubscribe_tokens` (the random
key an unsubscribe link carries, mapped to the block it records) and `ops.provider_throttles`
(a provider's Retry-After, kept across runs). Portable SQL for DuckDB and PostgreSQL
(`on conflict` upserts).
"""

from __future__ import annotations

import hashlib
import json
import re
import secrets
from collections.abc import Mapping, Sequence
from datetime import datetime, timedelta
from typing import Any

from orderwatch_dagster.lib.tables import select_dicts
from orderwatch_dagster.lib.warehouse_session import WarehouseSession

LEDGER_COLUMNS = (
    "exception_id",
    "order_id",
    "order_name",
    "exception_type",
    "severity",
    "status",  # open → actioned → resolved | suppressed
    "owner",
    "policy_rule",
    "actions",  # JSON list of {kind, target, at, result}
    "human_decision",  # acknowledged | snoozed | false_alarm | compensated
    "snoozed_until",
    "decided_by",
    "decided_at",
    "suppressed_reason",
    "opened_at",
    "actioned_at",
    "resolved_at",
    "breach_at",
    "packet_path",
    "updated_at",
)
MESSAGE_COLUMNS = (
    "idempotency_key",
    "order_id",
    "order_name",
    "exception_ids",
    "state_key",
    "state",  # JSON: the order state the message was based on
    "channel",
    "template",
    "recipient",  # masked
    "subject",
    # sending → accepted | outbox (local, no real sender) | not_accepted | rejected | uncertain
    "status",
    "detail",
    "provider_id",
    "attempts",
    "history",
    "follow_up",
    # the key a refused task / escalation is resent under: set at its first refusal and kept
    # through every later retry, so "resent once" holds whatever a 429 did in between
    "resend_key",
    "policy_rule",
    "packet_path",
    "run_id",
    "created_at",
    "updated_at",
)
QUEUE_COLUMNS = (
    "action_key",
    "exception_id",
    "order_id",
    "order_name",
    "kind",  # create_task | request_reroute | escalate | human_review
    "target",
    "status",  # open | done
    "reason",
    "severity",
    "policy_rule",
    "packet_path",
    "breach_at",
    "run_id",
    "created_at",
    "updated_at",
)
ALERT_COLUMNS = ("alert_key", "kind", "detail", "run_id", "created_at")
# a recipient that opted out of a channel (or cannot receive it): never used on it again
BLOCK_COLUMNS = ("block_key", "channel", "recipient", "reason", "created_at")
# a random token per address: a link's key can neither be computed from an address (as a hash
# could) nor guessed, and `orderwatch opt-out --key` accepts only one it issued
TOKEN_COLUMNS = ("token", "channel", "block_key", "created_at")
# a provider that answered "not now" with Retry-After: nothing goes to it before `retry_at`
# (wall-clock time: a rate limit runs on the provider's clock, not on the run's as-of)
THROTTLE_COLUMNS = ("provider", "retry_at", "detail", "updated_at")
# Issued as secrets.token_hex(16); earlier tokens were token_urlsafe(24), which may start with
# "-" (an operator passes those as --key=KEY), and stay valid.
UNSUBSCRIBE_TOKEN = re.compile(r"^[A-Za-z0-9_-]{32}$")
# compensated: a person settled it with the customer (read back from a Zendesk tag)
HUMAN_DECISIONS = ("acknowledged", "snoozed", "false_alarm", "compensated")
OPEN_STATUSES = ("open", "actioned")


def _ddl(json_type: str) -> list[str]:
    ts = "timestamptz"
    return [
        "create schema if not exists ops",
        f"""create table if not exists ops.exception_ledger (
            exception_id varchar primary key, order_id bigint not null, order_name varchar,
            exception_type varchar not null, severity varchar, status varchar not null,
            owner varchar, policy_rule varchar, actions {json_type}, human_decision varchar,
            snoozed_until {ts}, decided_by varchar, decided_at {ts}, suppressed_reason varchar,
            opened_at {ts} not null, actioned_at {ts}, resolved_at {ts}, breach_at {ts},
            packet_path varchar, updated_at {ts} not null)""",
        f"""create table if not exists ops.customer_messages (
            idempotency_key varchar primary key, order_id bigint not null, order_name varchar,
            exception_ids {json_type}, state_key varchar not null, state {json_type},
            channel varchar not null, template varchar not null, recipient varchar,
            subject varchar, status varchar not null, detail varchar, provider_id varchar,
            attempts integer, history {json_type}, follow_up varchar, resend_key varchar,
            policy_rule varchar, packet_path varchar, run_id varchar, created_at {ts} not null,
            updated_at {ts} not null)""",
        # a ledger from before resend_key (DuckDB and PostgreSQL both take IF NOT EXISTS)
        "alter table ops.customer_messages add column if not exists resend_key varchar",
        f"""create table if not exists ops.action_queue (
            action_key varchar primary key, exception_id varchar not null,
            order_id bigint not null, order_name varchar, kind varchar not null,
            target varchar, status varchar not null, reason varchar, severity varchar,
            policy_rule varchar, packet_path varchar, breach_at {ts}, run_id varchar,
            created_at {ts} not null, updated_at {ts} not null)""",
        f"""create table if not exists ops.contact_blocks (
            block_key varchar primary key, channel varchar not null, recipient varchar,
            reason varchar, created_at {ts} not null)""",
        f"""create table if not exists ops.unsubscribe_tokens (
            token varchar primary key, channel varchar not null, block_key varchar not null,
            created_at {ts} not null)""",
        f"""create table if not exists ops.provider_throttles (
            provider varchar primary key, retry_at {ts} not null, detail varchar,
            updated_at {ts} not null)""",
        f"""create table if not exists ops.alerts (
            alert_key varchar primary key, kind varchar not null, detail varchar,
            run_id varchar, created_at {ts} not null)""",
    ]


def ensure_ops(session: WarehouseSession) -> None:
    for statement in _ddl(session.json_type):
        session.execute(statement)


def key(*parts: Any) -> str:
    return hashlib.sha256("|".join(str(p) for p in parts).encode()).hexdigest()[:32]


def _upsert(
    session: WarehouseSession, table: str, columns: Sequence[str], row: Mapping[str, Any]
) -> None:
    names = ", ".join(columns)
    marks = ", ".join([session.p] * len(columns))
    updates = ", ".join(f"{c} = excluded.{c}" for c in columns[1:])
    session.execute(
        f"insert into {table} ({names}) values ({marks})"
        f" on conflict ({columns[0]}) do update set {updates}",
        [_db(row.get(c)) for c in columns],
    )


def _db(value: Any) -> Any:
    return json.dumps(value, default=str) if isinstance(value, list | dict) else value


def _load(value: Any) -> Any:
    return json.loads(value) if isinstance(value, str) else value


def read_ledger(session: WarehouseSession) -> dict[str, dict[str, Any]]:
    rows = select_dicts(
        session, f"select {', '.join(LEDGER_COLUMNS)} from ops.exception_ledger", LEDGER_COLUMNS
    )
    for row in rows:
        row["actions"] = _load(row["actions"]) or []
    return {r["exception_id"]: r for r in rows}


def write_ledger(session: WarehouseSession, row: Mapping[str, Any]) -> None:
    _upsert(session, "ops.exception_ledger", LEDGER_COLUMNS, row)


def read_messages(session: WarehouseSession) -> dict[str, dict[str, Any]]:
    sql = f"select {', '.join(MESSAGE_COLUMNS)} from ops.customer_messages"
    rows = select_dicts(session, sql, MESSAGE_COLUMNS)
    for row in rows:
        row["exception_ids"] = _load(row["exception_ids"]) or []
        row["history"] = _load(row["history"]) or []  # every try, across runs
    return {r["idempotency_key"]: r for r in rows}


def write_message(session: WarehouseSession, row: Mapping[str, Any]) -> None:
    _upsert(session, "ops.customer_messages", MESSAGE_COLUMNS, row)


def read_queue(session: WarehouseSession) -> dict[str, dict[str, Any]]:
    sql = f"select {', '.join(QUEUE_COLUMNS)} from ops.action_queue"
    return {r["action_key"]: r for r in select_dicts(session, sql, QUEUE_COLUMNS)}


def write_queue(session: WarehouseSession, row: Mapping[str, Any]) -> None:
    _upsert(session, "ops.action_queue", QUEUE_COLUMNS, row)


def write_alert(
    session: WarehouseSession, kind: str, detail: str, run_id: str, at: datetime
) -> str:
    alert_key = key(kind, detail, at.date().isoformat())
    row = {
        "alert_key": alert_key,
        "kind": kind,
        "detail": detail,
        "run_id": run_id,
        "created_at": at,
    }
    _upsert(session, "ops.alerts", ALERT_COLUMNS, row)
    return alert_key


E164 = re.compile(r"^\+[1-9][0-9]{6,14}$")


def normal_phone(number: str) -> str:
    """A number as E.164 digits: `+1 (555) 123-0001` and `+15551230001` are one recipient."""
    return re.sub(r"[\s().-]", "", number.strip())


def block_key(channel: str, recipient: str) -> str:
    value = normal_phone(recipient) if channel == "sms" else recipient.strip().lower()
    return key("block", channel, value)


def unsubscribe_token(session: WarehouseSession, channel: str, recipient: str, at: datetime) -> str:
    """The recipient's unsubscribe token, issued on first use and the same ever after."""
    block = block_key(channel, recipient)
    found = session.query(
        f"select token from ops.unsubscribe_tokens where block_key = {session.p}"
        " order by created_at, token limit 1",
        [block],
    )
    if found:
        return str(found[0][0])
    token = secrets.token_hex(16)  # never starts with '-', so it reads as a CLI value
    row = {"token": token, "channel": channel, "block_key": block, "created_at": at}
    _upsert(session, "ops.unsubscribe_tokens", TOKEN_COLUMNS, row)
    return token


def token_block(session: WarehouseSession, token: str) -> tuple[str, str] | None:
    """(channel, block key) of an issued token; None for any other string."""
    if not UNSUBSCRIBE_TOKEN.match(token):
        return None
    found = session.query(
        f"select channel, block_key from ops.unsubscribe_tokens where token = {session.p}",
        [token],
    )
    return (str(found[0][0]), str(found[0][1])) if found else None


def read_blocks(session: WarehouseSession) -> set[str]:
    return {k for (k,) in session.query("select block_key from ops.contact_blocks")}


def write_block(
    session: WarehouseSession,
    channel: str,
    recipient: str,
    masked: str,
    reason: str,
    at: datetime,
    *,
    known_key: str | None = None,
) -> None:
    """`known_key`: the block key itself (an unsubscribe link carries it, not the address)."""
    row = {
        "block_key": known_key or block_key(channel, recipient),
        "channel": channel,
        "recipient": masked,
        "reason": reason,
        "created_at": at,
    }
    _upsert(session, "ops.contact_blocks", BLOCK_COLUMNS, row)


def read_throttles(session: WarehouseSession, max_hold: timedelta) -> dict[str, datetime]:
    """Provider → retry at, never more than `max_hold` after the hold was written (a row from
    a run with a longer cap, or none, is cut to it)."""
    rows = session.query("select provider, retry_at, updated_at from ops.provider_throttles")
    return {p: min(t, at + max_hold) for p, t, at in rows}


def write_throttle(
    session: WarehouseSession, provider: str, retry_at: datetime, detail: str, at: datetime
) -> None:
    row = {"provider": provider, "retry_at": retry_at, "detail": detail, "updated_at": at}
    _upsert(session, "ops.provider_throttles", THROTTLE_COLUMNS, row)


def remove_opt_out(session: WarehouseSession, key_: str) -> int:
    """The customer opted in again (Twilio START): the opt-out block goes; a block because the
    address or number cannot receive the channel stays."""
    found = session.query(
        "select count(*) from ops.contact_blocks where block_key = "
        f"{session.p} and reason <> 'invalid_recipient'",
        [key_],
    )
    session.execute(
        f"delete from ops.contact_blocks where block_key = {session.p}"
        " and reason <> 'invalid_recipient'",
        [key_],
    )
    return int(found[0][0])


def record_human_decision(
    session: WarehouseSession,
    exception_id: str,
    decision: str,
    *,
    by: str,
    at: datetime,
    snoozed_until: datetime | None = None,
) -> None:
    """What a person decided about an exception; the next action run honours it."""
    if decision not in HUMAN_DECISIONS:
        raise ValueError(f"decision must be one of {', '.join(HUMAN_DECISIONS)}")
    if decision == "snoozed" and snoozed_until is None:
        raise ValueError("a snooze needs snoozed_until")
    ensure_ops(session)
    ledger = read_ledger(session)
    if exception_id not in ledger:
        raise KeyError(f"{exception_id} is not in ops.exception_ledger")
    row = dict(ledger[exception_id])
    row.update(
        human_decision=decision,
        decided_by=by,
        decided_at=at,
        snoozed_until=snoozed_until,
        owner=by,
        updated_at=at,
    )
    if decision == "false_alarm":
        row.update(status="suppressed", suppressed_reason="false_alarm")
    write_ledger(session, row)
