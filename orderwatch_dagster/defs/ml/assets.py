"""The lateness model's assets (group `ml`): thin shells over ml/.

ml/training_set      point-in-time features + labels from marts.order_state_snapshots
ml/lateness_model    trains weekly (or when no champion exists), registers, promotes if it beats
                     the champion and the best single rule on the same holdout
ml/order_risk_scores every open order scored by the champion -> marts.order_risk_scores

ml/ (scikit-learn: ~0.7 s to import) is imported inside the assets, not here: every process that
loads the code location (the code server, each run) would pay it, and most runs (ingest alone,
action jobs) never train or score (bench/results/ingest.md, start-up profile).
"""

import json
from datetime import datetime
from pathlib import Path
from typing import Any

import dagster as dg
import pandas as pd

from orderwatch_dagster.defs.ml.warehouse_io import (
    SNAPSHOT_TABLE,
    STATE_TABLE,
    read_snapshots,
    write_scores,
)
from orderwatch_dagster.defs.resources import Warehouse
from orderwatch_dagster.lib import settings

TRAINING_SET_FILE = "training_set.pkl"


def models_dir() -> Path:
    return settings.home() / "models"


def _training_set_path() -> Path:
    return settings.home() / "ml" / TRAINING_SET_FILE


class TrainingConfig(dg.Config):
    snapshot_table: str = SNAPSHOT_TABLE  # the as-of layer (one row per order x as_of)
    retrain_after_days: float = 7.0  # a champion younger than this is kept without training
    force: bool = False  # train now whatever the champion's age (the weekly schedule sets it)
    holdout_days: float | None = None  # None: ml.train.TrainConfig's default windows
    calibration_days: float | None = None
    seed: int = 0


def _training_due(config: TrainingConfig, now: datetime) -> tuple[bool, str]:
    from ml.registry import Registry

    registry = Registry(models_dir())
    champion = registry.champion()
    if champion is None:
        return True, "no champion yet"
    if config.force:
        return True, "forced (weekly retrain)"
    trained = pd.Timestamp(registry.metrics(champion)["trained_at"])
    age = (pd.Timestamp(now) - trained).total_seconds() / 86400.0
    if age >= config.retrain_after_days:
        return True, f"champion is {age:.1f} days old"
    return False, f"champion {champion} is {age:.1f} days old (< {config.retrain_after_days})"


@dg.asset(
    key=["ml", "training_set"],
    group_name="ml",
    deps=[dg.AssetKey(["marts", "order_state_snapshots"])],
    description="Every open order at every snapshot before its promise, with only what was "
    "known then (ml/features.py), and its label once the promise has passed.",
)
def training_set_asset(
    context: dg.AssetExecutionContext, config: TrainingConfig, warehouse: Warehouse
) -> dg.MaterializeResult:
    from ml.train import training_set

    now = settings.now()
    due, why = _training_due(config, now)
    if not due:
        context.log.info(f"training set not rebuilt: {why}")
        return dg.MaterializeResult(metadata={"rebuilt": False, "reason": why})
    path = _training_set_path()
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        with warehouse.connect() as session:
            snapshots = read_snapshots(session, config.snapshot_table, now)
    except LookupError as missing:
        # no point-in-time history, no training set: the model stays in cold start
        context.log.warning(f"no training set: {missing}")
        path.unlink(missing_ok=True)
        return dg.MaterializeResult(metadata={"rebuilt": False, "reason": str(missing)})
    rows = training_set(snapshots, pd.Timestamp(now))
    rows.to_pickle(path)
    orders = rows.drop_duplicates("order_id")
    return dg.MaterializeResult(
        metadata={
            "rebuilt": True,
            "reason": why,
            "path": dg.MetadataValue.path(str(path)),
            "dagster/row_count": len(rows),
            "snapshot_rows": len(snapshots),
            "labelled_orders": len(orders),
            "missed_orders": int(orders["label"].sum()) if len(orders) else 0,
            "as_of_window": f"{rows['as_of'].min()} .. {rows['as_of'].max()}" if len(rows) else "",
        }
    )


def _model_metadata(report: dict) -> dict[str, Any]:
    from ml.evaluate import calibration_markdown, table_markdown

    model, best = report["model"], report["best_rule"]
    lines = ["| scorer | AP | ROC-AUC | Brier |", "|---|---:|---:|---:|"]
    for name, metrics in [("model", model), ("logistic regression", report.get("logistic", {}))]:
        lines.append(
            f"| {name} | {metrics.get('average_precision')} | {metrics.get('roc_auc')} | "
            f"{metrics.get('brier')} |"
        )
    for rule, metrics in report["rules"].items():
        lines.append(
            f"| rule {rule} | {metrics.get('average_precision')} | {metrics.get('roc_auc')} | "
            f"{metrics.get('brier')} |"
        )
    return {
        "trained": True,
        "version": report["version"],
        "decision": report["decision"],
        "champion": report["champion"] or "",
        "holdout_average_precision": model["average_precision"],
        "holdout_roc_auc": model["roc_auc"],
        "holdout_brier": model["brier"],
        "best_rule": best["name"] or "",
        "best_rule_average_precision": best["average_precision"],
        "threshold": report["threshold"],
        "holdout_vs_baselines": dg.MetadataValue.md("\n".join(lines)),
        "calibration": dg.MetadataValue.md(calibration_markdown(report["calibration"])),
        "precision_recall_lead_time": dg.MetadataValue.md(table_markdown(report["thresholds"])),
        "rows": dg.MetadataValue.json(report["rows"]),
        "fit_seconds": report["fit_seconds"],
    }


