"""`orderwatch simulate` / `python -m orderwatch_dagster.sim`: build or advance the world."""

from __future__ import annotations

import argparse
import json
import sys
from datetime import date, datetime
from pathlib import Path

from orderwatch_dagster.lib.settings import landing_dir, parse_timestamp
from orderwatch_dagster.sim.engine import SimulationError, simulate


def _until(text: str) -> datetime:
    try:
        return parse_timestamp(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"not an ISO timestamp: {text!r}") from exc


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="orderwatch simulate",
        description="Write a simulated e-commerce world (every feed in its vendor format, plus "
        "ground_truth.csv) into the landing folder; a later --until continues it.",
    )
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--start", type=date.fromisoformat, default=date(2026, 10, 1))
    parser.add_argument("--days", type=int, default=14)
    parser.add_argument("--orders-per-day", type=int, default=200)
    parser.add_argument(
        "--until", type=_until, default=None, help="ISO timestamp (default: start + days, UTC)"
    )
    parser.add_argument("--out", type=Path, default=None, help="default: $ORDERWATCH_HOME/landing")
    parser.add_argument(
        "--inject-bad-records",
        action="store_true",
        help="also write a few broken records that ingest must quarantine",
    )
    parser.add_argument(
        "--workers",
        type=int,
        default=1,
        help="processes simulating days in parallel (output bytes do not depend on it)",
    )
    parser.add_argument(
        "--snapshot",
        action="store_true",
        help="write what a first backfill from the list endpoints sees at --until: the latest "
        "version of each record only (default: every version an hourly poll would have seen)",
    )
    parser.add_argument("--quiet", action="store_true", help="no progress on stderr")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    out = args.out if args.out is not None else landing_dir()
    try:
        summary = simulate(
            out,
            seed=args.seed,
            start=args.start,
            days=args.days,
            orders_per_day=args.orders_per_day,
            until=args.until,
            progress=not args.quiet,
            inject_bad_records=args.inject_bad_records,
            workers=args.workers,
            snapshot=args.snapshot,
        )
    except SimulationError as exc:
        print(f"orderwatch simulate: error: {exc}", file=sys.stderr)
        return 2
    doc = summary.as_dict()
    doc["orders_per_second"] = round(summary.orders / summary.seconds) if summary.seconds else None
    print(json.dumps(doc, indent=2))
    return 0
