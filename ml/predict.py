"""Scoring with reasons: the probability of missing the promise, and the few facts that move it
most, as sentences an ops person reads in seconds.

A reason's contribution is the change in predicted risk when its group of features is set to
the typical order's values (LatenessModel.typical, from the training window): positive = this
fact raises the risk. Groups (not single columns) keep correlated features together, and keep
scoring 100k rows with reasons within seconds.
"""

from __future__ import annotations

import json
from collections.abc import Callable

import numpy as np
import pandas as pd
from threadpoolctl import threadpool_limits

from ml.features import build_features, scoring_rows
from ml.train import LatenessModel

TOP_REASONS = 3


def _h(value: object) -> str:
    hours = float(value)
    if abs(hours) >= 48:
        return f"{hours / 24:.1f} days"
    return f"{hours:.0f} h"


def _pct(value: object) -> str:
    return f"{100 * float(value):.0f} %"


def _known(value: object) -> bool:
    return value is not None and not (isinstance(value, float) and np.isnan(value))


def _slack(r: dict) -> str:
    text = f"promise in {_h(r['deliver_slack_hours'])}"
    extra = r.get("slack_after_expected_transit")
    if _known(extra):
        if extra < 0:
            text += f", about {_h(-extra)} short at the lane's recent pace"
        else:
            text += f", {_h(extra)} to spare at the lane's recent pace"
    return text


def _silence(r: dict) -> str:
    if r.get("lost_active"):
        return f"no carrier scan for {_h(r['hours_since_last_scan'])}: possibly lost"
    if _known(r.get("hours_since_last_scan")):
        flag = " (past its lane's usual gap)" if r.get("scan_gap_active") else ""
        return f"no carrier scan for {_h(r['hours_since_last_scan'])}{flag}"
    if _known(r.get("hours_since_last_event")):
        return f"nothing new on the order for {_h(r['hours_since_last_event'])}"
    return "no carrier scan yet"


def _milestone(r: dict) -> str:
    stage = str(r.get("current_milestone", "unknown")).replace("_", " ")
    if _known(r.get("hours_in_milestone")):
        return f"{_h(r['hours_in_milestone'])} at '{stage}'"
    return f"at '{stage}'"


def _shipping(r: dict) -> str:
    if r.get("no_first_scan_active"):
        return "label created but the carrier has not scanned it"
    if r.get("ship_late_active"):
        return "not shipped by its ship-by time"
    slack = r.get("ship_slack_hours")
    if _known(slack) and _known(r.get("hours_since_shipped")):
        return "shipped on time" if slack >= 0 else f"shipped {_h(-slack)} after ship-by"
    if _known(slack):
        return f"ship-by in {_h(slack)}" if slack >= 0 else f"{_h(-slack)} past ship-by"
    return "shipping status unknown"


def _hold(r: dict) -> str:
    category = r.get("fulfillment_hold_category")
    kind = f" ({category})" if category not in (None, "unknown") else ""
    if r.get("fulfillment_hold_active"):
        held = r.get("fulfillment_hold_hours")
        since = f" for {_h(held)}" if _known(held) else ""
        return f"on hold at the warehouse{kind}{since}"
    if r.get("fulfillment_hold_occurred"):
        return f"was on hold at the warehouse{kind}"
    return "no warehouse hold"


def _exception(r: dict) -> str:
    reason = r.get("carrier_exception_reason")
    why = f": {reason}" if reason not in (None, "unknown") else ""
    if r.get("carrier_exception_active"):
        return f"carrier reported an exception{why}"
    count = r.get("exception_scan_count")
    if _known(count) and count > 0:
        return f"{int(count)} carrier exception scan(s)"
    if r.get("carrier_exception_occurred"):
        return f"carrier reported an exception earlier{why}"
    return "no carrier exception"


def _edd(r: dict) -> str:
    gap = r.get("edd_vs_promise_hours")
    revisions = r.get("edd_revisions")
    moved = (
        f"; estimate changed {int(revisions)} time(s)"
        if _known(revisions) and revisions > 0
        else ""
    )
    if not _known(gap):
        return "no carrier estimate yet" + moved
    if gap > 0:
        return f"carrier's estimate is {_h(gap)} past the promise" + moved
    return f"carrier's estimate is {_h(-gap)} before the promise" + moved


def _lane(r: dict) -> str:
    text = f"lane {r['lane']} ran {_pct(r['lane_late_rate'])} late over the last 14 days"
    if _known(r.get("lane_transit_hours")):
        text += f" ({_h(r['lane_transit_hours'])} in transit)"
    return text


def _carrier(r: dict) -> str:
    return f"{r['carrier']} ran {_pct(r['carrier_late_rate'])} late over the last 14 days"


def _site(r: dict) -> str:
    text = f"{r['warehouse_name']}: {r['warehouse_queue_days']:.1f} days of orders waiting to ship"
    if _known(r.get("warehouse_ship_hours")):
        text += f", {_h(r['warehouse_ship_hours'])} to ship lately"
    return text


def _service(r: dict) -> str:
    return f"{r['service_code']} service"


def _customer(r: dict) -> str:
    parts = [f"{r['customer_tier']} customer"]
    if _known(r.get("shipment_count")) and r["shipment_count"] > 1:
        parts.append(f"{int(r['shipment_count'])} shipments")
    if _known(r.get("order_value")):
        parts.append(f"order value {r['order_value']:.0f}")
    return ", ".join(parts)


