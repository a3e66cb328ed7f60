"""A plain-text summary of what the warehouse holds, for `orderwatch demo` and the UI."""

from __future__ import annotations

import json
from pathlib import Path

import duckdb

from orderwatch_dagster.lib.feeds import FEED_FOLDERS

# Rules of marts.order_state; each has <rule>_occurred (an episode seen) and <rule>_active.
FLAG_COLUMNS: tuple[str, ...] = (
    "ship_late",
    "no_first_scan",
    "scan_gap",
    "carrier_exception",
    "fulfillment_hold",
    "lost",
    "promise_missed",
)


def _tables(con: duckdb.DuckDBPyConnection) -> set[tuple[str, str]]:
    rows = con.execute("select table_schema, table_name from information_schema.tables").fetchall()
    return {(schema, name) for schema, name in rows}


def _columns(con: duckdb.DuckDBPyConnection, schema: str, table: str) -> set[str]:
    rows = con.execute(
        "select column_name from information_schema.columns"
        " where table_schema = ? and table_name = ?",
        [schema, table],
    ).fetchall()
    return {name for (name,) in rows}


def warehouse_summary(path: Path) -> str:
    if not path.exists():
        return f"no warehouse at {path}"
    lines: list[str] = [f"warehouse {path}"]
    with duckdb.connect(str(path), read_only=True) as con:
        tables = _tables(con)
        lines.append(f"  {'feed':<24}{'versions':>10}{'records':>10}{'quarantined':>13}")
        quarantine: dict[str, int] = {}
        if ("raw", "_quarantine") in tables:
            quarantine = dict(
                con.execute("select feed, count(*) from raw._quarantine group by feed").fetchall()
            )
        for feed in FEED_FOLDERS:
            if ("raw", feed) not in tables:
                lines.append(f"  {feed:<24}{'-':>10}{'-':>10}{quarantine.get(feed, 0):>13}")
                continue
            versions, records = con.execute(
                f'select count(*), count(distinct _key) from raw."{feed}"'
            ).fetchone()
            lines.append(f"  {feed:<24}{versions:>10}{records:>10}{quarantine.get(feed, 0):>13}")
        if ("marts", "order_state") in tables:
            columns = _columns(con, "marts", "order_state")
            orders, open_orders = con.execute(
                "select count(*), count(*) filter (where is_open) from marts.order_state"
            ).fetchone()
            lines.append(f"  order_state: {orders} orders, {open_orders} open")
            flags = [name for name in FLAG_COLUMNS if f"{name}_active" in columns]
            if flags:
                counts = con.execute(
                    "select "
                    + ", ".join(
                        f"count(*) filter (where {name}_occurred),"
                        f" count(*) filter (where {name}_active and is_open)"
                        for name in flags
                    )
                    + " from marts.order_state"
                ).fetchone()
                lines.append(f"  {'rule':<20}{'orders hit':>12}{'open, active':>14}")
                for index, name in enumerate(flags):
                    occurred, active = counts[2 * index], counts[2 * index + 1]
                    lines.append(f"  {name:<20}{occurred:>12}{active:>14}")
        if ("marts", "fct_order_milestones") in tables:
            (milestones,) = con.execute(
                "select count(*) from marts.fct_order_milestones"
            ).fetchone()
            lines.append(f"  fct_order_milestones: {milestones} rows")
        lines += action_summary(con)
    return "\n".join(lines)


