"""One feed's ingest, without Dagster: source pages -> parser -> loader -> cursor; and replay.

The raw assets (defs/ingest/factory.py) call only `ingest_feed` and `replay_quarantine`: the
parser (lib/parsers.py) and the loader (lib/warehouse*.py) sit behind these two functions, so
either can be replaced without touching the assets.

The cursor is the high-water mark of a complete read: HTTP connectors are asked for
`updated_since = cursor - CURSOR_OVERLAP` (the overlap is harmless, loads are idempotent, and it
catches records a source committed late). It moves only when the whole stream was read:
- a source that fails mid-stream (HTTP error, a body its pagination cannot read): what was read
  is stored (an unreadable body lands in raw._quarantine), the cursor stays, the error is raised;
- a page that could not be read as a whole (not JSON, truncated, no vendor envelope), whether
  new or already in the ledger and still quarantined: the cursor stays;
- a record whose update time is more than FUTURE_TOLERANCE ahead of "now" is quarantined as
  `future_time` (never loaded and flagged: as the newest version it would mask every later
  real update), so it never moves the cursor; replay loads it once "now" has caught up.
"""

from __future__ import annotations

import gc
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import AbstractContextManager, ExitStack, contextmanager, suppress
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Protocol

from orderwatch_dagster.lib.feeds import FeedSpec
from orderwatch_dagster.lib.ingest_guards import check_cursor, superseded_by_later_loads
from orderwatch_dagster.lib.parsers import parse_element, parse_page
from orderwatch_dagster.lib.records import ParsedPage, Rejected
from orderwatch_dagster.lib.warehouse_batch import (
    WHOLE_PAGE_INDEX,
    LoadStats,
    PageLike,
    max_time,
    strict_records,
)
from orderwatch_dagster.lib.warehouse_session import (
    QuarantinedRecord,
    ReplayStats,
    WarehouseSession,
)

CURSOR_OVERLAP = timedelta(hours=1)
# Vendor clocks run a little ahead of ours; below CURSOR_OVERLAP, so a cursor moved this far
# ahead still asks for everything after the true high-water mark.
FUTURE_TOLERANCE = timedelta(minutes=15)
# Pages are loaded in batches (one transaction each): few round trips. One batch is written (by
# a writer thread: DuckDB works without the GIL) while the next is parsed, so at most two
# batches are in memory; a batch ends at whichever bound comes first, the bytes bound keeping
# that memory the same whatever a vendor's record size.
BATCH_RECORDS = 10_000
BATCH_PAGES = 500
BATCH_BYTES = 32_000_000  # of page bodies
# The writer keeps its session across batches, for at most WRITE_LEASE_S; then it closes it
# (DuckDB checkpoints when a session closes) and leaves the file alone for LOCK_YIELD_S before it
# opens the next one, longer than open_duckdb's longest retry delay, so another process of the
# project waiting for the DuckDB file (an ingest, a check, a sensor's job) gets it then. A writer
# with nothing to write for IDLE_RELEASE_S (a slow source) closes its session too: the file is
# not held idle. A session per batch checkpointed after every batch, and each checkpoint rewrote
# the table's open row group and its UNIQUE index (carrier_trackers at 100k orders: 13 s of the
# writer's 30 s, against 3 s with the lease). A commit is durable either way (DuckDB's
# write-ahead log).
WRITE_LEASE_S = 10.0
LOCK_YIELD_S = 0.3
IDLE_RELEASE_S = 1.0

Connect = Callable[[], AbstractContextManager[WarehouseSession]]


class SourcePage(PageLike, Protocol):
    body: bytes


class PageSource(Protocol):
    """A connector (defs/ingest/connector.py `FeedConnector`)."""

    def pages(self, feed: str, updated_since: datetime | None) -> Iterable[SourcePage]: ...

    def cursor_source(self, feed: str) -> str:
        """Which source a cursor belongs to (transport + API root): lib/ingest_guards.py."""
        ...


