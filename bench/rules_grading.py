"""Grade the rules the way an operator sees them (bench `rules`, tests/test_ground_truth.py).

At each moment t of a grid (e.g. 15:00 each day of the last week), over the open orders whose
promise is at least 24 h away (marts.order_state_snapshots at t: only what was known then), a
rule "flags" an order when `<rule>_occurred` is true at t. Against the simulator's ground truth
(`ground_truth.csv`, read by DuckDB; the model never reads it):
  precision   flagged (order, moment) pairs whose order misses its promise / flagged pairs
  recall      flagged pairs among the pairs whose order misses
  observable recall  the same over the misses whose failure this rule watches for was already
              observable at t: the onset of the signal it watches (ground truth
              `onset_<signal>_at`, rule_signals below) + the rule's own threshold <= t; a rule
              without a signal of its own: `failure_onset_at` of its failure modes
  false alarms  flagged pairs among the orders without any failure (failure_mode 'none')
  lead time   per missed order, hours from the rule's detected_at (first flag) to the breach
              (promised_deliver_by), median over the flagged missed orders
Thresholds come from dbt_project.yml, never copied here.
"""

from __future__ import annotations

import statistics
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import duckdb
import yaml

DBT_PROJECT = Path(__file__).resolve().parents[1] / "dbt_project" / "dbt_project.yml"

# rule -> failure modes of the ground truth it watches for (a rule flags symptoms; the ground
# truth names causes). promise_missed is the outcome itself, not an early warning: not graded.
RULE_MODES: dict[str, tuple[str, ...]] = {
    "ship_late": ("warehouse_backlog",),
    "fulfillment_hold": ("stock_out", "invalid_address"),
    "no_first_scan": ("label_never_accepted",),
    "scan_gap": ("scan_gap",),
    "lost": ("lost_parcel",),
    "carrier_exception": (
        "weather_delay",
        "failed_delivery",
        "return_to_sender",
        "invalid_address",
    ),
}


# rule -> (ground-truth signal, hours after the signal's onset the rule needs): the simulator's
# per-signal onsets (`onset_<signal>_at`: when the signal could first be seen in the feeds).
# silence_48h starts after 48 h without a scan: the scan-gap floor is below that, lost needs
# lost_after_days in all. A rule without a signal of its own falls back to failure_onset_at.
def rule_signals(project: Path = DBT_PROJECT) -> dict[str, list[tuple[str, float]]]:
    thresholds = rule_thresholds(project)
    return {
        "ship_late": [("ship_late", thresholds["ship_late"]), ("pending_late", 0.0)],
        "fulfillment_hold": [("hold", 0.0)],
        "scan_gap": [("silence_48h", max(thresholds["scan_gap"] - 48.0, 0.0))],
        "lost": [("silence_48h", thresholds["lost"] - 48.0)],
        "carrier_exception": [("exception_scan", 0.0)],
    }


def rule_thresholds(project: Path = DBT_PROJECT) -> dict[str, float]:
    """Hours after a failure's onset before each rule can fire, from the dbt vars.

    Business-hour thresholds are read as elapsed hours (a weekend can delay the rule past this:
    the observable set is, if anything, generous to the rules)."""
    var = yaml.safe_load(project.read_text())["vars"]
    return {
        "ship_late": float(var["ship_late_grace_hours"]),
        "fulfillment_hold": 0.0,
        "no_first_scan": float(var["no_first_scan_business_hours"]),
        "scan_gap": float(var["scan_gap_floor_hours"]),
        "lost": float(var["lost_after_days"]) * 24.0,
        "carrier_exception": 0.0,
    }


@dataclass(frozen=True)
class RuleGrade:
    rule: str
    flagged: int
    true_flags: int
    missed_pairs: int
    caught_missed: int
    observable: int
    caught_observable: int
    clean_pairs: int
    clean_flagged: int
    median_lead_hours: float | None
    lead_orders: int

    @property
    def precision(self) -> float | None:
        return self.true_flags / self.flagged if self.flagged else None

    @property
    def recall(self) -> float | None:
        return self.caught_missed / self.missed_pairs if self.missed_pairs else None

    @property
    def observable_recall(self) -> float | None:
        return self.caught_observable / self.observable if self.observable else None

    @property
    def false_alarm_rate(self) -> float | None:
        return self.clean_flagged / self.clean_pairs if self.clean_pairs else None


def _load_truth(con: duckdb.DuckDBPyConnection, ground_truth: Path) -> list[str]:
    con.execute(
        "create or replace temp table truth as select * from read_csv(?, header = true,"
        " all_varchar = true)",
        [str(ground_truth)],
    )
    return [r[0] for r in con.execute("select column_name from (describe truth)").fetchall()]


