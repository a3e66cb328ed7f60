"""The rules graded against the ground truth inside `make test` (the bench's grader, fast).

bench/rules_grading.py grades each rule the way an operator sees it: at the snapshot grid's
moments, over open orders whose promise is >= 24 h away, precision, recall over the misses
whose cause (truth `cause_<kind>_at`) had begun at least the rule's threshold before, and false
alarms on failure-free orders. Here on conftest's demo world (10 days x 40 orders, seed 5, the
pipeline's 6-hourly grid over its last 7 days: 29 moments), already built for the action tests,
so the grading itself is the only cost (about a second). The 30 x 1000 figures on seeds 7 and
13 are `make bench BENCH_ARGS="--only rules"` (bench/results/rules.md).

First the grader itself, on a hand-made frame whose every count is known.
"""

from __future__ import annotations

import csv
from datetime import UTC, datetime, timedelta
from pathlib import Path

import duckdb
import pytest
from conftest import DemoWorld

from bench.rules_grading import RULES, RuleGrade, grade_rules, grades_table, rule_thresholds
from orderwatch_dagster.sim.engine import GROUND_TRUTH_COLUMNS

# Floors and ceilings for a demo-sized world, derived without the test's world (seed 5) or the
# bench's (7, 13): three worlds of the same size and grid on seeds used nowhere else (101, 202,
# 303: simulate + the pipeline job, graded with this code). A floor is half the lowest
# observable recall seen there on >= MIN_OBSERVABLE_ORDERS orders (rounded down to 0.05), a
# ceiling twice the highest false-alarm share (rounded up to 0.05, at least 0.05): at two to
# eight observable orders per rule a world moves these figures by tens of points. The lowest
# recall (observable orders) / highest false alarms seen, in the comments.
OBSERVABLE_RECALL_MIN: dict[str, float] = {
    "ship_late": 0.50,  # 100 % (5-8 orders)
    "fulfillment_hold": 0.45,  # 97.7 % (4)
    "no_first_scan": 0.35,  # 71.4 %, on the one seed with any (1 order: below the minimum)
    "carrier_exception": 0.10,  # 28.6 % (2; a storm delay without a weather scan is never seen)
}
# scan_gap and lost need a cause observable in the world to be graded: too rare at 400 orders
# (scan_gap: a hub outage; lost: a parcel silent 7 days before the clock). A recall floor is
# asserted only where the world has at least MIN_OBSERVABLE_ORDERS such orders, and the test
# says which rules it could not grade, so a world that loses a graded rule fails.
MIN_OBSERVABLE_ORDERS = 2
FALSE_ALARM_MAX: dict[str, float] = {
    "ship_late": 0.20,  # 8.7 % (late-shipped orders that still arrive in time)
    "fulfillment_hold": 0.05,  # 2.4 %
    "no_first_scan": 0.10,  # 4.8 %
    "scan_gap": 0.05,  # 1.7 %
    "lost": 0.05,  # 0.0 %
    "carrier_exception": 0.05,  # 1.3 %
}
UNGRADED_ON_DEMO = {"scan_gap", "lost"}


def check(grades: list[RuleGrade]) -> tuple[list[str], set[str]]:
    """Every floor and ceiling a grading breaks, and the rules it had nothing to grade on."""
    by_rule = {g.rule: g for g in grades}
    problems, ungraded = [], set()
    for rule in RULES:
        grade = by_rule[rule.name]
        if grade.observable_orders < MIN_OBSERVABLE_ORDERS:
            ungraded.add(rule.name)
        elif (grade.observable_recall or 0.0) < OBSERVABLE_RECALL_MIN.get(rule.name, 1.0):
            problems.append(f"{rule.name}: observable recall {grade.observable_recall}")
        if not grade.clean_pairs or grade.false_alarm_rate > FALSE_ALARM_MAX[rule.name]:
            problems.append(f"{rule.name}: false alarms {grade.false_alarm_rate}")
    return problems, ungraded


# -- the grader on a hand-made frame -----------------------------------------------------------
T0 = datetime(2026, 10, 10, 19, tzinfo=UTC)
H = timedelta(hours=1)


def _iso(moment: datetime | None) -> str:
    return "" if moment is None else moment.isoformat().replace("+00:00", "Z")


