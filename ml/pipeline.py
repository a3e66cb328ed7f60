"""The model: one sklearn Pipeline (ColumnTransformer + HistGradientBoostingClassifier),
calibrated on a later time window; and the logistic-regression baseline on the same columns."""

from __future__ import annotations

from collections.abc import Sequence

import pandas as pd
from sklearn.calibration import CalibratedClassifierCV
from sklearn.compose import ColumnTransformer
from sklearn.ensemble import HistGradientBoostingClassifier
from sklearn.frozen import FrozenEstimator
from sklearn.impute import SimpleImputer
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import OneHotEncoder, OrdinalEncoder, StandardScaler

from ml.features import CATEGORICAL, FEATURES, NUMERIC


def _columns(features: Sequence[str]) -> tuple[list[str], list[str]]:
    return [f for f in CATEGORICAL if f in features], [f for f in NUMERIC if f in features]


def boosted_pipeline(
    seed: int, features: Sequence[str] = FEATURES, **booster_params: object
) -> Pipeline:
    """Categories ordinal-encoded (rare ones pooled, unseen ones missing), numbers as they are
    (the booster handles missing values natively). `booster_params` override the defaults."""
    categorical, numeric = _columns(features)
    encoder = OrdinalEncoder(
        handle_unknown="use_encoded_value",
        unknown_value=-1,  # negative = missing for the booster
        encoded_missing_value=-1,
        min_frequency=20,
        max_categories=200,
    )
    prep = ColumnTransformer(
        [("cat", encoder, categorical), ("num", "passthrough", numeric)],
        verbose_feature_names_out=False,
    )
    params: dict = {
        "learning_rate": 0.1,
        "max_iter": 120,  # prediction cost (100k rows with reasons) grows with the trees
        "max_leaf_nodes": 31,
        "min_samples_leaf": 50,
        "l2_regularization": 1.0,
        **booster_params,
    }
    booster = HistGradientBoostingClassifier(
        **params,
        categorical_features=list(range(len(categorical))),
        early_stopping=False,  # its internal split would be random, not time-ordered
        random_state=seed,
    )
    return Pipeline([("prep", prep), ("model", booster)])


def logistic_pipeline(seed: int, features: Sequence[str] = FEATURES) -> Pipeline:
    categorical, numeric = _columns(features)
    numeric_steps = Pipeline(
        [
            (
                "impute",
                SimpleImputer(strategy="median", add_indicator=True, keep_empty_features=True),
            ),
            ("scale", StandardScaler()),
        ]
    )
    prep = ColumnTransformer(
        [
            (
                "cat",
                OneHotEncoder(handle_unknown="infrequent_if_exist", min_frequency=20),
                categorical,
            ),
            ("num", numeric_steps, numeric),
        ]
    )
    return Pipeline(
        [("prep", prep), ("model", LogisticRegression(C=0.5, max_iter=1000, random_state=seed))]
    )


def calibrate(
    fitted: Pipeline, x_cal: pd.DataFrame, y_cal: pd.Series, features: Sequence[str] = FEATURES
) -> CalibratedClassifierCV:
    """Calibrate an already fitted pipeline on a later window (its own rows are never reused).

    A sigmoid (Platt) keeps the booster's ranking: isotonic steps would tie many rows and
    lower the average precision the model is judged by, and flatten the reasons' risk
    changes (ml/predict.py) to zero inside a step."""
    calibrated = CalibratedClassifierCV(FrozenEstimator(fitted), method="sigmoid")
    calibrated.fit(x_cal[list(features)], y_cal)
    return calibrated
