"""Point-in-time features from snapshots of the order state.

Input: a snapshot frame, one row per (order_id, as_of), with the columns of `marts.order_state`
plus `as_of` (docs/architecture.md "Time: event time, known time, and 'as of'"): everything in
a row was known at its `as_of`. `marts.order_state` itself is the snapshot at "now".

Network context (trailing late rates, transit times, a site's queue against its throughput)
is computed from the rows that share the snapshot's `as_of`, so it reads only what the as-of
layer knew at that moment: an order counts towards a lane's late rate at t only if, as of t,
it was delivered or its promise had passed. The frame must therefore hold every order's row
at each `as_of` (closed ones too, back to `NETWORK_WINDOW`), not only the open ones.

Nothing here knows a carrier, warehouse or region by name: categories are learned from the
merchant's own history, unseen ones map to "unknown".
"""

from __future__ import annotations

import numpy as np
import pandas as pd

RULES: tuple[str, ...] = (
    "ship_late",
    "no_first_scan",
    "scan_gap",
    "carrier_exception",
    "fulfillment_hold",
    "lost",
)
# promise_missed is the outcome itself, not a warning: never a feature or a baseline.
OUTCOME_RULE = "promise_missed"

CATEGORICAL: tuple[str, ...] = (
    "carrier",
    "service_code",
    "warehouse_name",
    "destination_region",
    "lane",
    "customer_tier",
    "current_milestone",
    "last_event",
    "fulfillment_hold_category",
    "carrier_exception_reason",
)

# Progress order of the milestone catalogue (dbt_project/macros/marts.sql milestone_catalogue).
MILESTONE_RANK: dict[str, int] = {
    "order_placed": 1,
    "payment_captured": 2,
    "released_to_warehouse": 3,
    "picked": 4,
    "packed": 5,
    "label_created": 6,
    "carrier_accepted": 7,
    "in_transit": 8,
    "out_for_delivery": 9,
    "delivered": 10,
}

NETWORK_WINDOW = pd.Timedelta(days=14)  # trailing window of outcomes for late rates / transit
THROUGHPUT_WINDOW = pd.Timedelta(days=3)  # a site's recent shipments, against its queue
PRIOR_WEIGHT = 20.0  # late rates shrink towards the network-wide rate by this many orders

NETWORK_GROUPS: tuple[str, ...] = ("lane", "carrier", "warehouse_name")

# Parcels in the carrier's hands at the same moment, by destination region and by carrier: the
# share of them showing each signal (leave-one-out: the order's own state is not counted). A
# storm or a carrier's bad day shows in its other parcels before this one's scans say so.
PEER_GROUPS: tuple[str, ...] = ("destination_region", "carrier")
PEER_SIGNALS: tuple[str, ...] = ("silent", "exception", "edd_late")
PEER_SILENCE = pd.Timedelta(hours=24)
PEER_PRIOR = 20.0  # shares shrink towards the network-wide share by this many parcels

# Rules whose first detection time says how long the trouble has lasted (hours since then).
DURATION_RULES: tuple[str, ...] = ("ship_late", "fulfillment_hold", "carrier_exception", "scan_gap")

NUMERIC: tuple[str, ...] = (
    "order_value",
    "item_count",
    "shipment_count",
    "milestone_rank",
    "hours_since_placed",
    "deliver_slack_hours",
    "ship_slack_hours",
    "deliver_slack_workdays",
    "ship_slack_workdays",
    "hours_since_last_scan",
    "hours_since_last_event",
    "hours_in_milestone",
    "hours_since_shipped",
    "edd_vs_promise_hours",
    "wismo_ticket_count",
    "exception_scan_count",
    "edd_revisions",
    "unscanned_parcels",
    *(f"{rule}_hours" for rule in DURATION_RULES),
    *(f"{rule}_active" for rule in RULES),
    *(f"{rule}_occurred" for rule in RULES),
    *(f"{group}_late_rate" for group in NETWORK_GROUPS),
    *(f"{group}_transit_hours" for group in NETWORK_GROUPS),
    "lane_outcomes",
    "warehouse_queue_days",
    "warehouse_ship_hours",
    "queue_ahead_days",
    "warehouse_pace",
    *(f"{group}_{signal}_share" for group in PEER_GROUPS for signal in PEER_SIGNALS),
    "slack_after_expected_transit",
)
FEATURES: tuple[str, ...] = (*CATEGORICAL, *NUMERIC)

