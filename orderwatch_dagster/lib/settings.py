"""Where orderwatch writes, and what "now" is (DESIGN.md "Feeds, folders and the clock").

Read at call time, never at import time, so tests and `make` targets can point
ORDERWATCH_HOME / ORDERWATCH_AS_OF anywhere.
"""

from __future__ import annotations

import os
from datetime import UTC, datetime
from pathlib import Path

FEED_FOLDERS: tuple[str, ...] = (
    "storefront_orders",
    "storefront_customers",
    "oms_fulfillment_orders",
    "wms_shipments",
    "carrier_trackers",
    "returns",
    "support_tickets",
)


def home() -> Path:
    """ORDERWATCH_HOME, default ./.orderwatch (relative to the working directory)."""
    return Path(os.environ.get("ORDERWATCH_HOME", ".orderwatch")).resolve()


def landing_dir() -> Path:
    return home() / "landing"


def warehouse_path() -> Path:
    return home() / "warehouse.duckdb"


def clock_path() -> Path:
    return home() / "clock"


def parse_timestamp(text: str) -> datetime:
    """ISO-8601 (with offset or `Z`) to an aware UTC datetime; naive input is taken as UTC."""
    value = datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    return value.astimezone(UTC)


def now() -> datetime:
    """Evaluation time: ORDERWATCH_AS_OF > ORDERWATCH_HOME/clock > wall clock (UTC, aware)."""
    as_of = os.environ.get("ORDERWATCH_AS_OF", "").strip()
    if as_of:
        return parse_timestamp(as_of)
    clock = clock_path()
    if clock.is_file():
        text = clock.read_text().strip()
        if text:
            return parse_timestamp(text)
    return datetime.now(UTC)


def write_clock(moment: datetime, path: Path | None = None) -> None:
    target = path or clock_path()
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(moment.astimezone(UTC).isoformat().replace("+00:00", "Z") + "\n")
