"""The raw layer's operations on one open connection, written once for both engines.

Engine sessions (lib/warehouse_duckdb.py, lib/warehouse_postgres.py) supply `execute`, `query`,
`transaction`, the placeholder `p` and four bulk writes. `load_pages` writes record versions,
quarantined records, ledger rows and (optionally) the cursor in ONE transaction, so a crash
never leaves a page half-loaded or loaded-but-not-ledgered.
"""

from __future__ import annotations

import re
from abc import ABC, abstractmethod
from collections import Counter
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from orderwatch_dagster.lib.records import KeyColumn, ParsedPage
from orderwatch_dagster.lib.settings import now
from orderwatch_dagster.lib.warehouse_batch import (
    WHOLE_PAGE_INDEX,
    Batch,
    LoadStats,
    PageLike,
    QuarantineRow,
    Versions,
    assemble,
)

_IDENT = re.compile(r"^[a-z_][a-z0-9_]*$")
_SQL_TYPES = {"BIGINT", "VARCHAR", "TIMESTAMPTZ"}


def ident(name: str) -> str:
    if not _IDENT.match(name):
        raise ValueError(f"not a safe SQL identifier: {name!r}")
    return name


def _check_columns(key_columns: Sequence[KeyColumn]) -> None:
    for column in key_columns:
        ident(column.name)
        if column.name.startswith("_") or column.name == "payload":
            raise ValueError(f"key column {column.name!r} clashes with a raw bookkeeping column")
        if column.sql_type not in _SQL_TYPES:
            raise ValueError(f"key column {column.name!r}: unsupported type {column.sql_type!r}")


@dataclass(frozen=True)
class QuarantinedRecord:
    """One row of raw._quarantine, as a replay reads it."""

    source: str
    record_index: int
    reason: str
    detail: str
    original_text: str
    content_hash: str

    # A replayed row plays the page it came from (PageLike) for batch assembly.
    @property
    def name(self) -> str:
        return f"quarantine:{self.content_hash}:{self.record_index}"


@dataclass
class ReplayStats:
    """What a replay of quarantined records did."""

    replayed: int = 0  # quarantine rows re-parsed
    released: int = 0  # rows that left the quarantine (their records now load)
    loaded: int = 0  # new record versions inserted
    duplicate: int = 0  # versions that were already stored
    still_quarantined: int = 0  # rows (old or new) still rejected after the re-parse
    superseded: int = 0  # future_time rows left quarantined: a later load has the newer state


