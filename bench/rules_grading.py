"""Grade the rules the way an operator sees them (bench `rules`, tests/test_rules_grading.py).

At each moment t of a grid (e.g. 15:00 each day of the last week), over the open orders whose
promise is at least `MIN_SLACK_HOURS` away (marts.order_state_snapshots at t: only what was
known then), a rule "flags" an order when `<rule>_occurred` is true at t. Against the
simulator's ground truth (`ground_truth.csv`, read by DuckDB; the pipeline never reads it):
  precision   flagged (order, moment) pairs whose order misses its promise / flagged pairs
  recall      flagged pairs among the pairs whose order misses
  recall (signal-observable)  the same over the misses whose signal the rule reads had shown
              in the feeds at least the rule's threshold before t (truth `onset_<signal>_at`:
              the issue's definition; scan_gap on its own per-order threshold and clock). The
              rule's input is there, so this checks the SQL: a rule bug (a wrong status, a
              threshold off, a future fact) shows here first
  recall (cause-observable)  the same over the misses whose cause this rule watches for had
              begun in the world at least the rule's threshold before t (truth
              `cause_<kind>_at`, sim/truth.py: the stock-out at the site, the storm's
              announcement, the hub going silent, not the feed field the rule reads): what an
              operator running the rule could catch, the feed's delay counted against it;
              thresholds in business hours (no_first_scan) count on the shop calendar
  false alarms  flagged pairs among the orders without any failure (failure_mode 'none')
  lead time   per missed order, hours from the rule's detected_at (first flag) to the breach
              (promised_deliver_by), median over the flagged missed orders
Thresholds come from dbt_project.yml, what each rule watches from `RULES` below; the text of
bench/results/rules.md is generated from both and from the gradings (`method_text`), so it
cannot drift from them. Floors for the suite: bench/derive_floors.py.
"""

from __future__ import annotations

import csv
import functools
import math
import statistics
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import duckdb
import yaml

from orderwatch_dagster.lib.settings import parse_timestamp

DBT_PROJECT = Path(__file__).resolve().parents[1] / "dbt_project" / "dbt_project.yml"
# the seed dbt's int_business_days_enumerated reads (the grader's calendar is built from it)
HOLIDAYS = DBT_PROJECT.parent / "seeds" / "merchant_holidays.csv"
MIN_SLACK_HOURS = 24.0  # the operator's population: open orders whose promise is this far away
# The bench's snapshot grid (bench/run.py passes it to dbt; method_text names it).
BENCH_GRID: dict[str, str] = {"daily_at": "15:00"}
GRADING_DAYS = 7  # the grid's moments of the last this many days before the world's clock


@dataclass(frozen=True)
class Rule:
    """What a rule watches for, in the ground truth's terms (the one table the bench, the
    tests and the text of bench/results/rules.md read)."""

    name: str
    modes: tuple[str, ...]  # ground-truth failure modes (sim/model.py FAILURE_MODES)
    causes: tuple[str, ...]  # cause kinds: truth `cause_<kind>_at` (sim/truth.py CAUSES)
    threshold: Callable[[Mapping[str, object]], float]  # hours, from the dbt vars
    threshold_text: str  # the dbt var(s) and what the hours count from
    # signals the rule reads (truth `onset_<signal>_at`) and the hours after their onset it
    # needs, from the rule's threshold: the signal-observable recall
    feed: Callable[[float], tuple[tuple[str, float], ...]]
    # a truth column the threshold counts from when later than the cause (ship-late: the
    # truth's ship-by, whether or not the order shipped by then)
    anchor: str | None = None
    # a truth column that must be set, at or before the moment, for a miss to count as
    # cause-observable: causes the rule's feed never reports in its terms are left out
    requires: str | None = None
    scope_text: str = ""  # what the cause-observable denominator leaves out, and why
    # "business": the threshold counts business hours of the shop calendar from the cause
    # (int_business_days_enumerated), as the rule counts them; None: elapsed hours
    clock: str | None = None
    # a snapshot column holding the rule's own threshold per order (the signal-observable
    # test reads it, on the carrier clock, instead of the dbt var's floor)
    row_threshold: str | None = None


