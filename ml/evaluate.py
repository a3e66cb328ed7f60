"""Evaluation: the model, the logistic baseline and every single rule on the same rows, and the
operator's view (at fixed moments, over open orders whose promise is >= 24 h away).

Ground truth (the simulator's ground_truth.csv, or a merchant's own audited outcomes) is only
ever an input here, never a feature.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from sklearn.metrics import (
    average_precision_score,
    brier_score_loss,
    fbeta_score,
    precision_recall_curve,
    roc_auc_score,
)

from ml.features import RULES

# The operating threshold: the lowest (most recall) at which the calibration window's flags
# are right at least OPERATING_PRECISION of the time, over the orders an operator can still
# act on (promise >= MIN_LEAD_HOURS away): at most one false alarm per true one. Where no
# threshold reaches it, the one maximising F-beta (beta 2 weighs recall four times precision).
OPERATING_PRECISION = 0.5
THRESHOLD_BETA = 2.0
TABLE_THRESHOLDS: tuple[float, ...] = (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8)
MIN_LEAD_HOURS = 24.0


def choose_threshold(y: np.ndarray, scores: np.ndarray) -> float:
    precision, recall, thresholds = precision_recall_curve(y, scores)
    reaching = np.flatnonzero(precision[:-1] >= OPERATING_PRECISION)
    if len(reaching):
        return float(thresholds[reaching[0]])
    b2 = THRESHOLD_BETA**2
    with np.errstate(divide="ignore", invalid="ignore"):
        f = (1 + b2) * precision * recall / (b2 * precision + recall)
    f = np.nan_to_num(f[:-1])
    return float(thresholds[int(np.argmax(f))]) if len(thresholds) else 0.5


def score_metrics(y: np.ndarray, scores: np.ndarray) -> dict[str, float | None]:
    """Average precision, ROC-AUC, Brier; None where a metric is undefined (one class only)."""
    y = np.asarray(y, dtype=int)
    scores = np.asarray(scores, dtype=float)
    if len(y) == 0 or y.min() == y.max():
        return {"average_precision": None, "roc_auc": None, "brier": None, "rows": len(y)}
    return {
        "average_precision": round(float(average_precision_score(y, scores)), 4),
        "roc_auc": round(float(roc_auc_score(y, scores)), 4),
        "brier": round(float(brier_score_loss(y, np.clip(scores, 0, 1))), 4),
        "rows": len(y),
        "positives": int(y.sum()),
    }


def rule_metrics(rows: pd.DataFrame, y: np.ndarray) -> dict[str, dict]:
    """Each rule's `<rule>_active` flag of the snapshot as a 0/1 score, on the same rows."""
    out = {}
    for rule in RULES:
        flag = rows[f"{rule}_active"].fillna(0).to_numpy(dtype=float)
        metrics = score_metrics(y, flag)
        flagged = flag > 0
        metrics["precision"] = round(float(y[flagged].mean()), 4) if flagged.any() else None
        metrics["recall"] = round(float(flag[y == 1].mean()), 4) if (y == 1).any() else None
        out[rule] = metrics
    return out


def best_rule(rules: dict[str, dict]) -> tuple[str | None, float]:
    scored = [(m["average_precision"] or 0.0, name) for name, m in rules.items()]
    if not scored:
        return None, 0.0
    ap, name = max(scored)
    return name, ap


def calibration_table(y: np.ndarray, scores: np.ndarray, bins: int = 10) -> list[dict]:
    edges = np.linspace(0, 1, bins + 1)
    index = np.clip(np.digitize(scores, edges[1:-1]), 0, bins - 1)
    table = []
    for b in range(bins):
        inside = index == b
        if not inside.any():
            continue
        table.append(
            {
                "bin": f"{edges[b]:.1f}–{edges[b + 1]:.1f}",
                "rows": int(inside.sum()),
                "predicted": round(float(scores[inside].mean()), 3),
                "observed": round(float(y[inside].mean()), 3),
            }
        )
    return table


def calibration_markdown(table: list[dict]) -> str:
    lines = ["| predicted | rows | mean predicted | observed | |", "|---|---:|---:|---:|---|"]
    for row in table:
        bar = "█" * round(row["observed"] * 20) + "·" * (20 - round(row["observed"] * 20))
        lines.append(
            f"| {row['bin']} | {row['rows']} | {row['predicted']:.3f} | {row['observed']:.3f} | "
            f"`{bar}` |"
        )
    return "\n".join(lines)


def threshold_table(y: np.ndarray, scores: np.ndarray, lead_hours: np.ndarray) -> list[dict]:
    """Precision, recall and median lead time (hours before the promise, over flagged misses)."""
    table = []
    for threshold in TABLE_THRESHOLDS:
        flagged = scores >= threshold
        hits = flagged & (y == 1)
        table.append(
            {
                "threshold": threshold,
                "flagged": int(flagged.sum()),
                "precision": round(float(y[flagged].mean()), 3) if flagged.any() else None,
                "recall": round(float(hits.sum() / max(1, (y == 1).sum())), 3),
                "median_lead_hours": round(float(np.median(lead_hours[hits])), 1)
                if hits.any()
                else None,
            }
        )
    return table


