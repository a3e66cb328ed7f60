"""Weekly retraining. Scoring is hourly: ml/order_risk_scores is part of the pipeline job that
the hourly schedule (defs/schedules.py) runs, and loads the registry's champion each time."""

import dagster as dg

ml_training_job = dg.define_asset_job(
    "ml_training_job",
    selection=dg.AssetSelection.assets(["ml", "training_set"], ["ml", "lateness_model"]),
    description="Rebuild the training set and retrain the lateness model (champion if better).",
    config={
        "ops": {
            name: {"config": {"force": True}} for name in ("ml__training_set", "ml__lateness_model")
        }
    },
)

# Stopped by default, like the hourly schedule: turned on with the real feeds.
ml_weekly_training_schedule = dg.ScheduleDefinition(
    name="ml_weekly_training_schedule",
    job=ml_training_job,
    cron_schedule="30 3 * * 1",
    execution_timezone="UTC",
    default_status=dg.DefaultScheduleStatus.STOPPED,
)
