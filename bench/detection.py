"""`make bench --only detection`: how many observable misses `marts.order_exceptions` catches,
at what precision, evaluated the way an operator sees it.

At several moments of the world's last week (the as-of grid of `marts.order_state_snapshots`),
over orders open at that moment whose promise is at least 24 h away: an order is an
*observable miss* when the ground truth says it missed its promise and its failure had begun
(`failure_onset_at <= as_of`); it is *caught* when it has an open exception at that moment.
The exception table at each moment is rebuilt from the as-of slices only (lib/exceptions.py
`rebuild`: a slice holds facts known by then), so nothing later leaks in. Without the as-of
layer there is no honest figure, and the section says so instead of printing one.
"""

from __future__ import annotations

import csv
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from orderwatch_dagster.lib import exceptions as ex
from orderwatch_dagster.lib.policy import load_policy
from orderwatch_dagster.lib.settings import parse_timestamp

MIN_LEAD = timedelta(hours=24)


@dataclass(frozen=True)
class Grade:
    as_of: datetime
    eligible: int  # open orders with >= 24 h to their promise
    observable_misses: int
    caught: int  # observable misses with an open exception
    flagged: int  # eligible orders with an open exception
    flagged_missing: int  # of those, orders that did miss

    @property
    def recall(self) -> float | None:
        return self.caught / self.observable_misses if self.observable_misses else None

    @property
    def precision(self) -> float | None:
        return self.flagged_missing / self.flagged if self.flagged else None


def read_truth(path: Path) -> dict[int, dict[str, Any]]:
    with path.open() as handle:
        return {int(row["order_id"]): row for row in csv.DictReader(handle)}


def grade(
    as_of: datetime,
    states: Sequence[Mapping[str, Any]],
    open_exception_orders: set[Any],
    truth: Mapping[int, Mapping[str, Any]],
) -> Grade:
    eligible = observable = caught = flagged = flagged_missing = 0
    for state in states:
        deadline = state.get("promised_deliver_by")
        if not state.get("is_open") or deadline is None or deadline - as_of < MIN_LEAD:
            continue
        eligible += 1
        row = truth.get(int(state["order_id"]), {})
        missed = str(row.get("missed_promise", "")).lower() == "true"
        onset = row.get("failure_onset_at") or ""
        is_observable = missed and bool(onset) and parse_timestamp(onset) <= as_of
        hit = state["order_id"] in open_exception_orders
        observable += is_observable
        caught += is_observable and hit
        flagged += hit
        flagged_missing += hit and missed
    return Grade(as_of, eligible, observable, caught, flagged, flagged_missing)


def grade_world(warehouse: Path, truth_csv: Path, days: int = 7) -> list[Grade] | None:
    """Grades at each as-of slice of the last `days` days; None without the as-of layer."""
    import duckdb

    with duckdb.connect(str(warehouse), read_only=True) as con:
        con.execute("SET TimeZone = 'UTC'")
        present = con.execute(
            "select count(*) from information_schema.tables"
            " where table_schema = 'marts' and table_name = 'order_state_snapshots'"
        ).fetchone()[0]
        if not present:
            return None
        cols = ", ".join(ex.STATE_COLUMNS)
        rows = con.execute(
            f"select as_of, {cols} from marts.order_state_snapshots order by as_of"
        ).fetchall()
    slices: dict[datetime, list[dict[str, Any]]] = {}
    for as_of, *values in rows:
        slices.setdefault(as_of, []).append(dict(zip(ex.STATE_COLUMNS, values, strict=True)))
    truth = read_truth(truth_csv)
    policy = load_policy()
    last = max(slices)
    grades, table = [], []
    for as_of in sorted(slices):
        # risk scores are not folded in here yet: rules only until the model's history is read
        table = ex.advance(table, slices[as_of], {}, policy, as_of)
        if as_of >= last - timedelta(days=days):
            flagged = {r["order_id"] for r in table if r["ended_at"] is None}
            grades.append(grade(as_of, slices[as_of], flagged, truth))
    return grades


def markdown(grades: list[Grade] | None, world: str) -> str:
    head = (
        "# Detection: observable misses caught by marts.order_exceptions\n\n"
        + __doc__.split("\n\n", 1)[1].strip()
        + f"\n\nWorld: {world}.\n\n"
    )
    if grades is None:
        return head + "**Not measured**: this warehouse has no `marts.order_state_snapshots`.\n"
    lines = [
        "| as of | eligible | observable misses | caught | recall | flagged | precision |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for g in grades:
        recall = "—" if g.recall is None else f"{g.recall:.1%}"
        precision = "—" if g.precision is None else f"{g.precision:.1%}"
        lines.append(
            f"| {g.as_of.isoformat()} | {g.eligible} | {g.observable_misses} | {g.caught} "
            f"| {recall} | {g.flagged} | {precision} |"
        )
    observable = sum(g.observable_misses for g in grades)
    flagged = sum(g.flagged for g in grades)
    recall = sum(g.caught for g in grades) / observable if observable else float("nan")
    precision = sum(g.flagged_missing for g in grades) / flagged if flagged else float("nan")
    lines.append(
        f"\nPooled: **recall {recall:.1%} at precision {precision:.1%}** (target ≥ 80 % at ≥ 40 %)."
    )
    return head + "\n".join(lines) + "\n"