# Columns of the snapshot that are optional: absent ones become missing features (the model
# treats them as "not known"), so an as-of layer without them still trains.
NUMERIC_INPUTS: tuple[str, ...] = (
    "item_count",
    "exception_scan_count",
    "edd_revisions",
    "unscanned_parcels",
)
OPTIONAL_INPUTS: tuple[str, ...] = (
    *NUMERIC_INPUTS,
    "last_event",
    *(f"{rule}_detected_at" for rule in DURATION_RULES),
    "carrier_est_delivery_at",
    "milestone_reached_at",
    "fulfillment_hold_category",
    "carrier_exception_reason",
)
TIME_COLUMNS: tuple[str, ...] = (
    "as_of",
    "placed_at",
    "promised_deliver_by",
    "promised_ship_by",
    "last_scan_at",
    "last_event_at",
    "shipped_at",
    "delivered_at",
    "carrier_est_delivery_at",
    "milestone_reached_at",
    *(f"{rule}_detected_at" for rule in DURATION_RULES),
)


def _hours(delta: pd.Series) -> pd.Series:
    return delta.dt.total_seconds() / 3600.0


def _workdays(start: pd.Series, end: pd.Series) -> pd.Series:
    """Monday-to-Friday days from `start`'s date to `end`'s (UTC), negative when `end` is
    earlier: sites and most carrier services do not work weekends, so 72 h of slack from a
    Friday is one working day, from a Tuesday three."""
    known = start.notna() & end.notna()
    out = pd.Series(np.nan, index=start.index)
    if known.any():
        first = start[known].dt.tz_convert("UTC").dt.tz_localize(None).to_numpy("datetime64[D]")
        last = end[known].dt.tz_convert("UTC").dt.tz_localize(None).to_numpy("datetime64[D]")
        out[known] = np.busday_count(first, last).astype(float)
    return out


def normalise(snapshots: pd.DataFrame) -> pd.DataFrame:
    """A copy with optional columns present and every timestamp as UTC datetime64."""
    frame = snapshots.copy()
    for column in OPTIONAL_INPUTS:
        if column not in frame.columns:
            frame[column] = np.nan if column in NUMERIC_INPUTS else None
    for column in TIME_COLUMNS:
        if column in frame.columns:
            frame[column] = pd.to_datetime(frame[column], utc=True)
    for rule in (*RULES, OUTCOME_RULE):
        for suffix in ("active", "occurred"):
            name = f"{rule}_{suffix}"
            if name in frame.columns:
                frame[name] = frame[name].fillna(False).astype(bool)
    return frame


def _resolved(frame: pd.DataFrame) -> pd.Series:
    """Rows whose outcome is known at their own as_of: delivered, or the promise has passed."""
    delivered = frame["delivered_at"].notna() & (frame["delivered_at"] <= frame["as_of"])
    passed = frame["promised_deliver_by"] < frame["as_of"]
    return (delivered | passed) & ~frame["is_cancelled"].fillna(False).astype(bool)


def _outcome_time(frame: pd.DataFrame) -> pd.Series:
    """When the outcome became known: delivery if by the promise, else the promise deadline."""
    on_time = frame["delivered_at"].notna() & (
        frame["delivered_at"] <= frame["promised_deliver_by"]
    )
    return frame["delivered_at"].where(on_time, frame["promised_deliver_by"])


NETWORK_INPUTS: tuple[str, ...] = (
    "order_id",
    "as_of",
    "placed_at",
    "promised_deliver_by",
    "shipped_at",
    "delivered_at",
    "is_cancelled",
    *NETWORK_GROUPS,
)


def _nanoseconds(stamps: pd.Series) -> np.ndarray:
    """UTC timestamps (no NaT) as int64 nanoseconds, whatever their stored resolution."""
    naive = stamps.dt.tz_convert("UTC").dt.tz_localize(None).dt.as_unit("ns")
    return naive.to_numpy().view("int64")


