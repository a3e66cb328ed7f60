"""`orderwatch` command line: `simulate` (the embedded world), `demo` (run the pipeline),
`replay-quarantine` (re-read quarantined records after a parser fix), `reset-cursor` (drop or
set a feed's cursor), `actions`, `decide` (a person's decision on an exception), `opt-out` (a
customer's unsubscribe or STOP into ops.contact_blocks)."""

from __future__ import annotations

import argparse
import contextlib
import sys

DEMO_JOB = "orderwatch_pipeline_job"
ACTIONS_JOB = "exception_actions_job"


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
    reset = sub.add_parser(
        "reset-cursor",
        help="drop a feed's cursor (the next run reads its source in full) or set it (--to)",
    )
    reset.add_argument("--feed", required=True, help="the feed")
    reset.add_argument("--to", help="ISO timestamp to set the cursor to (default: drop it)")
    sub.add_parser(
        "actions", help="run exception_actions_job once (what exception_actions_sensor launches)"
    )
    decide = sub.add_parser(
        "decide", help="record a person's decision on an exception (the next action run honours it)"
    )
    decide.add_argument("exception_id")
    decide.add_argument("decision", choices=["acknowledged", "snoozed", "false_alarm"])
    decide.add_argument("--by", required=True, help="who decided (becomes the owner)")
    decide.add_argument("--until", help="ISO time a snooze ends")
    opt_out = sub.add_parser(
        "opt-out",
        help="record a customer's opt-out into ops.contact_blocks (lib/opt_outs.py): an "
        "unsubscribe link's key, an address or number, or Twilio's incoming STOP/START messages",
    )
    opt_out.add_argument("--channel", choices=["email", "sms"], default="email")
    who = opt_out.add_mutually_exclusive_group(required=True)
    who.add_argument("--recipient", help="the e-mail address or E.164 number")
    who.add_argument(
        "--key",
        help="the key an unsubscribe link or mailto carries (--key=KEY if it starts with -)",
    )
    who.add_argument(
        "--twilio-inbound",
        help="a file of Twilio incoming-message webhook bodies (form-encoded, one per line)",
    )
    args, rest = parser.parse_known_args(argv)
    if args.command == "simulate":
        from orderwatch_dagster.sim.cli import main as simulate_main

        return simulate_main(rest)
    if rest:
        parser.error(f"unrecognized arguments: {' '.join(rest)}")
    if args.command == "replay-quarantine":
        return run_replay(args.feed, args.reason)
    if args.command == "reset-cursor":
        return run_reset_cursor(args.feed, args.to)
    if args.command == "actions":
        return run_actions_job()
    if args.command == "decide":
        return run_decide(args.exception_id, args.decision, args.by, args.until)
    if args.command == "opt-out":
        return run_opt_out(args.channel, args.recipient, args.key, args.twilio_inbound)
    return run_demo(args.job)


def run_demo(job_name: str) -> int:
    import dagster as dg

    from orderwatch_dagster.definitions import defs
    from orderwatch_dagster.lib import settings
    from orderwatch_dagster.lib.summary import model_summary

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
    actions_ok = True
    if result.success:
        with dg.DagsterInstance.get() as instance:
            actions = (
                defs()
                .resolve_job_def(ACTIONS_JOB)
                .execute_in_process(instance=instance, run_config=quiet, raise_on_error=False)
            )
        actions_ok = actions.success
        print(f"  {ACTIONS_JOB:<60} {'ok' if actions_ok else 'FAILED'}")
    print(demo_summary())
    print(model_summary(settings.home() / "models"))
    print(f"run {result.run_id}: {'success' if result.success and actions_ok else 'FAILED'}")
    return 0 if result.success and actions_ok else 1


def run_actions_job() -> int:
    """The action job once, in-process, in DAGSTER_HOME's instance (like the sensor's run)."""
    import dagster as dg

    from orderwatch_dagster.definitions import defs

    with dg.DagsterInstance.get() as instance:
        result = (
            defs()
            .resolve_job_def(ACTIONS_JOB)
            .execute_in_process(instance=instance, raise_on_error=False)
        )
    print(f"run {result.run_id}: {'success' if result.success else 'FAILED'}")
    return 0 if result.success else 1