RULES: tuple[Rule, ...] = (
    Rule(
        "ship_late",
        ("warehouse_backlog", "stock_out", "invalid_address"),
        ("warehouse_backlog", "stock_out", "address_hold"),
        lambda v: float(v["ship_late_grace_hours"]),  # type: ignore[arg-type]
        "`ship_late_grace_hours` after the truth's ship-by (`promised_ship_by`, the end of the "
        "promised ship day at the warehouse), shipped or not",
        lambda h: (("ship_late", h), ("pending_late", 0.0)),
        anchor="promised_ship_by",
        scope_text="nothing: a site cause on an order that still shipped by its ship-by counts "
        "(the rule cannot fire on it, and an operator could not have caught it with this rule)",
    ),
    Rule(
        "fulfillment_hold",
        ("stock_out", "invalid_address"),
        ("stock_out", "address_hold"),
        lambda v: 0.0,
        "none: from the cause (the hold version shows it 10 min to 3 h later)",
        lambda h: (("hold", 0.0),),
        scope_text="nothing",
    ),
    Rule(
        "no_first_scan",
        ("label_never_accepted",),
        ("label_never_accepted",),
        lambda v: float(v["no_first_scan_business_hours"]),  # type: ignore[arg-type]
        "`no_first_scan_business_hours` business hours of the shop calendar after the "
        "hand-over (weekends and holidays do not count, as in the rule)",
        lambda h: (),
        scope_text="nothing (the truth times no signal for it: no signal-observable figure)",
        clock="business",
    ),
    Rule(
        "scan_gap",
        ("scan_gap",),
        ("scan_gap",),
        lambda v: float(v["scan_gap_floor_hours"]),  # type: ignore[arg-type]
        "`scan_gap_floor_hours` (the lane's floor) after the hub outage silenced the parcel; "
        "the signal-observable misses use the rule's own threshold per order "
        "(`scan_gap_threshold_hours`: the greater of the floor and the lane's p95) on the "
        "carrier clock (Sundays and holidays do not count)",
        lambda h: (),  # timed on the truth's scan_gaps instead (_feed_sql)
        scope_text="nothing",
        row_threshold="scan_gap_threshold_hours",
    ),
    Rule(
        "lost",
        ("lost_parcel",),
        ("lost_parcel",),
        lambda v: float(v["lost_after_days"]) * 24.0,  # type: ignore[arg-type]
        "`lost_after_days` × 24 after the parcel's last scan",
        # silence_48h is a parcel's first 48 h silence, not its last: it does not time this rule
        lambda h: (),
        scope_text="nothing (no signal-observable figure, as for no_first_scan)",
    ),
    Rule(
        "carrier_exception",
        ("weather_delay", "failed_delivery", "return_to_sender", "invalid_address"),
        ("weather_delay", "failed_delivery", "return_to_sender", "address_carrier"),
        lambda v: 0.0,
        "none: from the cause (the storm announced, the attempt at the door, the carrier's "
        "address scan at the destination facility)",
        lambda h: (("exception_scan", 0.0),),
        requires="onset_exception_scan_at",
        scope_text="misses whose parcels never get an exception-class scan (a storm delay the "
        "carrier never announces with a weather or delay scan): no rule reads them. A failed "
        "attempt reported only as available_for_pickup counts: the rule reads that EasyPost "
        "status",
    ),
)
BY_NAME: dict[str, Rule] = {rule.name: rule for rule in RULES}
# The secondary population of `lost` (grade_rules `secondary`): its threshold cannot fire
# while a promise is still MIN_SLACK_HOURS away (transit is days, the threshold a week).
SECONDARY_RULES: tuple[str, ...] = ("lost",)


def dbt_vars(project: Path = DBT_PROJECT) -> dict[str, object]:
    return yaml.safe_load(project.read_text())["vars"]


def rule_thresholds(project: Path = DBT_PROJECT) -> dict[str, float]:
    """Hours after a cause began before each rule can fire, from the dbt vars."""
    var = dbt_vars(project)
    return {rule.name: rule.threshold(var) for rule in RULES}


@dataclass(frozen=True)
class CalendarDay:
    is_business_day: bool
    business_day_index: int  # running count of business days up to and including this one
    is_carrier_day: bool
    carrier_day_index: int


