"""Where orderwatch writes, and what "now" is (docs/architecture.md "Folders on disk, and the
clock").

Read at call time, never at import time, so tests and `make` targets can point
ORDERWATCH_HOME / ORDERWATCH_AS_OF anywhere. `EnvSetting` declares an environment variable
once, for the code that reads it and for the README "Configuration" tables (a test compares them).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path


@dataclass(frozen=True)
class EnvSetting:
    """One environment variable: the field it sets, its default as documented, and whether it is
    a secret (secrets reach resources only as `dg.EnvVar`, resolved at launch, never logged)."""

    name: str
    field: str
    default: str | None  # None: unset by default
    description: str
    secret: bool = False
    choices: tuple[str, ...] = ()  # the accepted values, when there is a fixed set
    integer: bool = False
    minimum: int | None = None  # the smallest accepted whole number (integer settings)

    def read(self, environ: Mapping[str, str] | None = None) -> str | None:
        """The value set in the environment (blank counts as unset), else the default."""
        value = (os.environ if environ is None else environ).get(self.name, "").strip()
        return value or self.default

    def value(self, environ: Mapping[str, str] | None = None) -> str | int | None:
        """`read()`, checked and typed; a bad value is an error naming the variable."""
        text = self.read(environ)
        if text is None:
            return None
        if self.choices and text not in self.choices:
            raise ValueError(f"{self.name}={text!r}: expected one of {', '.join(self.choices)}")
        if self.integer:
            if not text.isdigit():
                raise ValueError(f"{self.name}={text!r}: expected a whole number")
            if self.minimum is not None and int(text) < self.minimum:
                raise ValueError(f"{self.name}={text!r}: expected at least {self.minimum}")
            return int(text)
        return text


HOME = EnvSetting(
    "ORDERWATCH_HOME",
    "home",
    "./.orderwatch",
    "Everything orderwatch writes: landing/, warehouse.duckdb, dagster/, logs/",
)
AS_OF = EnvSetting(
    "ORDERWATCH_AS_OF",
    "as_of",
    None,
    'ISO timestamp that is "now"; else ORDERWATCH_HOME/clock, else the wall clock',
)
GENERAL_SETTINGS: tuple[EnvSetting, ...] = (HOME, AS_OF)


def home() -> Path:
    """ORDERWATCH_HOME, default ./.orderwatch (relative to the working directory)."""
    return Path(HOME.read() or "./.orderwatch").resolve()


def landing_dir() -> Path:
    return home() / "landing"


def warehouse_path() -> Path:
    return home() / "warehouse.duckdb"


def clock_path() -> Path:
    return home() / "clock"


def read_timestamp(text: str) -> tuple[datetime, bool]:
    """ISO-8601 to an aware UTC datetime, and whether the text carried an offset (or `Z`).

    Text without an offset is read as UTC; callers that care count it (lib/parsers.py).
    """
    value = datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
    if value.tzinfo is None:
        return value.replace(tzinfo=UTC), False
    return value.astimezone(UTC), True


def parse_timestamp(text: str) -> datetime:
    """ISO-8601 (with offset or `Z`) to an aware UTC datetime; naive input is taken as UTC."""
    return read_timestamp(text)[0]


def now() -> datetime:
    """Evaluation time: ORDERWATCH_AS_OF > ORDERWATCH_HOME/clock > wall clock (UTC, aware)."""
    as_of = AS_OF.read()
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
