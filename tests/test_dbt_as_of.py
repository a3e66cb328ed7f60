"""The point-in-time proof of the as-of layer (docs/architecture.md "The as-of layer").

One small world (SEED, DAYS x PER_DAY), simulated through the code location's own pipeline job
twice over:
  - the "until" home: simulated only up to T1 and built, then continued to T2 and built again
    (the hourly path: incremental ingest, incremental dbt). After each build its live
    marts.order_state is what orderwatch saw then, from a warehouse that never saw anything later;
  - the "full" home: the same landing folder continued to the world's end, built once.
Then, every column, rule flags included:
  1. on the full world, the live marts.order_state at its "now" = order_state_snapshots at now;
  2. at T1 and at T2, order_state_snapshots of the full world = the live order_state of the
     world simulated until then (for every order the snapshots keep then: all but those closed
     over a day before), and the compared rows hold orders that are lost, past their promise,
     with a WISMO ticket and on hold at that moment (so the equality is not vacuous);
  3. the until home's order_state_snapshots, built incrementally at T1 then T2, equal a full
     refresh of the same model on the same warehouse.
The world is the smallest that has all four at both moments: lost needs a parcel silent for 7
days (or a lost scan 5-8 days after the last one), so the moments sit 12-13 days in.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime, time
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import duckdb
import pytest
from conftest import run_pipeline
from digests import digest

from orderwatch_dagster.sim import simulate
from orderwatch_dagster.sim.calendar import order_day

SEED, START, DAYS, PER_DAY = 12, date(2026, 10, 1), 14, 40
# on the default 6-hour grid, within its last 7 days before the world's end (10-15 00:00)
MOMENTS = (datetime(2026, 10, 12, 18, tzinfo=UTC), datetime(2026, 10, 13, 18, tzinfo=UTC))
DBT_DIR = Path(__file__).resolve().parents[1] / "dbt_project"

Rows = dict[int, tuple[Any, ...]]


@dataclass(frozen=True)
class Worlds:
    columns: list[str]  # order_state's columns, in order
    live: dict[datetime, Rows]  # the until home's live order_state after its build at each moment
    until_home: Path
    full: Path  # warehouse of the same world continued to its end


def _simulate(landing: Path, home: Path, until: datetime | None) -> None:
    simulate(
        landing,
        seed=SEED,
        start=START,
        days=DAYS,
        orders_per_day=PER_DAY,
        until=until,
        clock_file=home / "clock",
    )


def _rows(warehouse: Path, sql: str) -> tuple[list[str], Rows]:
    with duckdb.connect(str(warehouse), read_only=True) as con:
        con.execute("SET TimeZone = 'UTC'")
        cursor = con.execute(sql)
        columns = [d[0] for d in cursor.description]
        rows = cursor.fetchall()
    key = columns.index("order_id")
    return columns, {row[key]: row for row in rows}


def _state_columns(warehouse: Path) -> list[str]:
    with duckdb.connect(str(warehouse), read_only=True) as con:
        return [
            name
            for (name,) in con.execute(
                "select column_name from information_schema.columns"
                " where table_schema = 'marts' and table_name = 'order_state'"
                " order by ordinal_position"
            ).fetchall()
        ]


# three pipeline runs on their own worlds: slow (make test-slow)
SLOW = pytest.mark.slow


@pytest.fixture(scope="module")
def worlds(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Worlds]:
    saved = os.environ.get("ORDERWATCH_HOME")
    until_home = tmp_path_factory.mktemp("until")
    warehouse = until_home / "warehouse.duckdb"
    live: dict[datetime, Rows] = {}
    columns: list[str] = []
    for moment in MOMENTS:  # continues the same landing folder and warehouse
        _simulate(until_home / "landing", until_home, moment)
        run_pipeline(until_home)
        columns = _state_columns(warehouse)
        live[moment] = _rows(warehouse, f"select {', '.join(columns)} from marts.order_state")[1]
    full_home = tmp_path_factory.mktemp("full")
    shutil.copytree(until_home / "landing", full_home / "landing")
    _simulate(full_home / "landing", full_home, None)  # continues from the last moment
    run_pipeline(full_home)
    yield Worlds(
        columns=columns, live=live, until_home=until_home, full=full_home / "warehouse.duckdb"
    )
    if saved is None:
        os.environ.pop("ORDERWATCH_HOME", None)
    else:
        os.environ["ORDERWATCH_HOME"] = saved


def _same(a: Any, b: Any) -> bool:
    if isinstance(a, float) and isinstance(b, float):
        return math.isclose(a, b, rel_tol=1e-9, abs_tol=1e-9)
    return a == b


def _differences(columns: list[str], left: Rows, right: Rows) -> list[str]:
    out = [f"order {k} only on the left" for k in sorted(set(left) - set(right))]
    out += [f"order {k} only on the right" for k in sorted(set(right) - set(left))]
    for order_id in sorted(set(left) & set(right)):
        for name, a, b in zip(columns, left[order_id], right[order_id], strict=True):
            if not _same(a, b):
                out.append(f"order {order_id} {name}: {a!r} != {b!r}")
    return out


@SLOW
def test_live_order_state_is_the_as_of_layer_at_now(worlds: Worlds) -> None:
    listed = ", ".join(worlds.columns)
    _, live = _rows(worlds.full, f"select {listed} from marts.order_state")
    _, snap = _rows(
        worlds.full,
        f"select {listed} from marts.order_state_snapshots"
        " where as_of = (select max(as_of) from marts.order_state)",
    )
    assert len(live) == DAYS * PER_DAY
    problems = _differences(worlds.columns, live, snap)
    assert not problems, "\n".join(problems[:40])


# what must be true at the moment in some compared rows: the flags the as-of layer could most
# easily get wrong (lost reads 7 days of silence, promise_missed the moment itself, WISMO and
# holds the versions valid then)
TRUE_AT_T = {
    "lost": lambda r: r["lost_active"],
    "promise_missed": lambda r: r["promise_missed_active"],
    "wismo": lambda r: r["wismo_ticket_count"] > 0 and r["is_open"],
    "hold": lambda r: r["fulfillment_hold_active"],
}


@SLOW
@pytest.mark.parametrize("moment", MOMENTS, ids=lambda m: m.strftime("%m-%d_%H"))
def test_as_of_layer_at_t_equals_the_world_simulated_until_t(
    worlds: Worlds, moment: datetime
) -> None:
    columns, then = worlds.columns, worlds.live[moment]
    listed = ", ".join(columns)
    _, snap = _rows(
        worlds.full,
        f"select {listed} from marts.order_state_snapshots where as_of = '{moment.isoformat()}'",
    )
    assert then and {row[columns.index("as_of")] for row in then.values()} == {moment}
    # the full world has moved on: the moment must not be its end state
    _, now = _rows(worlds.full, f"select {listed} from marts.order_state")
    assert _differences(columns, then, now)
    # snapshots of an order stop a day after its closure became known (var
    # snapshot_closed_retention_hours): only orders closed by then may be absent
    is_open = columns.index("is_open")
    absent = set(then) - set(snap)
    assert not [o for o in absent if then[o][is_open]], "an open order is missing at T"
    compared = {o: r for o, r in then.items() if o not in absent}
    assert len(compared) > len(then) / 2
    problems = _differences(columns, compared, snap)
    assert not problems, "\n".join(problems[:40])
    named = [dict(zip(columns, row, strict=True)) for row in compared.values()]
    counts = {flag: sum(1 for r in named if test(r)) for flag, test in TRUE_AT_T.items()}
    assert all(counts.values()), f"a flag never true among the compared rows: {counts}"


def _snapshot_digest(warehouse: Path) -> tuple[int, str]:
    with duckdb.connect(str(warehouse), read_only=True) as con:
        con.execute("SET TimeZone = 'UTC'")
        cursor = con.execute("select * from marts.order_state_snapshots")
        columns = [d[0] for d in cursor.description]
        rows = cursor.fetchall()
    return len(rows), digest(columns, rows)


@SLOW
def test_incremental_snapshots_equal_a_full_refresh(worlds: Worlds, tmp_path: Path) -> None:
    """Built at T1, then incrementally at T2 (only the moments of the last 24 h recomputed, the
    rows of a moment no longer kept dropped): the same table as a full refresh at T2."""
    incremental = _snapshot_digest(worlds.until_home / "warehouse.duckdb")
    home = tmp_path / "home"
    home.mkdir()
    shutil.copy(worlds.until_home / "warehouse.duckdb", home / "warehouse.duckdb")
    command = [str(Path(sys.executable).with_name("dbt")), "--quiet", "run"]
    command += ["--select", "order_state_snapshots"]
    command += ["--full-refresh", "--project-dir", str(DBT_DIR), "--profiles-dir", str(DBT_DIR)]
    command += ["--target-path", str(tmp_path / "target")]
    command += ["--vars", json.dumps({"as_of": MOMENTS[-1].isoformat()})]
    env = {**os.environ, "ORDERWATCH_HOME": str(home), "DBT_LOG_PATH": str(tmp_path / "logs")}
    subprocess.run(command, env=env, check=True)
    full = _snapshot_digest(home / "warehouse.duckdb")
    assert incremental[0] > DAYS * PER_DAY
    assert incremental == full


def test_the_simulator_counts_an_order_at_the_cut_off_from_the_next_day() -> None:
    """At or after the cut-off, as dbt's promise rule (macros/promises.sql, `>=`)."""
    new_york = ZoneInfo("America/New_York")
    cutoff = time(14, 0)

    def placed(hour: int, minute: int) -> datetime:
        return datetime(2026, 10, 1, hour, minute, tzinfo=new_york)

    assert order_day(placed(13, 59), cutoff, set(), new_york) == date(2026, 10, 1)
    assert order_day(placed(14, 0), cutoff, set(), new_york) == date(2026, 10, 2)
