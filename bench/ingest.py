"""`make bench BENCH_ARGS="--only ingest"`: orderwatch's ingest against DuckDB's own read_json.

On the same landing pages, in the same run:
- **baseline**: per feed folder `create table t as select unnest(<list key>) as r from
  read_json('<feed>/*.json', maximum_object_size=1000000000, union_by_name=true)` (ShipBob's bare
  arrays: `select * from read_json(..., format='array', ...)`), an in-memory DuckDB with its
  defaults, all feeds in sequence, wall time of the statements;
- **orderwatch**: wall time of materializing every raw asset minus that of materializing the
  smallest feed alone (Dagster's start-up), each a fresh process in a fresh ORDERWATCH_HOME whose
  landing folder is the world's; the start-up figure is the latter run.

The list keys come from the registry (lib/feeds.py), so a feed added there is benchmarked too.
`--landing DIR` benchmarks a landing folder written by something else (a world this project has
not seen) instead of simulating.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

from bench.measure import Measurement, run_measured

PY = sys.executable
PAGE_GLOB = "*.json"

_BASELINE = r"""
import json, sys, time
import duckdb
landing, feeds = sys.argv[1], json.loads(sys.argv[2])
con = duckdb.connect()
began = time.perf_counter()
for i, (feed, list_key) in enumerate(feeds):
    files = f"{landing}/{feed}/*.json".replace("'", "''")
    if list_key:
        sql = (f"create table t{i} as select unnest({list_key}) as r from read_json('{files}', "
               "maximum_object_size=1000000000, union_by_name=true)")
    else:
        sql = (f"create table t{i} as select * from read_json('{files}', format='array', "
               "maximum_object_size=1000000000, union_by_name=true)")
    con.execute(sql)
seconds = time.perf_counter() - began
rows = sum(con.execute(f"select count(*) from t{i}").fetchone()[0] for i in range(len(feeds)))
print(json.dumps({"seconds": seconds, "rows": rows}))
"""


@dataclass(frozen=True)
class WorldFigures:
    label: str
    orders: int
    landing_mb: float  # what orderwatch reads
    baseline_mb: float  # what the baseline's glob reads (the same pages in a vendor-shaped world)
    baseline_s: float
    baseline_rows: int
    baseline_rss_mb: float
    all_s: float  # materializing every raw asset (process wall time)
    smallest_s: float  # materializing the smallest feed alone (Dagster's start-up)
    smallest_feed: str
    rows_loaded: int
    peak_rss_mb: float
    startup_profile: dict[str, float]  # the smallest feed's run, by phase (bench/stage.py)
    all_profile: dict[str, float]  # the run of every raw asset, by phase

    @property
    def raw_steps_s(self) -> float:
        """The raw assets' own steps in the run of every raw asset (no start-up, no checks)."""
        return sum(
            seconds
            for step, seconds in self.all_profile.items()
            if step.startswith("step raw__") and "quarantine" not in step
        )

    @property
    def ingest_s(self) -> float:
        return self.all_s - self.smallest_s

    def row(self) -> str:
        mb_s = self.landing_mb / self.ingest_s
        base_mb_s = self.baseline_mb / self.baseline_s
        return (
            f"| {self.label} | {self.orders:,} | {self.landing_mb:,.0f} | "
            f"{self.baseline_s:.1f} | {base_mb_s:.1f} | {self.ingest_s:.1f} | {mb_s:.1f} | "
            f"{self.orders / self.ingest_s:,.0f} | **{self.ingest_s / self.baseline_s:.2f}** | "
            f"{self.peak_rss_mb:,.0f} | {self.smallest_s:.1f} | {self.all_s:.1f} | "
            f"{self.rows_loaded:,} | {self.baseline_rows:,} | {self.raw_steps_s:.1f} | "
            f"{self.landing_mb / self.raw_steps_s:.1f} |"
        )


def _feed_pages(landing: Path, *, baseline: bool = False) -> dict[str, int]:
    """Bytes of page files per registry feed folder: those orderwatch reads (the connector's
    suffixes, subfolders included), or with `baseline` those the baseline's glob reads."""
    from orderwatch_dagster.defs.ingest.connector import PAGE_SUFFIXES
    from orderwatch_dagster.lib.feeds import FEED_FOLDERS

    sizes = {}
    for feed in FEED_FOLDERS:
        folder = landing / feed
        files = folder.glob(PAGE_GLOB) if baseline else folder.rglob("*")
        sizes[feed] = sum(
            p.stat().st_size
            for p in files
            if p.is_file() and p.suffix.lower() in PAGE_SUFFIXES and not p.name.startswith(".")
        )
    return sizes


def _orders(landing: Path) -> int:
    """Orders of the world: records in the storefront_orders pages (counted by DuckDB)."""
    import duckdb

    files = str(landing / "storefront_orders" / PAGE_GLOB).replace("'", "''")
    with duckdb.connect() as con:
        sql = (
            "select count(distinct r.id) from (select unnest(orders) as r from "
            f"read_json('{files}', maximum_object_size=1000000000, union_by_name=true))"
        )
        return int(con.execute(sql).fetchone()[0])


