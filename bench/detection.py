"""`make bench BENCH_ARGS="--only detection"`: how many observable misses `marts.order_exceptions`
catches, at what precision, evaluated the way an operator sees it.

The world is the rules bench's (bench/run.py `_rules_world`: the as-of layer on a daily 15:00
shop-time grid). The exception table is folded over that grid, oldest moment first, with the
asset's own step (defs/exceptions/assets.py `exceptions_at`: the snapshot slice at the moment
and the risk scores with `scored_at` <= the moment), so nothing known later leaks in. At each
moment of the last 7 days, over the orders open then whose promise is at least 24 h away, an
(order, moment) pair is *flagged* when the order has an open exception at that moment.
Against the simulator's ground truth (`ground_truth.csv`; the pipeline never reads it):
  precision     flagged pairs whose order misses its promise / flagged pairs
  recall (all)  flagged share of the pairs whose order misses
  recall (observable)  the same over the misses whose failure was observable at the moment: a
                cause some rule watches for had begun in the world at least that rule's
                threshold before it (ground truth `cause_<kind>_at`; bench/rules_grading.py
                defines them, the "any rule" row of bench/results/rules.md)
  false alarms  flagged share of the pairs of failure-free orders (failure_mode 'none')
  lead time     per missed order flagged in the week, hours from the first grid moment it had an
                open exception to its breach (promised_deliver_by), median
Rules only: no risk scores. With the model: ml.train fits on the same world's snapshots (the
holdout is the last 7 days, so nothing of the graded week is learnt) and ml.predict's
`score_open_orders` scores every moment of the week, written to `marts.order_risk_scores`.
"""

from __future__ import annotations

import csv
import functools
import statistics
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from bench.rules_grading import any_observable_at, rule_thresholds
from orderwatch_dagster.defs.exceptions.assets import exceptions_at
from orderwatch_dagster.defs.resources import DuckDBWarehouse
from orderwatch_dagster.lib.policy import Policy, load_policy
from orderwatch_dagster.lib.warehouse_session import WarehouseSession

MIN_LEAD = timedelta(hours=24)
WEEK = timedelta(days=7)
ANY = "order_exceptions (any type)"


@dataclass(frozen=True)
class Truth:
    missed: bool
    clean: bool  # no failure at all (failure_mode 'none')
    observable_at: datetime | None  # the earliest moment some rule could see its failure


def observable_at(row: Mapping[str, str]) -> datetime | None:
    """The earliest moment some rule's cause had begun at least that rule's threshold before
    (bench/rules_grading.py `any_observable_at`, the "any rule" row of its table)."""
    return any_observable_at(row, _thresholds())


@functools.cache
def _thresholds() -> dict[str, float]:
    return rule_thresholds()


def read_truth(path: Path) -> dict[int, Truth]:
    with path.open() as handle:
        return {
            int(row["order_id"]): Truth(
                missed=str(row["missed_promise"]).lower() == "true",
                clean=row["failure_mode"] == "none",
                observable_at=observable_at(row),
            )
            for row in csv.DictReader(handle)
        }


@dataclass
class Counts:
    """One scorer's tallies over the (order, moment) pairs."""

    flagged: int = 0
    flagged_missed: int = 0
    missed: int = 0
    caught_missed: int = 0
    observable: int = 0
    caught_observable: int = 0
    clean: int = 0
    clean_flagged: int = 0
    leads: dict[Any, float] = field(default_factory=dict)  # missed order -> lead hours

    def add(self, truth: Truth, as_of: datetime, hit: bool) -> None:
        seen = truth.missed and truth.observable_at is not None and truth.observable_at <= as_of
        self.flagged += hit
        self.flagged_missed += hit and truth.missed
        self.missed += truth.missed
        self.caught_missed += hit and truth.missed
        self.observable += seen
        self.caught_observable += hit and seen
        self.clean += truth.clean
        self.clean_flagged += hit and truth.clean

    @property
    def precision(self) -> float | None:
        return self.flagged_missed / self.flagged if self.flagged else None

    @property
    def recall(self) -> float | None:
        return self.caught_missed / self.missed if self.missed else None

    @property
    def observable_recall(self) -> float | None:
        return self.caught_observable / self.observable if self.observable else None

    @property
    def false_alarms(self) -> float | None:
        return self.clean_flagged / self.clean if self.clean else None

    @property
    def median_lead(self) -> float | None:
        return statistics.median(self.leads.values()) if self.leads else None


