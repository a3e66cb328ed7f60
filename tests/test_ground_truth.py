"""The marts against the simulator's ground truth: the reference world, and a world never seen.

The reference world (conftest `reference_world`: 14 days x 400 orders/day, seed 7) is
simulated, ingested and built by the code location's own pipeline job, once per session; then
order_state and fct_order_milestones are compared with `ground_truth.csv`: every order present,
missed_promise right for >= 99 % of the orders delivered by now, the delivered milestone at the
truth's delivery time for >= 99 % of them and placed at the truth's placement for all; and the
rules graded as an operator sees them (bench/rules_grading.py) with the floors and ceilings of
tests/test_rules_grading.py (which grades the demo world inside `make test`). The table is
printed (`pytest -s` shows it); the full figures (30 days x 1000 orders/day, seeds 7 and 13)
are `make bench` section `rules` (bench/results/rules.md).

`test_lost_parcels_are_caught_a_week_after_their_last_scan` grades `lost` on a three-week
world (LOST_SEED), the one suite world long enough to have lost parcels a week past their last
scan.

`test_unseen_world_agrees_with_its_truth` repeats the order checks on small worlds whose seeds
(UNSEEN_SEEDS) no other file of the repository uses, none delivered in the mart before the
truth. The truth times placement and delivery only, so those are the milestones checked.
"""

from __future__ import annotations

import sys
from pathlib import Path

import duckdb
import pytest
from conftest import REFERENCE_DAYS, REFERENCE_PER_DAY, World, build_world
from test_rules_grading import REFERENCE, bars, check, check_lost

from bench.rules_grading import grade_rules, grades_table, secondary_table, snapshot_moments

MISSED_AGREEMENT_MIN = 0.99  # missed_promise and the delivered milestone, of delivered orders


def load_truth(con: duckdb.DuckDBPyConnection, landing: Path) -> None:
    con.execute(
        "create or replace temp table truth as select order_id, placed_at, missed_promise,"
        " actual_delivery_at from read_csv(?, header = true, all_varchar = false, types = {"
        "'order_id': 'BIGINT', 'missed_promise': 'BOOLEAN', 'actual_delivery_at': 'TIMESTAMPTZ',"
        " 'placed_at': 'TIMESTAMPTZ'})",
        [str(landing / "ground_truth.csv")],
    )


def evaluate(warehouse: Path, landing: Path) -> dict[str, object]:
    con = duckdb.connect(str(warehouse), read_only=True)
    try:
        load_truth(con, landing)
        truth_orders, missing = con.execute(
            "select count(*), count(*) filter (where s.order_id is null)"
            " from truth left join marts.order_state s using (order_id)"
        ).fetchone()
        delivered, agree, delivered_at = con.execute(
            """
            select count(*), count(*) filter (where truth.missed_promise = s.missed_promise),
                   count(*) filter (where m.actual_at = truth.actual_delivery_at)
            from truth join marts.order_state s using (order_id)
            left join marts.fct_order_milestones m
                on m.order_id = truth.order_id and m.milestone = 'delivered'
            where truth.actual_delivery_at <= s.as_of
            """
        ).fetchone()
        # the other way round: delivered in the mart, not (yet) in the truth
        early = con.execute(
            """
            select count(*) from marts.fct_order_milestones m
            join truth using (order_id)
            where m.milestone = 'delivered' and m.actual_at is not null
              and (truth.actual_delivery_at is null or truth.actual_delivery_at > m.actual_at)
            """
        ).fetchone()[0]
        placed, placed_at = con.execute(
            "select count(*), count(*) filter (where m.actual_at = truth.placed_at)"
            " from truth join marts.fct_order_milestones m"
            " on m.order_id = truth.order_id and m.milestone = 'order_placed'"
        ).fetchone()
    finally:
        con.close()
    return {
        "truth_orders": truth_orders,
        "missing": missing,
        "delivered": delivered,
        "agree": agree,
        "delivered_at": delivered_at,
        "delivered_early": early,
        "placed": placed,
        "placed_at": placed_at,
    }


def assert_agrees(
    result: dict[str, int], orders: int, min_delivered: int, max_early: float
) -> None:
    """Every order present and placed when the truth says; missed_promise and the delivered
    milestone right for >= MISSED_AGREEMENT_MIN of the orders delivered by now."""
    delivered = result["delivered"]
    print(
        f"orders {result['truth_orders']}, missing from order_state {result['missing']}, "
        f"of {delivered} delivered: missed_promise agrees on {result['agree']}, delivered "
        f"milestone at the truth's time on {result['delivered_at']}; delivered in the mart "
        f"before the truth {result['delivered_early']}; placed at the truth's time "
        f"{result['placed_at']} of {result['placed']}"
    )
    assert result["truth_orders"] == orders
    assert result["missing"] == 0
    assert result["placed"] == result["placed_at"] == orders
    assert delivered > min_delivered
    assert result["agree"] / delivered >= MISSED_AGREEMENT_MIN
    assert result["delivered_at"] / delivered >= MISSED_AGREEMENT_MIN
    assert result["delivered_early"] <= max_early


