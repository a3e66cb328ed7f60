"""The raw layer on two engines (DESIGN.md "Storage contract"): DuckDB and PostgreSQL.

Pure Python (no Dagster): `defs/resources.py` wraps these sessions in ConfigurableResources.
A session is one open connection; `load_pages` writes record versions, quarantined records,
ledger rows and (optionally) the cursor in ONE transaction, so a crash never leaves a page
half-loaded or loaded-but-not-ledgered.

Tables (per feed, plus three bookkeeping tables):
  raw.<feed>(_key, _updated_at, <key columns>, payload, _record_hash, _format, _source,
             _ingested_at, UNIQUE(_key, _record_hash))
  raw._quarantine(feed, source, record_index, reason, detail, original_text, content_hash,
                  quarantined_at, UNIQUE(feed, content_hash, record_index))
  raw._ingest_files(feed, name, content_hash, source, rows_read, rows_loaded,
                    rows_quarantined, ingested_at, PRIMARY KEY(feed, name, content_hash))
  raw._cursors(feed PRIMARY KEY, cursor, updated_at)
"""

from __future__ import annotations

import json
import re
import time
from abc import ABC, abstractmethod
from collections import Counter
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, Protocol

import duckdb
import pandas as pd

from orderwatch_dagster.lib.records import KeyColumn, ParsedPage, QuarantineReason, Record, Rejected
from orderwatch_dagster.lib.settings import now

WHOLE_PAGE_INDEX = -1  # record_index of a whole-page rejection (NULL would defeat the UNIQUE key)
NON_STRICT_INDEX_BASE = -2  # record_index of payloads rejected by the loader (see _strict_records)
_IDENT = re.compile(r"^[a-z_][a-z0-9_]*$")
_SQL_TYPES = {"BIGINT", "VARCHAR", "TIMESTAMPTZ"}


class PageLike(Protocol):
    """What the loader needs from a connector page (defs/ingest/connector.Page)."""

    name: str
    source: str
    content_hash: str


@dataclass
class LoadStats:
    """Counts for one or more pages. Invariant: rows_read = loaded + duplicate + quarantined."""

    pages: int = 0
    rows_read: int = 0
    rows_loaded: int = 0  # new record versions inserted
    rows_duplicate: int = 0  # versions already in raw.<feed> (or repeated within the batch)
    rows_quarantined: int = 0  # rejected records in the pages (quarantine row new or not)
    quarantine_inserted: int = 0  # quarantine rows actually written (0 on a re-read)
    max_updated_at: datetime | None = None
    unknown_enums: Counter[tuple[str, str]] = field(default_factory=Counter)
    reasons: Counter[str] = field(default_factory=Counter)

    def add(self, other: LoadStats) -> None:
        self.pages += other.pages
        self.rows_read += other.rows_read
        self.rows_loaded += other.rows_loaded
        self.rows_duplicate += other.rows_duplicate
        self.rows_quarantined += other.rows_quarantined
        self.quarantine_inserted += other.quarantine_inserted
        self.max_updated_at = _max_ts(self.max_updated_at, other.max_updated_at)
        self.unknown_enums.update(other.unknown_enums)
        self.reasons.update(other.reasons)

    def check(self) -> None:
        balance = self.rows_loaded + self.rows_duplicate + self.rows_quarantined
        if self.rows_read != balance:
            raise AssertionError(
                f"ingest counts do not balance: read {self.rows_read} != loaded "
                f"{self.rows_loaded} + duplicate {self.rows_duplicate} + quarantined "
                f"{self.rows_quarantined}"
            )


def _max_ts(a: datetime | None, b: datetime | None) -> datetime | None:
    if a is None:
        return b
    if b is None:
        return a
    return max(a, b)


def _ident(name: str) -> str:
    if not _IDENT.match(name):
        raise ValueError(f"not a safe SQL identifier: {name!r}")
    return name


