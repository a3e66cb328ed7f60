"""Training: the point-in-time training set, a time-ordered split, the calibrated model and its
baselines, all on the same holdout.

Split (by snapshot time, never random), with `now` the end of the history:
  holdout      as_of in [now - holdout_days, now), promise passed by now (label known)
  calibration  as_of in [holdout start - calibration_days, holdout start), label known then
  train        as_of before the calibration window, label known by then
Labels of the earlier windows are those known at the start of the next one, as they would
have been on that day. Only orders whose promise has passed are labelled (an order delivered
early with its promise still ahead is not yet a training example: keeping it would bias the
latest windows towards on-time orders).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
import sklearn
from threadpoolctl import threadpool_limits

from ml.evaluate import MIN_LEAD_HOURS, choose_threshold, holdout_report
from ml.features import FEATURES, build_features, labels, scoring_rows
from ml.pipeline import boosted_pipeline, calibrate, logistic_pipeline

# Cold start: below these no model is trained (README "The lateness model"). 200 labelled
# orders and 20 misses are the least on which a holdout AP means anything; the training window
# alone needs half as many misses.
MIN_LABELLED_ORDERS = 200
MIN_MISSES = 20
# A feature known (non-missing) in a share of the training rows this far from its share in
# the orders scored next is left out (known_share_shift).
MAX_KNOWN_SHARE_SHIFT = 0.25


class ColdStart(Exception):
    """Too little labelled history to train; the message says what is missing."""


@dataclass(frozen=True)
class TrainConfig:
    # Window lengths; None = min(7 days, a quarter of the history) for the holdout and
    # min(4 days, 15 % of it) for calibration, so a two-week history still trains.
    holdout_days: float | None = None
    calibration_days: float | None = None
    seed: int = 0
    min_labelled_orders: int = MIN_LABELLED_ORDERS
    min_misses: int = MIN_MISSES
    # Training rows weigh 0.5 ** (age / half life), age = days before the calibration window:
    # the latest moments look most like the ones scored next (in a first backfill the state of
    # older moments is known less often, docs/architecture.md "Time"). None = equal weights.
    half_life_days: float | None = 7.0
    # HistGradientBoostingClassifier parameters over ml.pipeline's defaults (None = those)
    booster: dict | None = None
    # OpenMP threads for the booster: on a shared machine more threads than free cores make
    # it many times slower (spinning workers), so one by default; results do not depend on it.
    threads: int = 1


@dataclass
class LatenessModel:
    """What the registry stores: the calibrated pipeline and everything scoring needs."""

    estimator: object
    threshold: float
    features: tuple[str, ...]
    data_window: tuple[str, str]
    trained_at: str
    sklearn_version: str = field(default_factory=lambda: sklearn.__version__)

    def predict_proba(self, features: pd.DataFrame) -> np.ndarray:
        return self.estimator.predict_proba(features[list(self.features)])[:, 1]

    def transform(self, features: pd.DataFrame) -> np.ndarray:
        """The pipeline's encoded matrix (each feature one column, in `features` order)."""
        prep, _, _ = self._parts()
        return prep.transform(features[list(self.features)])

    def proba_encoded(self, encoded: np.ndarray) -> np.ndarray:
        """Calibrated probability from the encoded matrix (ml/predict.py works on it). Same
        numbers as predict_proba (checked in tests)."""
        _, booster, calibrator = self._parts()
        return np.clip(calibrator.predict(booster.decision_function(encoded)), 0.0, 1.0)

    def _parts(self) -> tuple[object, object, object]:
        (inner,) = self.estimator.calibrated_classifiers_
        pipeline = inner.estimator.estimator  # FrozenEstimator -> the fitted Pipeline
        (calibrator,) = inner.calibrators
        return pipeline.named_steps["prep"], pipeline.named_steps["model"], calibrator


