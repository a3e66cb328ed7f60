"""`marts.order_exceptions`: exception episodes from the rule flags of the order state and the
risk scores (when a champion model has written any). The logic is lib/exceptions.py; this
asset reads, advances the persisted table to "now" and writes it back (docs/architecture.md
"Storage contract")."""

import json
from collections import Counter, defaultdict
from datetime import datetime
from typing import Any, NamedTuple

import dagster as dg

from orderwatch_dagster.defs.actions.resources import is_replay
from orderwatch_dagster.defs.resources import Warehouse
from orderwatch_dagster.lib import exceptions as ex
from orderwatch_dagster.lib import settings
from orderwatch_dagster.lib.policy import Policy, load_policy
from orderwatch_dagster.lib.tables import columns_of, insert_rows, select_dicts, table_exists
from orderwatch_dagster.lib.warehouse_session import WarehouseSession

TABLE = "marts.order_exceptions"
# A replay (ORDERWATCH_AS_OF behind the clock) writes here: the live episodes and their ids,
# which the ledger and the customer messages refer to, are never rewritten by a look at the past.
REPLAY_TABLE = "marts.order_exceptions_replay"


def ddl(json_type: str, table: str = TABLE) -> str:
    return f"""create table if not exists {table} (
        exception_id varchar primary key, order_id bigint not null, order_name varchar not null,
        exception_type varchar not null, severity varchar not null,
        started_at timestamptz not null, ended_at timestamptz, breach_at timestamptz,
        evidence {json_type}, risk_probability double precision, recommended_action varchar,
        policy_rule varchar, customer_tier varchar, order_value double precision,
        detected_by varchar, as_of timestamptz not null)"""


def _select_state(
    session: WarehouseSession, table: str, where: str = "", params: list[Any] | None = None
) -> list[dict[str, Any]]:
    """The state columns the table has (a column another layer has not added yet reads as
    null, so the asset keeps working while the as-of layer grows)."""
    have = set(columns_of(session, "marts", table))
    present = [c for c in ex.STATE_COLUMNS if c in have]
    rows = select_dicts(
        session, f"select {', '.join(present)} from marts.{table} {where}", present, params or []
    )
    missing = dict.fromkeys(c for c in ex.STATE_COLUMNS if c not in have)
    return [{**missing, **row} for row in rows]


def read_states(session: WarehouseSession, as_of: datetime) -> tuple[str, list[dict[str, Any]]]:
    """The order state at `as_of`: the snapshot slice when the as-of layer has one, else
    marts.order_state (the layer evaluated at "now")."""
    if table_exists(session, "marts", "order_state_snapshots"):
        rows = session.query(
            f"select max(as_of) from marts.order_state_snapshots where as_of <= {session.p}",
            [as_of],
        )
        if rows and rows[0][0] is not None:
            where = f"where as_of = {session.p}"
            states = _select_state(session, "order_state_snapshots", where, [rows[0][0]])
            return "order_state_snapshots", states
    return "order_state", _select_state(session, "order_state")


def read_scores(session: WarehouseSession, as_of: datetime) -> dict[Any, list[ex.Score]]:
    """Risk score history known at `as_of`; empty when no champion has scored (cold start)."""
    if not table_exists(session, "marts", "order_risk_scores"):
        return {}
    rows = session.query(
        "select order_id, scored_at, probability, model_version, reasons"
        f" from marts.order_risk_scores where scored_at <= {session.p}",
        [as_of],
    )
    scores: dict[Any, list[ex.Score]] = defaultdict(list)
    for order_id, scored_at, probability, version, reasons in rows:
        parsed = json.loads(reasons) if isinstance(reasons, str) else (reasons or [])
        scores[order_id].append(ex.Score(scored_at, float(probability), str(version), parsed))
    return scores


class Step(NamedTuple):
    source: str  # the state table read (order_state_snapshots or order_state)
    states: list[dict[str, Any]]
    rows: list[dict[str, Any]]  # the exception table at the step's moment
    scores_used: bool


def exceptions_at(
    session: WarehouseSession, as_of: datetime, policy: Policy, previous: list[dict[str, Any]]
) -> Step:
    """The table advanced from `previous` to `as_of`, from what the warehouse knew then: the
    order state at `as_of` and the scores with `scored_at <= as_of` (bench/detection.py folds
    this same step over the as-of grid)."""
    source, states = read_states(session, as_of)
    scores = read_scores(session, as_of)
    return Step(source, states, ex.advance(previous, states, scores, policy, as_of), bool(scores))