def _check_columns(key_columns: Sequence[KeyColumn]) -> None:
    for column in key_columns:
        _ident(column.name)
        if column.name.startswith("_") or column.name == "payload":
            raise ValueError(f"key column {column.name!r} clashes with a raw bookkeeping column")
        if column.sql_type not in _SQL_TYPES:
            raise ValueError(f"key column {column.name!r}: unsupported type {column.sql_type!r}")


@dataclass
class _Batch:
    """A batch flattened for a bulk insert: unique versions, rejects, ledger rows."""

    records: list[tuple[int, Record, str]]  # (page ordinal, record, source) — unique versions
    quarantine: list[tuple[str, str, int, str, str, str, str]]  # feed..content_hash
    ledger: list[tuple[int, PageLike, int, int]]  # (ordinal, page, rows_read, rows_quarantined)
    stats: LoadStats


def _strict_json(text: str) -> bool:
    """False for Python-only JSON (NaN, Infinity): neither DuckDB JSON nor JSONB accepts it."""
    if "NaN" not in text and "Infinity" not in text:
        return True  # fast path: a plain value containing neither word is strict JSON

    def reject(constant: str) -> Any:
        raise ValueError(constant)

    try:
        json.loads(text, parse_constant=reject)
    except ValueError:
        return False
    return True


def _strict_records(feed: str, parsed: ParsedPage) -> tuple[list[Record], list[Rejected]]:
    """Records the engines can store, and the parser's rejects plus those they cannot.

    A payload with NaN/Infinity would fail the whole batch's JSON cast, so it is quarantined
    here instead; its record_index is NON_STRICT_INDEX_BASE - position (unique within the page,
    apart from the parser's own indexes, which are >= 0).
    """
    loadable: list[Record] = []
    rejects = list(parsed.rejected)
    for position, record in enumerate(parsed.records):
        if _strict_json(record.payload_text):
            loadable.append(record)
        else:
            rejects.append(
                Rejected(
                    feed,
                    QuarantineReason.BAD_JSON,
                    "payload holds NaN or Infinity, which is not JSON",
                    record.payload_text,
                    NON_STRICT_INDEX_BASE - position,
                )
            )
    return loadable, rejects


def _flatten(feed: str, pages: Sequence[tuple[PageLike, ParsedPage]]) -> _Batch:
    stats = LoadStats()
    seen: set[tuple[str, str]] = set()
    records: list[tuple[int, Record, str]] = []
    quarantine: list[tuple[str, str, int, str, str, str, str]] = []
    seen_rejects: set[tuple[str, int]] = set()
    ledger: list[tuple[int, PageLike, int, int]] = []
    for ordinal, (page, parsed) in enumerate(pages):
        loadable, rejects = _strict_records(feed, parsed)
        stats.pages += 1
        stats.rows_read += parsed.read
        stats.rows_quarantined += len(rejects)
        stats.unknown_enums.update(parsed.unknown_enums)
        for record in loadable:
            stats.max_updated_at = _max_ts(stats.max_updated_at, record.updated_at)
            version = (record.key, record.record_hash)
            if version in seen:
                continue  # same version twice in one batch: counted as duplicate below
            seen.add(version)
            records.append((ordinal, record, page.source))
        for rejected in rejects:
            stats.reasons[str(rejected.reason)] += 1
            index = WHOLE_PAGE_INDEX if rejected.index is None else rejected.index
            if (page.content_hash, index) in seen_rejects:
                continue
            seen_rejects.add((page.content_hash, index))
            quarantine.append(
                (
                    feed,
                    page.source,
                    index,
                    str(rejected.reason),
                    rejected.detail,
                    rejected.original_text,
                    page.content_hash,
                )
            )
        ledger.append((ordinal, page, parsed.read, len(rejects)))
    return _Batch(records=records, quarantine=quarantine, ledger=ledger, stats=stats)