def training_set(
    snapshots: pd.DataFrame, now: pd.Timestamp, features: pd.DataFrame | None = None
) -> pd.DataFrame:
    """Features of every open order at every snapshot before its promise, with its label.

    `snapshots` holds all orders at each as_of (network context needs the closed ones too);
    the label is read from each order's latest row (the state at the latest as_of <= now).
    `features`: build_features(snapshots) when the caller has it already (same index).
    """
    now = _utc(now)
    within = (pd.to_datetime(snapshots["as_of"], utc=True) <= now).to_numpy()
    snapshots = snapshots[within]
    features = build_features(snapshots) if features is None else features[within]
    keep = scoring_rows(snapshots) & (
        pd.to_datetime(snapshots["promised_deliver_by"], utc=True) > features["as_of"]
    )
    latest = snapshots.sort_values("as_of").drop_duplicates("order_id", keep="last")
    known = labels(latest, now)
    rows = features[keep].merge(known, on="order_id", how="inner")
    rows["label"] = rows["missed"].astype(int)
    rows = rows.drop(columns=["missed"]).reset_index(drop=True)
    # what the model will score next: the open orders at the latest moment (unlabelled)
    scoring = scoring_rows(snapshots) & (features["as_of"] == features["as_of"].max())
    rows.attrs["scoring_known_share"] = (
        features.loc[scoring, list(FEATURES)].notna().mean().to_dict()
    )
    return rows


def _utc(moment: object) -> pd.Timestamp:
    stamp = pd.Timestamp(moment)
    return stamp.tz_convert("UTC") if stamp.tzinfo else stamp.tz_localize("UTC")


def window_days(rows: pd.DataFrame, now: pd.Timestamp, config: TrainConfig) -> tuple[float, float]:
    """Holdout and calibration lengths in days (TrainConfig says how None is resolved)."""
    span = (now - rows["as_of"].min()).total_seconds() / 86400.0 if len(rows) else 0.0
    holdout = config.holdout_days if config.holdout_days is not None else min(7.0, span / 4)
    calibration = config.calibration_days
    if calibration is None:
        calibration = min(4.0, span * 0.15)
    return holdout, calibration


def split(rows: pd.DataFrame, now: pd.Timestamp, config: TrainConfig) -> dict[str, pd.DataFrame]:
    now = _utc(now)
    holdout_days, calibration_days = window_days(rows, now, config)
    holdout_start = now - pd.Timedelta(days=holdout_days)
    calibration_start = holdout_start - pd.Timedelta(days=calibration_days)
    as_of, known_at = rows["as_of"], rows["label_known_at"]
    return {
        "train": rows[(as_of < calibration_start) & (known_at < calibration_start)],
        "calibration": rows[
            (as_of >= calibration_start) & (as_of < holdout_start) & (known_at < holdout_start)
        ],
        "holdout": rows[(as_of >= holdout_start) & (known_at < now)],
    }


def check_history(rows: pd.DataFrame, parts: dict[str, pd.DataFrame], config: TrainConfig) -> None:
    """Raise ColdStart when the labelled history is too thin to train and judge a model."""
    orders = rows.drop_duplicates("order_id")
    problems = []
    if len(orders) < config.min_labelled_orders:
        problems.append(f"{len(orders)} labelled orders (need {config.min_labelled_orders})")
    misses = int(orders["label"].sum()) if len(orders) else 0
    if misses < config.min_misses:
        problems.append(f"{misses} missed promises (need {config.min_misses})")
    for name, part in parts.items():
        if part.empty or part["label"].nunique() < 2:
            problems.append(f"the {name} window has no misses or no on-time orders")
    train_misses = int(parts["train"].drop_duplicates("order_id")["label"].sum())
    if 0 < train_misses < config.min_misses // 2:
        # a model fitted on a handful of misses only memorises them
        need = config.min_misses // 2
        problems.append(f"{train_misses} misses in the training window (need {need})")
    if problems:
        raise ColdStart("not enough labelled history to train: " + "; ".join(problems))