def demo_summary() -> str:
    """What the warehouse the code location binds holds (ORDERWATCH_WAREHOUSE_ENGINE,
    ORDERWATCH_WAREHOUSE): the same `Warehouse` the run wrote to, not a path guessed here."""
    from orderwatch_dagster.defs.resources import DuckDBWarehouse, warehouse_from_environment
    from orderwatch_dagster.lib.summary import warehouse_summary

    warehouse = warehouse_from_environment()
    if isinstance(warehouse, DuckDBWarehouse):
        return warehouse_summary(warehouse.database_path())
    # lib/summary.py reads a DuckDB file; on PostgreSQL the run's materializations carry the
    # row counts (`make ui`).
    return f"warehouse {type(warehouse).__name__} (summary: see the run's materializations)"


def run_decide(exception_id: str, decision: str, by: str, until: str | None) -> int:
    from orderwatch_dagster.defs.resources import warehouse_from_environment
    from orderwatch_dagster.lib import settings
    from orderwatch_dagster.lib.ledger import record_human_decision

    snooze = settings.parse_timestamp(until) if until else None
    with warehouse_from_environment().connect() as session:
        record_human_decision(
            session, exception_id, decision, by=by, at=settings.now(), snoozed_until=snooze
        )
    print(f"{exception_id}: {decision} by {by}")
    return 0


def run_opt_out(
    channel: str, recipient: str | None, key: str | None, twilio_inbound: str | None
) -> int:
    from pathlib import Path

    from orderwatch_dagster.defs.resources import warehouse_from_environment
    from orderwatch_dagster.lib import settings
    from orderwatch_dagster.lib.opt_outs import apply_twilio_inbound, record_opt_out

    with warehouse_from_environment().connect() as session:
        if twilio_inbound:
            bodies = Path(twilio_inbound).read_text().splitlines()
            counts = apply_twilio_inbound(session, bodies, settings.now())
            print(f"twilio inbound: {counts['stop']} STOP, {counts['start']} START")
            return 0
        try:
            block = record_opt_out(
                session, channel, at=settings.now(), recipient=recipient, key=key
            )
        except ValueError as error:
            print(f"opt-out not recorded: {error}", file=sys.stderr)
            return 2
    print(f"{channel} opt-out recorded (block {block[:8]}…)")
    return 0


def run_replay(feeds: list[str], reasons: list[str]) -> int:
    """The raw assets of `feeds` with `replay_quarantine` on, in-process, like the demo."""
    import dagster as dg

    from orderwatch_dagster.definitions import defs
    from orderwatch_dagster.defs.ingest.factory import unknown_reasons
    from orderwatch_dagster.lib.feeds import FEEDS
    from orderwatch_dagster.lib.records import QuarantineReason

    unknown = sorted(set(feeds) - set(FEEDS))
    if unknown:
        print(f"unknown feed(s) {', '.join(unknown)}; feeds: {', '.join(FEEDS)}", file=sys.stderr)
        return 2
    unknown = unknown_reasons(reasons)
    if unknown:
        known = ", ".join(reason.value for reason in QuarantineReason)
        print(f"unknown reason(s) {', '.join(unknown)}; reasons: {known}", file=sys.stderr)
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


def run_reset_cursor(feed: str, to: str | None) -> int:
    """Set `feed`'s cursor in the bound warehouse (ORDERWATCH_WAREHOUSE_ENGINE, ...)."""
    from orderwatch_dagster.defs.resources import warehouse_from_environment
    from orderwatch_dagster.lib.feeds import FEEDS
    from orderwatch_dagster.lib.ingest_guards import reset_cursor
    from orderwatch_dagster.lib.settings import parse_timestamp

    if feed not in FEEDS:
        print(f"unknown feed {feed}; feeds: {', '.join(FEEDS)}", file=sys.stderr)
        return 2
    try:
        moment = parse_timestamp(to) if to else None
    except ValueError:
        print(f"--to {to!r}: expected an ISO timestamp", file=sys.stderr)
        return 2
    with warehouse_from_environment().connect() as session:
        session.ensure_schema()
        before = session.get_cursor(feed)
        reset_cursor(session, feed, moment)
    shown = moment.isoformat() if moment else "none (the next run reads the source in full)"
    print(f"{feed}: cursor {before.isoformat() if before else 'none'} -> {shown}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
