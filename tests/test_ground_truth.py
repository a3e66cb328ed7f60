"""Detection quality against the simulator's ground truth (30 days x 1000 orders/day, seed 7).

The world is simulated, ingested and built by the code location's own pipeline job (conftest's
session fixture `world_30x1000`); then order_state is compared with `ground_truth.csv`: every
order present, missed_promise right for >= 99 % of the orders delivered by now, and every
injected failure mode caught by its rule for >= 90 % of its orders whose onset is at least the
rule's threshold before now. The per-mode recall table is printed (`pytest -s` shows it).
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path

import duckdb
import pytest
from conftest import World

MISSED_AGREEMENT_MIN = 0.99
RECALL_MIN = 0.90

# failure mode -> (rule flag in order_state, extra condition, threshold before "now")
# Thresholds mirror the dbt vars' defaults (dbt_project.yml); scan_gap uses the lane threshold
# the model computed for the order (order_state.scan_gap_threshold_hours).
MODE_RULES: dict[str, tuple[str, str]] = {
    "warehouse_backlog": ("ship_late", "ship_late_occurred"),
    "stock_out": (
        "fulfillment_hold(inventory)",
        "fulfillment_hold_occurred and fulfillment_hold_category = 'inventory'",
    ),
    "invalid_address": (
        "fulfillment_hold(address) | carrier address_issue",
        "(fulfillment_hold_occurred and fulfillment_hold_category = 'address')"
        " or (carrier_exception_occurred and carrier_exception_reason"
        " in ('address_issue', 'address_correction'))",
    ),
    "label_never_accepted": ("no_first_scan", "no_first_scan_occurred"),
    "scan_gap": ("scan_gap", "scan_gap_occurred"),
    "lost_parcel": ("lost", "lost_occurred"),
    "weather_delay": ("carrier_exception", "carrier_exception_occurred"),
    "failed_delivery": ("carrier_exception", "carrier_exception_occurred"),
    "return_to_sender": ("carrier_exception", "carrier_exception_occurred"),
}
MODE_THRESHOLD_HOURS: dict[str, str] = {
    "warehouse_backlog": "0",
    "stock_out": "0",
    "invalid_address": "0",
    "label_never_accepted": "24",  # var no_first_scan_business_hours
    "scan_gap": "coalesce(scan_gap_threshold_hours, 36)",  # lane p95, floor var 36
    "lost_parcel": "168",  # var lost_after_days = 7
    "weather_delay": "0",
    "failed_delivery": "0",
    "return_to_sender": "0",
}


@dataclass
class ModeRecall:
    mode: str
    rule: str
    eligible: int
    caught: int

    @property
    def recall(self) -> float:
        return self.caught / self.eligible if self.eligible else 1.0


def load_truth(con: duckdb.DuckDBPyConnection, landing: Path) -> None:
    con.execute(
        "create or replace temp table truth as select order_id, missed_promise, failure_mode,"
        " failure_onset_at, actual_delivery_at, promised_deliver_by"
        " from read_csv(?, header = true, all_varchar = false, types = {"
        "'order_id': 'BIGINT', 'missed_promise': 'BOOLEAN', 'failure_mode': 'VARCHAR',"
        " 'failure_onset_at': 'TIMESTAMPTZ', 'actual_delivery_at': 'TIMESTAMPTZ',"
        " 'promised_deliver_by': 'TIMESTAMPTZ'})",
        [str(landing / "ground_truth.csv")],
    )


def mode_recalls(con: duckdb.DuckDBPyConnection) -> list[ModeRecall]:
    out = []
    for mode, (rule, condition) in MODE_RULES.items():
        threshold = MODE_THRESHOLD_HOURS[mode]
        eligible, caught = con.execute(
            f"""
            select count(*), count(*) filter (where coalesce({condition}, false))
            from truth join marts.order_state using (order_id)
            where truth.failure_mode = ?
              and truth.failure_onset_at + ({threshold}) * interval 1 hour <= order_state.as_of
            """,
            [mode],
        ).fetchone()
        out.append(ModeRecall(mode, rule, eligible, caught))
    return out


def print_recall_table(recalls: list[ModeRecall]) -> str:
    lines = [f"{'failure mode':<22} {'rule':<50} {'eligible':>8} {'caught':>7} {'recall':>7}"]
    for r in recalls:
        lines.append(f"{r.mode:<22} {r.rule:<50} {r.eligible:>8} {r.caught:>7} {r.recall:>7.1%}")
    table = "\n".join(lines)
    print(table)
    return table


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
        recalls = mode_recalls(con)
    finally:
        con.close()
    return {
        "truth_orders": truth_orders,
        "missing": missing,
        "delivered": delivered,
        "agree": agree,
        "recalls": recalls,
    }


@pytest.mark.slow
def test_ground_truth(world_30x1000: World) -> None:
    result = evaluate(world_30x1000.warehouse, world_30x1000.landing)
    recalls: list[ModeRecall] = result["recalls"]  # type: ignore[assignment]
    table = print_recall_table(recalls)
    agreement = result["agree"] / result["delivered"]  # type: ignore[operator]
    print(
        f"orders {result['truth_orders']}, missing from order_state {result['missing']}, "
        f"missed_promise agreement on {result['delivered']} delivered: {agreement:.2%}"
    )
    assert result["truth_orders"] > 25_000
    assert result["missing"] == 0
    assert result["delivered"] > 10_000
    assert agreement >= MISSED_AGREEMENT_MIN
    for r in recalls:
        assert r.eligible > 0, f"no eligible orders for {r.mode}\n{table}"
        assert r.recall >= RECALL_MIN, f"{r.mode} recall {r.recall:.1%}\n{table}"


if __name__ == "__main__":  # dev: python tests/test_ground_truth.py <home>
    home_dir = Path(sys.argv[1])
    res = evaluate(home_dir / "warehouse.duckdb", home_dir / "landing")
    print_recall_table(res["recalls"])  # type: ignore[arg-type]
    print({k: v for k, v in res.items() if k != "recalls"})