def _carried_forward(frame: pd.DataFrame) -> pd.DataFrame:
    """The rows the frame lacks for its own moments: an order's latest earlier row, repeated at
    each later as_of of the frame at which it has no row of its own.

    The as-of layer stops showing an order a while after its closure became known (dbt var
    snapshot_closed_retention_hours; "now" keeps every order), and a closed order's state no
    longer changes: its last row is its state at every later moment. Without these rows a
    lane's late rate at a past moment would count only the orders closed in the last day,
    while at "now" it counts all of them (train / serve skew). Rows are carried only as long
    as they can still count: outcome within NETWORK_WINDOW, shipment within THROUGHPUT_WINDOW.
    """
    rows = frame[list(NETWORK_INPUTS)].sort_values(["order_id", "as_of"], kind="stable")
    as_of = _nanoseconds(rows["as_of"])
    moments = np.unique(as_of)
    position = np.searchsorted(moments, as_of)
    following = rows.groupby("order_id", sort=False)["as_of"].shift(-1)
    next_position = np.where(
        following.isna().to_numpy(),
        len(moments),
        np.searchsorted(moments, _nanoseconds(following.fillna(rows["as_of"]))),
    )
    horizon = pd.concat(
        [
            _outcome_time(rows).where(_resolved(rows)) + NETWORK_WINDOW,
            rows["shipped_at"] + THROUGHPUT_WINDOW,
        ],
        axis=1,
    ).max(axis=1)
    horizon_position = np.searchsorted(moments, _nanoseconds(horizon.fillna(rows["as_of"])))
    end = np.minimum(next_position, np.maximum(horizon_position, position + 1))
    repeats = end - position - 1
    if repeats.sum() == 0:
        return rows.iloc[0:0]
    source = np.repeat(np.arange(len(rows)), repeats)
    starts = np.repeat(position + 1, repeats)
    offsets = np.arange(len(source)) - np.repeat(np.cumsum(repeats) - repeats, repeats)
    carried = rows.iloc[source].reset_index(drop=True)
    carried["as_of"] = pd.to_datetime(moments[starts + offsets], utc=True).as_unit(
        rows["as_of"].dt.unit
    )
    return carried


def network_context(frame: pd.DataFrame) -> pd.DataFrame:
    """Per row, the trailing context of its lane, carrier and warehouse at its as_of.

    Late rate: orders whose outcome became known in the trailing window before as_of, missed /
    all, shrunk towards the network-wide rate (PRIOR_WEIGHT). Transit: mean hours from shipped
    to delivered of the same orders. Queue: open, unshipped orders at the site over its
    shipments per day in the last THROUGHPUT_WINDOW. Computed over the frame's rows and the
    closed orders carried forward to each of its moments (_carried_forward).
    """
    out = pd.DataFrame(index=frame.index)
    pool = pd.concat([frame[list(NETWORK_INPUTS)], _carried_forward(frame)], ignore_index=True)
    outcome_at = _outcome_time(pool)
    recent = _resolved(pool) & (outcome_at > pool["as_of"] - NETWORK_WINDOW)
    outcomes = pool.loc[recent, ["as_of", *NETWORK_GROUPS]].copy()
    on_time = pool["delivered_at"].notna() & (pool["delivered_at"] <= pool["promised_deliver_by"])
    outcomes["missed"] = (~on_time[recent]).astype(float)
    delivered = pool["delivered_at"].notna() & pool["shipped_at"].notna()
    outcomes["transit"] = _hours(pool["delivered_at"] - pool["shipped_at"]).where(delivered)
    overall = outcomes.groupby("as_of")["missed"].agg(["sum", "count"])
    keyed = frame[["as_of"]].join(overall, on="as_of")
    base_rate = (keyed["sum"] + 1.0) / (keyed["count"] + 10.0)  # ~10 % prior when no history
    for group in NETWORK_GROUPS:
        stats = outcomes.groupby(["as_of", group], dropna=False).agg(
            late=("missed", "sum"), n=("missed", "count"), transit=("transit", "mean")
        )
        joined = frame[["as_of", group]].join(stats, on=["as_of", group])
        n = joined["n"].fillna(0.0)
        late = joined["late"].fillna(0.0)
        out[f"{group}_late_rate"] = (late + PRIOR_WEIGHT * base_rate) / (n + PRIOR_WEIGHT)
        out[f"{group}_transit_hours"] = joined["transit"]
        if group == "lane":
            out["lane_outcomes"] = n
    site = _site_load(frame, pool)
    for column in site.columns:
        out[column] = site[column]
    return out


