"""The point-in-time proof of the as-of layer (docs/architecture.md "The as-of layer").

One small world (SEED, DAYS x PER_DAY), simulated through the code location's own pipeline job
twice over:
  - the "until" home: simulated only up to T1 and built, then continued to T2 and built again
    (the hourly path: incremental ingest, incremental dbt). After each build its live
    marts.order_state is what orderwatch saw then, from a warehouse that never saw anything later;
  - the "full" home: the same landing folder continued to WORLD_END, four days past the first
    moment (orders stop being placed after DAYS, their parcels keep moving), built once: the
    future after each moment is long enough to deliver, lose or return parcels, so a leak of
    it would show.
Then, every column, rule flags included:
  1. on the full world, the live marts.order_state at its "now" = order_state_snapshots at now.
     Both run the same macro over the same staging at the same moment, so this holds largely by
     construction: it shows only that a moment's rows do not depend on the grid's other moments.
     The real check at now is against the latest-knowledge models, separate SQL: the promise,
     tier, service and warehouse of int_order_promises and the current milestone of
     fct_order_milestones;
  2. at T1 and at T2, the as-of layer on the full world = the live order_state of the world
     simulated until then, for every order of that world: the full world's snapshots are rebuilt
     at T1 and T2 with var snapshot_closed_retention_hours so large that closed orders stay (the
     pipeline's own table drops them a day after closure; its rows must equal the rebuilt ones).
     Each rule holds at that moment for some order (ship_late, no_first_scan, scan_gap,
     carrier_exception, fulfillment_hold, lost, promise_missed active; a WISMO ticket on an open
     order), so the equality is not vacuous;
  3. the until home's order_state_snapshots, built incrementally at T1 then T2, equal a full
     refresh of the same model on the same warehouse.
The world is the smallest that has all of these at both moments: lost needs a parcel silent for
7 days (or a lost scan 5-8 days after the last one), so the moments sit 13-14 days in.
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
# on the default 6-hour grid, within its last 7 days before the full world's end, on business
# days (no_first_scan counts business hours: over the weekend and Monday's holiday, 10-10 to
# 10-12, no label crosses its threshold), late enough for a lost parcel
MOMENTS = (datetime(2026, 10, 14, 0, tzinfo=UTC), datetime(2026, 10, 14, 18, tzinfo=UTC))
# the full world runs on past the last placement day (10-15 00:00) to here: 3-4 days of future
WORLD_END = datetime(2026, 10, 18, 0, tzinfo=UTC)
# columns that move with the moment alone (no new fact): left out of "the world moved on"
TIME_RELATIVE = {
    "as_of",
    "hours_since_last_scan",
    "ship_slack_hours",
    "deliver_slack_hours",
    "hours_past_promise",
}
# orders of the until world whose milestone (or milestone, openness or a rule flag) differs at
# WORLD_END (seed 12: 244 and 272 after 10-14 00:00, 247 and 277 after 10-14 18:00)
MIN_MOVED_MILESTONES, MIN_MOVED = 200, 200
DBT_DIR = Path(__file__).resolve().parents[1] / "dbt_project"

Rows = dict[int, tuple[Any, ...]]


@dataclass(frozen=True)
class Worlds:
    columns: list[str]  # order_state's columns, in order
    live: dict[datetime, Rows]  # the until home's live order_state after its build at each moment
    until_home: Path
    full: Path  # warehouse of the same world continued to its end
    kept: Path  # a copy of it whose snapshots at MOMENTS keep every order, closed ones too


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


def _dbt(home: Path, scratch: Path, args: list[str], dbt_vars: dict[str, Any]) -> None:
    """dbt on the warehouse of `home`, with its own target and log folders."""
    command = [str(Path(sys.executable).with_name("dbt")), "--quiet", *args]
    command += ["--project-dir", str(DBT_DIR), "--profiles-dir", str(DBT_DIR)]
    command += ["--target-path", str(scratch / "target"), "--vars", json.dumps(dbt_vars)]
    env = {**os.environ, "ORDERWATCH_HOME": str(home), "DBT_LOG_PATH": str(scratch / "logs")}
    subprocess.run(command, env=env, check=True)


def _keep_closed_orders(full: Path, scratch: Path) -> Path:
    """A copy of the full warehouse whose order_state_snapshots hold MOMENTS (and now) for every
    order placed by then: the retention var far beyond the world, so no closed order leaves."""
    home = scratch / "kept"
    home.mkdir()
    shutil.copy(full, home / "warehouse.duckdb")
    with duckdb.connect(str(full), read_only=True) as con:
        con.execute("SET TimeZone = 'UTC'")
        (now,) = con.execute("select max(as_of) from marts.order_state").fetchone()
    dbt_vars = {
        "as_of": now.isoformat(),
        "snapshot_grid": {"moments": [m.isoformat() for m in MOMENTS]},
        "snapshot_closed_retention_hours": 24 * 365 * 10,
    }
    select = ["run", "--select", "int_snapshot_grid", "order_state_snapshots", "--full-refresh"]
    _dbt(home, scratch, select, dbt_vars)
    return home / "warehouse.duckdb"


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
    _simulate(full_home / "landing", full_home, WORLD_END)  # continues from the last moment
    run_pipeline(full_home)
    full = full_home / "warehouse.duckdb"
    kept = _keep_closed_orders(full, tmp_path_factory.mktemp("kept"))
    yield Worlds(columns=columns, live=live, until_home=until_home, full=full, kept=kept)
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


def _moved_on(columns: list[str], then: Rows, now: Rows) -> tuple[set[int], set[int]]:
    """Orders of `then` whose milestone (new facts only) and whose milestone, openness or a
    rule flag differ in `now`; the columns in TIME_RELATIVE are never compared."""
    milestone = columns.index("current_milestone")
    states = [
        k
        for k, name in enumerate(columns)
        if name not in TIME_RELATIVE
        and (name in ("current_milestone", "is_open") or name.endswith(("_occurred", "_active")))
    ]
    both = [(row, now[order_id], order_id) for order_id, row in then.items() if order_id in now]
    milestones = {o for a, b, o in both if a[milestone] != b[milestone]}
    flags = {o for a, b, o in both if any(a[k] != b[k] for k in states)}
    return milestones, flags


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


# order_state at now against the latest-knowledge models (every record's latest version, no
# as_of): int_order_promises (promise_window_ctes without keys) and fct_order_milestones (its
# own roll-up; progress only, so an order cancelled or returned to sender is compared on
# delivery alone). The terms' macros are shared; the version choice and the roll-ups are not.
LATEST_KNOWLEDGE = """
select
    state.order_id,
    state.promised_ship_by, promises.promised_ship_by,
    state.promised_deliver_by, promises.promised_deliver_by,
    state.customer_tier, promises.customer_tier,
    state.service_code, promises.service_code,
    state.destination_region, promises.destination_region,
    state.promise_source, promises.promise_source,
    case when state.current_milestone not in ('cancelled', 'return_to_sender')
        then state.current_milestone end,
    case when state.current_milestone not in ('cancelled', 'return_to_sender')
        then current_milestone.milestone end,
    case when state.current_milestone not in ('cancelled', 'return_to_sender')
        then state.milestone_reached_at end,
    case when state.current_milestone not in ('cancelled', 'return_to_sender')
        then current_milestone.actual_at end,
    state.delivered_at, delivered.actual_at