@dataclass
class IngestResult:
    stats: LoadStats = field(default_factory=LoadStats)
    pages_skipped: int = 0  # already in the ledger
    unreadable_pages: int = 0  # pages of the stream quarantined as a whole
    updated_since: datetime | None = None
    cursor: datetime | None = None  # after the run
    cursor_held: str = ""  # why the cursor did not move ("" when it advanced normally)
    cursor_check: str = ""  # what lib/ingest_guards.py changed before the run ("" nothing)
    row_count: int = 0


class SourceInterrupted(Exception):
    """The source failed mid-stream: what was read is stored and the cursor did not move."""

    def __init__(self, result: IngestResult) -> None:
        super().__init__(result.cursor_held)
        self.result = result


def _ndjson_hint(page: SourcePage) -> bool | None:
    name = page.name.lower()
    if name.startswith(("http://", "https://")):
        return False  # an API body is one JSON document (no vendor list API here sends NDJSON)
    return True if name.endswith(".ndjson") else None


class _Lease:
    """The writer's session, kept across batches for at most WRITE_LEASE_S and closed after
    IDLE_RELEASE_S without a batch (used from the writer thread only)."""

    def __init__(self, connect: Connect) -> None:
        self.connect = connect
        self.held: ExitStack | None = None
        self.current: WarehouseSession | None = None
        self.opened = 0.0
        self.released = 0.0
        self.locks_file = False  # the session (open or last closed) locks the warehouse file
        self.writes = 0  # batches written by _Run._load (an idle check compares it)
        self.idle_error: BaseException | None = None  # an idle close that failed

    def raise_idle_error(self) -> None:
        """A failed idle close (nobody waited for it) fails the next write or the close."""
        if self.idle_error is not None:
            error, self.idle_error = self.idle_error, None
            raise error

    def session(self) -> WarehouseSession:
        self.raise_idle_error()
        if self.current is None:
            pause = self.released + LOCK_YIELD_S - time.monotonic()
            if self.locks_file and pause > 0:
                time.sleep(pause)  # another process's turn at the DuckDB file
            held = ExitStack()
            self.current = held.enter_context(self.connect())
            self.held, self.opened = held, time.monotonic()
            self.locks_file = self.current.locks_file
        return self.current

    def after_batch(self) -> bool:
        """Count the batch; close the session when its lease is over. True: still open."""
        self.writes += 1
        if time.monotonic() - self.opened >= WRITE_LEASE_S:
            self.release()
        return self.current is not None

    def release_if_idle(self, writes: int) -> None:
        """Close the session when no batch was written since the `writes`-th."""
        if self.writes == writes:
            try:
                self.release()
            except Exception as failure:
                self.idle_error = failure

    def release(self, error: BaseException | None = None) -> None:
        """Close the session. After a failed write its context sees that error (the transaction
        was rolled back) and the error stays the one raised: a failure to close is noted on it."""
        held, self.held, self.current = self.held, None, None
        if held is None:
            return
        try:
            if error is None:
                held.close()
                return
            try:
                held.__exit__(type(error), error, error.__traceback__)
            except BaseException as closing:
                if closing is not error:
                    error.add_note(f"closing the warehouse session also failed: {closing!r}")
        finally:
            # the pause counts from when the file is free: closing checkpoints first
            self.released = time.monotonic()


