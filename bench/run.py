"""`make bench`: throughput and memory figures, printed and written to bench/results/*.md.

A benchmark, not a test: it measures, it does not assert targets.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

from bench.measure import Measurement, run_measured
from bench.model import bench_model
from bench.rules_grading import Grading

RESULTS = Path(__file__).resolve().parent / "results"
PY = sys.executable


def _machine() -> str:
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return f"{os.cpu_count()} cores, {cpu}, Python {platform.python_version()}"


def _commit() -> str:
    """The code measured: main's commit, and whether the working tree differed from it."""
    root = Path(__file__).resolve().parents[1]
    try:
        head = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], cwd=root, capture_output=True, text=True
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=root,
            capture_output=True,
            text=True,
        ).stdout.strip()
    except OSError:
        return "an unknown commit (no git)"
    return f"{head or 'an unknown commit'}{' with uncommitted changes' if dirty else ''}"


def _load() -> str:
    """The 1-minute load average: other work on the cores slows every figure down."""
    return f"{os.getloadavg()[0]:.1f}"


def _du_mb(path: Path) -> float:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file()) / 1e6


def simulate(home: Path, days: int, per_day: int, extra: list[str] | None = None) -> Measurement:
    args = [PY, "-m", "orderwatch_dagster.sim", "--days", str(days), "--orders-per-day"]
    args += [str(per_day), "--seed", "7", "--out", str(home / "landing"), "--quiet"]
    return run_measured(args + (extra or []), env={"ORDERWATCH_HOME": str(home)})


def stage(home: Path, *args: str) -> tuple[Measurement, dict[str, object]]:
    measured = run_measured([PY, "-m", "bench.stage", *args], env={"ORDERWATCH_HOME": str(home)})
    return measured, json.loads(measured.output.strip().splitlines()[-1])