def _site_load(frame: pd.DataFrame, pool: pd.DataFrame) -> pd.DataFrame:
    """Per row of `frame`, its site's load at its as_of, counted over `pool` (the frame's rows
    and the carried ones):
      warehouse_queue_days  open unshipped orders / shipments per day (last THROUGHPUT_WINDOW)
      warehouse_ship_hours  median hours placed -> shipped of those recent shipments
      queue_ahead_days      for an open unshipped order not on hold, the site's open unshipped
                            orders not on hold that are due to ship before it (ship-by, then
                            placement), over the same shipments per day: 3PLs work orders
                            broadly by their ship-by date and skip held ones
      warehouse_pace        shipments in the last day over the daily mean of the two days
                            before (missing when the site shipped nothing then): a site falling
                            behind ships fewer than it did
    Only what is known at the row's as_of counts: a shipment or delivery stamped later is not.
    """
    as_of = pool["as_of"]
    shipped_known = pool["shipped_at"] <= as_of
    open_ = ~pool["is_cancelled"].fillna(False).astype(bool) & ~(pool["delivered_at"] <= as_of)
    queued = open_ & ~shipped_known
    shipped_recent = shipped_known & (pool["shipped_at"] > as_of - THROUGHPUT_WINDOW)
    shipped_day = shipped_known & (pool["shipped_at"] > as_of - pd.Timedelta(days=1))
    shipped_before = (
        shipped_known & (pool["shipped_at"] > as_of - pd.Timedelta(days=3)) & ~shipped_day
    )
    parts = pd.DataFrame(
        {
            "as_of": as_of,
            "warehouse_name": pool["warehouse_name"],
            "queued": queued.astype(float),
            "shipped": shipped_recent.astype(float),
            "shipped_day": shipped_day.astype(float),
            "shipped_before": shipped_before.astype(float),
            "ship_hours": _hours(pool["shipped_at"] - pool["placed_at"]).where(shipped_recent),
        }
    )
    stats = parts.groupby(["as_of", "warehouse_name"], dropna=False).agg(
        queued=("queued", "sum"),
        shipped=("shipped", "sum"),
        shipped_day=("shipped_day", "sum"),
        shipped_before=("shipped_before", "sum"),
        ship_hours=("ship_hours", "median"),
    )
    joined = frame[["as_of", "warehouse_name"]].join(stats, on=["as_of", "warehouse_name"])
    days = THROUGHPUT_WINDOW / pd.Timedelta(days=1)
    per_day = (joined["shipped"] / days).clip(lower=1.0).to_numpy()
    out = pd.DataFrame(index=frame.index)
    out["warehouse_queue_days"] = joined["queued"].to_numpy() / per_day
    out["warehouse_ship_hours"] = joined["ship_hours"].to_numpy()
    # place in the site's queue, over the frame's own open rows (positions, not labels)
    held = (
        frame["fulfillment_hold_active"].fillna(False).astype(bool).to_numpy()
        if "fulfillment_hold_active" in frame.columns
        else np.zeros(len(frame), dtype=bool)
    )
    waiting = (
        frame["is_open"].fillna(False).astype(bool).to_numpy()
        & ~(frame["shipped_at"] <= frame["as_of"]).to_numpy()
        & (frame["placed_at"] <= frame["as_of"]).to_numpy()
        & ~held
    )
    where = np.flatnonzero(waiting)
    queue = pd.DataFrame(
        {
            "as_of": frame["as_of"].to_numpy()[where],
            "site": frame["warehouse_name"].astype("string").fillna("unknown").to_numpy()[where],
            "due": frame["promised_ship_by"].to_numpy()[where],
            "placed": frame["placed_at"].to_numpy()[where],
            "at": where,
        }
    ).sort_values(["as_of", "site", "due", "placed"], kind="stable", na_position="last")
    ahead = np.full(len(frame), np.nan)
    ahead[queue["at"].to_numpy()] = queue.groupby(["as_of", "site"], sort=False).cumcount()
    out["queue_ahead_days"] = ahead / per_day
    before = joined["shipped_before"].to_numpy() / 2.0
    with np.errstate(divide="ignore", invalid="ignore"):
        out["warehouse_pace"] = np.where(
            before > 0, joined["shipped_day"].to_numpy() / before, np.nan
        )
    return out