@dataclass
class Result:
    moments: list[datetime]
    pairs: int
    orders: int
    counts: dict[str, Counts]  # by exception type, and ANY
    episodes: int
    without_order_id_or_name: int
    scored: bool
    notes: list[str] = field(default_factory=list)


def grade_moment(
    as_of: datetime,
    states: Iterable[Mapping[str, Any]],
    open_types: Mapping[Any, set[str]],
    first_open: Mapping[Any, datetime],
    truth: Mapping[int, Truth],
    counts: dict[str, Counts],
    types: Sequence[str],
) -> set[Any]:
    """Add one moment's eligible pairs to `counts`; returns the eligible orders."""
    eligible = set()
    for state in states:
        deadline = state.get("promised_deliver_by")
        if not state.get("is_open") or deadline is None or deadline - as_of < MIN_LEAD:
            continue
        order = state["order_id"]
        row = truth.get(int(order))
        if row is None:
            continue
        eligible.add(order)
        flagged = open_types.get(order, set())
        for name in (*types, ANY):
            hit = bool(flagged) if name == ANY else name in flagged
            counts[name].add(row, as_of, hit)
            if hit and row.missed and order not in counts[name].leads:
                counts[name].leads[order] = (deadline - first_open[order]).total_seconds() / 3600
    return eligible


def grid(session: WarehouseSession, clock: datetime) -> list[datetime]:
    return [
        m
        for (m,) in session.query(
            "select distinct as_of from marts.order_state_snapshots"
            f" where as_of < {session.p} order by 1",
            [clock],
        )
    ]


def fold(
    session: WarehouseSession, clock: datetime, truth: Mapping[int, Truth], policy: Policy
) -> Result:
    """The exception table folded over the grid, graded at each moment of the last week."""
    from orderwatch_dagster.lib.policy import EXCEPTION_TYPES

    moments = grid(session, clock)
    week = [m for m in moments if m >= clock - WEEK]
    counts = {name: Counts() for name in (*EXCEPTION_TYPES, ANY)}
    table: list[dict[str, Any]] = []
    first_open: dict[Any, datetime] = {}
    orders: set[Any] = set()
    pairs = 0
    scored = False
    for moment in moments:
        step = exceptions_at(session, moment, policy, table)
        table = step.rows
        scored = scored or step.scores_used
        open_types: dict[Any, set[str]] = defaultdict(set)
        for row in table:
            if row["ended_at"] is None:
                open_types[row["order_id"]].add(row["exception_type"])
                first_open.setdefault(row["order_id"], moment)
        if moment in week:
            eligible = grade_moment(
                moment, step.states, open_types, first_open, truth, counts, EXCEPTION_TYPES
            )
            orders |= eligible
            pairs += len(eligible)
    unnamed = sum(1 for r in table if r["order_id"] is None or not r["order_name"])
    return Result(week, pairs, len(orders), counts, len(table), unnamed, scored)


def score_week(warehouse: Path, clock: datetime) -> tuple[Any, list[str]]:
    """Train on the world (ml.train; its holdout is the graded week) and score the week, one
    scoring per grid moment, as the live scorer would have (the rows of
    marts.order_risk_scores, or None at a cold start), with a note."""
    import duckdb
    import pandas as pd

    from ml.predict import score_open_orders
    from ml.registry import version_name
    from ml.train import ColdStart, TrainConfig, train, training_set

    with duckdb.connect(str(warehouse), read_only=True) as con:
        con.execute("SET TimeZone = 'UTC'")
        snapshots = con.execute(
            "select * from marts.order_state_snapshots where as_of < ?", [clock]
        ).df()
    snapshots["as_of"] = pd.to_datetime(snapshots["as_of"], utc=True)
    now = pd.Timestamp(clock)
    try:
        result = train(training_set(snapshots, now), now, TrainConfig(seed=0))
    except ColdStart as error:
        return None, [f"No model: {error}."]
    model = result["model"]
    version = version_name(model)
    week_start = now - pd.Timedelta(WEEK)
    frames = [
        score_open_orders(model, version, snapshots[snapshots["as_of"] == m], m)
        for m in sorted(snapshots["as_of"].unique())
        if m >= week_start
    ]
    scores = pd.concat(frames, ignore_index=True)
    ap = result["report"].get("model", {}).get("average_precision")
    ap_text = "–" if ap is None else f"{ap:.3f}"
    return scores, [
        f"Model {version} (ml.train on this world; holdout AP {ap_text}, its own threshold "
        f"{model.threshold:.2f}): {len(scores):,} scores over {len(frames)} moments."
    ]


