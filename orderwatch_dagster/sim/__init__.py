"""The embedded default world: `orderwatch simulate` (docs/architecture.md).

    python -m orderwatch_dagster.sim --days 14 --orders-per-day 200 --seed 7      # one shot
    python -m orderwatch_dagster.sim ... --until 2026-10-05T13:00:00Z              # continue

Writes `<out>/<feed>/<until-stamp>-d<day>-<seq>.json` pages in each vendor's list shape
(docs/feeds.md), `<out>/ground_truth.csv`, `<out>/simulation.json` (world parameters and
clock) and the clock file beside `<out>` (`<out>/../clock`, i.e. ORDERWATCH_HOME/clock).

Modules: `calendar` (the promise rule, pure), `config` (dbt seeds + catalogue), `world`
(incidents and per-order plans), `render/` (one renderer module per vendor), `engine`
(windows, pages, ground truth), `cli`.

Failure modes (ground truth `failure_mode`, root cause type):
warehouse_backlog (warehouse), stock_out (sku), invalid_address (address),
label_never_accepted (carrier), scan_gap (lane), lost_parcel (carrier), weather_delay
(region), failed_delivery (carrier), return_to_sender (address). Backlogs, lane gaps and
storms are world incidents (site/lane/region × a few days); the rest are per-order draws.
"""

from orderwatch_dagster.sim.engine import SimSummary, SimulationError, simulate

__all__ = ["SimSummary", "SimulationError", "simulate"]
