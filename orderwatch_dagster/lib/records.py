"""What a vendor parser hands to the raw loader: loadable records and quarantined ones.

One parser per feed turns a page (file or HTTP body) into `Record`s and `Rejected`s;
the transports (file drop, HTTP) and the warehouse never look inside a payload.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import Any

from orderwatch_dagster.lib.settings import read_timestamp


class QuarantineReason(StrEnum):
    BAD_JSON = "bad_json"  # the page or line is not JSON
    UNEXPECTED_SHAPE = "unexpected_shape"  # page JSON lacks the vendor's list envelope
    NOT_AN_OBJECT = "not_an_object"  # a list element that is not a JSON object
    MISSING_KEY = "missing_key"  # natural key or update time absent/null
    WRONG_TYPE = "wrong_type"  # a key field of the wrong type (e.g. id "abc" for an int id)
    UNPARSEABLE_TIME = "unparseable_time"  # a timestamp field that is not ISO-8601
    # the record's update time is ahead of "now" (beyond lib/ingest.py FUTURE_TOLERANCE): loaded
    # it would win every "latest version" choice and push the cursor past later updates
    FUTURE_TIME = "future_time"


class Reject(Exception):
    """One element (or a whole page) cannot be loaded; parsers and feed hooks raise it."""

    def __init__(self, reason: QuarantineReason, detail: str) -> None:
        super().__init__(detail)
        self.reason = reason
        self.detail = detail


def read_time(name: str, value: Any) -> tuple[datetime, bool]:
    """A vendor timestamp as aware UTC, and whether it carried an offset; else Reject."""
    if isinstance(value, str):
        try:
            return read_timestamp(value)
        except ValueError:
            pass
    raise Reject(QuarantineReason.UNPARSEABLE_TIME, f"{name!r} is not ISO-8601: {value!r}")


@dataclass(frozen=True)
class KeyColumn:
    """A typed column of `raw.<feed>` lifted out of the payload (SQL type valid in both engines)."""

    name: str
    sql_type: str  # BIGINT | VARCHAR | TIMESTAMPTZ


@dataclass(frozen=True)
class Record:
    feed: str
    key: str  # natural key as text (raw column `_key`)
    updated_at: datetime  # aware, UTC (raw column `_updated_at`)
    keys: dict[str, Any]  # typed key columns, names as in the feed's KeyColumn list
    payload: dict[str, Any]
    payload_text: str  # canonical JSON of payload (sorted keys, compact)
    record_hash: str  # sha256 of payload_text: (_key, _record_hash) identifies a version
    format: str  # shopify | shipbob | easypost | aftership | loop | zendesk


@dataclass(frozen=True)
class Rejected:
    feed: str
    reason: QuarantineReason
    detail: str
    original_text: str  # the record (or whole page) exactly as received
    index: int | None = None  # position in the page; None = the whole page


@dataclass
class ParsedPage:
    records: list[Record] = field(default_factory=list)
    rejected: list[Rejected] = field(default_factory=list)
    # (field, value) -> count for enum values outside the vendor's published vocabulary:
    # kept and loaded, only counted (they map to `unknown` downstream).
    unknown_enums: Counter[tuple[str, str]] = field(default_factory=Counter)
    # key timestamp field -> count of values without a UTC offset (read as UTC, counted as a
    # data-quality warning: the vendor's zone is a guess)
    naive_times: Counter[str] = field(default_factory=Counter)

    @property
    def read(self) -> int:
        return len(self.records) + len(self.rejected)