@functools.cache
def business_calendar(project: Path = DBT_PROJECT) -> dict[date, CalendarDay]:
    """int_business_days_enumerated, from the same vars and seed (a test holds them equal on
    the demo world): weekends and holidays are not business days, Sundays and holidays not
    carrier days."""
    var = dbt_vars(project)
    with HOLIDAYS.open(newline="") as handle:
        holidays = {date.fromisoformat(r["holiday_date"]) for r in csv.DictReader(handle)}
    day, end = date.fromisoformat(var["calendar_start"]), date.fromisoformat(var["calendar_end"])
    business = carrier = 0
    days: dict[date, CalendarDay] = {}
    while day <= end:
        is_business = day.isoweekday() < 6 and day not in holidays
        is_carrier = day.isoweekday() != 7 and day not in holidays
        business += is_business
        carrier += is_carrier
        days[day] = CalendarDay(is_business, business, is_carrier, carrier)
        day += timedelta(days=1)
    return days


def _shop_zone() -> ZoneInfo:
    return ZoneInfo(str(dbt_vars()["shop_time_zone"]))


def business_clock(moment: datetime) -> float:
    """Business hours of the shop calendar since the calendar's start (dbt's business_clock
    macro, dbt_project/macros/marts.sql): a weekend or holiday stands still at its start."""
    local = moment.astimezone(_shop_zone()).replace(tzinfo=None)
    day = business_calendar()[local.date()]
    if not day.is_business_day:
        return 24.0 * day.business_day_index
    since_midnight = (local - datetime.combine(local.date(), time())).total_seconds() / 3600
    return 24.0 * (day.business_day_index - 1) + since_midnight


def business_clock_instant(clock: float) -> datetime:
    """The instant the business clock reaches `clock` (dbt's business_clock_instant)."""
    index = math.floor(clock / 24.0) + 1
    day = _business_days_by_index()[index]
    local = datetime.combine(day, time()) + timedelta(hours=clock - 24.0 * (index - 1))
    return local.replace(tzinfo=_shop_zone()).astimezone(UTC)


@functools.cache
def _business_days_by_index() -> dict[int, date]:
    return {
        d.business_day_index: day for day, d in business_calendar().items() if d.is_business_day
    }


def _truth_times(row: Mapping[str, str], columns: tuple[str, ...]) -> list[datetime]:
    return [parse_timestamp(row[c]) for c in columns if row.get(c)]


def observable_at(rule: Rule, row: Mapping[str, str], hours: float) -> datetime | None:
    """When the cause `rule` watches for became observable for its threshold, on one
    ground-truth row (None: never). The grader reads these moments (`observable_table`), so
    bench/detection.py and the grades cannot disagree."""
    began = _truth_times(row, tuple(f"cause_{kind}_at" for kind in rule.causes))
    if not began:
        return None
    start = min(began)
    if rule.anchor is not None:
        anchor = _truth_times(row, (rule.anchor,))
        if not anchor:
            return None
        start = max(start, anchor[0])
    if rule.clock == "business":
        moment = business_clock_instant(business_clock(start) + hours)
    else:
        moment = start + timedelta(hours=hours)
    if rule.requires is not None:  # the feed's report of it must have come by then too
        required = _truth_times(row, (rule.requires,))
        if not required:
            return None
        moment = max(moment, required[0])
    return moment


def any_observable_at(row: Mapping[str, str], thresholds: Mapping[str, float]) -> datetime | None:
    """The earliest moment some rule could see its cause (bench/detection.py)."""
    moments = [observable_at(rule, row, thresholds[rule.name]) for rule in RULES]
    found = [m for m in moments if m is not None]
    return min(found) if found else None


def _ts(column: str) -> str:
    return f"coalesce(truth_{column}, 'infinity'::timestamptz)"


def _observable_sql(rule: Rule) -> str:
    """SQL: the moment the rule's cause was observable for its threshold (infinity: never),
    from the column `observable_table` filled with `observable_at`."""
    return _ts(f"observable_{rule.name}_at")


