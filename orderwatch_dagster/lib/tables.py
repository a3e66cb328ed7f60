"""Small portable table helpers over a `WarehouseSession` (DuckDB or PostgreSQL), for the
Python-built tables: marts.order_exceptions and the ops.* tables (docs/architecture.md
"Storage contract")."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import pandas as pd

from orderwatch_dagster.lib.warehouse_session import WarehouseSession, ident


def table_exists(session: WarehouseSession, schema: str, table: str) -> bool:
    rows = session.query(
        "select count(*) from information_schema.tables"
        f" where table_schema = {session.p} and table_name = {session.p}",
        [schema, table],
    )
    return bool(rows and rows[0][0])


def columns_of(session: WarehouseSession, schema: str, table: str) -> list[str]:
    rows = session.query(
        "select column_name from information_schema.columns"
        f" where table_schema = {session.p} and table_name = {session.p}"
        " order by ordinal_position",
        [schema, table],
    )
    return [name for (name,) in rows]


def select_dicts(
    session: WarehouseSession, sql: str, columns: Sequence[str], params: Sequence[Any] = ()
) -> list[dict[str, Any]]:
    """Rows of `sql` (which selects exactly `columns`, in order) as dicts."""
    return [dict(zip(columns, row, strict=True)) for row in session.query(sql, list(params))]


def insert_rows(
    session: WarehouseSession,
    table: str,
    columns: Sequence[str],
    rows: Sequence[Sequence[Any]],
) -> None:
    """Bulk insert: a registered frame on DuckDB, execute_values on PostgreSQL."""
    if not rows:
        return
    names = ", ".join(ident(c) for c in columns)
    if session.engine == "duckdb":
        frame = pd.DataFrame([list(r) for r in rows], columns=list(columns), dtype=object)
        con = session.con  # type: ignore[attr-defined]
        con.register("_ow_rows", frame)
        try:
            con.execute(f"insert into {table} ({names}) select {names} from _ow_rows")
        finally:
            con.unregister("_ow_rows")
        return
    from psycopg2.extras import execute_values

    with session.conn.cursor() as cur:  # type: ignore[attr-defined]
        execute_values(cur, f"insert into {table} ({names}) values %s", [tuple(r) for r in rows])
    if not getattr(session, "_in_tx", False):
        session.conn.commit()  # type: ignore[attr-defined]