def _wismo(r: dict) -> str:
    count = int(r.get("wismo_ticket_count") or 0)
    return f"customer asked where the order is ({count} ticket(s))" if count else "no WISMO ticket"


# group -> (feature columns set together, sentence)
REASON_GROUPS: dict[str, tuple[tuple[str, ...], Callable[[dict], str]]] = {
    "promise_slack": (
        ("deliver_slack_hours", "hours_since_placed", "slack_after_expected_transit"),
        _slack,
    ),
    "scan_silence": (
        (
            "hours_since_last_scan",
            "hours_since_last_event",
            "scan_gap_active",
            "scan_gap_occurred",
            "lost_active",
            "lost_occurred",
            "scan_gap_hours",
        ),
        _silence,
    ),
    "milestone": (
        ("current_milestone", "milestone_rank", "hours_in_milestone", "hours_since_shipped"),
        _milestone,
    ),
    "shipping": (
        (
            "ship_slack_hours",
            "ship_late_active",
            "ship_late_occurred",
            "no_first_scan_active",
            "no_first_scan_occurred",
            "ship_late_hours",
            "unscanned_parcels",
        ),
        _shipping,
    ),
    "fulfillment_hold": (
        (
            "fulfillment_hold_active",
            "fulfillment_hold_occurred",
            "fulfillment_hold_category",
            "fulfillment_hold_hours",
            "fulfillment_state_known",
        ),
        _hold,
    ),
    "carrier_exception": (
        (
            "carrier_exception_active",
            "carrier_exception_occurred",
            "carrier_exception_reason",
            "exception_scan_count",
            "carrier_exception_hours",
        ),
        _exception,
    ),
    "carrier_estimate": (("edd_vs_promise_hours", "edd_revisions"), _edd),
    "lane": (
        ("lane", "destination_region", "lane_late_rate", "lane_transit_hours", "lane_outcomes"),
        _lane,
    ),
    "carrier": (("carrier", "carrier_late_rate", "carrier_transit_hours"), _carrier),
    "warehouse": (
        (
            "warehouse_name",
            "warehouse_late_rate",
            "warehouse_transit_hours",
            "warehouse_queue_days",
            "warehouse_ship_hours",
        ),
        _site,
    ),
    "service": (("service_code",), _service),
    "customer": (("customer_tier", "order_value", "item_count", "shipment_count"), _customer),
    "wismo": (("wismo_ticket_count",), _wismo),
}


def contributions(model: LatenessModel, features: pd.DataFrame) -> tuple[np.ndarray, pd.DataFrame]:
    """Probabilities, and per group the change in risk against the typical order.

    One batched prediction over a stacked matrix: the rows themselves, then for each group the
    rows whose group differs from the typical order's, with the group set to typical. Rows
    that already have the typical values contribute 0 and are not predicted again (most orders
    have no hold, exception or ticket)."""
    encoded = model.transform(features.reset_index(drop=True))
    n = len(encoded)
    typical = model.encoded_typical()
    blocks, masks = [encoded], {}
    for group, (columns, _) in REASON_GROUPS.items():
        present = [typical[c] for c in columns if c in typical]
        if not present:
            continue
        index = [i for i, _ in present]
        values = np.array([v for _, v in present])
        block = encoded[:, index]
        same = (block == values) | (np.isnan(block) & np.isnan(values))
        differs = ~same.all(axis=1)
        if differs.any():
            varied = encoded[differs]  # a copy (boolean indexing)
            varied[:, index] = values
            blocks.append(varied)
            masks[group] = differs
    proba = model.proba_encoded(np.vstack(blocks)) if n else np.zeros(0)
    base = proba[:n]
    deltas, offset = {}, n
    for group in REASON_GROUPS:
        delta = np.zeros(n)
        if group in masks:
            differs = masks[group]
            count = int(differs.sum())
            delta[differs] = base[differs] - proba[offset : offset + count]
            offset += count
        deltas[group] = delta
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


class _Row(dict):
    """One row's values, read from the columns only when a sentence asks for them."""

    def __init__(self, columns: dict[str, np.ndarray], index: int) -> None:
        super().__init__()
        self._columns, self._index = columns, index

    def __missing__(self, key: str) -> object:
        value = self._columns[key][self._index]
        self[key] = value
        return value

    def get(self, key: str, default: object = None) -> object:
        return self[key] if key in self._columns else default


def score(model: LatenessModel, features: pd.DataFrame, threads: int = 1) -> pd.DataFrame:
    """order_id, as_of, probability, flagged (>= the model's threshold), reasons (JSON text).

    `threads`: OpenMP threads for the booster (ml.train.TrainConfig.threads says why one)."""
    with threadpool_limits(limits=threads):
        probability, deltas = contributions(model, features)
    groups = list(deltas.columns)
    matrix = deltas.to_numpy()
    chosen = _chosen(matrix)
    columns = {name: features[name].to_numpy(dtype=object) for name in features.columns}
    # sentences group by group, each writer over only the rows that show it
    texts = np.empty(chosen.shape, dtype=object)
    for g, group in enumerate(groups):
        rows, slots = np.nonzero(chosen == g)
        writer = REASON_GROUPS[group][1]
        texts[rows, slots] = [writer(_Row(columns, i)) for i in rows]
    rounded = np.round(matrix, 4)
    reasons = [
        json.dumps(
            [
                {"feature": groups[g], "text": texts[i, k], "contribution": float(rounded[i, g])}
                for k, g in enumerate(chosen[i])
                if g >= 0
            ]
        )
        for i in range(len(chosen))
    ]
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