def _feed_sql(rule: Rule, hours: float, table: str) -> str | None:
    """SQL condition on `table`'s rows: the feeds showed the signal the rule reads, for the
    hours it needs, by the moment. A rule with a per-order threshold (`row_threshold`:
    scan_gap) is timed as it counts: some gap between the order's carrier scans (truth
    `scan_gaps`, the temp table `gaps`) lasted more than that threshold (the dbt var where the
    snapshot has none) in carrier hours, counted up to the moment or to the scan that ended
    it: a gap that ended short of the threshold never showed it, however long ago it began."""
    if rule.row_threshold is not None:
        return (
            f"exists (select 1 from gaps as g where g.order_id = {table}.order_id"
            f" and g.gap_start < {table}.as_of"
            f" and carrier_clock(least({table}.as_of, coalesce(g.gap_end, {table}.as_of)))"
            f" - carrier_clock(g.gap_start) > coalesce({table}.{rule.row_threshold}, {hours}))"
        )
    moments = [f"({_ts(f'onset_{s}_at')} + {h} * interval 1 hour)" for s, h in rule.feed(hours)]
    if not moments:
        return None
    latest = moments[0] if len(moments) == 1 else f"least({', '.join(moments)})"
    return f"{latest} <= as_of"


def observable_table(
    con: duckdb.DuckDBPyConnection, thresholds: Mapping[str, float], table: str = "truth"
) -> None:
    """Temp table `observable` (order_id, observable_<rule>_at): observable_at on every row of
    the truth table."""
    cursor = con.execute(f"select * from {table}")
    names = [d[0] for d in cursor.description]
    rows = [dict(zip(names, r, strict=True)) for r in cursor.fetchall()]
    columns = ", ".join(f"observable_{rule.name}_at timestamptz" for rule in RULES)
    con.execute(f"create or replace temp table observable (order_id bigint, {columns})")
    con.executemany(
        f"insert into observable values ({', '.join('?' * (len(RULES) + 1))})",
        [
            [int(row["order_id"])]
            + [observable_at(rule, row, thresholds[rule.name]) for rule in RULES]
            for row in rows
        ],
    )


def gaps_table(con: duckdb.DuckDBPyConnection) -> None:
    """Temp table `gaps` (order_id, gap_start, gap_end): the truth's `scan_gaps`, one row per
    gap (gap_end null while it lasts)."""
    con.execute(
        """
        create or replace temp table gaps as
        select cast(order_id as bigint) as order_id,
               cast(split_part(gap, '/', 1) as timestamptz) as gap_start,
               cast(nullif(split_part(gap, '/', 2), '') as timestamptz) as gap_end
        from (select order_id, unnest(string_split(scan_gaps, ' ')) as gap
              from truth where coalesce(scan_gaps, '') <> '')
        """
    )


def calendar_table(con: duckdb.DuckDBPyConnection) -> None:
    """`business_calendar` as a temp table and the carrier clock over it as a SQL macro
    (dbt's carrier_clock, dbt_project/macros/marts.sql)."""
    con.execute(
        "create or replace temp table grading_calendar (calendar_date date,"
        " is_carrier_day boolean, carrier_day_index integer)"
    )
    con.executemany(
        "insert into grading_calendar values (?, ?, ?)",
        [[day, d.is_carrier_day, d.carrier_day_index] for day, d in business_calendar().items()],
    )
    zone = str(dbt_vars()["shop_time_zone"])
    local = f"(ts at time zone '{zone}')"
    con.execute(
        f"""
        create or replace temp macro carrier_clock(ts) as (
            select 24.0 * (carrier_day_index - case when is_carrier_day then 1 else 0 end)
                + case when is_carrier_day
                    then epoch({local} - cast(calendar_date as timestamp)) / 3600.0
                    else 0 end
            from grading_calendar where calendar_date = cast({local} as date)
        )
        """
    )