def read_previous(session: WarehouseSession, as_of: datetime) -> list[dict[str, Any]]:
    """The persisted table, unless it is from a later moment (a replay starts afresh)."""
    if not table_exists(session, "marts", "order_exceptions"):
        return []
    if set(ex.COLUMNS) - set(columns_of(session, "marts", "order_exceptions")):
        return []  # an older layout: rebuilt from the current state
    rows = select_dicts(session, f"select {', '.join(ex.COLUMNS)} from {TABLE}", ex.COLUMNS)
    if any(r["as_of"] > as_of for r in rows):
        return []
    return rows


def replay_step(session: WarehouseSession, as_of: datetime, policy: Policy) -> Step:
    """A replay's table: folded over the as-of grid's moments up to `as_of`, from nothing (the
    live table holds what was decided later, so it is neither read nor written)."""
    moments: list[datetime] = []
    if table_exists(session, "marts", "order_state_snapshots"):
        moments = [
            m
            for (m,) in session.query(
                "select distinct as_of from marts.order_state_snapshots"
                f" where as_of < {session.p} order by 1",
                [as_of],
            )
        ]
    table: list[dict[str, Any]] = []
    for moment in moments:
        table = exceptions_at(session, moment, policy, table).rows
    return exceptions_at(session, as_of, policy, table)


def write_table(session: WarehouseSession, rows: list[dict[str, Any]], table: str = TABLE) -> None:
    session.execute("create schema if not exists marts")
    with session.transaction():
        session.execute(ddl(session.json_type, table))
        session.execute(f"delete from {table}")
        insert_rows(session, table, ex.COLUMNS, [[r[c] for c in ex.COLUMNS] for r in rows])


def _counts_table(rows: list[dict[str, Any]]) -> str:
    counts = Counter((r["exception_type"], r["severity"]) for r in rows)
    severities = ("critical", "high", "medium", "low")
    lines = ["| type | " + " | ".join(severities) + " | open |", "|---" * 6 + "|"]
    for etype in sorted({t for t, _ in counts}):
        cells = [str(counts.get((etype, s), 0)) for s in severities]
        lines.append(f"| {etype} | " + " | ".join(cells) + f" | {sum(map(int, cells))} |")
    return "\n".join(lines)


@dg.asset(
    key=["marts", "order_exceptions"],
    group_name="exceptions",
    deps=[dg.AssetKey(["marts", "order_state"])],
    description="One row per exception episode (order × type × episode) with severity, "
    "evidence and the recommended action (lib/exceptions.py, policy.yaml).",
    kinds={"python", "duckdb"},
)
def order_exceptions(
    context: dg.AssetExecutionContext, warehouse: Warehouse
) -> dg.MaterializeResult:
    as_of = settings.now()
    policy = load_policy()
    replay = is_replay(as_of)
    target = REPLAY_TABLE if replay else TABLE
    with warehouse.connect() as session:
        if replay:
            source, _, rows, scored = replay_step(session, as_of, policy)
        else:
            previous = read_previous(session, as_of)
            source, _, rows, scored = exceptions_at(session, as_of, policy, previous)
        write_table(session, rows, target)
    open_rows = [r for r in rows if r["ended_at"] is None]
    by_type = Counter(r["exception_type"] for r in open_rows)
    by_severity = Counter(r["severity"] for r in open_rows)
    context.log.info(f"{len(open_rows)} open exceptions of {len(rows)} episodes as of {as_of}")
    return dg.MaterializeResult(
        metadata={
            "as_of": as_of.isoformat(),
            "replay": replay,
            "table": target,
            "state_source": source,
            "risk_scores_used": scored,
            "policy_version": policy.version,
            "episodes": len(rows),
            "open": len(open_rows),
            "open_by_type": dict(sorted(by_type.items())),
            "open_by_severity": dict(sorted(by_severity.items())),
            "open_counts": dg.MetadataValue.md(_counts_table(open_rows)),
            "top_open": dg.MetadataValue.md(ex.top_open_markdown(rows)),
        }
    )


@dg.asset_check(asset=order_exceptions, description="Every episode names its Shopify order")
def order_exceptions_name_their_orders(warehouse: Warehouse) -> dg.AssetCheckResult:
    with warehouse.connect() as session:
        ((total, missing, duplicate),) = session.query(
            f"select count(*), count(*) filter (where order_id is null or order_name is null),"
            f" count(*) - count(distinct exception_id) from {TABLE}"
        )
    return dg.AssetCheckResult(
        passed=missing == 0 and duplicate == 0,
        metadata={"rows": total, "without_order_id_or_name": missing, "duplicate_ids": duplicate},
    )
