"""Guards of the ingest path, in portable SQL over a `WarehouseSession`: the cursor's source
and future cursors (`check_cursor`), and replays that would bring back a superseded version
(`superseded_by_later_loads`).

The cursor is only meaningful for the source that produced it (docs/architecture.md "The
ingest path"):
- `raw._cursor_sources` remembers which source (transport + API root) the stored cursor came
  from. A cursor stored under another source (the file-drop world before a switch to HTTP, or
  another shop) is dropped before the run, so the new source is read in full once instead of
  "since the simulated high-water mark".
- A stored cursor ahead of `not_after` ("now" + the future tolerance; for example one pushed to
  2031 before future times were quarantined) is brought back to the newest stored update time
  that is not ahead, so later real updates are asked for again.
`orderwatch reset-cursor` (cli.py) drops or sets a cursor by hand.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

from orderwatch_dagster.lib.records import ParsedPage, QuarantineReason
from orderwatch_dagster.lib.warehouse_session import QuarantinedRecord, WarehouseSession, ident


@dataclass(frozen=True)
class CursorCheck:
    """What `check_cursor` changed before a run ("" / None: nothing)."""

    dropped_from: str = ""  # the other source whose cursor was dropped
    clamped_from: datetime | None = None  # the stored cursor that was ahead of not_after

    def describe(self) -> str:
        parts = []
        if self.dropped_from:
            parts.append(f"cursor of another source ({self.dropped_from}) dropped: full read")
        if self.clamped_from is not None:
            parts.append(f"cursor {self.clamped_from.isoformat()} was ahead of now: brought back")
        return "; ".join(parts)


def ensure_sources_table(session: WarehouseSession) -> None:
    session.execute(
        """CREATE TABLE IF NOT EXISTS raw._cursor_sources (
            feed VARCHAR PRIMARY KEY,
            source VARCHAR NOT NULL,
            updated_at TIMESTAMPTZ NOT NULL
        )"""
    )


def _stored_source(session: WarehouseSession, feed: str) -> str | None:
    rows = session.query(f"SELECT source FROM raw._cursor_sources WHERE feed = {session.p}", [feed])
    return rows[0][0] if rows else None


def _set_cursor(session: WarehouseSession, feed: str, cursor: datetime | None) -> None:
    """Replace (not `greatest`) the stored cursor; None drops it."""
    session.execute(f"DELETE FROM raw._cursors WHERE feed = {session.p}", [feed])
    if cursor is not None:
        session.execute(
            f"INSERT INTO raw._cursors VALUES ({session.p}, {session.p}, {session.p})",
            [feed, cursor, datetime.now(UTC)],
        )


def check_cursor(
    session: WarehouseSession, feed: str, source: str, not_after: datetime
) -> CursorCheck:
    """Drop a cursor stored under another source; clamp one ahead of `not_after`.

    Call after `ensure_feed` and before reading the cursor.
    """
    ensure_sources_table(session)
    dropped_from = ""
    clamped_from = None
    with session.transaction():
        stored = _stored_source(session, feed)
        cursor = session.get_cursor(feed)
        if stored != source:
            if cursor is not None:
                dropped_from = stored or "a source not recorded"
                _set_cursor(session, feed, None)
                cursor = None
            session.execute(f"DELETE FROM raw._cursor_sources WHERE feed = {session.p}", [feed])
            session.execute(
                f"INSERT INTO raw._cursor_sources VALUES ({session.p}, {session.p}, {session.p})",
                [feed, source, datetime.now(UTC)],
            )
        if cursor is not None and cursor > not_after:
            clamped_from = cursor
            (newest,) = session.query(
                f"SELECT max(_updated_at) FROM raw.{ident(feed)} WHERE _updated_at <= {session.p}",
                [not_after],
            )[0]
            _set_cursor(session, feed, newest)
    return CursorCheck(dropped_from, clamped_from)


def reset_cursor(session: WarehouseSession, feed: str, to: datetime | None) -> None:
    """Set the feed's cursor to `to` (None: drop it; the next run reads the source in full)."""
    session.ensure_schema()
    with session.transaction():
        _set_cursor(session, feed, to)


def superseded_by_later_loads(
    session: WarehouseSession, feed: str, outcomes: Sequence[tuple[QuarantinedRecord, ParsedPage]]
) -> set[tuple[str, int]]:
    """The `future_time` rows whose record now loads but whose key already has a version
    ingested after the row was quarantined: that version is the newer state (it was fetched
    later), and the replayed one, stamped further ahead, would win every "latest version"
    choice in staging. Keys (content_hash, record_index) of rows to leave in the quarantine.
    """
    candidates = [
        (row, parsed)
        for row, parsed in outcomes
        if row.reason == QuarantineReason.FUTURE_TIME and parsed.records
    ]
    superseded: set[tuple[str, int]] = set()
    for row, parsed in candidates:
        keys = [record.key for record in parsed.records]
        (later,) = session.query(
            f"SELECT count(*) FROM raw.{ident(feed)} AS r WHERE r._key IN "
            f"({', '.join(session.p for _ in keys)}) AND r._ingested_at > ("
            "SELECT min(q.quarantined_at) FROM raw._quarantine AS q "
            f"WHERE q.feed = {session.p} AND q.content_hash = {session.p} "
            f"AND q.record_index = {session.p})",
            [*keys, feed, row.content_hash, row.record_index],
        )[0]
        if later:
            superseded.add((row.content_hash, row.record_index))
    return superseded
