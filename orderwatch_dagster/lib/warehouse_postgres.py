"""The raw layer on PostgreSQL (payload as JSONB), through psycopg2."""

from __future__ import annotations

import re
from collections.abc import Iterator, Sequence
from contextlib import contextmanager, suppress
from datetime import datetime
from typing import Any

from orderwatch_dagster.lib.records import KeyColumn
from orderwatch_dagster.lib.warehouse_batch import QuarantineRow, Versions
from orderwatch_dagster.lib.warehouse_session import WarehouseSession


class PostgresSession(WarehouseSession):
    engine = "postgres"
    json_type = "JSONB"
    p = "%s"

    def __init__(self, conn: Any) -> None:
        self.conn = conn
        self._in_tx = False  # inside transaction(): statements commit with it, not one by one

    def _run(self, sql: str, params: Sequence[Any] | None, fetch: bool) -> list[tuple[Any, ...]]:
        try:
            with self.conn.cursor() as cur:
                cur.execute(sql, params)
                rows = cur.fetchall() if fetch and cur.description is not None else []
        except BaseException:
            if not self._in_tx:
                self.conn.rollback()  # leave the connection usable (not "transaction aborted")
            raise
        if not self._in_tx:
            self.conn.commit()  # also ends the implicit transaction a read opens
        return rows

    def execute(self, sql: str, params: Sequence[Any] | None = None) -> None:
        self._run(sql, params, fetch=False)

    def query(self, sql: str, params: Sequence[Any] | None = None) -> list[tuple[Any, ...]]:
        return self._run(sql, params, fetch=True)

    @contextmanager
    def transaction(self) -> Iterator[None]:
        self._in_tx = True
        try:
            yield
        except BaseException:
            self.conn.rollback()
            raise
        else:
            self.conn.commit()
        finally:
            self._in_tx = False

    @contextmanager
    def exclusive(self, name: str) -> Iterator[bool]:
        """A session-level advisory lock (it outlives the commits each statement makes), tried,
        never waited for; released when the block ends."""
        import psycopg2

        ((held,),) = self.query("select pg_try_advisory_lock(hashtext(%s))", (name,))
        try:
            yield bool(held)
        finally:
            # a dropped connection released it already; never hide the block's own error
            if held and not self.conn.closed:
                with suppress(psycopg2.Error):
                    self.query("select pg_advisory_unlock(hashtext(%s))", (name,))

    def _insert_records(self, versions: Versions) -> list[tuple[str, str]]:
        from psycopg2.extras import execute_values

        if not versions.rows:
            return []
        key_columns = versions.key_columns
        names = ["_key", "_updated_at", *(c.name for c in key_columns)]
        values = [
            (
                r.key,
                r.updated_at,
                *(_pg_value(r.keys.get(c.name), c) for c in key_columns),
                _pg_json(r.payload_text),
                r.record_hash,
                r.format,
                source,
                versions.ingested_at,
            )
            for _, r, source in versions.rows
        ]
        template = "(" + ", ".join(["%s"] * len(names)) + ", %s::jsonb, %s, %s, %s, %s)"
        with self.conn.cursor() as cur:
            inserted = execute_values(
                cur,
                f"""INSERT INTO raw.{versions.feed}
                    ({", ".join(names)}, payload, _record_hash, _format, _source, _ingested_at)
                VALUES %s ON CONFLICT (_key, _record_hash) DO NOTHING
                RETURNING _key, _record_hash""",
                values,
                template=template,
                page_size=1000,
                fetch=True,
            )
        return [(key, record_hash) for key, record_hash in inserted]

    def _insert_quarantine(self, rows: list[QuarantineRow], at: datetime) -> int:
        from psycopg2.extras import execute_values

        if not rows:
            return 0
        values = [
            (feed, source, index, reason, _pg_text(detail), _pg_text(text), content_hash, at)
            for feed, source, index, reason, detail, text, content_hash in rows
        ]
        with self.conn.cursor() as cur:
            inserted = execute_values(
                cur,
                "INSERT INTO raw._quarantine VALUES %s "
                "ON CONFLICT (feed, content_hash, record_index) DO NOTHING RETURNING 1",
                values,
                page_size=1000,
                fetch=True,
            )
        return len(inserted)

    def _insert_ledger(self, rows: list[tuple[Any, ...]]) -> None:
        from psycopg2.extras import execute_values

        if rows:
            with self.conn.cursor() as cur:
                execute_values(
                    cur, "INSERT INTO raw._ingest_files VALUES %s ON CONFLICT DO NOTHING", rows
                )

    def _advance_cursor(self, feed: str, cursor: datetime, at: datetime) -> None:
        with self.conn.cursor() as cur:
            cur.execute(
                "INSERT INTO raw._cursors VALUES (%s, %s, %s) ON CONFLICT (feed) DO UPDATE "
                "SET cursor = greatest(raw._cursors.cursor, excluded.cursor), "
                "updated_at = excluded.updated_at",
                [feed, cursor, at],
            )


def _pg_text(text: str | None) -> str | None:
    # PostgreSQL text cannot hold NUL; keep the rest of the original exactly.
    return None if text is None else text.replace("\x00", "\ufffd")


# A JSON \u0000 escape (not preceded by an escaped backslash): JSONB cannot store NUL.
_JSON_NUL = re.compile(r"(?<!\\)((?:\\\\)*)\\u0000")


def _pg_json(text: str) -> str:
    # Only the stored copy changes (NUL -> U+FFFD); _record_hash stays that of the original.
    return _JSON_NUL.sub(lambda m: m.group(1) + "\\ufffd", text) if "\\u0000" in text else text


def _pg_value(value: Any, column: KeyColumn) -> Any:
    if value is None or column.sql_type != "VARCHAR":
        return value
    return _pg_text(str(value))


@contextmanager
def open_postgres(
    *,
    host: str,
    port: int,
    user: str,
    password: str,
    database: str,
    connect_timeout_s: int = 10,
) -> Iterator[PostgresSession]:
    import psycopg2

    conn = psycopg2.connect(
        host=host,
        port=port,
        user=user,
        password=password or None,
        dbname=database,
        connect_timeout=connect_timeout_s,
        options="-c timezone=UTC",  # TIMESTAMPTZ values come back as UTC datetimes
    )
    try:
        yield PostgresSession(conn)
    finally:
        conn.close()