@dataclass(frozen=True)
class RuleGrade:
    rule: str
    flagged: int
    true_flags: int
    missed_pairs: int
    caught_missed: int
    signal_observable: int | None  # None: the rule reads no signal the truth times
    caught_signal_observable: int | None
    signal_observable_orders: int | None  # distinct orders among those pairs
    cause_observable: int
    caught_cause_observable: int
    cause_observable_orders: int
    clean_pairs: int
    clean_flagged: int
    cause_flags: int  # flagged pairs whose order had met one of the rule's causes by then
    median_lead_hours: float | None
    lead_orders: int

    @property
    def precision(self) -> float | None:
        return self.true_flags / self.flagged if self.flagged else None

    @property
    def recall(self) -> float | None:
        return self.caught_missed / self.missed_pairs if self.missed_pairs else None

    @property
    def signal_recall(self) -> float | None:
        if not self.signal_observable or self.caught_signal_observable is None:
            return None
        return self.caught_signal_observable / self.signal_observable

    @property
    def cause_recall(self) -> float | None:
        if not self.cause_observable:
            return None
        return self.caught_cause_observable / self.cause_observable

    @property
    def false_alarm_rate(self) -> float | None:
        return self.clean_flagged / self.clean_pairs if self.clean_pairs else None

    @property
    def cause_precision(self) -> float | None:
        return self.cause_flags / self.flagged if self.flagged else None


@dataclass(frozen=True)
class Grading:
    grades: list[RuleGrade]  # every rule and "any rule", over the operator's population
    population: dict[str, int]
    secondary: list[RuleGrade]  # SECONDARY_RULES over the open orders at any slack
    secondary_population: dict[str, int]


def _load_truth(con: duckdb.DuckDBPyConnection, ground_truth: Path) -> list[str]:
    con.execute(
        "create or replace temp table truth as select * from read_csv(?, header = true,"
        " all_varchar = true)",
        [str(ground_truth)],
    )
    return [r[0] for r in con.execute("select column_name from (describe truth)").fetchall()]


def grade_rules(
    warehouse: Path,
    ground_truth: Path,
    moments: list[datetime],
    min_slack_hours: float = MIN_SLACK_HOURS,
    snapshots: str = "marts.order_state_snapshots",
) -> Grading:
    """Grades of every rule (and of 'any rule') over the snapshot rows at `moments`."""
    thresholds = rule_thresholds()
    con = duckdb.connect(str(warehouse), read_only=True)
    try:
        con.execute("SET TimeZone = 'UTC'")
        truth_columns = _load_truth(con, ground_truth)
        missing = [f"cause_{k}_at" for r in RULES for k in r.causes]
        missing += [c for r in RULES for c in (r.anchor, r.requires) if c]
        missing += ["scan_gaps"]
        missing = sorted(set(missing) - set(truth_columns))
        if missing:  # a world simulated before the truth had cause onsets
            raise ValueError(f"{ground_truth} lacks {', '.join(missing)}: simulate it again")
        observable_table(con, thresholds)
        calendar_table(con)
        gaps_table(con)
        con.execute("create temp table moments (as_of timestamptz)")
        con.executemany("insert into moments values (?)", [[m] for m in moments])
        timed = "".join(
            f", cast(nullif(t.{c}, '') as timestamptz) as truth_{c}"
            for c in truth_columns
            if c.startswith(("onset_", "cause_")) or c == "promised_ship_by"
        )
        observed = ", ".join(
            f"o.observable_{rule.name}_at as truth_observable_{rule.name}_at" for rule in RULES
        )
        con.execute(
            f"""
            create temp table open_pairs as
            select s.*, cast(t.missed_promise as boolean) as truth_missed, t.failure_mode
                   {timed}, {observed}
            from {snapshots} as s
            inner join moments using (as_of)
            inner join truth as t on cast(t.order_id as bigint) = s.order_id
            inner join observable as o on o.order_id = s.order_id
            where s.is_open
            """
        )
        con.execute(
            "create temp view population as select * from open_pairs"
            f" where promised_deliver_by >= as_of + {float(min_slack_hours)} * interval 1 hour"
        )
        grades = [_grade(con, "population", rule, thresholds) for rule in RULES]
        grades.append(_grade_any(con, "population", thresholds))
        secondary = [_grade(con, "open_pairs", BY_NAME[r], thresholds) for r in SECONDARY_RULES]
        return Grading(
            grades,
            _population(con, "population"),
            secondary,
            _population(con, "open_pairs"),
        )
    finally:
        con.close()