from marts.order_state as state
left join intermediate.int_order_promises as promises on state.order_id = promises.order_id
left join marts.fct_order_milestones as current_milestone
    on state.order_id = current_milestone.order_id and current_milestone.is_current
left join marts.fct_order_milestones as delivered
    on state.order_id = delivered.order_id
    and delivered.milestone = 'delivered' and delivered.is_reached
"""


@SLOW
def test_live_order_state_agrees_with_the_latest_knowledge_models(worlds: Worlds) -> None:
    with duckdb.connect(str(worlds.full), read_only=True) as con:
        con.execute("SET TimeZone = 'UTC'")
        rows = con.execute(LATEST_KNOWLEDGE).fetchall()
    names = ["promised_ship_by", "promised_deliver_by", "customer_tier", "service_code"]
    names += ["destination_region", "promise_source", "current_milestone"]
    names += ["milestone_reached_at", "delivered_at"]
    problems = [
        f"order {row[0]} {name}: {row[1 + 2 * k]!r} != {row[2 + 2 * k]!r}"
        for row in rows
        for k, name in enumerate(names)
        if row[1 + 2 * k] != row[2 + 2 * k]
    ]
    assert len(rows) == DAYS * PER_DAY
    assert not problems, "\n".join(problems[:40])
    # not vacuous: orders delivered, in progress and cancelled (or returned) at now
    kinds = {"delivered" if r[13] == "delivered" else "open" if r[13] else "closed" for r in rows}
    assert kinds == {"delivered", "open", "closed"}


# what must hold at the moment for some compared order, so that the equality is not vacuous:
# every rule active then (lost reads 7 days of silence, scan_gap the lane threshold of the gap's
# day, no_first_scan business hours, promise_missed the moment itself, holds the versions valid
# then) and a WISMO ticket on an open order
TRUE_AT_T = {
    "ship_late": lambda r: r["ship_late_active"],
    "no_first_scan": lambda r: r["no_first_scan_active"],
    "scan_gap": lambda r: r["scan_gap_active"],
    "carrier_exception": lambda r: r["carrier_exception_active"],
    "hold": lambda r: r["fulfillment_hold_active"],
    "lost": lambda r: r["lost_active"],
    "promise_missed": lambda r: r["promise_missed_active"],
    "wismo": lambda r: r["wismo_ticket_count"] > 0 and r["is_open"],
}


def _placed_by(warehouse: Path, moment: datetime) -> int:
    with duckdb.connect(str(warehouse), read_only=True) as con:
        sql = (
            "select count(*) from staging.stg_storefront__orders"
            " where is_latest_version and placed_at <= ?"
        )
        return con.execute(sql, [moment]).fetchone()[0]


@SLOW
@pytest.mark.parametrize("moment", MOMENTS, ids=lambda m: m.strftime("%m-%d_%H"))
def test_as_of_layer_at_t_equals_the_world_simulated_until_t(
    worlds: Worlds, moment: datetime
) -> None:
    columns, then = worlds.columns, worlds.live[moment]
    listed = ", ".join(columns)
    at_t = f"select {listed} from marts.order_state_snapshots where as_of = '{moment.isoformat()}'"
    assert then and {row[columns.index("as_of")] for row in then.values()} == {moment}
    assert len(then) == _placed_by(worlds.full, moment)
    # the full world has moved on: facts, not just the clock, differ at its end for many orders
    _, now = _rows(worlds.full, f"select {listed} from marts.order_state")
    milestones, flags = _moved_on(columns, then, now)
    moved = f"after {moment}: {len(milestones)} milestones, {len(flags)} milestones or flags moved"
    assert len(milestones) >= MIN_MOVED_MILESTONES and len(flags) >= MIN_MOVED, moved
    # every order of the until world, closed ones included
    _, kept = _rows(worlds.kept, at_t)
    problems = _differences(columns, then, kept)
    assert not problems, "\n".join(problems[:40])
    # the pipeline's own snapshots: the same rows, less orders closed over a day before
    # (var snapshot_closed_retention_hours), of which there are some
    _, stored = _rows(worlds.full, at_t)
    is_open = columns.index("is_open")
    absent = set(then) - set(stored)
    assert absent and not [o for o in absent if then[o][is_open]]
    problems = _differences(columns, {o: then[o] for o in stored}, stored)
    assert not problems, "\n".join(problems[:40])
    named = [dict(zip(columns, row, strict=True)) for row in then.values()]
    counts = {flag: sum(1 for r in named if test(r)) for flag, test in TRUE_AT_T.items()}
    assert all(counts.values()), f"a rule never holds among the compared orders: {counts}"


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
    select = ["run", "--select", "order_state_snapshots", "--full-refresh"]
    _dbt(home, tmp_path, select, {"as_of": MOMENTS[-1].isoformat()})
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