class _Run:
    """The pages of one run, parsed and loaded in batches."""

    def __init__(
        self, spec: FeedSpec, source: PageSource, connect: Connect, not_after: datetime
    ) -> None:
        self.spec = spec
        self.connect = connect
        self.not_after = not_after
        self.result = IngestResult()
        self.pending: list[tuple[SourcePage, ParsedPage]] = []
        self.pending_records = 0
        self.pending_bytes = 0
        self.run_max: datetime | None = None  # max update time of every record read
        self.writer = ThreadPoolExecutor(1, thread_name_prefix=f"ingest-{spec.name}")
        self.writing: Future[LoadStats] | None = None  # the batch being written
        self.lease = _Lease(connect)  # the writer thread's session
        self.idle_check: threading.Timer | None = None  # closes an idle writer's session
        with connect() as session:
            session.ensure_feed(spec.name, spec.key_columns)
            checked = check_cursor(session, spec.name, source.cursor_source(spec.name), not_after)
            cursor = session.get_cursor(spec.name)
            self.seen = session.seen_pages(spec.name)
            self.unreadable = session.unreadable_pages(spec.name)
        self.result.updated_since = cursor - CURSOR_OVERLAP if cursor is not None else None
        self.result.cursor_check = checked.describe()

    def take(self, page: SourcePage) -> None:
        identity = (page.name, page.content_hash)
        if identity in self.seen:
            self.result.pages_skipped += 1
            self.result.unreadable_pages += int(page.content_hash in self.unreadable)
            return
        self.seen.add(identity)
        with _cyclic_gc_paused():
            parsed = parse_page(
                self.spec.name,
                page.body,
                ndjson=_ndjson_hint(page),
                not_after=self.not_after,
                payloads=False,
            )
        self.result.unreadable_pages += int(any(r.index is None for r in parsed.rejected))
        if parsed.records:
            self.run_max = max_time(self.run_max, max(r.updated_at for r in parsed.records))
        self.pending.append((page, parsed))
        self.pending_records += parsed.read
        self.pending_bytes += len(page.body)
        if (
            self.pending_records >= BATCH_RECORDS
            or len(self.pending) >= BATCH_PAGES
            or self.pending_bytes >= BATCH_BYTES
        ):
            self._wait()
            batch, self.pending, self.pending_records, self.pending_bytes = self.pending, [], 0, 0
            self.writing = self.writer.submit(self._load, batch)

    def _load(self, batch: list[tuple[SourcePage, ParsedPage]]) -> LoadStats:
        """Write one batch on the writer thread's session (its own transaction)."""
        try:
            stats = self.lease.session().load_pages(self.spec.name, self.spec.key_columns, batch)
        except BaseException as failure:
            self.lease.release(failure)
            raise
        if self.lease.after_batch():
            self._check_idle_later(self.lease.writes)
        return stats

    def _check_idle_later(self, writes: int) -> None:
        """In IDLE_RELEASE_S, have the writer thread close its session if no batch came (only a
        session that locks the warehouse file: others wait for it)."""
        if self.idle_check is not None:
            self.idle_check.cancel()
            self.idle_check = None
        if self.lease.current is None or not self.lease.locks_file:
            return
        self.idle_check = threading.Timer(IDLE_RELEASE_S, self._submit_idle_check, (writes,))
        self.idle_check.name = f"ingest-{self.spec.name}-idle"
        self.idle_check.daemon = True
        self.idle_check.start()

    def _submit_idle_check(self, writes: int) -> None:
        with suppress(RuntimeError):  # the writer has shut down (close_writer closed the session)
            self.writer.submit(self.lease.release_if_idle, writes)

    def _close_on_writer(self) -> None:
        """The writer thread's last task: no idle check after it, the session closed."""
        if self.idle_check is not None:
            self.idle_check.cancel()
        self.lease.release()
        self.lease.raise_idle_error()

    def _load_last(self, cursor_to: datetime | None) -> LoadStats:
        """The last batch and the cursor in one transaction, on the writer's session: the cursor
        never gets ahead of what is stored."""
        try:
            session = self.lease.session()
            stats = session.load_pages(
                self.spec.name, self.spec.key_columns, self.pending, advance_cursor_to=cursor_to
            )
            self.result.cursor = session.get_cursor(self.spec.name)
            self.result.row_count = session.row_count(self.spec.name)
        except BaseException as failure:
            self.lease.release(failure)
            raise
        self.pending, self.pending_records, self.pending_bytes = [], 0, 0
        return stats

    def close_writer(self, error: BaseException | None = None) -> None:
        """Close the writer thread's session (on that thread) and end the thread. With `error`
        (being raised), a failure to close is noted on it instead of replacing it."""
        try:
            self.writer.submit(self._close_on_writer).result()
        except BaseException as closing:
            if error is None:
                raise
            error.add_note(f"closing the warehouse session also failed: {closing!r}")
        finally:
            self.writer.shutdown()
            if self.idle_check is not None:  # cancelled by the writer's last task
                self.idle_check.join(timeout=5)

    def _wait(self) -> None:
        """Let the batch being written finish (its error, if any, is raised here)."""
        if self.writing is not None:
            writing, self.writing = self.writing, None
            self.result.stats.add(writing.result())

    def finish(self, error: Exception | None) -> IngestResult:
        """Store the last batch; move the cursor only after a complete, readable stream."""
        try:
            try:
                self._wait()
            except BaseException as failure:
                if error is not None:
                    failure.add_note(f"the source had failed too: {error!r}")
                raise
            if error is not None:
                self.result.cursor_held = f"the source failed mid-stream: {error}"
            elif self.result.unreadable_pages:
                self.result.cursor_held = (
                    f"{self.result.unreadable_pages} page(s) could not be read (raw._quarantine)"
                )
            cursor_to = None if self.result.cursor_held else self.run_max
            self.result.stats.add(self.writer.submit(self._load_last, cursor_to).result())
        except BaseException as failure:
            self.close_writer(failure)
            raise
        self.close_writer()
        self.result.stats.check()
        return self.result