def action_summary(con: duckdb.DuckDBPyConnection) -> list[str]:
    """Exceptions, actions, messages and human coverage (marts.order_exceptions, ops.*)."""
    tables = _tables(con)
    lines: list[str] = []
    if ("marts", "order_exceptions") in tables:
        rows = con.execute(
            "select exception_type, count(*), count(*) filter (where ended_at is null)"
            " from marts.order_exceptions group by 1 order by 1"
        ).fetchall()
        lines.append(f"  {'exception type':<20}{'episodes':>10}{'open':>8}")
        lines += [f"  {name:<20}{total:>10}{still:>8}" for name, total, still in rows]
    if ("ops", "action_queue") not in tables:
        return lines
    kinds = dict(con.execute("select kind, count(*) from ops.action_queue group by 1").fetchall())
    messages = dict(
        con.execute("select status, count(*) from ops.customer_messages group by 1").fetchall()
    )
    channels = dict(
        con.execute("select channel, count(*) from ops.customer_messages group by 1").fetchall()
    )
    kinds["notify_customer"] = channels.get("email", 0) + channels.get("sms", 0)
    lines.append("  actions: " + ", ".join(f"{k} {v}" for k, v in sorted(kinds.items())))
    lines.append(
        "  messages: " + (", ".join(f"{k} {v}" for k, v in sorted(messages.items())) or "none")
    )
    if messages.get("outbox"):
        # the local outbox reached nobody: never part of what was sent
        lines.append(
            f"  sent through a provider: {messages.get('accepted', 0)}; written to the local"
            f" outbox (no real sender on, reached nobody): {messages['outbox']}"
        )
    lines.append(
        f"  tasks {kinds.get('create_task', 0)}, reroute requests"
        f" {kinds.get('request_reroute', 0)}, escalations {kinds.get('escalate', 0)},"
        f" human reviews {kinds.get('human_review', 0)}"
    )
    replies = con.execute(
        "select count(*) filter (where template = 'wismo_reply' and status = 'accepted'),"
        " count(*) filter (where template = 'wismo_note' and status = 'accepted'),"
        " count(*) filter (where template = 'wismo_reply' and status = 'outbox'),"
        " count(*) filter (where template = 'wismo_note' and status = 'outbox')"
        " from ops.customer_messages"
    ).fetchone()
    line = (
        f"  status tickets: {replies[0]} answered automatically, {replies[1]} packets as"
        " internal notes on at-risk orders"
    )
    if replies[2] or replies[3]:
        line += f" (outbox only: {replies[2]} replies, {replies[3]} notes)"
    lines.append(line)
    if ("staging", "stg_support__tickets") in tables and ("marts", "order_exceptions") in tables:
        lines.append("  " + tickets_avoided_line(con))
    (orders,) = con.execute("select count(*) from marts.order_state").fetchone()
    human, early, escalations = con.execute(
        "select count(distinct order_id) filter (where kind in ('escalate', 'human_review')),"
        " count(*) filter (where kind = 'escalate' and created_at < breach_at),"
        " count(*) filter (where kind = 'escalate') from ops.action_queue"
    ).fetchone()
    share = 100.0 * human / orders if orders else 0.0
    lines.append(f"  human coverage: {human} of {orders} orders ({share:.1f} %) to a person")
    if escalations:
        lines.append(
            f"  escalations raised before the promise broke: {early} of {escalations}"
            f" ({100.0 * early / escalations:.0f} %)"
        )
    return lines


# Orders with an exception: when they were first messaged (if ever) and first asked where the
# order is (a `wismo` ticket, newest version of each ticket).
_AVOIDED_SQL = """
with asked as (
    select o.order_id, min(t.created_at) as first_ticket
    from staging.stg_support__tickets t
    inner join marts.order_state o on o.order_name = t.order_name
    where t.is_latest_version and t.is_wismo
    group by o.order_id
),
messaged as (
    select order_id, min(created_at) as first_message from ops.customer_messages
    where channel in ('email', 'sms') and status = ? group by order_id
),
excepted as (
    select order_id, min(started_at) as first_exception from marts.order_exceptions
    group by order_id
)
select
    count(*) filter (where m.order_id is null),
    count(*) filter (where m.order_id is null and a.first_ticket >= e.first_exception),
    count(*) filter (
        where m.order_id is not null
        and (a.first_ticket is null or a.first_ticket > m.first_message)
    ),
    count(*) filter (where m.order_id is not null and a.first_ticket > m.first_message)
from excepted e
left join messaged m on m.order_id = e.order_id
left join asked a on a.order_id = e.order_id
"""


