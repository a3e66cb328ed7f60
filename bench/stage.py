"""One pipeline stage in its own process (so the benchmark can read its peak RSS).

python -m bench.stage ingest [--feeds a,b] | dbt [--full-refresh]   (on ORDERWATCH_HOME)
"""

from __future__ import annotations

import time

STARTED = time.time()  # before the imports: they are part of the start-up profile

import argparse  # noqa: E402
import json  # noqa: E402
import sys  # noqa: E402

import dagster as dg  # noqa: E402

IMPORTED_DAGSTER = time.time()
from orderwatch_dagster.definitions import defs  # noqa: E402
from orderwatch_dagster.lib.feeds import FEED_FOLDERS  # noqa: E402


def _profile(
    instance: dg.DagsterInstance, run_id: str, marks: dict[str, float]
) -> dict[str, float]:
    """Seconds per phase of the process: imports, definitions, instance, the run's steps."""
    steps: dict[str, list[float]] = {}
    for record in instance.all_logs(run_id):
        event = record.dagster_event
        if (
            event is not None
            and event.step_key
            and event.event_type_value
            in (
                "STEP_START",
                "STEP_SUCCESS",
                "STEP_FAILURE",
            )
        ):
            steps.setdefault(event.step_key, []).append(record.timestamp)
    first = min(t[0] for t in steps.values())
    last = max(t[-1] for t in steps.values())
    profile = {
        "import dagster": IMPORTED_DAGSTER - STARTED,
        "definitions (dagster-dbt, manifest)": marks["defs"] - IMPORTED_DAGSTER,
        "instance": marks["instance"] - marks["defs"],
        "run start to first step": first - marks["instance"],
    }
    for key, times in steps.items():
        profile[f"step {key}"] = times[-1] - times[0]
    profile["after the last step"] = marks["end"] - last
    return profile


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("stage", choices=["ingest", "dbt"])
    parser.add_argument("--full-refresh", action="store_true")
    parser.add_argument("--feeds", help="ingest only these raw assets (comma-separated)")
    args = parser.parse_args(argv)

    definitions = defs()
    job = definitions.resolve_job_def("orderwatch_pipeline_job")
    marks = {"defs": time.time()}
    graph = definitions.get_repository_def().asset_graph
    raw_keys = {dg.AssetKey(["raw", feed]) for feed in FEED_FOLDERS}
    if args.stage == "ingest":
        feeds = args.feeds.split(",") if args.feeds else FEED_FOLDERS
        selection = {dg.AssetKey(["raw", feed]) for feed in feeds}
        run_config = None
    else:
        selection = {key for key in graph.materializable_asset_keys if key not in raw_keys}
        dbt_config = {"config": {"full_refresh": args.full_refresh}}
        run_config = {"ops": {"orderwatch_dbt_models": dbt_config}}
    began = time.perf_counter()
    with dg.DagsterInstance.ephemeral() as instance:
        marks["instance"] = time.time()
        result = job.execute_in_process(
            instance=instance, asset_selection=list(selection), run_config=run_config
        )
        marks["end"] = time.time()
        profile = _profile(instance, result.run_id, marks)
    seconds = time.perf_counter() - began
    loaded = 0
    for event in result.get_asset_materialization_events():
        metadata = event.materialization.metadata
        if "rows_loaded" in metadata:
            loaded += int(metadata["rows_loaded"].value)
    summary = {"seconds": seconds, "rows_loaded": loaded, "success": result.success}
    print(json.dumps({**summary, "profile": profile}))
    return 0 if result.success else 1


if __name__ == "__main__":
    sys.exit(main())