def snapshot_moments(
    warehouse: Path, utc_hour: int | None = None, days: int | None = None
) -> list[datetime]:
    """The distinct moments of marts.order_state_snapshots (only those at `utc_hour`, and of
    the last `days` days of the grid, when given): the suite's grading grids."""
    where = []
    if utc_hour is not None:
        where.append(f"extract(hour from as_of) = {int(utc_hour)}")
    if days is not None:
        where.append(
            "as_of >= (select max(as_of) from marts.order_state_snapshots)"
            f" - {int(days)} * interval 1 day"
        )
    clause = f" where {' and '.join(where)}" if where else ""
    with duckdb.connect(str(warehouse), read_only=True) as con:
        con.execute("SET TimeZone = 'UTC'")
        return [
            m
            for (m,) in con.execute(
                f"select distinct as_of from marts.order_state_snapshots{clause} order by 1"
            ).fetchall()
        ]


def _population(con: duckdb.DuckDBPyConnection, table: str) -> dict[str, int]:
    pairs, orders, missed, moments, past = con.execute(
        f"""
        select count(*), count(distinct order_id), count(*) filter (where truth_missed),
               count(distinct as_of), count(*) filter (where promised_deliver_by < as_of)
        from {table}
        """
    ).fetchone()
    return {
        "pairs": pairs,
        "orders": orders,
        "missed_pairs": missed,
        "moments": moments,
        "past_promise_pairs": past,
    }


def _flag(rule: Rule) -> str:
    return f"coalesce({rule.name}_occurred, false)"


def _caused(rule: Rule) -> str:
    return " or ".join(f"truth_cause_{kind}_at <= as_of" for kind in rule.causes)


def _grade(
    con: duckdb.DuckDBPyConnection, table: str, rule: Rule, thresholds: Mapping[str, float]
) -> RuleGrade:
    hours = thresholds[rule.name]
    feed = _feed_sql(rule, hours, table)
    return _grade_expr(
        con,
        table,
        rule.name,
        _flag(rule),
        f"truth_missed and {feed}" if feed else None,
        f"truth_missed and {_observable_sql(rule)} <= as_of",
        f"({_caused(rule)})",
        f"{rule.name}_detected_at",
    )


def _grade_any(
    con: duckdb.DuckDBPyConnection, table: str, thresholds: Mapping[str, float]
) -> RuleGrade:
    flag = " or ".join(_flag(rule) for rule in RULES)
    observable = " or ".join(
        f"(truth_missed and {_observable_sql(rule)} <= as_of)" for rule in RULES
    )
    feeds = [_feed_sql(rule, thresholds[rule.name], table) for rule in RULES]
    feed = " or ".join(f"(truth_missed and {sql})" for sql in feeds if sql)
    caused = " or ".join(f"({_caused(rule)})" for rule in RULES)
    detected = (
        "least("
        + ", ".join(f"coalesce({r.name}_detected_at, 'infinity'::timestamptz)" for r in RULES)
        + ")"
    )
    return _grade_expr(
        con, table, "any rule", f"({flag})", f"({feed})", f"({observable})", f"({caused})", detected
    )


def _grade_expr(
    con: duckdb.DuckDBPyConnection,
    table: str,
    name: str,
    flag: str,
    signal_observable: str | None,
    cause_observable: str,
    caused: str,
    detected: str,
) -> RuleGrade:
    signal = signal_observable or "false"
    row = con.execute(
        f"""
        select
            count(*) filter (where {flag}),
            count(*) filter (where {flag} and truth_missed),
            count(*) filter (where truth_missed),
            count(*) filter (where truth_missed and {flag}),
            count(*) filter (where {signal}),
            count(*) filter (where ({signal}) and {flag}),
            count(distinct order_id) filter (where {signal}),
            count(*) filter (where {cause_observable}),
            count(*) filter (where ({cause_observable}) and {flag}),
            count(distinct order_id) filter (where {cause_observable}),
            count(*) filter (where failure_mode = 'none'),
            count(*) filter (where failure_mode = 'none' and {flag}),
            count(*) filter (where {flag} and coalesce({caused}, false))
        from {table}
        """
    ).fetchone()
    leads = [
        hours
        for (hours,) in con.execute(
            f"""
            select epoch(min(promised_deliver_by) - min({detected})) / 3600.0
            from {table}
            where truth_missed and {flag}
            group by order_id
            """
        ).fetchall()
        if hours is not None
    ]
    counts = list(row)
    if signal_observable is None:
        counts[4] = counts[5] = counts[6] = None
    return RuleGrade(name, *counts, statistics.median(leads) if leads else None, len(leads))