class WarehouseSession(ABC):
    """One open connection to the warehouse, with the raw layer's operations."""

    engine: str
    json_type: str

    # -- engine specifics -------------------------------------------------------------
    @abstractmethod
    def execute(self, sql: str, params: Sequence[Any] | None = None) -> None: ...

    @abstractmethod
    def query(self, sql: str, params: Sequence[Any] | None = None) -> list[tuple[Any, ...]]: ...

    @abstractmethod
    @contextmanager
    def transaction(self) -> Iterator[None]: ...

    @abstractmethod
    def _insert_records(
        self,
        feed: str,
        key_columns: Sequence[KeyColumn],
        rows: list[tuple[int, Record, str]],
        ingested_at: datetime,
    ) -> list[tuple[str, str]]:
        """Insert versions not yet stored; return the (_key, _record_hash) actually inserted."""

    @abstractmethod
    def _insert_quarantine(self, rows: list[tuple[Any, ...]], at: datetime) -> int: ...

    @abstractmethod
    def _insert_ledger(self, rows: list[tuple[Any, ...]]) -> None: ...

    @abstractmethod
    def _upsert_cursor(self, feed: str, cursor: datetime, at: datetime, advance: bool) -> None: ...

    p: str  # parameter placeholder: "?" (DuckDB) or "%s" (psycopg2)

    # -- schema -----------------------------------------------------------------------
    def ensure_schema(self) -> None:
        self.execute("CREATE SCHEMA IF NOT EXISTS raw")
        self.execute(
            """CREATE TABLE IF NOT EXISTS raw._quarantine (
                feed VARCHAR NOT NULL,
                source VARCHAR NOT NULL,
                record_index INTEGER NOT NULL,
                reason VARCHAR NOT NULL,
                detail VARCHAR,
                original_text VARCHAR NOT NULL,
                content_hash VARCHAR NOT NULL,
                quarantined_at TIMESTAMPTZ NOT NULL,
                UNIQUE (feed, content_hash, record_index)
            )"""
        )
        self.execute(
            """CREATE TABLE IF NOT EXISTS raw._ingest_files (
                feed VARCHAR NOT NULL,
                name VARCHAR NOT NULL,
                content_hash VARCHAR NOT NULL,
                source VARCHAR NOT NULL,
                rows_read INTEGER NOT NULL,
                rows_loaded INTEGER NOT NULL,
                rows_quarantined INTEGER NOT NULL,
                ingested_at TIMESTAMPTZ NOT NULL,
                PRIMARY KEY (feed, name, content_hash)
            )"""
        )
        self.execute(
            """CREATE TABLE IF NOT EXISTS raw._cursors (
                feed VARCHAR PRIMARY KEY,
                cursor TIMESTAMPTZ,
                updated_at TIMESTAMPTZ NOT NULL
            )"""
        )

    def ensure_feed(self, feed: str, key_columns: Sequence[KeyColumn]) -> None:
        """Create raw.<feed> (and the bookkeeping tables); add key columns added since."""
        _check_columns(key_columns)
        table = f"raw.{_ident(feed)}"
        self.ensure_schema()
        columns = "".join(f"{c.name} {c.sql_type},\n" for c in key_columns)
        self.execute(
            f"""CREATE TABLE IF NOT EXISTS {table} (
                _key VARCHAR NOT NULL,
                _updated_at TIMESTAMPTZ NOT NULL,
                {columns}payload {self.json_type} NOT NULL,
                _record_hash VARCHAR NOT NULL,
                _format VARCHAR NOT NULL,
                _source VARCHAR NOT NULL,
                _ingested_at TIMESTAMPTZ NOT NULL,
                UNIQUE (_key, _record_hash)
            )"""
        )
        existing = {
            name
            for (name,) in self.query(
                "SELECT column_name FROM information_schema.columns "
                f"WHERE table_schema = 'raw' AND table_name = {self.p}",
                [feed],
            )
        }
        for column in key_columns:
            if column.name not in existing:
                # A key column added to FEEDS after the table was created: older rows stay NULL.
                self.execute(f"ALTER TABLE {table} ADD COLUMN {column.name} {column.sql_type}")

    # -- ledger and cursor ------------------------------------------------------------
    def seen_pages(self, feed: str) -> set[tuple[str, str]]:
        """(name, content_hash) of every page already processed for the feed."""
        rows = self.query(
            f"SELECT name, content_hash FROM raw._ingest_files WHERE feed = {self.p}", [feed]
        )
        return {(name, content_hash) for name, content_hash in rows}

    def page_seen(self, feed: str, name: str, content_hash: str) -> bool:
        rows = self.query(
            "SELECT 1 FROM raw._ingest_files "
            f"WHERE feed = {self.p} AND name = {self.p} AND content_hash = {self.p}",
            [feed, name, content_hash],
        )
        return bool(rows)

    def get_cursor(self, feed: str) -> datetime | None:
        rows = self.query(f"SELECT cursor FROM raw._cursors WHERE feed = {self.p}", [feed])
        return rows[0][0] if rows else None

    def set_cursor(self, feed: str, cursor: datetime) -> None:
        """Set the cursor exactly (also backwards, e.g. to re-read a window)."""
        with self.transaction():
            self._upsert_cursor(feed, cursor, now(), advance=False)

    def row_count(self, feed: str) -> int:
        return int(self.query(f"SELECT count(*) FROM raw.{_ident(feed)}")[0][0])

    def quarantine_counts(self, feed: str) -> dict[str, int]:
        """reason -> quarantined records for the feed (all time)."""
        rows = self.query(
            f"SELECT reason, count(*) FROM raw._quarantine WHERE feed = {self.p} "
            "GROUP BY reason ORDER BY reason",
            [feed],
        )
        return {reason: int(count) for reason, count in rows}

    # -- loading ----------------------------------------------------------------------
    def load_pages(
        self,
        feed: str,
        key_columns: Sequence[KeyColumn],
        pages: Sequence[tuple[PageLike, ParsedPage]],
        *,
        advance_cursor: bool = False,
        advance_cursor_to: datetime | None = None,
    ) -> LoadStats:
        """Load parsed pages in one transaction: new versions, quarantine, ledger (+ cursor).

        Versions already stored are not inserted again (anti-join / ON CONFLICT DO NOTHING),
        so re-reading a page, or the same content under another name, adds nothing but its
        ledger row. The cursor moves (never backwards) to `advance_cursor_to`, or with
        `advance_cursor` to the max update time in these pages, in the same transaction.
        """
        _ident(feed)
        batch = _flatten(feed, pages)
        stats = batch.stats
        at = now()
        with self.transaction():
            inserted = self._insert_records(feed, key_columns, batch.records, at)
            stats.rows_loaded = len(inserted)
            stats.rows_duplicate = stats.rows_read - stats.rows_quarantined - stats.rows_loaded
            stats.quarantine_inserted = self._insert_quarantine(batch.quarantine, at)
            # rows_loaded per page: a version belongs to the first page of the batch holding it.
            owner = {(r.key, r.record_hash): ordinal for ordinal, r, _ in batch.records}
            loaded_per_page = Counter(owner[version] for version in inserted)
            self._insert_ledger(
                [
                    (
                        feed,
                        page.name,
                        page.content_hash,
                        page.source,
                        read,
                        loaded_per_page.get(ordinal, 0),
                        quarantined,
                        at,
                    )
                    for ordinal, page, read, quarantined in batch.ledger
                ]
            )
            target = _max_ts(advance_cursor_to, stats.max_updated_at if advance_cursor else None)
            if target is not None:
                self._upsert_cursor(feed, target, at, advance=True)
        stats.check()
        return stats

    def load_page(
        self,
        feed: str,
        key_columns: Sequence[KeyColumn],
        page: PageLike,
        parsed: ParsedPage,
        *,
        advance_cursor: bool = False,
    ) -> LoadStats:
        return self.load_pages(feed, key_columns, [(page, parsed)], advance_cursor=advance_cursor)