def bench_ingest(sizes: list[int], sim_rss_orders: int, worlds: list[Path]) -> str:
    from bench.ingest import measure_world, report

    figures, notes = [], []
    for world in worlds:  # landing folders written elsewhere
        figures.append(measure_world(str(world), world))
        print(figures[-1].row(), flush=True)
    for orders in [] if worlds else sizes:
        days = 10
        per_day = orders // days
        with tempfile.TemporaryDirectory(prefix="ow-bench-") as tmp:
            home = Path(tmp)
            sim = simulate(home, days, per_day)
            figures.append(measure_world(f"simulated {days}×{per_day:,}, seed 7", home / "landing"))
            print(figures[-1].row(), flush=True)
            notes.append(
                f"Simulating {days * per_day:,} orders: {sim.seconds:.1f} s, "
                f"peak RSS {sim.peak_rss_mb:,.0f} MB."
            )
    if sim_rss_orders:
        days = 30
        per_day = -(-sim_rss_orders // days)
        with tempfile.TemporaryDirectory(prefix="ow-bench-1m-") as tmp:
            sim = simulate(Path(tmp), days, per_day)
            landing_mb = _du_mb(Path(tmp) / "landing")
        notes.append(
            f"Simulator at {days * per_day:,} orders ({days} days × {per_day:,}/day): "
            f"**peak RSS {sim.peak_rss_mb:,.0f} MB** (target ≤ 2,048 MB), {sim.seconds:.0f} s "
            f"({days * per_day / sim.seconds:,.0f} orders/s), {landing_mb:,.0f} MB of pages."
        )
    return report(figures, notes)


DBT_TARGET = Path(__file__).resolve().parents[1] / "dbt_project" / "target"


def _latest_dbt_invocation() -> Path:
    """dagster-dbt gives each invocation its own target dir; the newest holds run_results.json."""
    runs = [
        p for p in DBT_TARGET.glob("orderwatch_dbt_models-*") if (p / "run_results.json").exists()
    ]
    return max(runs, key=lambda p: (p / "run_results.json").stat().st_mtime)


def _straight_sql_seconds(warehouse: Path, invocation: Path) -> tuple[float, int]:
    """Run each model's compiled SELECT as CREATE OR REPLACE in DuckDB, in dbt's run order."""
    import duckdb

    manifest = json.loads((DBT_TARGET / "manifest.json").read_text())["nodes"]
    results = json.loads((invocation / "run_results.json").read_text())["results"]
    models = [r["unique_id"] for r in results if r["unique_id"].startswith("model.")]
    seconds = 0.0
    with duckdb.connect(str(warehouse)) as con:
        con.execute("SET TimeZone = 'UTC'")
        for unique_id in models:
            node = manifest[unique_id]
            compiled = invocation / "compiled" / node["package_name"] / node["original_file_path"]
            kind = "view" if node["config"]["materialized"] == "view" else "table"
            sql = f'create or replace {kind} "{node["schema"]}"."{node["alias"]}" as\n'
            sql += compiled.read_text()
            began = time.perf_counter()
            con.execute(sql)
            seconds += time.perf_counter() - began
    return seconds, len(models)


def _query_one(warehouse: Path, sql: str) -> object:
    import duckdb

    with duckdb.connect(str(warehouse), read_only=True) as con:
        return con.execute(sql).fetchone()[0]


def bench_dbt(days: int, per_day: int) -> str:
    with tempfile.TemporaryDirectory(prefix="ow-bench-dbt-") as tmp:
        home = Path(tmp)
        warehouse = home / "warehouse.duckdb"
        simulate(home, days, per_day)
        stage(home, "ingest")
        full, full_result = stage(home, "dbt", "--full-refresh")
        full_invocation = _latest_dbt_invocation()
        orders = _query_one(warehouse, "select count(*) from marts.order_state")
        watermark = _query_one(
            warehouse, "select max(source_ingested_at) from marts.fct_order_milestones"
        )
        clock = (home / "clock").read_text().strip()
        until = datetime.fromisoformat(clock.replace("Z", "+00:00")) + timedelta(hours=1)
        hour = simulate(home, days, per_day, ["--until", until.isoformat()])
        _, ingest_result = stage(home, "ingest")
        incr, incr_result = stage(home, "dbt")
        touched = _query_one(
            warehouse,
            "select count(distinct order_id) from marts.fct_order_milestones"
            f" where source_ingested_at > timestamptz '{watermark.isoformat()}'",
        )
        sql_seconds, model_count = _straight_sql_seconds(warehouse, full_invocation)
    ratio = float(full_result["seconds"]) / sql_seconds
    incr_share = float(incr_result["seconds"]) / float(full_result["seconds"])
    return (
        "# dbt: full refresh vs one simulated hour incremental\n\n"
        f"World: {days} days × {per_day:,} orders/day, seed 7 ({orders:,} orders in order_state). "
        "`dbt build` (models + data tests + unit tests) through Dagster (`orderwatch_dbt_models`, "
        "in-process executor, DuckDB).\n\n"
        "| run | Dagster+dbt wall s | stage process s | stage peak RSS MB |\n|---|---:|---:|---:|\n"
        f"| full refresh | {full_result['seconds']:.1f} | {full.seconds:.1f} | "
        f"{full.peak_rss_mb:,.0f} |\n"
        f"| incremental after +1 h ({ingest_result['rows_loaded']:,} new record versions) | "
        f"{incr_result['seconds']:.1f} | {incr.seconds:.1f} | {incr.peak_rss_mb:,.0f} |\n\n"
        f"Incremental / full wall time: **{incr_share:.2f}**. Orders recomputed by the "
        f"incremental `fct_order_milestones`: **{touched:,} of {orders:,}** "
        f"({touched / orders:.1%}); the simulated hour itself took {hour.seconds:.1f} s.\n\n"
        f"The same {model_count} models' compiled SQL run straight in DuckDB (CREATE OR REPLACE, "
        f"dbt's order, no tests): {sql_seconds:.1f} s. Ratio of Dagster+dbt full build to straight "
        f"SQL: **{ratio:.1f}×** (the difference is dbt's tests, its start-up and per-node "
        "overhead, and Dagster's event handling).\n"
    )


def bench_world(seeds: list[int], days: int, per_day: int) -> str:
    from bench import world

    results = {}
    for seed in seeds:
        with tempfile.TemporaryDirectory(prefix="ow-bench-world-") as tmp:
            args = [PY, "-m", "orderwatch_dagster.sim", "--days", str(days), "--orders-per-day"]
            args += [str(per_day), "--seed", str(seed), "--out", f"{tmp}/landing", "--quiet"]
            sim = run_measured(args, env={"ORDERWATCH_HOME": tmp})
            results[seed] = world.evaluate(Path(tmp) / "landing")
            print(f"world seed {seed}: simulated in {sim.seconds:.0f} s", flush=True)
    return world.report(results, days, per_day)


DBT_DIR = Path(__file__).resolve().parents[1] / "dbt_project"


def _rules_world(
    home: Path, seed: int, days: int, per_day: int, keep_build: bool
) -> tuple[Measurement, datetime]:
    """Simulate + ingest once per home (kept when --rules-home is given), then the dbt models
    with the as-of layer on a 15:00-local daily grid."""
    import subprocess

    if not (home / "landing" / "simulation.json").exists():
        args = [PY, "-m", "orderwatch_dagster.sim", "--days", str(days), "--orders-per-day"]
        args += [str(per_day), "--seed", str(seed), "--out", str(home / "landing"), "--quiet"]
        run_measured(args, env={"ORDERWATCH_HOME": str(home)})
    if not (home / "ingested").exists():
        stage(home, "ingest")
        (home / "ingested").write_text("ok\n")
    clock = (home / "clock").read_text().strip()
    env = {**os.environ, "ORDERWATCH_HOME": str(home)}
    dbt = [str(Path(PY).with_name("dbt")), "--quiet"]
    common = ["--project-dir", str(DBT_DIR), "--profiles-dir", str(DBT_DIR)]
    common += ["--target-path", str(home / "dbt_target")]
    subprocess.run([*dbt, "seed", *common], env=env, check=True)
    from bench.rules_grading import BENCH_GRID

    grid = {"as_of": clock, "snapshot_grid": BENCH_GRID}
    built = home / "dbt_built.json"  # a kept home keeps its build (same code: delete to redo)
    if built.exists():
        seconds, peak = json.loads(built.read_text())
        measured = Measurement(seconds=seconds, peak_rss_mb=peak, output="")
    else:
        measured = run_measured(
            [*dbt, "run", *common, "--full-refresh", "--vars", json.dumps(grid)],
            env={"ORDERWATCH_HOME": str(home)},
        )
        if keep_build:
            built.write_text(json.dumps([measured.seconds, measured.peak_rss_mb]))
    return measured, datetime.fromisoformat(clock.replace("Z", "+00:00"))


def rules_moments(warehouse: Path, clock: datetime) -> list[datetime]:
    """The snapshot grid's moments of the GRADING_DAYS days before the world's clock."""
    import duckdb

    from bench.rules_grading import GRADING_DAYS

    with duckdb.connect(str(warehouse), read_only=True) as con:
        con.execute("SET TimeZone = 'UTC'")
        return [
            m
            for (m,) in con.execute(
                "select as_of from intermediate.int_snapshot_grid"
                " where as_of < ? and as_of >= ? - ? * interval 1 day order by 1",
                [clock, clock, GRADING_DAYS],
            ).fetchall()
        ]


def rules_section(
    seed: int, warehouse: Path, truth: Path, moments: list[datetime]
) -> tuple[str, Grading]:
    """One seed's tables of bench/results/rules.md (bench/rules_grading.py), and its grading."""
    from bench.rules_grading import dbt_vars, grade_rules, grades_table, secondary_table

    grading = grade_rules(warehouse, truth, moments)
    population, secondary = grading.population, grading.secondary_population
    zone = ZoneInfo(str(dbt_vars()["shop_time_zone"]))
    local = [m.astimezone(zone) for m in moments]
    hours = sorted({f"{m:%H:%M}" for m in local})
    days = len({m.date() for m in local})
    text = (
        f"## seed {seed}\n\n"
        f"Moments: {population['moments']} ({', '.join(hours)} {zone.key} on {days} days, "
        f"{local[0]:%Y-%m-%d} .. {local[-1]:%Y-%m-%d}); population: "
        f"{population['pairs']:,} (open order, moment) pairs over {population['orders']:,} "
        f"orders, {population['missed_pairs']:,} of them on orders that miss.\n\n"
        + grades_table(grading.grades)
        + "\n\n"
        f"`lost`, over the open orders at any slack ({secondary['pairs']:,} pairs over "
        f"{secondary['orders']:,} orders, {secondary['past_promise_pairs']:,} of them past "
        "their promise):\n\n" + secondary_table(grading.secondary) + "\n"
    )
    return text, grading


def bench_rules(seeds: list[int], days: int, per_day: int, keep: Path | None) -> str:
    import duckdb

    from bench.rules_grading import method_text

    sections, gradings = [], {}
    for seed in seeds:
        with tempfile.TemporaryDirectory(prefix="ow-bench-rules-") as tmp:
            home = keep / f"seed{seed}" if keep else Path(tmp)
            home.mkdir(parents=True, exist_ok=True)
            build, clock = _rules_world(home, seed, days, per_day, keep is not None)
            warehouse = home / "warehouse.duckdb"
            moments = rules_moments(warehouse, clock)
            with duckdb.connect(str(warehouse), read_only=True) as con:
                snapshot_rows = con.execute(
                    "select count(*) from marts.order_state_snapshots"
                ).fetchone()[0]
            section, gradings[seed] = rules_section(
                seed, warehouse, home / "landing" / "ground_truth.csv", moments
            )
        sections.append(
            section
            + f"\ndbt run (full refresh, {snapshot_rows:,} snapshot rows on the daily grid): "
            f"{build.seconds:.0f} s, peak RSS {build.peak_rss_mb:,.0f} MB.\n"
        )
        print(sections[-1], flush=True)
    return (
        "# Rules graded the way an operator sees them\n\n"
        + method_text(days, per_day, gradings)
        + "\nCode: bench/rules_grading.py, bench/run.py `bench_rules`.\n\n"
        + "\n".join(sections)
    )


def bench_detection(
    seeds: list[int], days: int, per_day: int, keep: Path | None, kinds: list[str]
) -> str:
    """bench/detection.py on the rules bench's worlds (a kept --rules-home is reused). Rules
    only on every seed first, then with the model; the table so far is written after each
    world, so a run cut short still leaves what it measured."""
    from bench.detection import grade_world, report, section, summary_row

    world = f"{days} days × {per_day:,} orders/day, seeds " + ", ".join(map(str, seeds))
    sections, summary = [], []
    with tempfile.TemporaryDirectory(prefix="ow-bench-detection-") as tmp:
        for kind in kinds:
            for seed in seeds:
                home = (keep or Path(tmp)) / f"seed{seed}"
                home.mkdir(parents=True, exist_ok=True)
                _, clock = _rules_world(home, seed, days, per_day, True)
                result = grade_world(home, clock, with_model=kind == "with model")
                summary.append(summary_row(seed, kind, result))
                sections.append(section(seed, kind, result))
                print(summary[-1], "\n", sections[-1], flush=True)
                partial = f"**Partial**: {len(summary)} of {len(kinds) * len(seeds)} measured.\n\n"
                target = (RESULTS / "detection").with_suffix(".md")
                target.write_text(partial + report(sections, summary, world))
    return report(sections, summary, world)


SECTIONS: dict[str, Callable[[argparse.Namespace], str]] = {
    "world": lambda args: bench_world([7, 13], 30, 1000),
    "detection": lambda args: bench_detection(
        args.rules_seeds,
        args.dbt_days,
        args.dbt_orders_per_day,
        args.rules_home,
        args.detection_kinds,
    ),
    "ingest": lambda args: bench_ingest(args.sizes, args.sim_rss_orders, args.landing),
    "dbt": lambda args: bench_dbt(args.dbt_days, args.dbt_orders_per_day),
    "rules": lambda args: bench_rules(
        args.rules_seeds, args.dbt_days, args.dbt_orders_per_day, args.rules_home
    ),
    "model": lambda args: bench_model(
        args.model_seeds,
        args.model_days,
        args.model_orders_per_day,
        args.model_kinds,
        args.model_home,
    ),
}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--only", choices=sorted(SECTIONS), action="append")
    parser.add_argument(
        "--sizes", type=lambda s: [int(x) for x in s.split(",")], default=[10_000, 100_000]
    )
    # The simulator's own 1M-order memory check (~10 min): opt-in
    parser.add_argument("--sim-rss-orders", type=int, default=0)
    parser.add_argument(
        "--landing",
        type=Path,
        action="append",
        default=[],
        help="ingest section: benchmark this landing folder instead of simulating (repeatable)",
    )
    parser.add_argument("--dbt-days", type=int, default=30)
    parser.add_argument("--dbt-orders-per-day", type=int, default=1000)
    parser.add_argument(
        "--rules-seeds", type=lambda s: [int(x) for x in s.split(",")], default=[7, 13]
    )
    parser.add_argument(
        "--rules-home", type=Path, help="keep the rules (and detection) worlds here (reused)"
    )
    parser.add_argument(
        "--detection-kinds",
        type=lambda s: s.split(","),
        default=["rules only", "with model"],
        help="detection section: 'rules only', 'with model' (comma-separated)",
    )
    parser.add_argument(
        "--model-seeds", type=lambda s: [int(x) for x in s.split(",")], default=[7, 13]
    )
    parser.add_argument("--model-days", type=int, default=30)
    parser.add_argument("--model-orders-per-day", type=int, default=1000)
    parser.add_argument("--model-kinds", type=lambda s: s.split(","), default=["full", "snapshot"])
    parser.add_argument("--model-home", type=Path, help="keep the model worlds here (reused)")
    args = parser.parse_args(argv)
    RESULTS.mkdir(parents=True, exist_ok=True)
    stamp = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    for name in args.only or sorted(SECTIONS):
        load_before = _load()
        body = SECTIONS[name](args)
        text = (
            f"{body}\nMeasured {stamp} on {_machine()} with `make bench` at {_commit()}; "
            f"1-minute load average {load_before} at the start, {_load()} at the end.\n"
        )
        (RESULTS / f"{name}.md").write_text(text)
        print(f"wrote {RESULTS / name}.md")
    return 0


if __name__ == "__main__":
    sys.exit(main())