def grade_rules(
    warehouse: Path, ground_truth: Path, moments: list[datetime], min_slack_hours: float = 24.0
) -> tuple[list[RuleGrade], dict[str, int]]:
    """Grades of every rule (and of 'any rule') over the snapshot rows at `moments`."""
    thresholds = rule_thresholds()
    con = duckdb.connect(str(warehouse), read_only=True)
    try:
        con.execute("SET TimeZone = 'UTC'")
        truth_columns = _load_truth(con, ground_truth)
        con.execute("create temp table moments (as_of timestamptz)")
        con.executemany("insert into moments values (?)", [[m] for m in moments])
        onset_columns = "".join(
            f", cast(nullif(t.{c}, '') as timestamptz) as truth_{c}"
            for c in truth_columns
            if c.startswith("onset_")
        )
        con.execute(
            f"""
            create temp table population as
            select s.*, cast(t.missed_promise as boolean) as truth_missed, t.failure_mode,
                   cast(nullif(t.failure_onset_at, '') as timestamptz) as failure_onset_at
                   {onset_columns}
            from marts.order_state_snapshots as s
            inner join moments using (as_of)
            inner join truth as t on cast(t.order_id as bigint) = s.order_id
            where s.is_open
              and s.promised_deliver_by >= s.as_of + {min_slack_hours} * interval 1 hour
            """
        )
        population = {
            "pairs": con.execute("select count(*) from population").fetchone()[0],
            "orders": con.execute("select count(distinct order_id) from population").fetchone()[0],
            "missed_pairs": con.execute(
                "select count(*) from population where truth_missed"
            ).fetchone()[0],
            "moments": con.execute("select count(distinct as_of) from population").fetchone()[0],
        }
        grades = [_grade(con, rule, thresholds[rule], truth_columns) for rule in RULE_MODES]
        grades.append(_grade_any(con, truth_columns, thresholds))
    finally:
        con.close()
    return grades, population


def _observable_at(rule: str, threshold: float, truth_columns: list[str]) -> str:
    """When the failure this rule watches for became observable for its threshold (SQL)."""
    signals = [
        (signal, hours)
        for signal, hours in rule_signals().get(rule, [])
        if f"onset_{signal}_at" in truth_columns
    ]
    if signals:
        moments = [
            f"coalesce(truth_onset_{signal}_at + {hours} * interval 1 hour,"
            " 'infinity'::timestamptz)"
            for signal, hours in signals
        ]
        return moments[0] if len(moments) == 1 else f"least({', '.join(moments)})"
    modes = ", ".join(f"'{m}'" for m in RULE_MODES[rule])
    return (
        f"(case when failure_mode in ({modes}) then failure_onset_at end)"
        f" + {threshold} * interval 1 hour"
    )


def _grade(
    con: duckdb.DuckDBPyConnection, rule: str, threshold: float, truth_columns: list[str]
) -> RuleGrade:
    flag = f"coalesce({rule}_occurred, false)"
    observable = f"truth_missed and {_observable_at(rule, threshold, truth_columns)} <= as_of"
    return _grade_expr(con, rule, flag, observable, f"{rule}_detected_at")


def _grade_any(
    con: duckdb.DuckDBPyConnection, truth_columns: list[str], thresholds: dict[str, float]
) -> RuleGrade:
    flag = " or ".join(f"coalesce({rule}_occurred, false)" for rule in RULE_MODES)
    observable = " or ".join(
        f"(truth_missed and {_observable_at(rule, thresholds[rule], truth_columns)} <= as_of)"
        for rule in RULE_MODES
    )
    detected = (
        "least("
        + ", ".join(f"coalesce({rule}_detected_at, 'infinity'::timestamptz)" for rule in RULE_MODES)
        + ")"
    )
    return _grade_expr(con, "any rule", f"({flag})", f"({observable})", detected)


def _grade_expr(
    con: duckdb.DuckDBPyConnection, name: str, flag: str, observable: str, detected: str
) -> RuleGrade:
    row = con.execute(
        f"""
        select
            count(*) filter (where {flag}),
            count(*) filter (where {flag} and truth_missed),
            count(*) filter (where truth_missed),
            count(*) filter (where truth_missed and {flag}),
            count(*) filter (where {observable}),
            count(*) filter (where ({observable}) and {flag}),
            count(*) filter (where failure_mode = 'none'),
            count(*) filter (where failure_mode = 'none' and {flag})
        from population
        """
    ).fetchone()
    leads = [
        hours
        for (hours,) in con.execute(
            f"""
            select epoch(min(promised_deliver_by) - min({detected})) / 3600.0
            from population
            where truth_missed and {flag}
            group by order_id
            """
        ).fetchall()
        if hours is not None
    ]
    return RuleGrade(name, *row, statistics.median(leads) if leads else None, len(leads))


def _pct(value: float | None) -> str:
    return "–" if value is None else f"{value:.1%}"


def grades_table(grades: list[RuleGrade]) -> str:
    lines = [
        "| rule | flagged | precision | recall (all misses) | recall (observable) | "
        "false alarms (failure-free) | median lead h | missed orders flagged |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for g in grades:
        lead = "–" if g.median_lead_hours is None else f"{g.median_lead_hours:.1f}"
        lines.append(
            f"| {g.rule} | {g.flagged:,} | {_pct(g.precision)} | {_pct(g.recall)} "
            f"({g.caught_missed:,}/{g.missed_pairs:,}) | {_pct(g.observable_recall)} "
            f"({g.caught_observable:,}/{g.observable:,}) | {_pct(g.false_alarm_rate)} "
            f"({g.clean_flagged:,}/{g.clean_pairs:,}) | {lead} | {g.lead_orders:,} |"
        )
    return "\n".join(lines)