def tickets_avoided(
    con: duckdb.DuckDBPyConnection, status: str = "accepted"
) -> dict[str, float] | None:
    """Status tickets the proactive messages avoided, estimated (README "Acting on
    exceptions"): the usual rate `r` is the share of orders with an exception that were not
    messaged and whose customer asked after the exception began; the orders messaged before
    any status ticket would have asked at that rate, so avoided = r × messaged-first − the
    messaged orders whose customer asked anyway after the message (never below 0). None
    without an unmessaged order to take the rate from. The unmessaged orders are mostly the
    less severe exceptions (a policy's `min_severity`), so `r` and the estimate lean low.
    `status`: which messages count as sent (`outbox`: what the estimate would be had the
    outbox's messages gone out)."""
    if ("ops", "customer_messages") not in _tables(con):
        return None
    unmessaged, unmessaged_asked, messaged_first, asked_after = con.execute(
        _AVOIDED_SQL, [status]
    ).fetchone()
    if not unmessaged:
        return None
    rate = unmessaged_asked / unmessaged
    return {
        "rate": rate,
        "unmessaged": unmessaged,
        "messaged_first": messaged_first,
        "asked_after": asked_after,
        "avoided": max(0.0, rate * messaged_first - asked_after),
    }


def tickets_avoided_line(con: duckdb.DuckDBPyConnection) -> str:
    est = tickets_avoided(con)
    if est is None:
        return "status tickets avoided: no estimate (no unmessaged exception order for the rate)"
    if not est["messaged_first"]:
        local = tickets_avoided(con, "outbox")
        if local and local["messaged_first"]:
            # no customer was told anything: claim nothing, show what it would have been
            return (
                "status tickets avoided: none (no message reached a customer; had the"
                f" {local['messaged_first']:.0f} outbox messages gone out: ≈"
                f" {local['avoided']:.1f} at the usual rate {100 * local['rate']:.1f} %)"
            )
        return "status tickets avoided: none (no order was messaged before its customer asked)"
    return (
        f"status tickets avoided ≈ {est['avoided']:.1f}: {est['messaged_first']:.0f} orders"
        f" messaged before any status ticket × usual rate {100 * est['rate']:.1f} %"
        f" (of {est['unmessaged']:.0f} unmessaged exception orders)"
        f" − {est['asked_after']:.0f} who asked anyway"
    )


def model_summary(models: Path) -> str:
    """The champion lateness model's holdout metrics beside the best single rule's (the
    registry's champion.json and metrics.json, ml/registry.py), or why there is none."""
    champion_file = models / "champion.json"
    champion = (
        json.loads(champion_file.read_text()).get("version") if champion_file.is_file() else None
    )
    if not champion:
        return (
            "  lateness model: none (cold start or not trained yet; exceptions rest on the rules)"
        )
    metrics = json.loads((models / champion / "metrics.json").read_text())
    model, best = metrics["model"], metrics["best_rule"]
    logistic = metrics.get("logistic", {})
    start, end = (moment[:16] for moment in metrics["holdout_window"])
    return "\n".join(
        [
            f"  lateness model {champion}",
            f"    holdout {start} .. {end}"
            f" ({model['rows']} snapshots, {model.get('positives')} missing their promise)",
            f"    {'scorer':<34}{'AP':>8}{'ROC-AUC':>9}{'Brier':>8}",
            f"    {'model (calibrated boosting)':<34}{model['average_precision']:>8.3f}"
            f"{model['roc_auc']:>9.3f}{model['brier']:>8.3f}",
            f"    {'logistic regression':<34}{logistic.get('average_precision', 0):>8.3f}"
            f"{logistic.get('roc_auc', 0):>9.3f}{logistic.get('brier', 0):>8.3f}",
            f"    {'best rule: ' + str(best['name']):<34}{best['average_precision']:>8.3f}",
        ]
    )
