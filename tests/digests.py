"""Row-content digests of tables, comparable across engines and runs.

Each value is normalised before hashing: timestamps to UTC ISO text, dates to ISO, numbers to
fixed decimals (6 places, rounded half-even from the value's own text, never through a binary
float, so a bigint or a numeric keeps every digit; -0 as 0), booleans to true/false, null to an
empty marker; rows are sorted, so row order and the engine's number and time types do not
matter, only the contents.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Sequence
from datetime import UTC, date, datetime
from decimal import ROUND_HALF_EVEN, Decimal
from typing import Any

SIX_PLACES = Decimal("0.000001")


def normalise(value: Any) -> str:
    if value is None:
        return "\x00"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, datetime):
        moment = value if value.tzinfo else value.replace(tzinfo=UTC)
        return moment.astimezone(UTC).isoformat()
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, (int, float, Decimal)):
        exact = value if isinstance(value, Decimal) else Decimal(str(value))
        if not exact.is_finite():
            return str(exact)
        fixed = exact.quantize(SIX_PLACES, rounding=ROUND_HALF_EVEN)
        return str(fixed if fixed != 0 else SIX_PLACES * 0)  # -0 and 0 alike
    return str(value)


def digest(columns: Sequence[str], rows: Iterable[Sequence[Any]]) -> str:
    """sha256 of the sorted, normalised rows, columns taken in name order."""
    order = sorted(range(len(columns)), key=lambda i: columns[i])
    lines = sorted("\x1f".join(normalise(row[i]) for i in order) for row in rows)
    body = "\x1e".join([",".join(columns[i] for i in order), *lines])
    return hashlib.sha256(body.encode()).hexdigest()