@pytest.mark.slow
def test_ground_truth(reference_world: World) -> None:
    result = evaluate(reference_world.warehouse, reference_world.landing)
    # 2,819 delivered on the reference world
    delivered = result["delivered"]
    assert_agrees(
        result, REFERENCE_DAYS * REFERENCE_PER_DAY, 2_000, (1 - MISSED_AGREEMENT_MIN) * delivered
    )


@pytest.mark.slow
def test_rules_catch_observable_failures_without_crying_wolf(reference_world: World) -> None:
    moments = snapshot_moments(reference_world.warehouse, utc_hour=18, days=7)
    assert len(moments) >= 6
    grading = grade_rules(
        reference_world.warehouse, reference_world.landing / "ground_truth.csv", moments
    )
    table = grades_table(grading.grades) + "\n" + secondary_table(grading.secondary)
    print(grading.population, "\n" + table)
    problems = check(grading.grades, REFERENCE) + check_lost(grading.secondary, REFERENCE)
    assert not problems, "\n".join(problems) + "\n" + table


# Worlds this project has never seen: seeds no other file uses (the repository's are 0-14 and
# bench/derive_floors.py's), small enough for about a minute each (simulate + the pipeline job).
UNSEEN_SEEDS = (8761, 8749)
UNSEEN_DAYS, UNSEEN_PER_DAY = 10, 40


@pytest.mark.slow
@pytest.mark.parametrize("seed", UNSEEN_SEEDS)
def test_unseen_world_agrees_with_its_truth(tmp_path: Path, seed: int) -> None:
    world = build_world(tmp_path, days=UNSEEN_DAYS, orders_per_day=UNSEEN_PER_DAY, seed=seed)
    result = evaluate(world.warehouse, world.landing)
    # about half the orders are delivered by the clock of a 10-day world; none may be
    # delivered in the mart before the truth delivers it
    assert_agrees(result, UNSEEN_DAYS * UNSEEN_PER_DAY, UNSEEN_DAYS * UNSEEN_PER_DAY // 4, 0)


# `lost` needs a week of silence after a parcel's last scan, and the suite's demo (seed 5) and
# reference (seed 7) worlds have at most one lost parcel that long silent by their moments
# (REFERENCE: not graded). This world runs three weeks, orders placed every day, on a seed no
# other file uses, picked from the two probed (8893: three lost parcels silent a week by the
# last moment in its truth, 8923: two) before any grade of it was seen (8803, the world the
# scan-gap grading fault was found on, was no candidate). It is graded on `lost`
# alone, with the reference-sized floors (bench/results/rules_floors.json "reference" "lost",
# derived on other seeds): recall at any slack and false alarms, and the share of its flags on
# parcels really lost (a rule firing on any long silence would fail that).
LOST_SEED, LOST_DAYS, LOST_PER_DAY = 8893, 21, 100
LOST = bars("reference", signal_graded=set(), cause_graded=set(), lost_graded=True)
LOST_CAUSE_PRECISION_MIN = 0.9  # flags on parcels lost by the moment (truth cause_lost_parcel_at)


@pytest.mark.slow
def test_lost_parcels_are_caught_a_week_after_their_last_scan(tmp_path: Path) -> None:
    world = build_world(tmp_path, days=LOST_DAYS, orders_per_day=LOST_PER_DAY, seed=LOST_SEED)
    moments = snapshot_moments(world.warehouse, utc_hour=18, days=7)
    assert len(moments) == 7
    grading = grade_rules(world.warehouse, world.landing / "ground_truth.csv", moments)
    table = secondary_table(grading.secondary)
    print(grading.secondary_population, "\n" + table)
    (lost,) = grading.secondary
    assert lost.cause_observable_orders >= 2, table  # graded, not skipped (check_lost too)
    problems = check_lost(grading.secondary, LOST)
    assert not problems, "\n".join(problems) + "\n" + table
    assert (lost.cause_precision or 0.0) >= LOST_CAUSE_PRECISION_MIN, table
    # in the operator's population (promise >= MIN_SLACK_HOURS away) it cries no wolf either
    operator = {g.rule: g for g in grading.grades}["lost"]
    assert operator.false_alarm_rate <= LOST.false_alarm_max["lost"], grades_table(grading.grades)


if __name__ == "__main__":  # dev: python tests/test_ground_truth.py <home>
    home_dir = Path(sys.argv[1])
    res = evaluate(home_dir / "warehouse.duckdb", home_dir / "landing")
    print(res)
    found = grade_rules(
        home_dir / "warehouse.duckdb",
        home_dir / "landing" / "ground_truth.csv",
        snapshot_moments(home_dir / "warehouse.duckdb", utc_hour=18, days=7),
    )
    print(found.population, "\n" + grades_table(found.grades))
