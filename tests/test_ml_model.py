"""ml/: point-in-time features, determinism, cold start, the registry, reasons (synthetic
snapshots from tests/ml_snapshots.py; the simulated world is measured by `make bench`)."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import sklearn

from ml.features import FEATURES, TIME_COLUMNS, build_features
from ml.predict import score
from ml.registry import Registry, RegistryError, train_and_register
from ml.train import ColdStart, TrainConfig, train, training_set
from tests.ml_snapshots import synthetic_snapshots

CONFIG = TrainConfig(holdout_days=6, calibration_days=4, seed=0)
PROMISE_COLUMNS = {"promised_deliver_by", "promised_ship_by"}  # known at placement


@pytest.fixture(scope="module")
def snapshots() -> pd.DataFrame:
    return synthetic_snapshots(n_orders=700, days=22)


@pytest.fixture(scope="module")
def trained(snapshots: pd.DataFrame) -> dict:
    now = snapshots["as_of"].max()
    rows = training_set(snapshots, now)
    return {"now": now, "rows": rows, **train(rows, now, CONFIG)}


def _features_at(frame: pd.DataFrame, moment: pd.Timestamp) -> pd.DataFrame:
    features = build_features(frame)
    at = features[features["as_of"] == moment]
    return at.sort_values("order_id").reset_index(drop=True)


def test_features_at_t_use_only_rows_known_at_t(snapshots: pd.DataFrame) -> None:
    moment = sorted(snapshots["as_of"].unique())[20]
    full = _features_at(snapshots, moment)
    # the history truncated at the moment: later snapshots do not exist yet
    truncated = _features_at(snapshots[snapshots["as_of"] <= moment], moment)
    pd.testing.assert_frame_equal(full, truncated)
    # rewriting every later snapshot changes nothing at the moment
    scrambled = snapshots.copy()
    later = scrambled["as_of"] > moment
    scrambled.loc[later, "delivered_at"] = pd.NaT
    scrambled.loc[later, "wismo_ticket_count"] = 99
    pd.testing.assert_frame_equal(full, _features_at(scrambled, moment))
    assert len(full) > 100


def test_network_context_counts_closed_orders_the_snapshots_no_longer_show(
    snapshots: pd.DataFrame,
) -> None:
    """The as-of layer drops an order's rows a day after its closure (dbt var
    snapshot_closed_retention_hours) while "now" keeps every order: features of the rows that
    remain must equal those built while every order was still shown, or a lane's late rate in
    training (past moments) would differ from the one scored at "now"."""
    delivered = pd.to_datetime(snapshots["delivered_at"], utc=True)
    gone = delivered.notna() & (delivered < snapshots["as_of"] - pd.Timedelta(hours=24))
    kept = snapshots[~gone]
    assert gone.sum() > 1000, "the retention must drop rows, or this test proves nothing"
    full = build_features(snapshots).loc[kept.index]
    pd.testing.assert_frame_equal(build_features(kept), full)


def test_no_feature_reads_a_fact_after_its_snapshot(snapshots: pd.DataFrame) -> None:
    """Facts stamped after a row's as_of (which the as-of layer never shows) are ignored: the
    features do not move when they are blanked out."""
    moment = sorted(snapshots["as_of"].unique())[20]
    rows = snapshots[snapshots["as_of"] == moment].copy()
    leaky = rows.copy()
    future = moment + pd.Timedelta(hours=30)
    leaky["delivered_at"] = leaky["delivered_at"].fillna(future)  # a delivery not yet known
    leaky["shipped_at"] = leaky["shipped_at"].fillna(future)
    leaky["last_scan_at"] = leaky["last_scan_at"].fillna(future)
    scrubbed = leaky.copy()
    for column in set(TIME_COLUMNS) & set(leaky.columns) - PROMISE_COLUMNS - {"as_of"}:
        stamps = pd.to_datetime(scrubbed[column], utc=True)
        scrubbed[column] = stamps.where(stamps <= scrubbed["as_of"])
    pd.testing.assert_frame_equal(_features_at(rows, moment), _features_at(scrubbed, moment))
    assert not _features_at(rows, moment).equals(
        _features_at(leaky.assign(is_open=rows["is_open"]), moment)
    ), "the leaky frame must differ, or this test proves nothing"


def test_training_is_deterministic(snapshots: pd.DataFrame, trained: dict) -> None:
    again = train(trained["rows"], trained["now"], CONFIG)
    first, second = dict(trained["report"]), dict(again["report"])
    first.pop("fit_seconds"), second.pop("fit_seconds")
    assert json.dumps(first, sort_keys=True, default=str) == json.dumps(
        second, sort_keys=True, default=str
    )
    holdout = trained["holdout"]
    np.testing.assert_array_equal(
        trained["model"].predict_proba(holdout), again["model"].predict_proba(holdout)
    )


def test_model_beats_each_rule_and_is_calibrated(trained: dict) -> None:
    report = trained["report"]
    assert report["model"]["average_precision"] > report["best_rule"]["average_precision"]
    # the split is by time: every holdout row is later than every training row
    rows = trained["rows"]
    assert report["rows"]["train"] > 0 and report["rows"]["holdout"] > 0
    assert set(rows.columns) >= set(FEATURES)
    # probabilities with skill: a lower Brier score than the holdout's own base rate
    y = trained["holdout"]["label"].to_numpy()
    assert report["model"]["brier"] < y.mean() * (1 - y.mean())


def test_cold_start_trains_nothing(snapshots: pd.DataFrame, tmp_path) -> None:
    few = snapshots[snapshots["order_id"] < snapshots["order_id"].min() + 120]
    now = few["as_of"].max()
    rows = training_set(few, now)
    registry = Registry(tmp_path / "models")
    with pytest.raises(ColdStart, match="labelled orders"):
        train_and_register(rows, now, registry, CONFIG)
    assert registry.versions() == [] and registry.champion() is None


def test_registry_refuses_another_sklearn_version(trained: dict, tmp_path) -> None:
    registry = Registry(tmp_path / "models")
    version = registry.save(trained["model"], trained["report"])
    assert sklearn.__version__ in version
    assert registry.load(version).threshold == trained["model"].threshold
    metrics_path = registry.root / version / "metrics.json"
    metrics = json.loads(metrics_path.read_text())
    metrics["sklearn_version"] = "0.24.2"
    metrics_path.write_text(json.dumps(metrics))
    with pytest.raises(RegistryError, match=r"scikit-learn 0\.24\.2"):
        registry.load(version)


def test_champion_only_when_better_pin_and_rollback(trained: dict, tmp_path) -> None:
    registry = Registry(tmp_path / "models")
    rows, now = trained["rows"], trained["now"]
    first = {"version": registry.save(trained["model"], trained["report"])}
    assert registry.consider(first["version"], 0.5, None).startswith("promoted")
    assert registry.champion() == first["version"]
    # one hour later: promoted only if it beats the champion on its own (the same) holdout
    second = train_and_register(rows, now + pd.Timedelta(hours=1), registry, CONFIG)
    assert second["champion_ap_on_holdout"] is not None
    better = second["model"]["average_precision"] > second["champion_ap_on_holdout"]
    assert (registry.champion() == second["version"]) == better, second["decision"]
    registry.set_champion(first["version"], "back to the first")
    assert registry.consider(second["version"], 0.10, 0.20).startswith("kept champion")
    assert registry.champion() == first["version"]
    registry.set_champion(second["version"], "pinned by hand", pinned=True)
    assert registry.champion() == second["version"] and registry.is_pinned()
    assert registry.rollback() == first["version"]
    assert registry.champion() == first["version"]


def test_reasons_match_the_model_and_read_as_sentences(trained: dict) -> None:
    model, holdout = trained["model"], trained["holdout"]
    fast = model.proba_encoded(model.transform(holdout))
    np.testing.assert_allclose(fast, model.predict_proba(holdout), atol=1e-9)
    scored = score(model, holdout)
    assert len(scored) == len(holdout)
    np.testing.assert_allclose(scored["probability"], fast, atol=1e-6)
    for text in scored["reasons"]:
        reasons = json.loads(text)
        assert 1 <= len(reasons) <= 3
        for reason in reasons:
            assert set(reason) == {"feature", "text", "contribution"}
            assert 5 < len(reason["text"]) < 120 and "nan" not in reason["text"]
    riskiest = json.loads(scored.sort_values("probability").iloc[-1]["reasons"])
    assert riskiest[0]["contribution"] > 0