def _write_scores(session: WarehouseSession, scores: Any) -> None:
    from orderwatch_dagster.lib.tables import insert_rows

    columns = ("order_id", "model_version", "scored_at", "probability", "reasons")
    session.execute(
        "create table marts.order_risk_scores (order_id bigint, model_version varchar,"
        " scored_at timestamptz, probability double, reasons varchar)"
    )
    rows = [
        [int(r.order_id), r.model_version, r.scored_at.to_pydatetime(), float(r.probability),
         r.reasons]
        for r in scores.itertuples()
    ]  # fmt: skip
    insert_rows(session, "marts.order_risk_scores", columns, rows)


def grade_world(home: Path, clock: datetime, with_model: bool) -> Result:
    """Fold and grade one world; `with_model` trains and scores first (else no scores)."""
    warehouse = home / "warehouse.duckdb"
    truth = read_truth(home / "landing" / "ground_truth.csv")
    policy = load_policy()
    scores, notes = score_week(warehouse, clock) if with_model else (None, [])
    # the read-only connection above is closed before the session opens (DuckDB refuses two
    # configurations of one file in a process)
    with DuckDBWarehouse(path=str(warehouse)).connect() as session:
        session.execute("drop table if exists marts.order_risk_scores")
        if scores is not None:
            _write_scores(session, scores)
        result = fold(session, clock, truth, policy)
    result.notes += notes
    return result


def _pct(value: float | None) -> str:
    return "–" if value is None else f"{value:.1%}"


def table(result: Result) -> str:
    lines = [
        "| exception type | flagged | precision | recall (all misses) | recall (observable) | "
        "false alarms (failure-free) | median lead h | missed orders flagged |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for name, c in result.counts.items():
        if not c.flagged and name != ANY:
            continue
        lead = "–" if c.median_lead is None else f"{c.median_lead:.0f}"
        label = f"**{name}**" if name == ANY else name
        lines.append(
            f"| {label} | {c.flagged:,} | {_pct(c.precision)} | {_pct(c.recall)} "
            f"({c.caught_missed:,}/{c.missed:,}) | {_pct(c.observable_recall)} "
            f"({c.caught_observable:,}/{c.observable:,}) | {_pct(c.false_alarms)} "
            f"({c.clean_flagged:,}/{c.clean:,}) | {lead} | {len(c.leads):,} |"
        )
    return "\n".join(lines)


def section(seed: int, kind: str, result: Result) -> str:
    c = result.counts[ANY]
    moments = result.moments
    return (
        f"### seed {seed}, {kind}\n\n"
        f"{len(moments)} moments ({moments[0]:%Y-%m-%d} .. {moments[-1]:%Y-%m-%d}), "
        f"{result.pairs:,} (open order, moment) pairs over {result.orders:,} orders; "
        f"{result.episodes:,} episodes in the folded table, "
        f"{result.without_order_id_or_name} without a Shopify order id or name. "
        + " ".join(result.notes)
        + f"\n\n**Observable recall {_pct(c.observable_recall)} at precision "
        f"{_pct(c.precision)}** (target ≥ 80 % at ≥ 40 %).\n\n" + table(result) + "\n"
    )


def summary_row(seed: int, kind: str, result: Result) -> str:
    c = result.counts[ANY]
    return (
        f"| {seed} | {kind} | {_pct(c.observable_recall)} | {_pct(c.precision)} | "
        f"{_pct(c.recall)} | {_pct(c.false_alarms)} | "
        f"{'–' if c.median_lead is None else f'{c.median_lead:.0f}'} |"
    )


def report(sections: list[str], summary: list[str], world: str) -> str:
    head = (
        "# Detection: observable misses caught by marts.order_exceptions\n\n"
        + __doc__.split("\n\n", 1)[1].strip()
        + f"\n\nWorld: {world}. Policy: orderwatch_dagster/defs/actions/policy.yaml "
        f"v{load_policy().version} (its `detection` section decides which rule flags open an "
        "exception); tuned on seed 7 only.\n\n"
    )
    return (
        head + "| seed | scorer | recall (observable) | precision | recall (all) | false alarms "
        "| median lead h |\n|---:|---|---:|---:|---:|---:|---:|\n"
        + "\n".join(summary)
        + "\n\n"
        + "\n".join(sections)
    )