def _pct(value: float | None) -> str:
    return "–" if value is None else f"{value:.1%}"


def _ratio(value: float | None, part: int | None, whole: int | None) -> str:
    if part is None or whole is None:
        return "–"
    return f"{_pct(value)} ({part:,}/{whole:,})"


def _lead(grade: RuleGrade) -> str:
    return "–" if grade.median_lead_hours is None else f"{grade.median_lead_hours:.1f}"


def grades_table(grades: list[RuleGrade]) -> str:
    lines = [
        "| rule | flagged | precision | recall (all misses) | recall (signal-observable: "
        "signal shown ≥ threshold before) | recall (cause-observable: cause began ≥ "
        "threshold before) | false alarms (failure-free) | median lead h | missed orders "
        "flagged |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for g in grades:
        lines.append(
            f"| {g.rule} | {g.flagged:,} | {_pct(g.precision)} | "
            f"{_ratio(g.recall, g.caught_missed, g.missed_pairs)} | "
            f"{_ratio(g.signal_recall, g.caught_signal_observable, g.signal_observable)} | "
            f"{_ratio(g.cause_recall, g.caught_cause_observable, g.cause_observable)} | "
            f"{_ratio(g.false_alarm_rate, g.clean_flagged, g.clean_pairs)} | {_lead(g)} | "
            f"{g.lead_orders:,} |"
        )
    return "\n".join(lines)


def secondary_table(grades: list[RuleGrade]) -> str:
    lines = [
        "| rule | flagged | precision (order misses) | flags on a real cause (truth: lost) | "
        "recall (cause-observable: cause began ≥ threshold before) | false alarms "
        "(failure-free) | median lead h (negative: after the breach) | missed orders flagged |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for g in grades:
        lines.append(
            f"| {g.rule} | {g.flagged:,} | {_pct(g.precision)} | "
            f"{_ratio(g.cause_precision, g.cause_flags, g.flagged)} | "
            f"{_ratio(g.cause_recall, g.caught_cause_observable, g.cause_observable)} | "
            f"{_ratio(g.false_alarm_rate, g.clean_flagged, g.clean_pairs)} | {_lead(g)} | "
            f"{g.lead_orders:,} |"
        )
    return "\n".join(lines)


def rules_table(project: Path = DBT_PROJECT) -> str:
    """What each rule watches, from `RULES` and the dbt vars."""
    thresholds = rule_thresholds(project)
    lines = [
        "| rule | failure modes it watches | cause onsets (truth `cause_<kind>_at`) | threshold "
        "| left out of the cause-observable misses | signals it reads (truth "
        "`onset_<signal>_at` + h: the signal-observable misses) |",
        "|---|---|---|---|---|---|",
    ]
    for rule in RULES:
        hours = thresholds[rule.name]
        feed = ", ".join(f"{s} + {h:g} h" for s, h in rule.feed(hours)) or "– (none timed)"
        if rule.row_threshold is not None:
            feed = (
                f"a gap of truth `scan_gaps` longer than `{rule.row_threshold}` carrier hours "
                "by the moment (or by the scan that ended it)"
            )
        lines.append(
            f"| {rule.name} | {', '.join(rule.modes)} | {', '.join(rule.causes)} | "
            f"{hours:g} h: {rule.threshold_text} | {rule.scope_text} | {feed} |"
        )
    return "\n".join(lines)


def _extreme(values: list[tuple[int, float | None]], pick: Callable[..., float]) -> str:
    found = [(seed, v) for seed, v in values if v is not None]
    if not found:
        return "–"
    seed, value = pick(found, key=lambda sv: sv[1])
    return f"{value:.1%} (seed {seed})"


def findings_text(gradings: Mapping[int, Grading]) -> str:
    """The claims of bench/results/rules.md that depend on the figures, computed from them."""
    lines = []
    for rule in [*RULES]:
        signal = [
            (seed, {g.rule: g for g in grading.grades}[rule.name].signal_recall)
            for seed, grading in gradings.items()
        ]
        cause = [
            (seed, {g.rule: g for g in grading.grades}[rule.name].cause_recall)
            for seed, grading in gradings.items()
        ]
        lines.append(
            f"- {rule.name}: signal-observable recall at least {_extreme(signal, min)}, "
            f"cause-observable at least {_extreme(cause, min)}."
        )
    lost = [({g.rule: g for g in gr.grades}["lost"], seed) for seed, gr in gradings.items()]
    flagged = sum(g.flagged for g, _ in lost)
    observable = sum(g.cause_observable for g, _ in lost)
    lines.append(
        f"- `lost` in the operator's population (promise ≥ {MIN_SLACK_HOURS:g} h away), all "
        f"seeds: {flagged:,} flagged pairs, {observable:,} cause-observable misses"
        + (
            ": its threshold outlasts the parcels still that far from their promise, so it is "
            "graded again per seed over the open orders at any slack (the second table: most "
            "pairs past their promise, so precision against the miss says little; the table "
            "adds the share of its flags on parcels really lost by then)."
            if not observable
            else "; it is also graded over the open orders at any slack (the second table)."
        )
    )
    lines.append(
        "- `lost`'s recall needs a week of silence after a parcel's last scan: the suite's "
        "demo world (10 × 40, seed 5) and reference world (14 × 400, seed 7) have fewer than "
        "two cause-observable lost parcels even at any slack (tests/test_rules_grading.py "
        "asserts that count, and only the false-alarm ceiling there); the suite grades its "
        "recall, and the share of its flags on really lost parcels, at any slack on a "
        "three-week world (tests/test_ground_truth.py, 21 × 100, seed 8893, with the "
        "reference-sized floor of bench/results/rules_floors.json)."
    )
    return "\n".join(lines) + "\n"


def method_text(
    days: int,
    per_day: int,
    gradings: Mapping[int, Grading],
    project: Path = DBT_PROJECT,
) -> str:
    """The header of bench/results/rules.md, from the same constants, config and figures as
    the code and the tables."""
    var = dbt_vars(project)
    grid = ", ".join(f"{k}: {v!r}" for k, v in BENCH_GRID.items())
    return (
        f"World: {days} days × {per_day:,} orders/day, seeds "
        f"{', '.join(map(str, gradings))}: one simulation call writing every version each "
        "vendor showed, ingested once at the world's end (a tracker's first version updated "
        "more than `live_poll_max_lag_hours` = "
        f"{var['live_poll_max_lag_hours']} h before its load counts as a backfill: its scans "
        "are known from their own time). The dbt models run with the snapshot grid "
        f"`{{{grid}}}` in `shop_time_zone` = {var['shop_time_zone']} (the pipeline's default "
        f"is `{var['snapshot_grid']}`). At each grid moment of the last {GRADING_DAYS} days, "
        f"over the open orders whose promise is ≥ {MIN_SLACK_HOURS:g} h away, from "
        "`marts.order_state_snapshots` (only facts with known_at ≤ the moment), a rule flags "
        "an order when `<rule>_occurred`.\n\n"
        "- Precision: flagged pairs whose order misses its promise.\n"
        "- Recall (all misses): flagged share of the pairs whose order misses.\n"
        "- Recall (signal-observable): the same over the misses whose signal the rule reads "
        "had shown in the feeds at least the rule's threshold before the moment (ground truth "
        "`onset_<signal>_at`). The rule's input was there, so this checks the SQL: a rule bug "
        "shows here first.\n"
        "- Recall (cause-observable): the same over the misses one of whose causes this rule "
        "watches for had begun in the world at least the rule's threshold before the moment "
        "(ground truth `cause_<kind>_at`: a stock-out when the site got the order, a storm "
        "when announced, a hub when it went silent, the carrier's address scan at the "
        "destination facility; not when a feed showed it). This is what an operator running "
        "the rule could catch: the feed's delay, and causes that reach the feed late, count "
        "against the rule.\n"
        "- False alarms: flagged share of the pairs of failure-free orders.\n"
        "- Lead time: hours from the rule's detected_at to the breach, median over the missed "
        "orders it flagged.\n\n"
        "Thresholds are read from `dbt_project/dbt_project.yml`; what each rule watches is "
        "`RULES` in bench/rules_grading.py (this text and table are generated from both):\n\n"
        + rules_table(project)
        + "\n\nFrom the figures below (lowest over the seeds):\n\n"
        + findings_text(gradings)
    )