def _record_frame(
    key_columns: Sequence[KeyColumn], rows: list[tuple[int, Record, str]]
) -> pd.DataFrame:
    """The batch as a typed frame for DuckDB to scan (no row-by-row inserts)."""
    data: dict[str, Any] = {
        "_key": pd.array([r.key for _, r, _ in rows], dtype="string"),
        "_updated_at": pd.to_datetime([r.updated_at for _, r, _ in rows], utc=True),
    }
    for column in key_columns:
        values = [r.keys.get(column.name) for _, r, _ in rows]
        if column.sql_type == "BIGINT":
            data[column.name] = pd.array(values, dtype="Int64")
        elif column.sql_type == "TIMESTAMPTZ":
            data[column.name] = pd.to_datetime(values, utc=True)
        else:
            data[column.name] = pd.array(
                [None if v is None else str(v) for v in values], dtype="string"
            )
    data["payload"] = pd.array([r.payload_text for _, r, _ in rows], dtype="string")
    data["_record_hash"] = pd.array([r.record_hash for _, r, _ in rows], dtype="string")
    data["_format"] = pd.array([r.format for _, r, _ in rows], dtype="string")
    data["_source"] = pd.array([source for _, _, source in rows], dtype="string")
    return pd.DataFrame(data)


class DuckDBSession(WarehouseSession):
    engine = "duckdb"
    json_type = "JSON"
    p = "?"

    def __init__(self, con: duckdb.DuckDBPyConnection) -> None:
        self.con = con

    def execute(self, sql: str, params: Sequence[Any] | None = None) -> None:
        self.con.execute(sql, params)

    def query(self, sql: str, params: Sequence[Any] | None = None) -> list[tuple[Any, ...]]:
        return self.con.execute(sql, params).fetchall()

    @contextmanager
    def transaction(self) -> Iterator[None]:
        self.con.begin()
        try:
            yield
        except BaseException:
            self.con.rollback()
            raise
        self.con.commit()

    def _insert_records(
        self,
        feed: str,
        key_columns: Sequence[KeyColumn],
        rows: list[tuple[int, Record, str]],
        ingested_at: datetime,
    ) -> list[tuple[str, str]]:
        if not rows:
            return []
        self.con.register("_ow_records", _record_frame(key_columns, rows))
        try:
            names = ["_key", "_updated_at", *(c.name for c in key_columns)]
            select = [f"f.{n}" for n in names[:2]] + [
                f"CAST(f.{c.name} AS {c.sql_type})" for c in key_columns
            ]
            inserted = self.con.execute(
                f"""INSERT INTO raw.{feed}
                    ({", ".join(names)}, payload, _record_hash, _format, _source, _ingested_at)
                SELECT {", ".join(select)}, CAST(f.payload AS JSON), f._record_hash, f._format,
                       f._source, CAST(? AS TIMESTAMPTZ)
                FROM _ow_records f
                WHERE NOT EXISTS (
                    SELECT 1 FROM raw.{feed} r
                    WHERE r._key = f._key AND r._record_hash = f._record_hash
                )
                RETURNING _key, _record_hash""",
                [ingested_at],
            ).fetchall()
        finally:
            self.con.unregister("_ow_records")
        return [(key, record_hash) for key, record_hash in inserted]

    def _insert_quarantine(self, rows: list[tuple[Any, ...]], at: datetime) -> int:
        if not rows:
            return 0
        frame = pd.DataFrame(
            rows,
            columns=[
                "feed",
                "source",
                "record_index",
                "reason",
                "detail",
                "original_text",
                "content_hash",
            ],
        )
        self.con.register("_ow_quarantine", frame)
        try:
            result = self.con.execute(
                """INSERT INTO raw._quarantine
                SELECT q.feed, q.source, CAST(q.record_index AS INTEGER), q.reason, q.detail,
                       q.original_text, q.content_hash, CAST(? AS TIMESTAMPTZ)
                FROM _ow_quarantine q
                WHERE NOT EXISTS (
                    SELECT 1 FROM raw._quarantine x
                    WHERE x.feed = q.feed AND x.content_hash = q.content_hash
                      AND x.record_index = q.record_index
                )""",
                [at],
            ).fetchone()
        finally:
            self.con.unregister("_ow_quarantine")
        return int(result[0]) if result else 0

    def _insert_ledger(self, rows: list[tuple[Any, ...]]) -> None:
        if not rows:
            return
        frame = pd.DataFrame(
            rows,
            columns=[
                "feed",
                "name",
                "content_hash",
                "source",
                "rows_read",
                "rows_loaded",
                "rows_quarantined",
                "ingested_at",
            ],
        )
        # the same page twice in one batch keeps one ledger row (first one)
        frame = frame.drop_duplicates(subset=["feed", "name", "content_hash"])
        self.con.register("_ow_ledger", frame)
        try:
            self.con.execute(
                """INSERT INTO raw._ingest_files
                SELECT l.feed, l.name, l.content_hash, l.source, l.rows_read, l.rows_loaded,
                       l.rows_quarantined, l.ingested_at
                FROM _ow_ledger l
                ON CONFLICT DO NOTHING"""
            )
        finally:
            self.con.unregister("_ow_ledger")

    def _upsert_cursor(self, feed: str, cursor: datetime, at: datetime, advance: bool) -> None:
        new = "greatest(raw._cursors.cursor, excluded.cursor)" if advance else "excluded.cursor"
        self.con.execute(
            "INSERT INTO raw._cursors VALUES (?, ?, ?) ON CONFLICT (feed) DO UPDATE "
            f"SET cursor = {new}, updated_at = excluded.updated_at",
            [feed, cursor, at],
        )


