"""Batch assembly for the raw loader: parsed pages -> unique versions, quarantine rows, ledger rows.

Engine-neutral and pure (no connection): lib/warehouse_session.py writes a `Batch` in one
transaction on either engine.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Protocol

from orderwatch_dagster.lib.records import (
    KeyColumn,
    ParsedPage,
    QuarantineReason,
    Record,
    Rejected,
)

WHOLE_PAGE_INDEX = -1  # record_index of a whole-page rejection (NULL would defeat the UNIQUE key)
NON_STRICT_INDEX_BASE = -2  # record_index of payloads rejected by the loader (see strict_records)

# raw._quarantine columns a batch fills (quarantined_at is the load time)
QUARANTINE_COLUMNS = (
    "feed",
    "source",
    "record_index",
    "reason",
    "detail",
    "original_text",
    "content_hash",
)
QuarantineRow = tuple[str, str, int, str, str, str, str]  # in QUARANTINE_COLUMNS order


class PageLike(Protocol):
    """What the loader needs from a page (defs/ingest/connector.py `Page`)."""

    name: str
    source: str
    content_hash: str


@dataclass
class LoadStats:
    """Counts for one or more pages. Invariant: rows_read = loaded + duplicate + quarantined."""

    pages: int = 0
    rows_read: int = 0  # what the parser read (records + rejects)
    rows_loaded: int = 0  # new record versions inserted
    rows_duplicate: int = 0  # versions already in raw.<feed> (or repeated within the batch)
    rows_quarantined: int = 0  # rejected records in the pages (quarantine row new or not)
    quarantine_inserted: int = 0  # quarantine rows actually written (0 on a re-read)
    max_updated_at: datetime | None = None
    unknown_enums: Counter[tuple[str, str]] = field(default_factory=Counter)
    reasons: Counter[str] = field(default_factory=Counter)
    naive_times: Counter[str] = field(default_factory=Counter)

    def add(self, other: LoadStats) -> None:
        self.pages += other.pages
        self.rows_read += other.rows_read
        self.rows_loaded += other.rows_loaded
        self.rows_duplicate += other.rows_duplicate
        self.rows_quarantined += other.rows_quarantined
        self.quarantine_inserted += other.quarantine_inserted
        self.max_updated_at = max_time(self.max_updated_at, other.max_updated_at)
        self.unknown_enums.update(other.unknown_enums)
        self.reasons.update(other.reasons)
        self.naive_times.update(other.naive_times)

    def check(self) -> None:
        """The parser's count against the loader's own three (tests/test_ingest_counts.py
        checks both against records counted in the landing pages independently)."""
        balance = self.rows_loaded + self.rows_duplicate + self.rows_quarantined
        if self.rows_read != balance:
            raise AssertionError(
                f"ingest counts do not balance: read {self.rows_read} != loaded "
                f"{self.rows_loaded} + duplicate {self.rows_duplicate} + quarantined "
                f"{self.rows_quarantined}"
            )


def max_time(a: datetime | None, b: datetime | None) -> datetime | None:
    if a is None:
        return b
    if b is None:
        return a
    return max(a, b)


@dataclass(frozen=True)
class Versions:
    """Record versions for one bulk insert into raw.<feed> (each version once)."""

    feed: str
    key_columns: Sequence[KeyColumn]
    rows: list[tuple[int, Record, str]]  # (page ordinal, record, source)
    ingested_at: datetime


@dataclass
class Batch:
    """Pages flattened for bulk inserts."""

    records: list[tuple[int, Record, str]]  # (page ordinal, record, source): unique versions
    loadable: int  # records the engines can store, repeats within the batch included
    quarantine: list[QuarantineRow]  # unique by (content_hash, record_index)
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


def strict_records(feed: str, parsed: ParsedPage) -> tuple[list[Record], list[Rejected]]:
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


def assemble(feed: str, pages: Sequence[tuple[PageLike, ParsedPage]]) -> Batch:
    """Unique versions (first page wins), unique quarantine rows, one ledger row per page."""
    stats = LoadStats()
    seen: set[tuple[str, str]] = set()
    records: list[tuple[int, Record, str]] = []
    loadable_total = 0
    quarantine: list[QuarantineRow] = []
    seen_rejects: set[tuple[str, int]] = set()
    ledger: list[tuple[int, PageLike, int, int]] = []
    for ordinal, (page, parsed) in enumerate(pages):
        loadable, rejects = strict_records(feed, parsed)
        loadable_total += len(loadable)
        stats.pages += 1
        stats.rows_read += parsed.read
        stats.rows_quarantined += len(rejects)
        stats.unknown_enums.update(parsed.unknown_enums)
        stats.naive_times.update(parsed.naive_times)
        if loadable:
            newest = max(record.updated_at for record in loadable)
            stats.max_updated_at = max_time(stats.max_updated_at, newest)
        for record in loadable:
            version = (record.key, record.record_hash)
            if version not in seen:
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
    return Batch(records, loadable_total, quarantine, ledger, stats)
