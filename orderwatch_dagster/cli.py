"""`orderwatch` command line: `simulate` (the embedded world), `demo` (run the pipeline),
`replay-quarantine` (re-read quarantined records after a parser fix)."""

from __future__ import annotations

import argparse
import contextlib
import sys

DEMO_JOB = "orderwatch_pipeline_job"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="orderwatch", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser(
        "simulate", help="write a simulated world into the landing folder", add_help=False
    )
    demo = sub.add_parser(
        "demo", help="materialize the asset graph on the landing folder, print a summary"
    )
    demo.add_argument("--job", default=DEMO_JOB)
    replay = sub.add_parser(
        "replay-quarantine",
        help="re-parse quarantined records with the current parser; those that load leave "
        "raw._quarantine (runs the raw assets of the chosen feeds)",
    )
    replay.add_argument("--feed", action="append", default=[], help="a feed (default: all)")
    replay.add_argument(
        "--reason", action="append", default=[], help="only this quarantine reason (repeatable)"
    )
    args, rest = parser.parse_known_args(argv)
    if args.command == "simulate":
        from orderwatch_dagster.sim.cli import main as simulate_main

        return simulate_main(rest)
    if rest:
        parser.error(f"unrecognized arguments: {' '.join(rest)}")
    if args.command == "replay-quarantine":
        return run_replay(args.feed, args.reason)
    return run_demo(args.job)


def run_demo(job_name: str) -> int:
    import dagster as dg

    from orderwatch_dagster.definitions import defs
    from orderwatch_dagster.lib import settings
    from orderwatch_dagster.lib.summary import model_summary, warehouse_summary

    # DAGSTER_HOME (set by make) keeps the run history, so the demo's runs show in `make ui`.
    # The console shows warnings only; dbt's line-per-node output goes to a log file.
    quiet = {"loggers": {"console": {"config": {"log_level": "WARNING"}}}}
    log_path = settings.home() / "logs" / "demo-dbt.log"
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with dg.DagsterInstance.get() as instance:
        job = defs().resolve_job_def(job_name)
        print(f"orderwatch demo: running {job_name} as of {settings.now().isoformat()}")
        print(f"  (dbt output: {log_path}; run logs: `make ui`)", flush=True)
        with log_path.open("w") as log, contextlib.redirect_stdout(log):
            result = job.execute_in_process(
                instance=instance, run_config=quiet, raise_on_error=False
            )
        for event in result.all_events:
            if event.is_step_success or event.is_step_failure:
                outcome = "ok" if event.is_step_success else "FAILED"
                print(f"  {event.step_key:<60} {outcome}")
    print(warehouse_summary(settings.warehouse_path()))
    print(model_summary(settings.home() / "models"))
    print(f"run {result.run_id}: {'success' if result.success else 'FAILED'}")
    return 0 if result.success else 1


def run_replay(feeds: list[str], reasons: list[str]) -> int:
    """The raw assets of `feeds` with `replay_quarantine` on, in-process, like the demo."""
    import dagster as dg

    from orderwatch_dagster.definitions import defs
    from orderwatch_dagster.lib.feeds import FEEDS

    unknown = sorted(set(feeds) - set(FEEDS))
    if unknown:
        print(f"unknown feed(s) {', '.join(unknown)}; feeds: {', '.join(FEEDS)}", file=sys.stderr)
        return 2
    definitions = defs()
    keys = {dg.AssetKey(["raw", feed]) for feed in feeds or FEEDS}
    raw_assets = [definitions.get_assets_def(key) for key in keys]
    checks = [
        c for c in definitions.asset_checks or [] if {k.asset_key for k in c.check_keys} <= keys
    ]
    config = {"replay_quarantine": True, "replay_reasons": reasons}
    run_config = {
        "ops": {asset.op.name: {"config": config} for asset in raw_assets},
        "loggers": {"console": {"config": {"log_level": "WARNING"}}},
    }
    with dg.DagsterInstance.get() as instance:
        # only the raw assets and their quarantine checks: the marts follow on the next run
        result = dg.materialize(
            [*raw_assets, *checks],
            resources=definitions.resources,
            instance=instance,
            run_config=run_config,
            raise_on_error=False,
        )
    for event in result.get_asset_materialization_events():
        materialization = event.materialization
        replayed = materialization.metadata.get("replay")
        print(f"{materialization.asset_key.to_user_string()}:")
        print(replayed.value if replayed is not None else "  (nothing replayed)")
    print(f"run {result.run_id}: {'success' if result.success else 'FAILED'}")
    return 0 if result.success else 1


if __name__ == "__main__":
    sys.exit(main())
