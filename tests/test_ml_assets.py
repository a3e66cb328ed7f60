"""The ml assets against a real DuckDB warehouse in tmp_path: train, register, score every
open order into marts.order_risk_scores, keep history, replace a rerun, and cold start."""

from __future__ import annotations

import json
from pathlib import Path

import dagster as dg
import duckdb
import pandas as pd
import pytest

from orderwatch_dagster.defs.ml.assets import (
    holdout_ap_beats_best_rule,
    lateness_model,
    order_risk_scores,
    training_set_asset,
)
from orderwatch_dagster.defs.resources import DuckDBWarehouse
from tests.ml_snapshots import synthetic_snapshots

ASSETS = [training_set_asset, lateness_model, order_risk_scores, holdout_ap_beats_best_rule]
SPLIT = {"holdout_days": 6.0, "calibration_days": 4.0}
RUN_CONFIG = {
    "ops": {f"ml__{name}": {"config": SPLIT} for name in ("training_set", "lateness_model")}
}


def _warehouse(path: Path, snapshots: pd.DataFrame) -> pd.Timestamp:
    now = snapshots["as_of"].max()
    with duckdb.connect(str(path)) as con:
        con.execute("create schema if not exists marts")
        con.register("snapshots_frame", snapshots)
        con.execute("create table marts.order_state_snapshots as select * from snapshots_frame")
        con.execute(
            "create table marts.order_state as select * from marts.order_state_snapshots"
            " where as_of = (select max(as_of) from marts.order_state_snapshots)"
        )
    return now


def _run(path: Path, now: pd.Timestamp, monkeypatch: pytest.MonkeyPatch, assets=ASSETS):
    monkeypatch.setenv("ORDERWATCH_AS_OF", now.isoformat())
    return dg.materialize(
        assets,
        resources={"warehouse": DuckDBWarehouse(path=str(path))},
        run_config=RUN_CONFIG if len(assets) > 1 else None,
    )


def _metadata(result: dg.ExecuteInProcessResult, key: list[str]) -> dict:
    (event,) = [
        e for e in result.get_asset_materialization_events() if e.asset_key == dg.AssetKey(key)
    ]
    return {k: v.value for k, v in event.materialization.metadata.items()}


def _scores(path: Path) -> pd.DataFrame:
    with duckdb.connect(str(path), read_only=True) as con:
        return con.execute("select * from marts.order_risk_scores").df()


def test_train_score_history_and_rerun(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ORDERWATCH_HOME", str(tmp_path))
    db = tmp_path / "warehouse.duckdb"
    now = _warehouse(db, synthetic_snapshots(n_orders=700, days=22))
    result = _run(db, now, monkeypatch)
    assert result.success
    model = _metadata(result, ["ml", "lateness_model"])
    assert model["trained"] and model["decision"].startswith("promoted")
    assert model["holdout_average_precision"] >= model["best_rule_average_precision"]
    (check,) = result.get_asset_check_evaluations()
    assert check.passed
    assert list((tmp_path / "models").glob("*/model.joblib"))

    with duckdb.connect(str(db), read_only=True) as con:
        (open_orders,) = con.execute(
            "select count(*) from marts.order_state where is_open"
        ).fetchone()
    scores = _scores(db)
    assert len(scores) == open_orders > 0
    assert scores["order_id"].is_unique
    assert (scores["scored_at"] == now).all() and scores["model_version"].nunique() == 1
    assert scores["probability"].between(0, 1).all()
    assert all(json.loads(r) for r in scores["reasons"])

    # a rerun at the same now replaces its own rows; a later run adds its own (history)
    _run(db, now, monkeypatch, [order_risk_scores])
    assert len(_scores(db)) == open_orders
    later = _run(db, now + pd.Timedelta(hours=1), monkeypatch, [order_risk_scores])
    assert not _metadata(later, ["ml", "order_risk_scores"]).get("reason")
    assert len(_scores(db)) == 2 * open_orders

    # the model is not retrained an hour later: the champion is kept
    again = _run(db, now + pd.Timedelta(hours=1), monkeypatch)
    assert _metadata(again, ["ml", "lateness_model"])["trained"] is False


def test_cold_start_writes_no_scores(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ORDERWATCH_HOME", str(tmp_path))
    db = tmp_path / "warehouse.duckdb"
    now = _warehouse(db, synthetic_snapshots(n_orders=120, days=22, step_hours=24))
    result = _run(db, now, monkeypatch)
    assert result.success
    model = _metadata(result, ["ml", "lateness_model"])
    assert model["cold_start"] and "labelled orders" in model["reason"]
    scores = _metadata(result, ["ml", "order_risk_scores"])
    assert scores["rows_written"] == 0 and "cold start" in scores["reason"]
    assert _scores(db).empty
    assert not list((tmp_path / "models").glob("*/model.joblib"))