class WarehouseSession(ABC):
    """One open connection to the warehouse, with the raw layer's operations."""

    engine: str
    json_type: str
    p: str  # parameter placeholder: "?" (DuckDB) or "%s" (psycopg2)
    # while open, other processes cannot open the warehouse (DuckDB's one writer per file)
    locks_file: bool = False

    # -- engine specifics -------------------------------------------------------------
    @abstractmethod
    def execute(self, sql: str, params: Sequence[Any] | None = None) -> None: ...

    @abstractmethod
    def query(self, sql: str, params: Sequence[Any] | None = None) -> list[tuple[Any, ...]]: ...

    @abstractmethod
    @contextmanager
    def transaction(self) -> Iterator[None]: ...

    @contextmanager
    def exclusive(self, name: str) -> Iterator[bool]:
        """Whether this session alone holds `name` while the block runs (False: another
        session does; nothing waits). DuckDB: a read-write connection excludes every other
        process from the file (a second one waits for the file lock and then fails to open),
        so it is held here; two runs in one process are not excluded (Dagster runs one run per
        process)."""
        yield True

    @abstractmethod
    def _insert_records(self, versions: Versions) -> list[tuple[str, str]]:
        """Insert versions not yet stored; return the (_key, _record_hash) actually inserted."""

    @abstractmethod
    def _insert_quarantine(self, rows: list[QuarantineRow], at: datetime) -> int: ...

    @abstractmethod
    def _insert_ledger(self, rows: list[tuple[Any, ...]]) -> None: ...

    @abstractmethod
    def _advance_cursor(self, feed: str, cursor: datetime, at: datetime) -> None:
        """Upsert raw._cursors, never moving a stored cursor backwards."""

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
        table = f"raw.{ident(feed)}"
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

    # -- ledger, cursor, quarantine ---------------------------------------------------
    def seen_pages(self, feed: str) -> set[tuple[str, str]]:
        """(name, content_hash) of every page already processed for the feed."""
        rows = self.query(
            f"SELECT name, content_hash FROM raw._ingest_files WHERE feed = {self.p}", [feed]
        )
        return {(name, content_hash) for name, content_hash in rows}

    def unreadable_pages(self, feed: str) -> set[str]:
        """content_hash of every page still quarantined as a whole (it could not be read)."""
        rows = self.query(
            "SELECT DISTINCT content_hash FROM raw._quarantine "
            f"WHERE feed = {self.p} AND record_index = {self.p}",
            [feed, WHOLE_PAGE_INDEX],
        )
        return {content_hash for (content_hash,) in rows}

    def get_cursor(self, feed: str) -> datetime | None:
        rows = self.query(f"SELECT cursor FROM raw._cursors WHERE feed = {self.p}", [feed])
        return rows[0][0] if rows else None

    def row_count(self, feed: str) -> int:
        return int(self.query(f"SELECT count(*) FROM raw.{ident(feed)}")[0][0])

    def quarantine_counts(self, feed: str) -> dict[str, int]:
        """reason -> quarantined records for the feed (all time)."""
        rows = self.query(
            f"SELECT reason, count(*) FROM raw._quarantine WHERE feed = {self.p} "
            "GROUP BY reason ORDER BY reason",
            [feed],
        )
        return {reason: int(count) for reason, count in rows}

    def quarantined(self, feed: str, reasons: Sequence[str] = ()) -> list[QuarantinedRecord]:
        """The feed's quarantined records (optionally only some reasons), oldest first."""
        sql = (
            "SELECT source, record_index, reason, coalesce(detail, ''), original_text, "
            f"content_hash FROM raw._quarantine WHERE feed = {self.p}"
        )
        params: list[Any] = [feed]
        if reasons:
            sql += f" AND reason IN ({', '.join(self.p for _ in reasons)})"
            params += list(reasons)
        rows = self.query(sql + " ORDER BY quarantined_at, content_hash, record_index", params)
        return [QuarantinedRecord(*row) for row in rows]

    # -- loading ----------------------------------------------------------------------
    def load_pages(
        self,
        feed: str,
        key_columns: Sequence[KeyColumn],
        pages: Sequence[tuple[PageLike, ParsedPage]],
        *,
        advance_cursor_to: datetime | None = None,
    ) -> LoadStats:
        """Load parsed pages in one transaction: new versions, quarantine, ledger (+ cursor).

        Versions already stored are not inserted again (anti-join / ON CONFLICT DO NOTHING),
        so re-reading a page, or the same content under another name, adds nothing but its
        ledger row. The cursor moves to `advance_cursor_to` (never backwards) in the same
        transaction, so it never gets ahead of what is stored.
        """
        ident(feed)
        batch = assemble(feed, pages)
        at = now()
        with self.transaction():
            inserted = self._write(feed, key_columns, batch, at)
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
            if advance_cursor_to is not None:
                self._advance_cursor(feed, advance_cursor_to, at)
        batch.stats.check()
        return batch.stats

    def _write(
        self, feed: str, key_columns: Sequence[KeyColumn], batch: Batch, at: datetime
    ) -> list[tuple[str, str]]:
        """Versions and quarantine rows of a batch (inside the caller's transaction)."""
        inserted = self._insert_records(Versions(feed, key_columns, batch.records, at))
        batch.stats.rows_loaded = len(inserted)
        batch.stats.rows_duplicate = batch.loadable - len(inserted)
        batch.stats.quarantine_inserted = self._insert_quarantine(batch.quarantine, at)
        return inserted

    def replay(
        self,
        feed: str,
        key_columns: Sequence[KeyColumn],
        outcomes: Sequence[tuple[QuarantinedRecord, ParsedPage]],
    ) -> ReplayStats:
        """Store what re-parsed quarantined records now yield, in one transaction.

        A row whose record now loads leaves the quarantine; a whole page that now splits into
        records leaves it too, its still-bad elements taking its place (same content hash, their
        own index); a row still rejected stays, with the parser's current reason.
        """
        ident(feed)
        batch = assemble(feed, outcomes)
        still = {(row[6], row[2]): row for row in batch.quarantine}
        at = now()
        with self.transaction():
            inserted = self._write(feed, key_columns, batch, at)
            released = 0
            for row, _ in outcomes:
                key = (row.content_hash, row.record_index)
                current = still.get(key)
                if current is None:
                    released += 1
                    self.execute(
                        f"DELETE FROM raw._quarantine WHERE feed = {self.p} "
                        f"AND content_hash = {self.p} AND record_index = {self.p}",
                        [feed, *key],
                    )
                elif (current[3], current[4]) != (row.reason, row.detail):
                    self.execute(
                        f"UPDATE raw._quarantine SET reason = {self.p}, detail = {self.p} "
                        f"WHERE feed = {self.p} AND content_hash = {self.p} "
                        f"AND record_index = {self.p}",
                        [current[3], current[4], feed, *key],
                    )
        return ReplayStats(
            replayed=len(outcomes),
            released=released,
            loaded=len(inserted),
            duplicate=batch.loadable - len(inserted),
            still_quarantined=len(batch.quarantine),
        )