def _is_lock_error(error: Exception) -> bool:
    text = str(error).lower()
    return "lock" in text and ("conflicting" in text or "could not set" in text)


@contextmanager
def open_duckdb(path: Path | str, *, lock_timeout_s: float = 120.0) -> Iterator[DuckDBSession]:
    """Open the warehouse file, waiting for another process's write lock (dbt, another asset).

    DuckDB allows one writer process per file, so callers keep sessions short and close
    them promptly.
    """
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    deadline = time.monotonic() + lock_timeout_s
    delay = 0.05
    while True:
        try:
            con = duckdb.connect(str(target))
            break
        except duckdb.IOException as error:
            if not _is_lock_error(error) or time.monotonic() >= deadline:
                raise
            time.sleep(delay)
            delay = min(delay * 2, 2.0)
    try:
        con.execute("SET TimeZone = 'UTC'")  # TIMESTAMPTZ values come back as UTC datetimes
        yield DuckDBSession(con)
    finally:
        con.close()


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

    def _insert_records(
        self,
        feed: str,
        key_columns: Sequence[KeyColumn],
        rows: list[tuple[int, Record, str]],
        ingested_at: datetime,
    ) -> list[tuple[str, str]]:
        from psycopg2.extras import execute_values

        if not rows:
            return []
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
                ingested_at,
            )
            for _, r, source in rows
        ]
        template = "(" + ", ".join(["%s"] * len(names)) + ", %s::jsonb, %s, %s, %s, %s)"
        with self.conn.cursor() as cur:
            inserted = execute_values(
                cur,
                f"""INSERT INTO raw.{feed}
                    ({", ".join(names)}, payload, _record_hash, _format, _source, _ingested_at)
                VALUES %s ON CONFLICT (_key, _record_hash) DO NOTHING
                RETURNING _key, _record_hash""",
                values,
                template=template,
                page_size=1000,
                fetch=True,
            )
        return [(key, record_hash) for key, record_hash in inserted]

    def _insert_quarantine(self, rows: list[tuple[Any, ...]], at: datetime) -> int:
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

    def _upsert_cursor(self, feed: str, cursor: datetime, at: datetime, advance: bool) -> None:
        new = "greatest(raw._cursors.cursor, excluded.cursor)" if advance else "excluded.cursor"
        with self.conn.cursor() as cur:
            cur.execute(
                "INSERT INTO raw._cursors VALUES (%s, %s, %s) ON CONFLICT (feed) DO UPDATE "
                f"SET cursor = {new}, updated_at = excluded.updated_at",
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
