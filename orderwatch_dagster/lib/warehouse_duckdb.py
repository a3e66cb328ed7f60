"""The raw layer on DuckDB (the embedded default): bulk writes scan pandas frames, no row loops.

Versions already stored are skipped through the UNIQUE index (ON CONFLICT DO NOTHING), not an
anti-join: an anti-join scans the whole table for every batch, quadratic in the feed's size.
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager, suppress
from datetime import datetime
from pathlib import Path
from typing import Any

import duckdb
import numpy as np
import pandas as pd

from orderwatch_dagster.lib.records import KeyColumn, Record
from orderwatch_dagster.lib.warehouse_batch import QUARANTINE_COLUMNS, QuarantineRow, Versions
from orderwatch_dagster.lib.warehouse_session import WarehouseSession

_LEDGER_COLUMNS = (
    "feed",
    "name",
    "content_hash",
    "source",
    "rows_read",
    "rows_loaded",
    "rows_quarantined",
    "ingested_at",
)


def _text(values: list[Any]) -> np.ndarray:
    # Plain object arrays: DuckDB scans Python str objects directly (no pandas string dtype).
    array = np.empty(len(values), dtype=object)
    array[:] = values
    return array


def _record_frame(
    key_columns: Sequence[KeyColumn], rows: list[tuple[int, Record, str]]
) -> pd.DataFrame:
    """The batch as a typed frame for DuckDB to scan (no row-by-row inserts)."""
    records = [r for _, r, _ in rows]
    data: dict[str, Any] = {
        "_key": _text([r.key for r in records]),
        "_updated_at": pd.to_datetime([r.updated_at for r in records], utc=True),
    }
    for column in key_columns:
        values = [r.keys.get(column.name) for r in records]
        if column.sql_type == "BIGINT":
            data[column.name] = pd.array(values, dtype="Int64")
        elif column.sql_type == "TIMESTAMPTZ":
            data[column.name] = pd.to_datetime(values, utc=True)
        else:
            data[column.name] = _text([None if v is None else str(v) for v in values])
    data["payload"] = _text([r.payload_text for r in records])
    data["_record_hash"] = _text([r.record_hash for r in records])
    data["_format"] = _text([r.format for r in records])
    data["_source"] = _text([source for _, _, source in rows])
    return pd.DataFrame(data)


class DuckDBSession(WarehouseSession):
    engine = "duckdb"
    locks_file = True
    json_type = "JSON"
    p = "?"

    def __init__(self, con: duckdb.DuckDBPyConnection) -> None:
        self.con = con
        self.wrote = False  # a transaction ran: checkpoint before closing

    def execute(self, sql: str, params: Sequence[Any] | None = None) -> None:
        self.con.execute(sql, params)

    def query(self, sql: str, params: Sequence[Any] | None = None) -> list[tuple[Any, ...]]:
        return self.con.execute(sql, params).fetchall()

    @contextmanager
    def transaction(self) -> Iterator[None]:
        self.wrote = True
        self.con.begin()
        try:
            yield
        except BaseException:
            self.con.rollback()
            raise
        self.con.commit()

    @contextmanager
    def _scan(self, name: str, frame: pd.DataFrame) -> Iterator[None]:
        self.con.register(name, frame)
        try:
            yield
        finally:
            self.con.unregister(name)

    def _insert_records(self, versions: Versions) -> list[tuple[str, str]]:
        if not versions.rows:
            return []
        feed, key_columns = versions.feed, versions.key_columns
        names = ["_key", "_updated_at", *(c.name for c in key_columns)]
        select = [f"f.{n}" for n in names[:2]] + [
            f"CAST(f.{c.name} AS {c.sql_type})" for c in key_columns
        ]
        with self._scan("_ow_records", _record_frame(key_columns, versions.rows)):
            inserted = self.con.execute(
                f"""INSERT INTO raw.{feed}
                    ({", ".join(names)}, payload, _record_hash, _format, _source, _ingested_at)
                SELECT {", ".join(select)}, CAST(f.payload AS JSON), f._record_hash, f._format,
                       f._source, CAST(? AS TIMESTAMPTZ)
                FROM _ow_records f
                ON CONFLICT (_key, _record_hash) DO NOTHING
                RETURNING _key, _record_hash""",
                [versions.ingested_at],
            ).fetchall()
        return [(key, record_hash) for key, record_hash in inserted]

    def _insert_quarantine(self, rows: list[QuarantineRow], at: datetime) -> int:
        if not rows:
            return 0
        with self._scan("_ow_quarantine", pd.DataFrame(rows, columns=list(QUARANTINE_COLUMNS))):
            inserted = self.con.execute(
                """INSERT INTO raw._quarantine
                SELECT q.feed, q.source, CAST(q.record_index AS INTEGER), q.reason, q.detail,
                       q.original_text, q.content_hash, CAST(? AS TIMESTAMPTZ)
                FROM _ow_quarantine q
                ON CONFLICT (feed, content_hash, record_index) DO NOTHING
                RETURNING 1""",
                [at],
            ).fetchall()
        return len(inserted)

    def _insert_ledger(self, rows: list[tuple[Any, ...]]) -> None:
        if not rows:
            return
        frame = pd.DataFrame(rows, columns=list(_LEDGER_COLUMNS))
        # the same page twice in one batch keeps one ledger row (first one)
        frame = frame.drop_duplicates(subset=["feed", "name", "content_hash"])
        with self._scan("_ow_ledger", frame):
            self.con.execute(
                """INSERT INTO raw._ingest_files
                SELECT l.feed, l.name, l.content_hash, l.source, l.rows_read, l.rows_loaded,
                       l.rows_quarantined, l.ingested_at
                FROM _ow_ledger l
                ON CONFLICT DO NOTHING"""
            )

    def _advance_cursor(self, feed: str, cursor: datetime, at: datetime) -> None:
        self.con.execute(
            "INSERT INTO raw._cursors VALUES (?, ?, ?) ON CONFLICT (feed) DO UPDATE "
            "SET cursor = greatest(raw._cursors.cursor, excluded.cursor), "
            "updated_at = excluded.updated_at",
            [feed, cursor, at],
        )


# Compression of the strings a checkpoint writes (payloads, hashes, names). DuckDB's automatic
# choice (dictionary + FSST) spends more CPU at each checkpoint than parsing the batch did and
# stores raw payloads at ~1.15x their JSON size; ZSTD writes them at ~0.35x in ~0.4x the
# checkpoint time (10k-order world, bench/ingest.py), and dbt's scans of `payload` read it as
# fast. Other types keep DuckDB's choice (ZSTD applies to strings only).
STRING_COMPRESSION = "zstd"

# A session checkpoints when it closes (open_duckdb), not at each commit: DuckDB's default
# (16MB of write-ahead log) would checkpoint after every ingest batch of a session held across
# batches (lib/ingest.py WRITE_LEASE_S). Above this, a commit still checkpoints. The setting is
# global to the process's DuckDB instance: writes outside a transaction (ML scores, action
# tables) also reach the file at the session's close; a crash before it leaves at most this much
# log, replayed by the next connect.
CHECKPOINT_THRESHOLD = "1GB"
# Waiting for another process's write lock: retries back off to this delay, shorter than the
# pause a long ingest leaves between its sessions (lib/ingest.py LOCK_YIELD_S).
LOCK_RETRY_MAX_S = 0.2

_MEMORY_SIZE = re.compile(r"^\d+(\.\d+)?\s*(B|KB|MB|GB|TB|KiB|MiB|GiB|TiB)$", re.IGNORECASE)


def _memory_size(text: str) -> str:
    """A DuckDB memory size (`512MB`, `1GB`); anything else is a configuration error."""
    if not _MEMORY_SIZE.match(text.strip()):
        raise ValueError(f"DuckDB memory_limit {text!r}: expected a size such as 512MB or 2GB")
    return text.strip()


def _is_lock_error(error: Exception) -> bool:
    text = str(error).lower()
    return "lock" in text and ("conflicting" in text or "could not set" in text)


@contextmanager
def open_duckdb(
    path: Path | str,
    *,
    lock_timeout_s: float = 120.0,
    memory_limit: str | None = None,
    threads: int | None = None,
) -> Iterator[DuckDBSession]:
    """Open the warehouse file, waiting for another process's write lock (dbt, another asset).

    DuckDB allows one writer process per file, so callers keep sessions short and close
    them promptly. `memory_limit` / `threads`: DuckDB's own settings (README "Configuration").
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
            delay = min(delay * 2, LOCK_RETRY_MAX_S)
    session = DuckDBSession(con)
    try:
        con.execute("SET TimeZone = 'UTC'")  # TIMESTAMPTZ values come back as UTC datetimes
        # SET, not connect(config=...): another connection of this process to the same file
        # (opened without that config) would make connect() refuse.
        if memory_limit:
            con.execute(f"SET memory_limit = '{_memory_size(memory_limit)}'")
        if threads:
            con.execute(f"SET threads = {int(threads)}")
        con.execute(f"SET force_compression = '{STRING_COMPRESSION}'")
        con.execute(f"SET checkpoint_threshold = '{CHECKPOINT_THRESHOLD}'")
        yield session
        if session.wrote:
            # Checkpoint inside execute(), which releases the GIL (close() would do it holding
            # it), so the next batch is parsed meanwhile (lib/ingest.py).
            # (Another connection of this process mid-transaction: close() checkpoints later.)
            with suppress(duckdb.TransactionException):
                con.execute("CHECKPOINT")
    finally:
        con.close()