def peer_context(frame: pd.DataFrame) -> pd.DataFrame:
    """Per row, the share of the other parcels in the carrier's hands (open, shipped, not
    delivered as of its as_of) of its destination region and of its carrier that are silent
    (the lane-calibrated scan_gap, no_first_scan or lost rule active; else no scan for
    PEER_SILENCE), under an active carrier exception, or estimated past their promise (over
    the parcels with an estimate). Shrunk towards the same share over all such parcels at that
    as_of (PEER_PRIOR); missing where the input is absent or no parcel counts."""
    out = pd.DataFrame(index=frame.index)
    as_of = frame["as_of"]
    carried = (
        frame["is_open"].fillna(False).astype(bool)
        & (frame["shipped_at"] <= as_of)
        & ~(frame["delivered_at"] <= as_of)
    )

    def flag(column: str) -> pd.Series:
        return frame[column].fillna(False).astype(bool)

    silence_rules = [f"{r}_active" for r in ("scan_gap", "no_first_scan", "lost")]
    if all(c in frame.columns for c in silence_rules):
        silent = flag(silence_rules[0]) | flag(silence_rules[1]) | flag(silence_rules[2])
    else:
        seen = frame["last_scan_at"].where(frame["last_scan_at"] <= as_of, frame["shipped_at"])
        silent = as_of - seen > PEER_SILENCE
    estimated = frame["carrier_est_delivery_at"].notna()
    inputs: dict[str, tuple[pd.Series, pd.Series] | None] = {
        "silent": (silent, carried),
        "exception": (flag("carrier_exception_active"), carried)
        if "carrier_exception_active" in frame.columns
        else None,
        "edd_late": (
            frame["carrier_est_delivery_at"] > frame["promised_deliver_by"],
            carried & estimated,
        )
        if estimated.any()
        else None,
    }
    for signal, given in inputs.items():
        if given is None:
            for group in PEER_GROUPS:
                out[f"{group}_{signal}_share"] = np.nan
            continue
        eligible = given[1].astype(float)
        hit = (given[0] & given[1]).astype(float)
        base = pd.DataFrame({"as_of": as_of, "hit": hit, "n": eligible})
        overall = base.groupby("as_of")[["hit", "n"]].transform("sum")
        others_n = overall["n"] - eligible
        prior = (overall["hit"] - hit) / others_n.where(others_n > 0)
        for group in PEER_GROUPS:
            base["key"] = frame[group].astype("string").fillna("unknown")
            sums = base.groupby(["as_of", "key"])[["hit", "n"]].transform("sum")
            n = sums["n"] - eligible  # others only
            share = (sums["hit"] - hit + PEER_PRIOR * prior) / (n + PEER_PRIOR)
            out[f"{group}_{signal}_share"] = share
    return out


