"""The embedded default world: `orderwatch simulate` (DESIGN.md "The embedded default")."""

from orderwatch_dagster.sim.engine import SimSummary, SimulationError, simulate

__all__ = ["SimSummary", "SimulationError", "simulate"]