def known_share_shift(train_part: pd.DataFrame, scoring_share: dict | None) -> list[str]:
    """Features whose share of known (non-missing) values in the training rows differs from
    the scoring rows' by more than MAX_KNOWN_SHARE_SHIFT."""
    if not scoring_share:
        return []
    trained = train_part[list(FEATURES)].notna().mean()
    return [
        f
        for f in FEATURES
        if f in scoring_share and abs(trained[f] - scoring_share[f]) > MAX_KNOWN_SHARE_SHIFT
    ]


def recency_weights(
    train_part: pd.DataFrame, cal_part: pd.DataFrame, config: TrainConfig
) -> np.ndarray | None:
    """Per training row, 0.5 ** (days before the calibration window / half life)."""
    if config.half_life_days is None or train_part.empty:
        return None
    end = cal_part["as_of"].min() if len(cal_part) else train_part["as_of"].max()
    age = (end - train_part["as_of"]).dt.total_seconds().to_numpy() / 86400.0
    return np.power(0.5, np.clip(age, 0.0, None) / config.half_life_days)


def train(rows: pd.DataFrame, now: pd.Timestamp, config: TrainConfig | None = None) -> dict:
    """Fit, calibrate and judge on the holdout; returns model, metrics and baselines.

    Raises ColdStart (nothing is fitted) when the history is below the thresholds.
    """
    config = config or TrainConfig()
    with threadpool_limits(limits=config.threads):
        return _train(rows, now, config)


def _train(rows: pd.DataFrame, now: pd.Timestamp, config: TrainConfig) -> dict:
    parts = split(rows, now, config)
    check_history(rows, parts, config)
    began = time.perf_counter()
    train_part, cal_part, holdout = parts["train"], parts["calibration"], parts["holdout"]
    # inputs the as-of layer does not provide (all missing in training) are left out, and so
    # are those known far more (or less) often in the orders scored next than in training:
    # in a first backfill a vendor record's state is known at a past moment only if it has not
    # changed since (one version per record), so e.g. the carrier's estimate is known in a few
    # training rows, on stalled parcels, and on most parcels at "now"; a model would read it
    # as a stall signal that no longer means one.
    shifted = known_share_shift(train_part, rows.attrs.get("scoring_known_share"))
    used = tuple(f for f in FEATURES if train_part[f].notna().any() and f not in shifted)
    x_train, y_train = train_part[list(used)], train_part["label"]
    weight = recency_weights(train_part, cal_part, config)
    boosted = boosted_pipeline(config.seed, used, **(config.booster or {}))
    boosted.fit(x_train, y_train, model__sample_weight=weight)
    calibrated = calibrate(boosted, cal_part, cal_part["label"], used)
    logistic = logistic_pipeline(config.seed, used).fit(x_train, y_train)
    fit_seconds = time.perf_counter() - began
    # The operating threshold is chosen on the calibration window, never on the holdout.
    actionable = cal_part[cal_part["deliver_slack_hours"] >= MIN_LEAD_HOURS]
    if actionable["label"].nunique() < 2:
        actionable = cal_part
    cal_scores = calibrated.predict_proba(actionable[list(used)])[:, 1]
    threshold = choose_threshold(actionable["label"].to_numpy(), cal_scores)
    model = LatenessModel(
        estimator=calibrated,
        threshold=threshold,
        features=used,
        data_window=(
            rows["as_of"].min().isoformat(),
            _utc(now).isoformat(),
        ),
        trained_at=_utc(now).isoformat(),
    )
    report = holdout_report(model, holdout, logistic=(logistic, used))
    report["fit_seconds"] = round(fit_seconds, 2)
    report["rows"] = {name: len(part) for name, part in parts.items()}
    report["orders"] = {name: int(part["order_id"].nunique()) for name, part in parts.items()}
    report["misses"] = {
        name: int(part.drop_duplicates("order_id")["label"].sum()) for name, part in parts.items()
    }
    report["threshold"] = threshold
    report["features"] = list(used)
    report["features_left_out"] = shifted
    report["seed"] = config.seed
    report["window_days"] = dict(
        zip(("holdout", "calibration"), window_days(rows, now, config), strict=True)
    )
    return {"model": model, "report": report, "holdout": holdout}
