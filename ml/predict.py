"""Scoring with reasons: the probability of missing the promise, and the few facts that move it
most, as sentences an ops person reads in seconds.

A reason's contribution is the change in predicted risk when the part of the booster's output
credited to its group of features (path attribution over the trees' splits, _Paths) is taken
out, i.e. against the training population's expectation: positive = these facts raise the risk.
Groups (ml/reasons.py; not single columns) keep correlated features together. Scoring costs one
pass over the trees plus vectorised sentences: 100k rows with reasons in seconds.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from sklearn.ensemble._hist_gradient_boosting.predictor import TreePredictor
from threadpoolctl import threadpool_limits

from ml.features import build_features, scoring_rows
from ml.reasons import REASON_GROUPS, reasons_json
from ml.train import LatenessModel

TOP_REASONS = 3


class _Paths:
    """Per-group contributions read off the booster's trees: each split on a decision path
    moves the expected output (the training rows' mean in that node) from the parent to the
    child; the move is credited to the split feature's group ("Saabas" path attribution, as
    treeinterpreter does). They depend only on the leaf a row reaches, so each tree gets a
    table leaf -> contribution per group, and scoring is one pass to find the leaves: the
    same cost as one prediction, whatever the number of groups. Reads
    HistGradientBoostingClassifier's fitted predictors; the registry refuses a model saved
    under another scikit-learn version (ml/registry.py)."""

    def __init__(self, model: LatenessModel, groups: list[str]) -> None:
        prep, self.booster, self.calibrator = model._parts()
        names = list(prep.get_feature_names_out())
        column_group = np.full(len(names), len(groups))  # last column: features in no group
        for g, group in enumerate(groups):
            for feature in REASON_GROUPS[group][0]:
                if feature in names:
                    column_group[names.index(feature)] = g
        self.bitsets, self.feature_map = self.booster._bin_mapper.make_known_categories_bitsets()
        self.start = float(np.ravel(self.booster._baseline_prediction)[0])
        self.finders, self.tables = [], []
        for (tree,) in self.booster._predictors:
            table, root = _path_table(tree.nodes, column_group, len(groups) + 1)
            self.start += root
            finder = tree.nodes.copy()
            finder["value"] = np.arange(len(finder))  # predicts the leaf's node index
            self.finders.append(
                TreePredictor(finder, tree.binned_left_cat_bitsets, tree.raw_left_cat_bitsets)
            )
            self.tables.append(table)

    def contributions(self, encoded: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Raw (log-odds) output and its per-group contributions (rows x groups + 1)."""
        x = self.booster._preprocess_X(encoded, reset=False)
        total = np.zeros((len(x), self.tables[0].shape[1]))
        for finder, table in zip(self.finders, self.tables, strict=True):
            leaves = finder.predict(x, self.bitsets, self.feature_map, 1).astype(np.intp)
            total += table[leaves]
        return self.start + total.sum(axis=1), total

    def probability(self, raw: np.ndarray) -> np.ndarray:
        return np.clip(self.calibrator.predict(raw), 0.0, 1.0)


def _path_table(
    nodes: np.ndarray, column_group: np.ndarray, width: int
) -> tuple[np.ndarray, float]:
    """Per node, the path contributions from the root to it by group, and the root's expected
    output. Nodes come parent before children (sklearn fills them depth-first)."""
    leaf = nodes["is_leaf"].astype(bool)
    count = nodes["count"].astype(float)
    left, right = nodes["left"].astype(np.intp), nodes["right"].astype(np.intp)
    expected = nodes["value"].astype(float)  # leaves hold the shrunk values the booster adds
    for i in range(len(nodes) - 1, -1, -1):
        if not leaf[i]:
            weight = max(count[left[i]] + count[right[i]], 1.0)
            expected[i] = (
                count[left[i]] * expected[left[i]] + count[right[i]] * expected[right[i]]
            ) / weight
    table = np.zeros((len(nodes), width))
    for i in range(len(nodes)):
        if not leaf[i]:
            group = column_group[nodes["feature_idx"][i]]
            for child in (left[i], right[i]):
                table[child] = table[i]
                table[child, group] += expected[child] - expected[i]
    return table, float(expected[0])


def contributions(model: LatenessModel, features: pd.DataFrame) -> tuple[np.ndarray, pd.DataFrame]:
    """Probabilities, and per group the change in predicted risk when that group's path
    contributions (_Paths) are taken out: positive = these facts raise the risk."""
    groups = list(REASON_GROUPS)
    paths = _Paths(model, groups)
    raw, parts = paths.contributions(model.transform(features.reset_index(drop=True)))
    base = paths.probability(raw)
    deltas = {g: base - paths.probability(raw - parts[:, i]) for i, g in enumerate(groups)}
    return base, pd.DataFrame(deltas)


def _chosen(matrix: np.ndarray) -> np.ndarray:
    """Per row, the column indices of its reasons (-1 = none): its risk-raising facts
    (contribution > 0.005) by size, at most TOP_REASONS; a row with none gets its strongest
    reassurances instead."""
    order = np.argsort(-matrix, axis=1, kind="stable")[:, :TOP_REASONS]
    raising = np.take_along_axis(matrix, order, axis=1) > 0.005
    chosen = np.where(raising, order, -1)
    none = ~raising.any(axis=1)
    by_size = np.argsort(-np.abs(matrix), axis=1, kind="stable")[:, :TOP_REASONS]
    chosen[none] = by_size[none]
    return chosen


def score(model: LatenessModel, features: pd.DataFrame, threads: int = 1) -> pd.DataFrame:
    """order_id, as_of, probability, flagged (>= the model's threshold), reasons (JSON text).

    `threads`: OpenMP threads for the booster (ml.train.TrainConfig.threads says why one)."""
    with threadpool_limits(limits=threads):
        probability, deltas = contributions(model, features)
    groups = list(deltas.columns)
    matrix = deltas.to_numpy()
    chosen = _chosen(matrix)
    reasons = reasons_json(features, matrix, chosen, groups)
    return pd.DataFrame(
        {
            "order_id": features["order_id"].to_numpy(),
            "as_of": features["as_of"].to_numpy(),
            "probability": np.round(probability, 6),
            "flagged": probability >= model.threshold,
            "reasons": reasons,
        }
    )


def score_open_orders(
    model: LatenessModel, version: str, state: pd.DataFrame, scored_at: object
) -> pd.DataFrame:
    """Every open order of `state` (the order state at `scored_at`, all orders: the network
    context reads the closed ones) scored: the rows of marts.order_risk_scores."""
    features = build_features(state)
    open_rows = features[scoring_rows(state).to_numpy()]
    if open_rows.empty:
        return pd.DataFrame(
            columns=["order_id", "model_version", "scored_at", "probability", "reasons"]
        )
    scored = score(model, open_rows)
    scored["model_version"] = version
    scored["scored_at"] = pd.Timestamp(scored_at)
    return scored[["order_id", "model_version", "scored_at", "probability", "reasons", "flagged"]]
