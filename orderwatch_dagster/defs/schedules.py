"""The pipeline job and its hourly schedule."""

import dagster as dg

# Ingest every feed, then dbt (staging ► intermediate ► marts) with its tests as asset checks.
orderwatch_pipeline_job = dg.define_asset_job(
    "orderwatch_pipeline_job",
    selection=dg.AssetSelection.all(),
    description="Ingest every feed and rebuild the dbt marts (the hourly heartbeat).",
)

# Stopped by default: turn it on (UI or `dagster schedule start`) once the feeds point at real
# systems.
orderwatch_hourly_schedule = dg.ScheduleDefinition(
    name="orderwatch_hourly_schedule",
    job=orderwatch_pipeline_job,
    cron_schedule="5 * * * *",
    execution_timezone="UTC",
    default_status=dg.DefaultScheduleStatus.STOPPED,
)
