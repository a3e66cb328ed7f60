"""The point-in-time proof of the as-of layer (docs/architecture.md "The as-of layer").

One small world (seed 7, 3 days x 40 orders), simulated twice through the code location's own
pipeline job: once only `--until T` (a warehouse that has never seen anything after T), once to
its end by continuing the same landing folder past T (the full world, with every version the
first call wrote and the later ones). Then, every column, rule flags included:
  1. on the full world, the live marts.order_state at its "now" = order_state_snapshots at now;
  2. order_state_snapshots at T on the full world = the live order_state of the --until T world
     (for every order the snapshots keep at T: all but those closed over a day before).
"""

from __future__ import annotations

import math
import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import duckdb
import pytest
from conftest import run_pipeline

from orderwatch_dagster.sim import simulate

SEED, START, DAYS, PER_DAY = 7, date(2026, 10, 1), 3, 40
T = datetime(2026, 10, 2, 18, 0, tzinfo=UTC)  # on the default 6-hour grid


@dataclass(frozen=True)
class Worlds:
    until: Path  # warehouse of the world simulated only up to T
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


@pytest.fixture(scope="module")
def worlds(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Worlds]:
    import os

    saved = os.environ.get("ORDERWATCH_HOME")
    until_home = tmp_path_factory.mktemp("until")
    _simulate(until_home / "landing", until_home, T)
    full_home = tmp_path_factory.mktemp("full")
    shutil.copytree(until_home / "landing", full_home / "landing")
    _simulate(full_home / "landing", full_home, None)  # continues from T
    run_pipeline(until_home)
    run_pipeline(full_home)
    yield Worlds(until=until_home / "warehouse.duckdb", full=full_home / "warehouse.duckdb")
    if saved is None:
        os.environ.pop("ORDERWATCH_HOME", None)
    else:
        os.environ["ORDERWATCH_HOME"] = saved


def _rows(warehouse: Path, sql: str) -> tuple[list[str], dict[int, tuple[Any, ...]]]:
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


def _same(a: Any, b: Any) -> bool:
    if isinstance(a, float) and isinstance(b, float):
        return math.isclose(a, b, rel_tol=1e-9, abs_tol=1e-9)
    return a == b


def _differences(columns: list[str], left: dict[int, tuple], right: dict[int, tuple]) -> list[str]:
    out = [f"order {k} only on the left" for k in sorted(set(left) - set(right))]
    out += [f"order {k} only on the right" for k in sorted(set(right) - set(left))]
    for order_id in sorted(set(left) & set(right)):
        for name, a, b in zip(columns, left[order_id], right[order_id], strict=True):
            if not _same(a, b):
                out.append(f"order {order_id} {name}: {a!r} != {b!r}")
    return out


def test_live_order_state_is_the_as_of_layer_at_now(worlds: Worlds) -> None:
    columns = _state_columns(worlds.full)
    listed = ", ".join(columns)
    _, live = _rows(worlds.full, f"select {listed} from marts.order_state")
    _, snap = _rows(
        worlds.full,
        f"select {listed} from marts.order_state_snapshots"
        " where as_of = (select max(as_of) from marts.order_state)",
    )
    assert len(live) == DAYS * PER_DAY
    problems = _differences(columns, live, snap)
    assert not problems, "\n".join(problems[:40])


def test_as_of_layer_at_t_equals_the_world_simulated_until_t(worlds: Worlds) -> None:
    columns = _state_columns(worlds.until)
    listed = ", ".join(columns)
    _, then = _rows(worlds.until, f"select {listed} from marts.order_state")
    _, snap = _rows(
        worlds.full,
        f"select {listed} from marts.order_state_snapshots where as_of = '{T.isoformat()}'",
    )
    assert then and {row[columns.index("as_of")] for row in then.values()} == {T}
    # the full world has moved on: the moment must not be its end state
    _, now = _rows(worlds.full, f"select {listed} from marts.order_state")
    assert _differences(columns, then, now)
    # snapshots of an order stop a day after its closure became known (var
    # snapshot_closed_retention_hours): only orders closed by then may be absent
    is_open = columns.index("is_open")
    absent = set(then) - set(snap)
    assert not [o for o in absent if then[o][is_open]], "an open order is missing at T"
    assert len(absent) < len(then) / 2
    problems = _differences(columns, {o: r for o, r in then.items() if o not in absent}, snap)
    assert not problems, "\n".join(problems[:40])