def baseline(landing: Path) -> tuple[Measurement, dict[str, float]]:
    from orderwatch_dagster.lib.feeds import FEEDS

    sizes = _feed_pages(landing, baseline=True)
    feeds = [(name, spec.list_key) for name, spec in FEEDS.items() if sizes[name]]
    measured = run_measured([PY, "-c", _BASELINE, str(landing), json.dumps(feeds)])
    return measured, json.loads(measured.output.strip().splitlines()[-1])


def _fresh_home(landing: Path, root: Path, name: str) -> Path:
    home = root / name
    home.mkdir()
    (home / "landing").symlink_to(landing.resolve(), target_is_directory=True)
    clock = landing.parent / "clock"
    if clock.is_file():  # the world's "now" (else the wall clock)
        shutil.copy(clock, home / "clock")
    return home


def _materialize(home: Path, feeds: list[str] | None) -> tuple[Measurement, dict[str, object]]:
    args = [PY, "-m", "bench.stage", "ingest"] + (["--feeds", ",".join(feeds)] if feeds else [])
    env = {"ORDERWATCH_HOME": str(home), "DAGSTER_HOME": str(home / "dagster")}
    env["ORDERWATCH_AS_OF"] = os.environ.get("ORDERWATCH_AS_OF", "")
    measured = run_measured(args, env=env)
    return measured, json.loads(measured.output.strip().splitlines()[-1])


def measure_world(label: str, landing: Path) -> WorldFigures:
    sizes = _feed_pages(landing)
    smallest = min((size, feed) for feed, size in sizes.items() if size)[1]
    base, base_result = baseline(landing)
    with tempfile.TemporaryDirectory(prefix="ow-bench-ingest-") as tmp:
        small, small_result = _materialize(_fresh_home(landing, Path(tmp), "smallest"), [smallest])
        every, result = _materialize(_fresh_home(landing, Path(tmp), "all"), None)
    return WorldFigures(
        label=label,
        orders=_orders(landing),
        landing_mb=sum(sizes.values()) / 1e6,
        baseline_mb=sum(_feed_pages(landing, baseline=True).values()) / 1e6,
        baseline_s=float(base_result["seconds"]),
        baseline_rows=int(base_result["rows"]),
        baseline_rss_mb=base.peak_rss_mb,
        all_s=every.seconds,
        smallest_s=small.seconds,
        smallest_feed=smallest,
        rows_loaded=int(result["rows_loaded"]),  # type: ignore[call-overload]
        peak_rss_mb=every.peak_rss_mb,
        startup_profile=dict(small_result["profile"]),  # type: ignore[call-overload]
        all_profile=dict(result["profile"]),  # type: ignore[call-overload]
    )


HEADER = (
    "| world | orders | landing MB | baseline s | baseline MB/s | orderwatch s | "
    "orderwatch MB/s | orderwatch orders/s | orderwatch / baseline time | peak RSS MB | "
    "start-up s (smallest feed alone) | every raw asset s | record versions loaded | "
    "baseline rows | raw steps s | raw steps MB/s |\n"
    "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n"
)


def report(figures: list[WorldFigures], notes: list[str]) -> str:
    rows = "\n".join(f.row() for f in figures)
    profile = ""
    if figures:
        last = figures[-1]
        profile = (
            f"\n\nStart-up profile ({last.label}: `{last.smallest_feed}` alone, "
            f"{last.smallest_s:.1f} s process wall time):\n\n| phase | s |\n|---|---:|\n"
            + "\n".join(f"| {phase} | {s:.1f} |" for phase, s in last.startup_profile.items())
        )
    smallest = ", ".join(sorted({f.smallest_feed for f in figures}))
    baseline_rss = ", ".join(f"{f.baseline_rss_mb:,.0f}" for f in figures)
    return (
        "# Ingest: orderwatch vs DuckDB's own read_json\n\n"
        + (__doc__ or "").split("\n\n", 1)[1].split("\n\nThe list keys")[0]
        + "\n\nMB = landing page bytes of the registry's feed folders. orderwatch: the code "
        "location's job, in-process executor, DuckDB warehouse file, file-drop transport; peak "
        "RSS is the ingest process's own (wait4). Raw steps = the seven raw assets' own steps in "
        "that run (Dagster's step timings: no start-up, no checks). Start-up = materializing the "
        "smallest feed "
        f"({smallest}) alone. Targets at 100k orders: orderwatch ≤ 2× the baseline's time, "
        "≥ 25 MB/s, peak RSS ≤ 1 GB.\n\n"
        + HEADER
        + rows
        + profile
        + f"\n\nBaseline process peak RSS MB: {baseline_rss}.\n"
        + "".join(f"\n{note}\n" for note in notes)
    )
