"""`make bench`: throughput and memory figures, printed and written to bench/results/*.md.

A benchmark, not a test: it measures, it does not assert targets.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import sys
import tempfile
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

from bench.measure import Measurement, run_measured

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


def _du_mb(path: Path) -> float:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file()) / 1e6


def simulate(home: Path, days: int, per_day: int, extra: list[str] | None = None) -> Measurement:
    args = [PY, "-m", "orderwatch_dagster.sim", "--days", str(days), "--orders-per-day"]
    args += [str(per_day), "--seed", "7", "--out", str(home / "landing"), "--quiet"]
    return run_measured(args + (extra or []), env={"ORDERWATCH_HOME": str(home)})


def stage(home: Path, *args: str) -> tuple[Measurement, dict[str, object]]:
    measured = run_measured([PY, "-m", "bench.stage", *args], env={"ORDERWATCH_HOME": str(home)})
    return measured, json.loads(measured.output.strip().splitlines()[-1])


def bench_ingest(sizes: list[int], sim_rss_orders: int) -> str:
    rows = []
    for orders in sizes:
        days = 10
        per_day = orders // days
        with tempfile.TemporaryDirectory(prefix="ow-bench-") as tmp:
            home = Path(tmp)
            sim = simulate(home, days, per_day)
            landing_mb = _du_mb(home / "landing")
            ingest, result = stage(home, "ingest")
            rows.append(
                f"| {days * per_day:,} | {days}×{per_day:,} | {sim.seconds:.1f} | "
                f"{days * per_day / sim.seconds:,.0f} | {sim.peak_rss_mb:,.0f} | "
                f"{landing_mb:,.0f} | "
                f"{ingest.seconds:.1f} | {days * per_day / ingest.seconds:,.0f} | "
                f"{result['rows_loaded']:,} | {ingest.peak_rss_mb:,.0f} |"
            )
            print(rows[-1], flush=True)
    big = ""
    if sim_rss_orders:
        days = 30
        per_day = -(-sim_rss_orders // days)
        with tempfile.TemporaryDirectory(prefix="ow-bench-1m-") as tmp:
            sim = simulate(Path(tmp), days, per_day)
            landing_mb = _du_mb(Path(tmp) / "landing")
        big = (
            f"\nSimulator at {days * per_day:,} orders ({days} days × {per_day:,}/day): "
            f"**peak RSS {sim.peak_rss_mb:,.0f} MB** (target ≤ 2,048 MB), {sim.seconds:.0f} s "
            f"({days * per_day / sim.seconds:,.0f} orders/s), {landing_mb:,.0f} MB of pages.\n"
        )
        print(big, flush=True)
    header = (
        "| orders | days × per day | simulate s | simulate orders/s | simulate peak RSS MB | "
        "landing MB | ingest s | ingest orders/s | record versions loaded | ingest peak RSS MB |\n"
        "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n"
    )
    return (
        "# Simulate + ingest\n\n"
        "Each stage runs in its own process; peak RSS is that process's own (wait4). Ingest = the "
        "seven `raw/*` assets via the code location's job, in-process executor, DuckDB warehouse, "
        "file-drop transport.\n\n" + header + "\n".join(rows) + "\n" + big
    )


SECTIONS: dict[str, Callable[[argparse.Namespace], str]] = {
    "ingest": lambda args: bench_ingest(args.sizes, args.sim_rss_orders),
}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--only", choices=sorted(SECTIONS), action="append")
    parser.add_argument(
        "--sizes", type=lambda s: [int(x) for x in s.split(",")], default=[10_000, 100_000]
    )
    parser.add_argument("--sim-rss-orders", type=int, default=1_000_000)
    args = parser.parse_args(argv)
    RESULTS.mkdir(parents=True, exist_ok=True)
    stamp = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    for name in args.only or sorted(SECTIONS):
        body = SECTIONS[name](args)
        text = f"{body}\nMeasured {stamp} on {_machine()} with `make bench`.\n"
        (RESULTS / f"{name}.md").write_text(text)
        print(f"wrote {RESULTS / name}.md")
    shutil.rmtree(RESULTS / "tmp", ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
