"""Detection quality against the simulator's ground truth (30 days x 1000 orders/day, seed 7).

The world is simulated, ingested through the real ingest assets and built with `dbt build`
(fixture `world_30x1000`); then order_state is compared with `ground_truth.csv`:
every order present, missed_promise right for >= 99 % of the orders delivered by now, and every
injected failure mode caught by its rule for >= 90 % of its orders whose onset is at least the
rule's threshold before now. The per-mode recall table is printed (`pytest -s` shows it).
"""

from __future__ import annotations

import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import duckdb
import pytest

ROOT = Path(__file__).resolve().parents[1]
DBT_DIR = ROOT / "dbt_project"
BIN = ROOT / ".venv" / "bin"
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


def run(cmd: list[str], env: dict[str, str], cwd: Path = ROOT) -> None:
    done = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=3600)
    if done.returncode != 0:
        raise RuntimeError(f"{cmd[:3]} failed:\n{done.stdout[-4000:]}\n{done.stderr[-4000:]}")


def build_world(home: Path, days: int, orders_per_day: int, seed: int = 7) -> tuple[Path, Path]:
    """Simulate into home/landing, ingest with the real assets, `dbt build` as of the sim clock."""
    landing = home / "landing"
    warehouse = home / "warehouse.duckdb"
    env = {
        **os.environ,
        "ORDERWATCH_HOME": str(home),
        "ORDERWATCH_WAREHOUSE": str(warehouse),
        "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}",
        "DBT_TARGET_PATH": str(home / "dbt_target"),
        "DBT_LOG_PATH": str(home / "dbt_logs"),
    }
    env.pop("ORDERWATCH_AS_OF", None)
    sim = [str(BIN / "python"), "-m", "orderwatch_dagster.sim", "--days", str(days)]
    sim += ["--orders-per-day", str(orders_per_day), "--seed", str(seed)]
    run([*sim, "--out", str(landing), "--quiet"], env)
    ingest = (
        "import dagster as dg\n"
        "from orderwatch_dagster.lib.settings import FEED_FOLDERS\n"
        "from orderwatch_dagster.defs.ingest.factory import build_ingest_asset\n"
        "from orderwatch_dagster.defs.ingest.connector import default_connectors\n"
        "from orderwatch_dagster.defs.resources import DuckDBWarehouse\n"
        f"result = dg.materialize([build_ingest_asset(f) for f in FEED_FOLDERS], resources={{"
        f"'warehouse': DuckDBWarehouse(path={str(warehouse)!r}), **default_connectors()}})\n"
        "assert result.success\n"
    )
    run([str(BIN / "python"), "-c", ingest], env)
    as_of = (home / "clock").read_text().strip()
    dbt = [str(BIN / "dbt"), "build", "--profiles-dir", str(DBT_DIR), "--project-dir", str(DBT_DIR)]
    run([*dbt, "--vars", f"{{as_of: '{as_of}'}}"], env, cwd=DBT_DIR)
    return landing, warehouse


@pytest.fixture(scope="session")
def world_30x1000(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, Path]:
    """(home, landing, warehouse) after simulate + ingest + dbt build (swap for conftest's)."""
    home = tmp_path_factory.mktemp("world_30x1000")
    landing, warehouse = build_world(home, days=30, orders_per_day=1000)
    return home, landing, warehouse


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
def test_ground_truth(world_30x1000: tuple[Path, Path, Path]) -> None:
    _home, landing, warehouse = world_30x1000
    result = evaluate(warehouse, landing)
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
