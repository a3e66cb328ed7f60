"""Derive the suite's rule floors and ceilings on worlds no test grades.

`python -m bench.derive_floors [--out bench/results/rules_floors.md]` builds, for each seed of
DEMO_SEEDS, a world the way conftest's `demo_world` does (10 days x 40 orders/day, `orderwatch
simulate` + `orderwatch demo`, the pipeline's grid, every moment graded) and, for each seed of
REFERENCE_SEEDS, one the way conftest's `reference_world` does (14 x 400, the pipeline job,
18:00 UTC moments), grades them with bench/rules_grading.py and writes the observed figures and
the floors derived from them with the margins below, and the floors alone, machine-readable,
beside it (`rules_floors.json`: tests/test_rules_grading.py reads them). These seeds appear
nowhere else in the repository: the test's (5, 7) and the bench's (7, 13) never set their own bars.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import math
import os
import tempfile
from collections.abc import Iterator
from datetime import date
from pathlib import Path
from unittest import mock

from bench.rules_grading import RULES, Grading, grade_rules, snapshot_moments

DEMO_SEEDS = (8117, 8243, 8369)
REFERENCE_SEEDS = (8471, 8597)
DEMO_SIZE, REFERENCE_SIZE = (10, 40), (14, 400)
MIN_OBSERVABLE_ORDERS = 2  # fewer observable orders than this on some seed: not graded
# Margins: a world moves these figures (a handful of observable orders per rule on a demo
# world), so the bars sit below (above) the worst seen, not at it.
MARGIN = 0.10  # recall floors (signal- and cause-observable): lowest seen - 0.10, at most 0.90
FLOOR_CAP = 0.90
ALARM_FACTOR, ALARM_SLACK = 2.0, 0.02  # ceiling: max(2 x highest, highest + 0.02)
STEP = 0.05  # floors round down, ceilings up, to this
OUT = Path(__file__).resolve().parent / "results/rules_floors.md"
FLOORS_JSON = OUT.with_suffix(".json")


def _floor(lowest: float) -> float:
    return max(0.0, min(FLOOR_CAP, _down(lowest - MARGIN)))


def _down(x: float) -> float:
    return round(math.floor(round(x / STEP, 6)) * STEP, 2)


def _up(x: float) -> float:
    return round(math.ceil(round(x / STEP, 6)) * STEP, 2)


@contextlib.contextmanager
def _home_env(home: Path) -> Iterator[None]:
    (home / "dagster").mkdir(parents=True, exist_ok=True)
    home_env = {"ORDERWATCH_HOME": str(home), "DAGSTER_HOME": str(home / "dagster")}
    with mock.patch.dict(os.environ, home_env):  # the whole environment restored on exit
        os.environ.pop("ORDERWATCH_AS_OF", None)
        yield


def demo_grading(home: Path, seed: int) -> Grading:
    """conftest `demo_world` on another seed, graded as tests/test_rules_grading.py grades it."""
    from orderwatch_dagster.cli import main

    days, per_day = DEMO_SIZE
    built = (home / "warehouse.duckdb").exists()
    with _home_env(home), contextlib.redirect_stdout(io.StringIO()):
        if built:
            return _grade_demo(home)
        args = ["simulate", "--days", str(days), "--orders-per-day", str(per_day)]
        assert main([*args, "--seed", str(seed), "--quiet"]) == 0
        assert main(["demo"]) == 0
    return _grade_demo(home)


def _grade_demo(home: Path) -> Grading:
    warehouse = home / "warehouse.duckdb"
    truth = home / "landing" / "ground_truth.csv"
    return grade_rules(warehouse, truth, snapshot_moments(warehouse))


def reference_grading(home: Path, seed: int) -> Grading:
    """conftest `reference_world` on another seed, graded as tests/test_ground_truth.py does."""
    import dagster as dg

    from orderwatch_dagster.definitions import defs
    from orderwatch_dagster.sim import simulate

    days, per_day = REFERENCE_SIZE
    landing = home / "landing"
    warehouse = home / "warehouse.duckdb"
    if warehouse.exists():
        moments = snapshot_moments(warehouse, utc_hour=18, days=7)
        return grade_rules(warehouse, landing / "ground_truth.csv", moments)
    simulate(
        landing,
        seed=seed,
        start=date(2026, 10, 1),
        days=days,
        orders_per_day=per_day,
        clock_file=home / "clock",
    )
    with _home_env(home), dg.instance_for_test() as instance:
        job = defs().resolve_job_def("orderwatch_pipeline_job")
        job.execute_in_process(instance=instance, raise_on_error=True)
    moments = snapshot_moments(warehouse, utc_hour=18, days=7)
    return grade_rules(warehouse, landing / "ground_truth.csv", moments)


def derive(gradings: dict[int, Grading]) -> dict[str, dict[str, float | None]]:
    """Floors and ceilings per rule (and "any rule"), each recall floor from the seeds where
    the figure had at least MIN_OBSERVABLE_ORDERS orders (None: on none of them)."""
    bars: dict[str, dict[str, float | None]] = {}
    for name in [r.name for r in RULES] + ["any rule"]:
        grades = [{g.rule: g for g in gr.grades}[name] for gr in gradings.values()]
        signal = [
            g.signal_recall
            for g in grades
            if (g.signal_observable_orders or 0) >= MIN_OBSERVABLE_ORDERS
        ]
        cause = [
            g.cause_recall for g in grades if g.cause_observable_orders >= MIN_OBSERVABLE_ORDERS
        ]
        alarms = [g.false_alarm_rate or 0.0 for g in grades]
        worst = max(alarms)
        bars[name] = {
            "signal_min": _floor(min(signal)) if signal else None,  # type: ignore[type-var]
            "cause_min": _floor(min(cause)) if cause else None,  # type: ignore[type-var]
            "false_alarm_max": max(STEP, _up(max(worst * ALARM_FACTOR, worst + ALARM_SLACK))),
        }
    return bars


def _fmt(value: float | None) -> str:
    return "–" if value is None else f"{value:.1%}"


def lost_bars(gradings: dict[int, Grading]) -> dict[str, float | None]:
    """`lost` over the open orders at any slack (grade_rules `secondary`)."""
    worst = max((gr.secondary[0].false_alarm_rate or 0.0) for gr in gradings.values())
    found = [
        gr.secondary[0].cause_recall
        for gr in gradings.values()
        if gr.secondary[0].cause_observable_orders >= MIN_OBSERVABLE_ORDERS
    ]
    return {
        "cause_min": _floor(min(found)) if found else None,  # type: ignore[type-var]
        "false_alarm_max": max(STEP, _up(max(worst * ALARM_FACTOR, worst + ALARM_SLACK))),
    }


def report(title: str, gradings: dict[int, Grading]) -> str:
    lines = [f"## {title}: seeds {', '.join(map(str, gradings))}", ""]
    lines.append(
        "| rule | seed | signal-observable recall (orders) | cause-observable recall (orders) "
        "| false alarms |"
    )
    lines.append("|---|---:|---:|---:|---:|")
    for name in [r.name for r in RULES] + ["any rule"]:
        for seed, grading in gradings.items():
            g = {x.rule: x for x in grading.grades}[name]
            lines.append(
                f"| {name} | {seed} | {_fmt(g.signal_recall)} ({g.signal_observable_orders}) | "
                f"{_fmt(g.cause_recall)} ({g.cause_observable_orders}) | "
                f"{_fmt(g.false_alarm_rate)} |"
            )
    for seed, grading in gradings.items():
        (lost,) = grading.secondary
        lines.append(
            f"\n`lost` at any slack, seed {seed}: cause-observable "
            f"{_fmt(lost.cause_recall)} ({lost.cause_observable_orders} orders), false alarms "
            f"{_fmt(lost.false_alarm_rate)}"
        )
    lost = lost_bars(gradings)
    lines.append(
        f"\n`lost` at any slack, derived: cause floor {_fmt(lost['cause_min'])}, false-alarm "
        f"ceiling {_fmt(lost['false_alarm_max'])}"
    )
    lines += ["", "Derived (signal floor, cause floor, false-alarm ceiling; – not graded):", ""]
    for name, bar in derive(gradings).items():
        lines.append(
            f"- {name}: {_fmt(bar['signal_min'])}, {_fmt(bar['cause_min'])}, "
            f"{_fmt(bar['false_alarm_max'])}"
        )
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=OUT)
    parser.add_argument("--skip-reference", action="store_true")
    parser.add_argument(
        "--home", type=Path, help="keep the worlds here; a world already built is only graded"
    )
    args = parser.parse_args(argv)
    sections = [
        "# Rule floors for the suite, derived on unused seeds (bench/derive_floors.py)\n\n"
        f"Margins: signal- and cause-observable floors = min({FLOOR_CAP:g}, lowest − "
        f"{MARGIN:g}), at least 0; false-alarm ceiling = "
        f"max({ALARM_FACTOR:g} × highest, highest + {ALARM_SLACK:g}), at least {STEP:g}; "
        f"floors rounded down, ceilings up, to {STEP:g}; a figure on fewer than "
        f"{MIN_OBSERVABLE_ORDERS} observable orders on some seed is not graded. The floors "
        f"alone: {FLOORS_JSON.name} (the suite reads it).\n"
    ]
    floors: dict[str, object] = {}
    with tempfile.TemporaryDirectory(prefix="ow-floors-") as tmp:
        root = args.home or Path(tmp)
        demo = {s: demo_grading(root / f"demo{s}", s) for s in DEMO_SEEDS}
        sections.append(report(f"demo-sized ({DEMO_SIZE[0]} x {DEMO_SIZE[1]})", demo))
        floors["demo"] = {"seeds": list(demo), "rules": derive(demo), "lost": lost_bars(demo)}
        print(sections[-1], flush=True)
        if not args.skip_reference:
            ref = {s: reference_grading(root / f"ref{s}", s) for s in REFERENCE_SEEDS}
            sections.append(
                report(f"reference-sized ({REFERENCE_SIZE[0]} x {REFERENCE_SIZE[1]})", ref)
            )
            floors["reference"] = {"seeds": list(ref), "rules": derive(ref), "lost": lost_bars(ref)}
            print(sections[-1], flush=True)
    args.out.write_text("\n".join(sections))
    if args.skip_reference and args.out.with_suffix(".json").exists():  # keep the reference's
        kept = json.loads(args.out.with_suffix(".json").read_text()).get("reference")
        if kept is not None:
            floors["reference"] = kept
    args.out.with_suffix(".json").write_text(json.dumps(floors, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