def table_markdown(table: list[dict]) -> str:
    lines = [
        "| threshold | flagged | precision | recall | median lead h |",
        "|---:|---:|---:|---:|---:|",
    ]
    for row in table:
        cells = [
            f"{row['threshold']:.2f}",
            str(row["flagged"]),
            "–" if row["precision"] is None else f"{row['precision']:.3f}",
            f"{row['recall']:.3f}",
            "–" if row["median_lead_hours"] is None else f"{row['median_lead_hours']:.0f}",
        ]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def holdout_report(
    model: object, holdout: pd.DataFrame, logistic: tuple[object, tuple[str, ...]] | None = None
) -> dict:
    """The model, the logistic baseline and each rule on the same holdout rows (labels from the
    warehouse), plus the calibration and threshold tables shown in the UI."""
    y = holdout["label"].to_numpy(dtype=int)
    scores = model.predict_proba(holdout)
    report: dict = {"model": score_metrics(y, scores)}
    if logistic is not None:
        estimator, columns = logistic
        report["logistic"] = score_metrics(y, estimator.predict_proba(holdout[list(columns)])[:, 1])
    report["rules"] = rule_metrics(holdout, y)
    name, ap = best_rule(report["rules"])
    report["best_rule"] = {"name": name, "average_precision": ap}
    report["calibration"] = calibration_table(y, scores)
    lead = (
        (pd.to_datetime(holdout["label_known_at"], utc=True) - holdout["as_of"]).dt.total_seconds()
        / 3600.0
    ).to_numpy()
    report["thresholds"] = threshold_table(y, scores, lead)
    report["holdout_window"] = [
        holdout["as_of"].min().isoformat(),
        holdout["as_of"].max().isoformat(),
    ]
    return report


def operator_moments(start: pd.Timestamp, end: pd.Timestamp, hour: int = 15) -> list[pd.Timestamp]:
    """`hour`:00 UTC of each day in [start, end)."""
    first = start.normalize() + pd.Timedelta(hours=hour)
    if first < start:
        first += pd.Timedelta(days=1)
    moments = []
    while first < end:
        moments.append(first)
        first += pd.Timedelta(days=1)
    return moments


def operator_view(
    scored: pd.DataFrame, truth: pd.DataFrame, threshold: float, score_column: str = "probability"
) -> dict:
    """At each moment (`as_of`) over open orders whose promise is >= 24 h away: AP / AUC / Brier,
    and at `threshold` precision, recall over all misses and over misses whose failure was
    already observable (truth `failure_onset_at` <= as_of), lead time, recall per cause.

    `scored`: order_id, as_of, promised_deliver_by, score_column. `truth`: order_id,
    missed_promise (bool), failure_mode, failure_onset_at.
    """
    rows = scored.merge(truth, on="order_id", how="inner")
    promise = pd.to_datetime(rows["promised_deliver_by"], utc=True)
    rows = rows[promise - rows["as_of"] >= pd.Timedelta(hours=MIN_LEAD_HOURS)].copy()
    y = rows["missed_promise"].astype(bool).to_numpy()
    scores = rows[score_column].to_numpy(dtype=float)
    onset = pd.to_datetime(rows["failure_onset_at"], utc=True, errors="coerce")
    observable = y & (onset.notna() & (onset <= rows["as_of"])).to_numpy()
    flagged = scores >= threshold
    out = score_metrics(y.astype(int), scores)
    out["moments"] = int(rows["as_of"].nunique())
    out["threshold"] = threshold
    out["flagged"] = int(flagged.sum())
    out["precision"] = round(float(y[flagged].mean()), 4) if flagged.any() else None
    out["recall_all"] = round(float(flagged[y].mean()), 4) if y.any() else None
    out["recall_observable"] = (
        round(float(flagged[observable].mean()), 4) if observable.any() else None
    )
    out["observable_rows"] = int(observable.sum())
    lead = (
        (pd.to_datetime(rows["promised_deliver_by"], utc=True) - rows["as_of"]).dt.total_seconds()
        / 3600.0
    ).to_numpy()
    out["table"] = threshold_table(y.astype(int), scores, lead)
    first_flag = rows[flagged & y].groupby("order_id")["as_of"].min()
    breach = rows.drop_duplicates("order_id").set_index("order_id")["promised_deliver_by"]
    if len(first_flag):
        hours = (pd.to_datetime(breach[first_flag.index], utc=True) - first_flag).dt.total_seconds()
        out["median_lead_hours"] = round(float(np.median(hours / 3600.0)), 1)
    else:
        out["median_lead_hours"] = None
    out["missed_orders"] = int(rows.loc[y, "order_id"].nunique())
    out["missed_orders_flagged"] = int(first_flag.size)
    per_cause = {}
    for cause, part in rows[y].groupby("failure_mode"):
        hit = part[score_column].to_numpy(dtype=float) >= threshold
        per_cause[str(cause)] = {"rows": len(part), "recall": round(float(hit.mean()), 3)}
    out["per_cause"] = per_cause
    return out


def f_beta_at(y: np.ndarray, scores: np.ndarray, threshold: float) -> float:
    return float(fbeta_score(y, scores >= threshold, beta=THRESHOLD_BETA, zero_division=0))