@contextmanager
def _cyclic_gc_paused() -> Iterator[None]:
    """Pause Python's cycle collector while a page is parsed.

    Parsing allocates hundreds of thousands of small dicts and lists per batch, freed by
    reference counting alone (no cycles); each allocation burst would trigger collections, and
    the older generations' passes also walk the code location's long-lived objects. Restored as
    it was after the page.
    """
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


def ingest_feed(
    spec: FeedSpec, source: PageSource, connect: Connect, *, now: datetime
) -> IngestResult:
    """Read every new page of the feed from `source` into the warehouse.

    Raises SourceInterrupted (from the source's error) after storing what was read when the
    source fails mid-stream.
    """
    run = _Run(spec, source, connect, not_after=now + FUTURE_TOLERANCE)
    pages = iter(source.pages(spec.name, run.result.updated_since))
    error: Exception | None = None
    try:
        while True:
            try:
                page = next(pages)
            except StopIteration:
                break
            except Exception as failure:  # only the source's own errors: loads fail loudly
                error = failure
                break
            run.take(page)
    except BaseException as failure:
        run.close_writer(failure)  # a load failed (raised by take): let the writer thread end
        raise
    result = run.finish(error)
    if error is not None:
        raise SourceInterrupted(result) from error
    return result


def _reparse(spec: FeedSpec, row: QuarantinedRecord, not_after: datetime) -> ParsedPage:
    if row.record_index == WHOLE_PAGE_INDEX:
        return parse_page(spec.name, row.original_text, not_after=not_after)
    parsed = parse_element(
        spec.name, row.original_text, index=row.record_index, not_after=not_after
    )
    # Still one element: a reject (the parser's, or the loader's NaN check) keeps its row's index.
    records, rejects = strict_records(spec.name, parsed)
    return ParsedPage(
        records=records,
        rejected=[
            Rejected(r.feed, r.reason, r.detail, r.original_text, row.record_index) for r in rejects
        ],
        unknown_enums=parsed.unknown_enums,
        naive_times=parsed.naive_times,
    )


def replay_quarantine(
    spec: FeedSpec, connect: Connect, *, now: datetime, reasons: Sequence[str] = ()
) -> ReplayStats:
    """Re-parse the feed's quarantined records with the current parser and store what loads.

    Records that load leave raw._quarantine; the rest stay (with the current reason). A
    `future_time` record whose key has a version ingested after it was quarantined stays too,
    counted as `superseded`: loading it would put an older state on top of the newer one.
    """
    with connect() as session:
        session.ensure_feed(spec.name, spec.key_columns)
        rows = session.quarantined(spec.name, reasons)
        outcomes = [(row, _reparse(spec, row, now + FUTURE_TOLERANCE)) for row in rows]
        skip = superseded_by_later_loads(session, spec.name, outcomes)
        kept = [o for o in outcomes if (o[0].content_hash, o[0].record_index) not in skip]
        stats = session.replay(spec.name, spec.key_columns, kept)
        stats.superseded = len(skip)
        return stats