def build_features(snapshots: pd.DataFrame) -> pd.DataFrame:
    """The feature table: `order_id`, `as_of` and FEATURES, one row per snapshot row."""
    frame = normalise(snapshots)
    as_of = frame["as_of"]
    features = pd.DataFrame({"order_id": frame["order_id"], "as_of": as_of}, index=frame.index)
    for column in CATEGORICAL:
        features[column] = frame[column].astype("string").fillna("unknown").astype(object)
    features["order_value"] = pd.to_numeric(frame["order_value"], errors="coerce")
    features["shipment_count"] = pd.to_numeric(frame["shipment_count"], errors="coerce")
    features["milestone_rank"] = frame["current_milestone"].map(MILESTONE_RANK).astype(float)
    features["hours_since_placed"] = _hours(as_of - frame["placed_at"])
    features["deliver_slack_hours"] = _hours(frame["promised_deliver_by"] - as_of)
    ship_ref = frame["shipped_at"].where(frame["shipped_at"].notna(), as_of)
    features["ship_slack_hours"] = _hours(frame["promised_ship_by"] - ship_ref)
    features["deliver_slack_workdays"] = _workdays(as_of, frame["promised_deliver_by"])
    features["ship_slack_workdays"] = _workdays(ship_ref, frame["promised_ship_by"])
    features["hours_since_last_scan"] = _hours(as_of - frame["last_scan_at"])
    features["hours_since_last_event"] = _hours(as_of - frame["last_event_at"])
    reached = frame["milestone_reached_at"].where(
        frame["milestone_reached_at"].notna(), frame["last_event_at"]
    )
    features["hours_in_milestone"] = _hours(as_of - reached)
    features["hours_since_shipped"] = _hours(as_of - frame["shipped_at"])
    features["edd_vs_promise_hours"] = _hours(
        frame["carrier_est_delivery_at"] - frame["promised_deliver_by"]
    )
    features["wismo_ticket_count"] = pd.to_numeric(frame["wismo_ticket_count"], errors="coerce")
    for column in NUMERIC_INPUTS:
        features[column] = pd.to_numeric(frame[column], errors="coerce")
    for rule in DURATION_RULES:
        detected = frame[f"{rule}_detected_at"]
        features[f"{rule}_hours"] = _hours(as_of - detected).where(detected <= as_of)
    for rule in RULES:
        for suffix in ("active", "occurred"):
            name = f"{rule}_{suffix}"
            features[name] = frame[name].astype(float) if name in frame.columns else np.nan
    for context in (network_context(frame), peer_context(frame)):
        for column in context.columns:
            features[column] = context[column]
    # Time the lane usually needs from here, against the slack left.
    remaining = (features["lane_transit_hours"] - features["hours_since_shipped"].fillna(0.0)).clip(
        lower=0.0
    )
    waited = features["hours_since_placed"].fillna(0.0)
    not_shipped_wait = (
        (features["warehouse_ship_hours"].fillna(0.0) - waited)
        .clip(lower=0.0)
        .where(frame["shipped_at"].isna(), 0.0)
    )
    features["slack_after_expected_transit"] = features["deliver_slack_hours"] - (
        remaining + not_shipped_wait
    )
    return features[["order_id", "as_of", *FEATURES]]


def scoring_rows(snapshots: pd.DataFrame) -> pd.Series:
    """Rows a score means something for: open, not cancelled, placed by as_of."""
    frame = normalise(snapshots)
    is_open = frame["is_open"].fillna(False).astype(bool)
    return is_open & (frame["placed_at"] <= frame["as_of"])


def labels(final_state: pd.DataFrame, now: pd.Timestamp) -> pd.DataFrame:
    """Per order whose promise has passed by `now`: `missed` (delivered late, lost, returned to
    sender: not delivered by the promise); cancelled orders are set aside. `label_known_at` is
    the promise deadline for every order, so that early deliveries (known sooner) do not bias
    the latest windows towards on-time orders. Read from the state at `now`."""
    frame = normalise(final_state)
    now = pd.Timestamp(now)
    now = now.tz_convert("UTC") if now.tzinfo else now.tz_localize("UTC")
    cancelled = frame["is_cancelled"].fillna(False).astype(bool)
    on_time = frame["delivered_at"].notna() & (
        frame["delivered_at"] <= frame["promised_deliver_by"]
    )
    labelled = ~cancelled & (frame["promised_deliver_by"] < now)
    out = frame.loc[labelled, ["order_id"]].copy()
    out["missed"] = ~on_time[labelled]
    out["label_known_at"] = frame.loc[labelled, "promised_deliver_by"]
    return out.reset_index(drop=True)
