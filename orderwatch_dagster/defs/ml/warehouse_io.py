"""Reading snapshots and writing risk scores through the `Warehouse` session (both engines)."""

from __future__ import annotations

from datetime import datetime

import pandas as pd

from orderwatch_dagster.lib.warehouse import WarehouseSession

SNAPSHOT_TABLE = "marts.order_state_snapshots"
STATE_TABLE = "marts.order_state"
SCORES_TABLE = "marts.order_risk_scores"

# What ml/features.py reads (order_state's columns; the optional ones only where present).
SNAPSHOT_COLUMNS: tuple[str, ...] = (
    "order_id",
    "as_of",
    "placed_at",
    "current_milestone",
    "last_event_at",
    "last_scan_at",
    "promised_ship_by",
    "promised_deliver_by",
    "shipped_at",
    "delivered_at",
    "customer_tier",
    "order_value",
    "carrier",
    "service_code",
    "warehouse_name",
    "destination_region",
    "lane",
    "shipment_count",
    "wismo_ticket_count",
    "is_cancelled",
    "is_open",
    "missed_promise",
    "fulfillment_hold_category",
    "carrier_exception_reason",
    "item_count",
    "exception_scan_count",
    "carrier_est_delivery_at",
    "milestone_reached_at",
    *(
        f"{rule}_{suffix}"
        for rule in (
            "ship_late",
            "no_first_scan",
            "scan_gap",
            "carrier_exception",
            "fulfillment_hold",
            "lost",
            "promise_missed",
        )
        for suffix in ("active", "occurred")
    ),
)


def _split(table: str) -> tuple[str, str]:
    schema, name = table.split(".", 1)
    return schema, name


def table_columns(session: WarehouseSession, table: str) -> list[str]:
    schema, name = _split(table)
    rows = session.query(
        "select column_name from information_schema.columns"
        f" where table_schema = {session.p} and table_name = {session.p}",
        [schema, name],
    )
    return [row[0] for row in rows]


def read_snapshots(session: WarehouseSession, table: str, now: datetime) -> pd.DataFrame:
    """The snapshot rows with as_of <= now (a table without as_of is one snapshot at now)."""
    available = set(table_columns(session, table))
    if not available:
        raise LookupError(f"{table} does not exist (build the dbt models first)")
    columns = [c for c in SNAPSHOT_COLUMNS if c in available]
    if "as_of" in available:
        sql = f"select {', '.join(columns)} from {table} where as_of <= {session.p}"
        frame = pd.DataFrame(session.query(sql, [now]), columns=columns)
    else:
        columns = [c for c in columns if c != "as_of"]
        sql = f"select {', '.join(columns)} from {table}"
        frame = pd.DataFrame(session.query(sql), columns=columns)
        frame["as_of"] = pd.Timestamp(now)
    return frame


def write_scores(session: WarehouseSession, scores: pd.DataFrame) -> int:
    """Append the run's scores; a rerun at the same (model_version, scored_at) replaces them."""
    session.execute("create schema if not exists marts")
    session.execute(
        f"""create table if not exists {SCORES_TABLE} (
            order_id bigint not null,
            model_version varchar not null,
            scored_at timestamptz not null,
            probability double precision not null,
            reasons varchar not null,
            primary key (order_id, model_version, scored_at)
        )"""
    )
    if scores.empty:
        return 0
    versions = scores[["model_version", "scored_at"]].drop_duplicates().itertuples(index=False)
    rows = [
        (int(r.order_id), r.model_version, r.scored_at, float(r.probability), r.reasons)
        for r in scores.itertuples(index=False)
    ]
    with session.transaction():
        for version, scored_at in versions:
            session.execute(
                f"delete from {SCORES_TABLE} where model_version = {session.p}"
                f" and scored_at = {session.p}",
                [version, scored_at],
            )
        _insert(session, rows)
    return len(rows)


def _insert(session: WarehouseSession, rows: list[tuple]) -> None:
    columns = "order_id, model_version, scored_at, probability, reasons"
    if session.engine == "duckdb":
        # one columnar insert instead of a statement per row
        frame = pd.DataFrame(rows, columns=[c.strip() for c in columns.split(",")])
        con = session.con  # type: ignore[attr-defined]
        con.register("_ow_scores", frame)
        try:
            con.execute(f"insert into {SCORES_TABLE} ({columns}) select {columns} from _ow_scores")
        finally:
            con.unregister("_ow_scores")
        return
    from psycopg2.extras import execute_values

    with session.conn.cursor() as cur:  # type: ignore[attr-defined]
        execute_values(cur, f"insert into {SCORES_TABLE} ({columns}) values %s", rows)
