"""One pipeline stage in its own process (so the benchmark can read its peak RSS).

python -m bench.stage ingest [--feeds a,b] | dbt [--full-refresh]   (on ORDERWATCH_HOME)
"""

from __future__ import annotations

import argparse
import json
import sys
import time

import dagster as dg

from orderwatch_dagster.definitions import defs
from orderwatch_dagster.lib.feeds import FEED_FOLDERS


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("stage", choices=["ingest", "dbt"])
    parser.add_argument("--full-refresh", action="store_true")
    parser.add_argument("--feeds", help="ingest only these raw assets (comma-separated)")
    args = parser.parse_args(argv)

    definitions = defs()
    job = definitions.resolve_job_def("orderwatch_pipeline_job")
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
        result = job.execute_in_process(
            instance=instance, asset_selection=list(selection), run_config=run_config
        )
    seconds = time.perf_counter() - began
    loaded = 0
    for event in result.get_asset_materialization_events():
        metadata = event.materialization.metadata
        if "rows_loaded" in metadata:
            loaded += int(metadata["rows_loaded"].value)
    print(json.dumps({"seconds": seconds, "rows_loaded": loaded, "success": result.success}))
    return 0 if result.success else 1


if __name__ == "__main__":
    sys.exit(main())