@dg.asset(
    key=["ml", "lateness_model"],
    group_name="ml",
    deps=[training_set_asset],
    description="Calibrated gradient-boosted lateness model (ml/pipeline.py) in the registry "
    "ORDERWATCH_HOME/models; champion only if it beats the current one on the same holdout.",
)
def lateness_model(
    context: dg.AssetExecutionContext, config: TrainingConfig
) -> dg.MaterializeResult:
    from ml.registry import Registry, train_and_register
    from ml.train import ColdStart, TrainConfig

    now = settings.now()
    registry = Registry(models_dir())
    due, why = _training_due(config, now)
    if not due:
        context.log.info(f"not retrained: {why}")
        return dg.MaterializeResult(
            metadata={"trained": False, "reason": why, "champion": registry.champion() or ""}
        )
    if not _training_set_path().is_file():
        reason = "no training set (see ml/training_set): cold start, no model"
        context.log.warning(reason)
        return dg.MaterializeResult(
            metadata={"trained": False, "cold_start": True, "reason": reason}
        )
    rows = pd.read_pickle(_training_set_path())
    train_config = TrainConfig(
        holdout_days=config.holdout_days,
        calibration_days=config.calibration_days,
        seed=config.seed,
    )
    try:
        report = train_and_register(rows, pd.Timestamp(now), registry, train_config)
    except ColdStart as cold:
        context.log.warning(f"no model trained: {cold}")
        return dg.MaterializeResult(
            metadata={"trained": False, "cold_start": True, "reason": str(cold)}
        )
    context.log.info(f"{report['version']}: {report['decision']}")
    return dg.MaterializeResult(metadata=_model_metadata(report))


@dg.asset_check(asset=lateness_model, name="holdout_ap_beats_best_rule")
def holdout_ap_beats_best_rule() -> dg.AssetCheckResult:
    """A floor, not the target: the champion's holdout AP must not fall below the best rule's."""
    from ml.registry import Registry

    registry = Registry(models_dir())
    champion = registry.champion()
    if champion is None:
        return dg.AssetCheckResult(
            passed=True, metadata={"champion": "", "reason": "no model (cold start)"}
        )
    metrics = registry.metrics(champion)
    model_ap = metrics["model"]["average_precision"] or 0.0
    rule_ap = metrics["best_rule"]["average_precision"] or 0.0
    return dg.AssetCheckResult(
        passed=model_ap >= rule_ap,
        metadata={
            "champion": champion,
            "holdout_average_precision": model_ap,
            "best_rule": metrics["best_rule"]["name"] or "",
            "best_rule_average_precision": rule_ap,
        },
    )


@dg.asset(
    key=["ml", "order_risk_scores"],
    group_name="ml",
    deps=[lateness_model, dg.AssetKey(["marts", "order_state"])],
    description="Every open order scored by the registry's champion, with reasons, appended to "
    "marts.order_risk_scores (scored_at = the run's now); nothing when there is no champion.",
)
def order_risk_scores(
    context: dg.AssetExecutionContext, warehouse: Warehouse
) -> dg.MaterializeResult:
    from ml.predict import score_open_orders
    from ml.registry import Registry, RegistryError

    now = settings.now()
    registry = Registry(models_dir())
    champion = registry.champion()
    if champion is None:
        reason = "no champion model (cold start: too little labelled history); no rows written"
        context.log.warning(reason)
        with warehouse.connect() as session:
            write_scores(session, pd.DataFrame())  # the table exists, empty of this run's rows
        return dg.MaterializeResult(metadata={"rows_written": 0, "reason": reason})
    try:
        model = registry.load(champion)
    except RegistryError as error:
        raise dg.Failure(description=str(error)) from error
    with warehouse.connect() as session:
        state = read_snapshots(session, STATE_TABLE, now)
    scores = score_open_orders(model, champion, state, now)
    with warehouse.connect() as session:
        written = write_scores(session, scores)
    flagged = int(scores["flagged"].sum()) if len(scores) else 0
    top = scores.sort_values("probability", ascending=False).head(10)
    lines = ["| order_id | probability | reasons |", "|---|---:|---|"]
    for row in top.itertuples(index=False):
        texts = "; ".join(r["text"] for r in json.loads(row.reasons))
        lines.append(f"| {row.order_id} | {row.probability:.2f} | {texts} |")
    return dg.MaterializeResult(
        metadata={
            "rows_written": written,
            "model_version": champion,
            "scored_at": now.isoformat(),
            "flagged_at_threshold": flagged,
            "threshold": model.threshold,
            "top_risks": dg.MetadataValue.md("\n".join(lines)),
        }
    )
