"""Exception episodes from order state rows (pure: no Dagster, no SQL).

One episode = one order × exception type × stretch of time the problem held. `advance` moves
the table from its previous version to one moment `as_of`, given the order state at that
moment (today `marts.order_state`; one as-of slice of `marts.order_state_snapshots` has the
same columns) and the risk score history. Folding `advance` over an as-of grid rebuilds the
table from history (`rebuild`); running it once per pipeline run with the persisted previous
table gives the same ids, because an episode's id depends only on its order, type and start.

Rule episodes start at the rule's `<rule>_detected_at` (a fact-derived time, so the same on
every run). An active rule flag opens an episode only once it is material (policy.yaml
`detection`: held long enough, little slack left, or confirmed by the risk model; holds, lost
parcels and broken promises at once); once open, it stays open while the flag holds and ends at
the first run that no longer sees it. `predicted_late` episodes come from the score history
with hysteresis: open when the probability reaches the threshold for the order's tier and slack
at that score, closed only once it falls `exit_margin` below it (or the order closes).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from orderwatch_dagster.lib.policy import Policy

# marts.order_state rule → exception type (fulfillment_hold splits by its category)
RULES: tuple[str, ...] = (
    "ship_late",
    "no_first_scan",
    "scan_gap",
    "carrier_exception",
    "fulfillment_hold",
    "lost",
    "promise_missed",
)
HOLD_TYPES = {"inventory": "inventory_hold", "address": "address_issue"}

COLUMNS: tuple[str, ...] = (
    "exception_id",
    "order_id",
    "order_name",
    "exception_type",
    "severity",
    "started_at",
    "ended_at",
    "breach_at",
    "evidence",
    "risk_probability",
    "recommended_action",
    "policy_rule",
    "customer_tier",
    "order_value",
    "detected_by",
    "as_of",
)

# The order state columns the build reads (a snapshot slice has them too).
STATE_COLUMNS: tuple[str, ...] = (
    "order_id",
    "order_name",
    "is_open",
    "current_milestone",
    "last_event",
    "last_event_at",
    "last_event_evidence",
    "hours_since_last_scan",
    "promised_ship_by",
    "promised_deliver_by",
    "ship_slack_hours",
    "deliver_slack_hours",
    "delivered_at",
    "customer_tier",
    "order_value",
    "carrier",
    "warehouse_name",
    "scan_gap_threshold_hours",
    "carrier_exception_reason",
    "fulfillment_hold_category",
    *(f"{rule}_{suffix}" for rule in RULES for suffix in ("occurred", "active", "detected_at")),
)


@dataclass(frozen=True)
class Score:
    scored_at: datetime
    probability: float
    model_version: str
    reasons: list[dict[str, Any]]


def _at(score: Score) -> datetime:
    return score.scored_at


def exception_id(order_id: Any, exception_type: str, started_at: datetime) -> str:
    """Stable per episode: the same order, type and start always give the same id."""
    text = f"{order_id}|{exception_type}|{started_at.isoformat()}"
    return "ex_" + hashlib.sha256(text.encode()).hexdigest()[:20]


def exception_type(rule: str, state: Mapping[str, Any]) -> str:
    if rule == "fulfillment_hold":
        return HOLD_TYPES.get(str(state.get("fulfillment_hold_category") or ""), "other_hold")
    return rule


def _hours(later: datetime, earlier: datetime) -> float:
    return (later - earlier).total_seconds() / 3600.0


def _slack(state: Mapping[str, Any]) -> float | None:
    """Hours until the delivery promise breaks (negative once broken): what the customer feels,
    whichever stage the problem is in."""
    value = state.get("deliver_slack_hours")
    return None if value is None else float(value)


def _iso(value: Any) -> Any:
    return value.isoformat() if isinstance(value, datetime) else value


def _detail(rule: str, state: Mapping[str, Any]) -> dict[str, Any]:
    if rule == "carrier_exception":
        return {"reason": state.get("carrier_exception_reason")}
    if rule == "fulfillment_hold":
        return {"hold_category": state.get("fulfillment_hold_category")}
    if rule == "scan_gap":
        return {
            "threshold_hours": state.get("scan_gap_threshold_hours"),
            "hours_since_last_scan": state.get("hours_since_last_scan"),
        }
    return {}


def evidence(
    state: Mapping[str, Any], rule: str, detected_at: Any, score: Score | None
) -> dict[str, Any]:
    """What the row rests on: the rule or score, and the order's latest observation."""
    out: dict[str, Any] = {
        "signal": rule,
        "detected_at": _iso(detected_at),
        **_detail(rule, state),
        "current_milestone": state.get("current_milestone"),
        "last_event": state.get("last_event"),
        "last_event_at": _iso(state.get("last_event_at")),
        "last_event_evidence": state.get("last_event_evidence"),
        "promised_ship_by": _iso(state.get("promised_ship_by")),
        "promised_deliver_by": _iso(state.get("promised_deliver_by")),
        "ship_slack_hours": state.get("ship_slack_hours"),
        "deliver_slack_hours": state.get("deliver_slack_hours"),
        "carrier": state.get("carrier"),
        "warehouse": state.get("warehouse_name"),
    }
    if score is not None:
        out["risk"] = {
            "probability": round(score.probability, 4),
            "model_version": score.model_version,
            "scored_at": score.scored_at.isoformat(),
            "reasons": score.reasons,
        }
    return out


