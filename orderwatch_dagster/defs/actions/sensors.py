"""`exception_actions_sensor`: one action run per materialization of marts.order_exceptions.

Stopped by default, like the hourly schedule. The run key is the materialization's own
identity, so a replayed tick asks for a run Dagster has already launched and nothing new
starts; the job's idempotency keys cover a run that executes twice anyway.
"""

import dagster as dg

from orderwatch_dagster.defs.actions.jobs import exception_actions_job


@dg.asset_sensor(
    asset_key=dg.AssetKey(["marts", "order_exceptions"]),
    job=exception_actions_job,
    default_status=dg.DefaultSensorStatus.STOPPED,
    description="Launch exception_actions_job after each order_exceptions materialization",
)
def exception_actions_sensor(
    context: dg.SensorEvaluationContext, asset_event: dg.EventLogEntry
) -> dg.RunRequest:
    run_key = f"order_exceptions:{asset_event.run_id}:{asset_event.timestamp}"
    return dg.RunRequest(run_key=run_key, tags={"orderwatch/trigger": "order_exceptions"})
