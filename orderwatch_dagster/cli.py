"""`orderwatch` command line: `simulate` (the embedded world), `demo` (run the pipeline)."""

from __future__ import annotations

import argparse
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
    args, rest = parser.parse_known_args(argv)
    if args.command == "simulate":
        from orderwatch_dagster.sim.cli import main as simulate_main

        return simulate_main(rest)
    if rest:
        parser.error(f"unrecognized arguments: {' '.join(rest)}")
    return run_demo(args.job)


def run_demo(job_name: str) -> int:
    import dagster as dg

    from orderwatch_dagster.definitions import defs
    from orderwatch_dagster.lib import settings
    from orderwatch_dagster.lib.summary import warehouse_summary

    # DAGSTER_HOME (set by make) keeps the run history, so the demo's runs show in `make ui`.
    with dg.DagsterInstance.get() as instance:
        job = defs().resolve_job_def(job_name)
        print(f"orderwatch demo: running {job_name} as of {settings.now().isoformat()}")
        result = job.execute_in_process(instance=instance, raise_on_error=False)
        failed = [event for event in result.all_events if event.is_step_failure]
        for event in failed:
            print(f"  step failed: {event.step_key}: {event.event_specific_data.error.message}")
    print(warehouse_summary(settings.warehouse_path()))
    print(f"run {result.run_id}: {'success' if result.success else 'FAILED'}")
    return 0 if result.success else 1


if __name__ == "__main__":
    sys.exit(main())
