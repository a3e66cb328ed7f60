"""The embedded default world: `orderwatch simulate` (docs/architecture.md).

    python -m orderwatch_dagster.sim --days 14 --orders-per-day 200 --seed 7      # one shot
    python -m orderwatch_dagster.sim ... --until 2026-10-05T13:00:00Z              # continue

Writes `<out>/<feed>/<until-stamp>-d<day>-<seq>.json` pages in each vendor's list shape
(docs/feeds.md), `<out>/ground_truth.csv`, `<out>/simulation.json` (world parameters and
clock) and the clock file beside `<out>` (`<out>/../clock`, i.e. ORDERWATCH_HOME/clock).

Modules: `calendar` (the promise rule, pure), `config` (dbt seeds + catalogue), `model`
(plans, events, catalogue), `network` (incidents, site queues, zones, carrier calendars),
`world` (placements, customers, order plans), `shipment` (one shipment's life and the EDD),
`support` (tickets, returns), `truth` (signal onsets), `render/` (one renderer module per
vendor), `engine` (windows, history, pages, ground truth), `cli`.

What the world is like (history, queues, transit, the carrier's estimate, incidents,
look-alikes, noise rates) and the ground truth's columns: docs/feeds.md "What the simulated
world is like". `--snapshot` writes what a first backfill sees at `--until`.
"""

from orderwatch_dagster.sim.engine import SimSummary, SimulationError, simulate

__all__ = ["SimSummary", "SimulationError", "simulate"]
