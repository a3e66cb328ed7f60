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
    # better than the champion but not than the best rule: not promoted
    refused = registry.consider(second["version"], 0.30, 0.20, best_rule_ap=0.35)
    assert refused.startswith("not promoted") and registry.champion() == first["version"]
    empty = Registry(tmp_path / "empty")
    empty.save(trained["model"], trained["report"])
    assert empty.consider(second["version"], 0.30, None, 0.30).startswith("not promoted")
    assert empty.champion() is None
    assert registry.consider(second["version"], 0.36, 0.20, 0.35).startswith("promoted")
    registry.set_champion(first["version"], "back to the first")
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


def _parcels(**columns: list) -> pd.DataFrame:
    at = pd.Timestamp("2026-10-14 15:00", tz="UTC")  # a Wednesday
    n = len(next(iter(columns.values())))
    base = {
        "as_of": [at] * n,
        "is_open": [True] * n,
        "is_cancelled": [False] * n,
        "delivered_at": [pd.NaT] * n,
        "shipped_at": [at - pd.Timedelta(hours=30)] * n,
        "placed_at": [at - pd.Timedelta(hours=50)] * n,
        "promised_ship_by": [at + pd.Timedelta(hours=10)] * n,
        "last_scan_at": [at - pd.Timedelta(hours=2)] * n,
        "scan_gap_active": [False] * n,
        "no_first_scan_active": [False] * n,
        "lost_active": [False] * n,
        "fulfillment_hold_active": [False] * n,
        "carrier_exception_active": [False] * n,
        "carrier_est_delivery_at": [pd.NaT] * n,
        "promised_deliver_by": [at + pd.Timedelta(days=3)] * n,
        "destination_region": ["US-AK"] * n,
        "carrier": ["UPS"] * n,
        "warehouse_name": ["A"] * n,
    }
    base.update(columns)
    frame = pd.DataFrame(base)
    for column in frame.columns:
        if column.endswith(("_at", "_by")) or column == "as_of":
            frame[column] = pd.to_datetime(frame[column], utc=True)
    return frame


def test_peer_shares_count_the_other_parcels_of_the_region_not_the_order_itself() -> None:
    from ml.features import PEER_PRIOR, peer_context

    at = pd.Timestamp("2026-10-14 15:00", tz="UTC")
    gap = [True, True, False, False, False, True]
    frame = _parcels(
        scan_gap_active=gap,
        destination_region=["US-AK"] * 4 + ["US-CA"] * 2,
        # the last parcel ships after the moment: not yet with the carrier, never counted
        shipped_at=[at - pd.Timedelta(hours=30)] * 5 + [at + pd.Timedelta(hours=5)],
        carrier_est_delivery_at=[at + pd.Timedelta(days=4), at, pd.NaT, pd.NaT, pd.NaT, pd.NaT],
    )
    context = peer_context(frame)
    shares = context["destination_region_silent_share"]
    # network-wide: 2 silent of the 5 parcels with the carrier; each share leaves its own out
    prior_for_silent, prior_for_quiet = 1 / 4, 2 / 4
    assert shares[0] == pytest.approx((1 + PEER_PRIOR * prior_for_silent) / (3 + PEER_PRIOR))
    assert shares[2] == pytest.approx((2 + PEER_PRIOR * prior_for_quiet) / (3 + PEER_PRIOR))
    # US-CA's only other parcel is not with the carrier yet: the prior alone
    assert shares[4] == pytest.approx(prior_for_quiet)
    # an estimate counts only over the parcels that have one: 1 of 2 late, none elsewhere
    late = context["destination_region_edd_late_share"]
    assert late[1] == pytest.approx((1 + PEER_PRIOR * 1.0) / (1 + PEER_PRIOR))
    assert late[0] == pytest.approx((0 + PEER_PRIOR * 0.0) / (1 + PEER_PRIOR))
    # no exception input at all: missing, not "0 % of parcels"
    assert (
        peer_context(frame.drop(columns="carrier_exception_active"))["carrier_exception_share"]
        .isna()
        .all()
    )


def test_peer_shares_and_queue_of_a_moment_ignore_every_other_moment() -> None:
    from ml.features import _site_load, peer_context

    at = pd.Timestamp("2026-10-14 15:00", tz="UTC")
    first = _parcels(scan_gap_active=[True, False, False, False, False], placed_at=[at] * 5)
    shipped = [at - pd.Timedelta(hours=3)] * 3 + [pd.NaT] * 2
    first["shipped_at"] = pd.to_datetime(shipped, utc=True)
    later = first.assign(as_of=at + pd.Timedelta(hours=24), scan_gap_active=True)
    # shipped after the first moment, before the second: with the carrier, silent, at the second
    later["shipped_at"] = pd.to_datetime([at + pd.Timedelta(hours=21)] * 5, utc=True)
    both = pd.concat([first, later], ignore_index=True)
    alone = pd.concat([peer_context(first), _site_load(first, first)], axis=1)
    together = pd.concat([peer_context(both), _site_load(both, both)], axis=1).iloc[:5]
    pd.testing.assert_frame_equal(alone, together)
    assert not together.equals(
        pd.concat([peer_context(both), _site_load(both, both)], axis=1)
        .iloc[5:]
        .set_axis(together.index)
    ), "the later moment must differ, or this test proves nothing"


def test_working_days_skip_weekends_and_the_queue_follows_ship_by_dates() -> None:
    from ml.features import _site_load, _workdays

    friday = pd.Series(pd.to_datetime(["2026-10-16 15:00", "2026-10-13 15:00"], utc=True))
    three_days_on = friday + pd.Timedelta(hours=72)
    assert _workdays(friday, three_days_on).tolist() == [1.0, 3.0]  # from Friday, from Tuesday

    at = pd.Timestamp("2026-10-14 15:00", tz="UTC")
    due = [at + pd.Timedelta(hours=h) for h in (30, 5, 20, 1, 2, 0)]
    shipped = [pd.NaT, pd.NaT, pd.NaT, at - pd.Timedelta(hours=5), at - pd.Timedelta(hours=30)]
    shipped += [at - pd.Timedelta(hours=40)]
    frame = _parcels(
        promised_ship_by=due,
        shipped_at=shipped,
        # a held order waits, but not in the line: it neither counts ahead nor gets a place
        fulfillment_hold_active=[False, False, False, False, False, False],
    )
    held = pd.concat([frame.iloc[:1].assign(promised_ship_by=at), frame], ignore_index=True)
    held.loc[0, "fulfillment_hold_active"] = True
    load = _site_load(held, held)
    # 3 shipments in the 3-day window: 1 a day; ahead = unshipped orders due to ship earlier
    assert load["queue_ahead_days"].tolist()[1:4] == [2.0, 0.0, 1.0]
    assert load["queue_ahead_days"].iloc[[0, 4, 5, 6]].isna().all()
    # 1 shipment in the last day against 2 in the two days before (1 a day)
    assert load["warehouse_pace"].iloc[1] == pytest.approx(1.0)
    assert _site_load(frame.iloc[:4], frame.iloc[:4])["warehouse_pace"].isna().all()