def _row(
    state: Mapping[str, Any],
    etype: str,
    started_at: datetime,
    ended_at: datetime | None,
    ev: dict[str, Any],
    score: Score | None,
    policy: Policy,
    as_of: datetime,
    detected_by: str,
) -> dict[str, Any]:
    tier = str(state.get("customer_tier") or "standard")
    value = float(state.get("order_value") or 0.0)
    severity = policy.severity(etype, tier, _slack(state), value)
    decision = policy.decide(etype, tier, severity, value)
    return {
        "exception_id": exception_id(state["order_id"], etype, started_at),
        "order_id": state["order_id"],
        "order_name": state.get("order_name"),
        "exception_type": etype,
        "severity": severity,
        "started_at": started_at,
        "ended_at": ended_at,
        "breach_at": state.get("promised_deliver_by"),
        "evidence": json.dumps(ev, sort_keys=True, default=str),
        "risk_probability": None if score is None else float(score.probability),
        "recommended_action": decision.recommended,
        "policy_rule": decision.policy_line,
        "customer_tier": tier,
        "order_value": value,
        "detected_by": detected_by,
        "as_of": as_of,
    }


def _rule_episodes(
    state: Mapping[str, Any],
    score: Score | None,
    policy: Policy,
    as_of: datetime,
    still_open: Mapping[str, str],
) -> list[dict[str, Any]]:
    """Open episodes of the active rules that are material (policy `detection`), or were
    already open (`still_open`: id -> why it opened): once open, an episode stays open while
    its rule holds, so a model confirmation that dips does not make it flap."""
    rows = []
    tier = str(state.get("customer_tier") or "standard")
    for rule in RULES:
        etype = exception_type(rule, state)
        if not _holds(state, rule, policy.lasts_until_closed(etype)):
            continue
        detected = state.get(f"{rule}_detected_at") or as_of
        why = still_open.get(exception_id(state["order_id"], etype, detected)) or policy.opens(
            etype,
            tier,
            _hours(as_of, detected),
            _slack(state),
            None if score is None else score.probability,
        )
        if why is None:
            continue
        ev = {**evidence(state, rule, detected, score), "opened_because": why}
        rows.append(_row(state, etype, detected, None, ev, score, policy, as_of, "rule"))
    return rows


def _holds(state: Mapping[str, Any], rule: str, until_closed: bool) -> bool:
    """The flag is up now, or (`until_closed`: a parcel that shipped late stays late) it was
    raised and the order is still open."""
    if state.get(f"{rule}_active"):
        return True
    return until_closed and bool(state.get(f"{rule}_occurred")) and bool(state.get("is_open"))


def _opened_because(row: Mapping[str, Any]) -> str:
    ev = row.get("evidence")
    parsed = json.loads(ev) if isinstance(ev, str) else (ev or {})
    return str(parsed.get("opened_because") or "rule flag")