def tiny_world(tmp_path: Path, flags: dict[int, set[str]]) -> tuple[Path, Path]:
    """Five open orders at one moment T0, promises 48 h away (3: 12 h, outside the
    population). 1 misses on a stock-out begun 5 h before T0; 2 misses on a storm announced
    after T0 (not yet observable); 3 misses on a stock-out but is too close to its promise;
    4 and 5 are failure-free. `flags`: order -> the rules that flag it."""
    truth = {
        1: {
            "missed_promise": "true",
            "failure_mode": "stock_out",
            "cause_stock_out_at": T0 - 5 * H,
            "onset_hold_at": T0 - 4 * H,
        },
        2: {
            "missed_promise": "true",
            "failure_mode": "weather_delay",
            "cause_weather_delay_at": T0 + 3 * H,
        },
        3: {
            "missed_promise": "true",
            "failure_mode": "stock_out",
            "cause_stock_out_at": T0 - 9 * H,
        },
        4: {"missed_promise": "false", "failure_mode": "none"},
        5: {"missed_promise": "false", "failure_mode": "none"},
    }
    path = tmp_path / "ground_truth.csv"
    with path.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, GROUND_TRUTH_COLUMNS, restval="")
        writer.writeheader()
        for order, row in truth.items():
            cells = {k: v if isinstance(v, str) else _iso(v) for k, v in row.items()}
            writer.writerow({"order_id": order, **cells})
    warehouse = tmp_path / "warehouse.duckdb"
    columns = ", ".join(
        f"{r.name}_occurred boolean, {r.name}_detected_at timestamptz" for r in RULES
    )
    with duckdb.connect(str(warehouse)) as con:
        con.execute("SET TimeZone = 'UTC'")
        con.execute("create schema marts")
        con.execute(
            "create table marts.order_state_snapshots (as_of timestamptz, order_id bigint,"
            f" is_open boolean, promised_deliver_by timestamptz, {columns})"
        )
        for order in truth:
            deadline = T0 + (12 if order == 3 else 48) * H
            values = [T0, order, True, deadline]
            for rule in RULES:
                hit = rule.name in flags.get(order, set())
                values += [hit, T0 - 2 * H if hit else None]
            con.execute(
                f"insert into marts.order_state_snapshots values ({', '.join('?' * len(values))})",
                values,
            )
    return warehouse, path


def test_grader_counts_on_a_hand_made_frame(tmp_path: Path) -> None:
    flags = {1: {"fulfillment_hold"}, 2: {"fulfillment_hold"}, 4: {"fulfillment_hold"}, 3: {"lost"}}
    warehouse, truth = tiny_world(tmp_path, flags)
    grading = grade_rules(warehouse, truth, [T0])
    hold = {g.rule: g for g in grading.grades}["fulfillment_hold"]
    assert grading.population["pairs"] == 4  # order 3's promise is 12 h away
    assert (hold.flagged, hold.true_flags, hold.missed_pairs, hold.caught_missed) == (3, 2, 2, 2)
    # only order 1's cause had begun by T0 (order 2's storm comes later)
    assert (hold.observable, hold.caught_observable, hold.observable_orders) == (1, 1, 1)
    assert (hold.feed_observable, hold.caught_feed_observable) == (1, 1)
    assert (hold.clean_pairs, hold.clean_flagged) == (2, 1)
    assert hold.cause_flags == 1  # order 1 only: 2 and 4 met no stock-out or held address
    assert hold.median_lead_hours == 50.0  # detected 2 h before T0, promise 48 h after
    # lost, over every open order: order 3 (12 h from its promise) flagged, with no lost parcel
    (lost,) = grading.secondary
    assert (lost.flagged, lost.true_flags, lost.cause_flags) == (1, 1, 0)
    assert grading.secondary_population["pairs"] == 5


@pytest.mark.parametrize("flag_all", [True, False], ids=["flags every order", "flags nothing"])
def test_grader_fails_a_rule_that_flags_everything_or_nothing(
    tmp_path: Path, flag_all: bool
) -> None:
    """A floor and a ceiling, not a recall floor alone: both degenerate rules fail."""
    flags = {order: {"fulfillment_hold"} for order in range(1, 6)} if flag_all else {}
    warehouse, truth = tiny_world(tmp_path, flags)
    hold = {g.rule: g for g in grade_rules(warehouse, truth, [T0]).grades}["fulfillment_hold"]
    if flag_all:
        assert hold.false_alarm_rate == 1.0 > FALSE_ALARM_MAX["fulfillment_hold"]
    else:
        assert hold.observable_recall == 0.0 < OBSERVABLE_RECALL_MIN["fulfillment_hold"]


def test_thresholds_are_dbt_project_vars() -> None:
    assert rule_thresholds()["scan_gap"] == 36.0 and rule_thresholds()["lost"] == 168.0


# -- the rules on the demo world ------------------------------------------------------------------
def grading_moments(warehouse: Path) -> list[datetime]:
    with duckdb.connect(str(warehouse), read_only=True) as con:
        con.execute("SET TimeZone = 'UTC'")
        return [
            m
            for (m,) in con.execute(
                "select distinct as_of from marts.order_state_snapshots order by 1"
            ).fetchall()
        ]


def test_rules_catch_observable_causes_without_crying_wolf(demo_world: DemoWorld) -> None:
    moments = grading_moments(demo_world.warehouse)
    assert len(moments) >= 20
    grading = grade_rules(
        demo_world.warehouse, demo_world.home / "landing" / "ground_truth.csv", moments
    )
    table = grades_table(grading.grades)
    print(grading.population, "\n" + table)
    problems, ungraded = check(grading.grades)
    assert not problems, "\n".join(problems) + "\n" + table
    assert ungraded == UNGRADED_ON_DEMO, f"rules without observable causes: {ungraded}\n{table}"
    # a rule without a cause to grade on must still fire on what it reads (not flag nothing)
    scan_gap = {g.rule: g for g in grading.grades}["scan_gap"]
    assert scan_gap.caught_feed_observable, table
