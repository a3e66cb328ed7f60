"""Detection quality against the simulator's ground truth, on conftest's reference world.

The world (conftest `reference_world`: 14 days x 400 orders/day, seed 7) is simulated, ingested
and built by the code location's own pipeline job, once per session; then order_state is
compared with `ground_truth.csv`: every order present, missed_promise right for >= 99 % of the
orders delivered by now; and the rules graded as an operator sees them
(bench/rules_grading.py): at several moments, over open orders whose promise is >= 24 h away, a
recall floor on the failures observable for each rule's own threshold and a false-alarm ceiling
on failure-free orders. The table is printed (`pytest -s` shows it); the full figures (30 days
x 1000 orders/day, seeds 7 and 13) are `make bench` section `rules` (bench/results/rules.md).
"""

from __future__ import annotations

import sys
from datetime import datetime
from pathlib import Path

import duckdb
import pytest
from conftest import REFERENCE_DAYS, REFERENCE_PER_DAY, World

from bench.rules_grading import grade_rules, grades_table

MISSED_AGREEMENT_MIN = 0.99
# Floors and ceilings per rule, graded as an operator sees it (bench/rules_grading.py): at 18:00
# UTC each day of the last week, over open orders whose promise is >= 24 h away. Set with a
# margin from the figures on this reference world (seed 7, 14 x 400; the comments: observable
# recall with its count, false alarms over 14,993 failure-free pairs): a floor and a ceiling,
# not the target. Seed 13 and the 30 x 1000 worlds: bench/results/rules.md.
OBSERVABLE_RECALL_MIN: dict[str, float] = {
    "ship_late": 0.90,  # 100 % (237 of 237)
    "fulfillment_hold": 0.90,  # 100 % (222 of 222)
    "no_first_scan": 0.60,  # 80.0 % (12 of 15)
    "scan_gap": 0.35,  # 50.0 % (34 of 68)
    "carrier_exception": 0.90,  # 100 % (37 of 37)
    # lost: no lost parcel observable in the last week (0 of 0): not asserted
}
FALSE_ALARM_MAX: dict[str, float] = {
    "ship_late": 0.20,  # 9.9 % (the world's late-shipping look-alikes)
    "fulfillment_hold": 0.06,  # 2.8 %
    "no_first_scan": 0.07,  # 3.5 %
    "scan_gap": 0.03,  # 0.9 %
    "lost": 0.01,  # 0.0 %
    "carrier_exception": 0.03,  # 1.2 %
}


def grading_moments(warehouse: Path) -> list[datetime]:
    """The snapshot grid's 18:00 UTC moments of the last 7 days before the world's clock."""
    with duckdb.connect(str(warehouse), read_only=True) as con:
        con.execute("SET TimeZone = 'UTC'")
        return [
            m
            for (m,) in con.execute(
                "select as_of from intermediate.int_snapshot_grid"
                " where extract(hour from as_of) = 18"
                " and as_of >= (select max(as_of) from intermediate.int_snapshot_grid)"
                " - interval 7 day"
                " order by 1"
            ).fetchall()
        ]


def load_truth(con: duckdb.DuckDBPyConnection, landing: Path) -> None:
    con.execute(
        "create or replace temp table truth as select order_id, missed_promise,"
        " actual_delivery_at from read_csv(?, header = true, all_varchar = false, types = {"
        "'order_id': 'BIGINT', 'missed_promise': 'BOOLEAN', 'actual_delivery_at': 'TIMESTAMPTZ'})",
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
        delivered, agree = con.execute(
            """
            select count(*), count(*) filter (where truth.missed_promise = s.missed_promise)
            from truth join marts.order_state s using (order_id)
            where truth.actual_delivery_at <= s.as_of
            """
        ).fetchone()
    finally:
        con.close()
    return {
        "truth_orders": truth_orders,
        "missing": missing,
        "delivered": delivered,
        "agree": agree,
    }


@pytest.mark.slow
def test_ground_truth(reference_world: World) -> None:
    result = evaluate(reference_world.warehouse, reference_world.landing)
    agreement = result["agree"] / result["delivered"]  # type: ignore[operator]
    print(
        f"orders {result['truth_orders']}, missing from order_state {result['missing']}, "
        f"missed_promise agreement on {result['delivered']} delivered: {agreement:.2%}"
    )
    assert result["truth_orders"] == REFERENCE_DAYS * REFERENCE_PER_DAY
    assert result["missing"] == 0
    assert result["delivered"] > 2_000  # 2,819 on the reference world
    assert agreement >= MISSED_AGREEMENT_MIN


@pytest.mark.slow
def test_rules_catch_observable_failures_without_crying_wolf(reference_world: World) -> None:
    moments = grading_moments(reference_world.warehouse)
    assert len(moments) >= 6
    grades, population = grade_rules(
        reference_world.warehouse, reference_world.landing / "ground_truth.csv", moments
    )
    table = grades_table(grades)
    print(population, "\n" + table)
    by_rule = {g.rule: g for g in grades}
    for rule, floor in OBSERVABLE_RECALL_MIN.items():
        grade = by_rule[rule]
        assert grade.observable > 0, f"no observable failure for {rule}\n{table}"
        assert grade.observable_recall >= floor, f"{rule} observable recall\n{table}"
    for rule, ceiling in FALSE_ALARM_MAX.items():
        grade = by_rule[rule]
        assert grade.clean_pairs > 0, f"no failure-free order for {rule}\n{table}"
        assert grade.false_alarm_rate <= ceiling, f"{rule} false alarms\n{table}"


if __name__ == "__main__":  # dev: python tests/test_ground_truth.py <home>
    home_dir = Path(sys.argv[1])
    res = evaluate(home_dir / "warehouse.duckdb", home_dir / "landing")
    print(res)
    found, pop = grade_rules(
        home_dir / "warehouse.duckdb",
        home_dir / "landing" / "ground_truth.csv",
        grading_moments(home_dir / "warehouse.duckdb"),
    )
    print(pop, "\n" + grades_table(found))