def predicted_episode(
    state: Mapping[str, Any], scores: Sequence[Score], policy: Policy, as_of: datetime
) -> tuple[datetime, datetime | None, Score] | None:
    """The latest predicted_late episode from the score history (scored_at <= as_of), with
    hysteresis, as (started_at, ended_at or None, the score that drives it)."""
    tier = str(state.get("customer_tier") or "standard")
    deliver_by = state.get("promised_deliver_by")
    started: datetime | None = None
    ended: datetime | None = None
    driver: Score | None = None
    for score in sorted((s for s in scores if s.scored_at <= as_of), key=_at):
        slack = None if deliver_by is None else _hours(deliver_by, score.scored_at)
        threshold = policy.risk_threshold(tier, slack)
        if started is None or ended is not None:
            if score.probability >= threshold:
                started, ended, driver = score.scored_at, None, score
        elif score.probability < threshold - policy.exit_margin:
            ended = score.scored_at
        else:
            driver = score
    if started is None or driver is None:
        return None
    if ended is None and not state.get("is_open", True):
        ended = state.get("delivered_at") or as_of
    return started, ended, driver


def advance(
    previous: Iterable[Mapping[str, Any]],
    states: Iterable[Mapping[str, Any]],
    scores: Mapping[Any, Sequence[Score]],
    policy: Policy,
    as_of: datetime,
) -> list[dict[str, Any]]:
    """The exception table at `as_of`: previous episodes carried forward (ids, starts and
    frozen closed rows kept), current ones refreshed, those no longer seen closed at `as_of`."""
    prior = {row["exception_id"]: dict(row) for row in previous}
    still_open = {
        eid: _opened_because(row) for eid, row in prior.items() if row.get("ended_at") is None
    }
    current: dict[str, dict[str, Any]] = {}
    for state in states:
        history = sorted(scores.get(state["order_id"], ()), key=_at)
        latest = history[-1] if history else None
        for row in _rule_episodes(state, latest, policy, as_of, still_open):
            current[row["exception_id"]] = row
        episode = predicted_episode(state, history, policy, as_of)
        if episode is not None:
            started, ended, driver = episode
            ev = evidence(state, "predicted_late", started, driver)
            row = _row(state, "predicted_late", started, ended, ev, driver, policy, as_of, "model")
            current[row["exception_id"]] = row
    out: dict[str, dict[str, Any]] = {}
    for eid, old in prior.items():
        if old.get("ended_at") is not None:
            out[eid] = old  # a closed episode is history: frozen
        elif eid not in current:
            out[eid] = {**old, "ended_at": as_of, "as_of": as_of}  # no longer seen: recovered
    for eid, row in current.items():
        old = prior.get(eid)
        if old is not None and old.get("ended_at") is not None:
            continue
        if old is not None and row["ended_at"] is not None and old.get("ended_at") is None:
            row = {**row, "ended_at": as_of}  # seen open before, inactive now: ends now
        out[eid] = row
    return sorted(
        out.values(), key=lambda r: (str(r["order_id"]), r["exception_type"], r["started_at"])
    )


def rebuild(
    slices: Iterable[tuple[datetime, Iterable[Mapping[str, Any]]]],
    scores: Mapping[Any, Sequence[Score]],
    policy: Policy,
) -> list[dict[str, Any]]:
    """Fold `advance` over as-of slices (oldest first) of the snapshot layer."""
    table: list[dict[str, Any]] = []
    for as_of, states in sorted(slices, key=lambda s: s[0]):
        table = advance(table, states, scores, policy, as_of)
    return table


SEVERITY_ORDER = {"critical": 0, "high": 1, "medium": 2, "low": 3}


def top_open_markdown(rows: Sequence[Mapping[str, Any]], limit: int = 10) -> str:
    """The most urgent open exceptions as a Markdown table (the asset's UI metadata)."""
    open_rows = sorted(
        (r for r in rows if r.get("ended_at") is None),
        key=lambda r: (SEVERITY_ORDER[r["severity"]], str(r.get("breach_at") or "")),
    )[:limit]
    lines = [
        "| order | type | severity | tier | value | since | breach | recommended |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in open_rows:
        lines.append(
            f"| {r['order_name']} ({r['order_id']}) | {r['exception_type']} | {r['severity']} "
            f"| {r['customer_tier']} | {r['order_value']:.2f} | {_iso(r['started_at'])} "
            f"| {_iso(r.get('breach_at'))} | {r['recommended_action']} |"
        )
    return "\n".join(lines)
