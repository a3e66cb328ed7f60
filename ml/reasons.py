"""Reasons as sentences an ops person reads in seconds: each group of features (what ml.predict
credits the risk to) has a writer that turns the rows' values into one short sentence.

Writers are vectorised: each takes the feature frame of the rows that show its group and returns
one sentence per row (pandas string operations, no Python call per row), so 100k scored orders
get their reasons within the scoring time budget (bench/results/model.md).
"""

from __future__ import annotations

import json
from collections.abc import Callable

import numpy as np
import pandas as pd

from ml.features import PEER_GROUPS, PEER_SIGNALS

Writer = Callable[[pd.DataFrame], pd.Series]


def _num(r: pd.DataFrame, column: str) -> pd.Series:
    if column not in r.columns:
        return pd.Series(np.nan, index=r.index)
    return pd.to_numeric(r[column], errors="coerce").astype(float)


def _flag(r: pd.DataFrame, column: str) -> pd.Series:
    return _num(r, column).fillna(0.0) > 0


def _text(r: pd.DataFrame, column: str, default: str = "unknown") -> pd.Series:
    """A category as text, already escaped for a JSON string (names come from the merchant's
    data and may hold quotes): sentences are only ever written into JSON (reasons_json)."""
    if column not in r.columns:
        return pd.Series(default, index=r.index, dtype=object)
    values = r[column].astype(object).where(r[column].notna(), default).astype(str)
    escaped = {v: json.dumps(v)[1:-1] for v in values.unique().tolist()}
    return values.map(escaped)


def _fmt(values: pd.Series, pattern: str) -> pd.Series:
    """`pattern.format(v)` per value, formatting each distinct value once (most repeat)."""
    array = values.to_numpy(dtype=float)
    unique, inverse = np.unique(array, return_inverse=True)
    texts = np.array([pattern.format(v) for v in unique.tolist()], dtype=object)
    return pd.Series(texts[inverse.reshape(-1)], index=values.index, dtype=object)


def _h(hours: pd.Series) -> pd.Series:
    """'52 h', or '2.2 days' from 48 h on."""
    long = hours.abs() >= 48
    days = _fmt((hours / 24).round(1).where(long, 0.0), "{:.1f} days")
    return days.where(long, _fmt(hours.round(0).where(~long, 0.0), "{:.0f} h"))


def _pct(rate: pd.Series) -> pd.Series:
    return _fmt((100 * rate).round(0), "{:.0f} %")


def _pick(index: pd.Index, choices: list[tuple[pd.Series, pd.Series | str]], default: str):
    """The first choice whose condition holds, per row (np.select over strings)."""
    out = pd.Series(default, index=index, dtype=object)
    for condition, value in reversed(choices):
        out = out.mask(condition, value)
    return out


def _slack(r: pd.DataFrame) -> pd.Series:
    extra = _num(r, "slack_after_expected_transit")
    pace = _pick(
        r.index,
        [
            (extra < 0, ", about " + _h(-extra) + " short at the lane's recent pace"),
            (extra >= 0, ", " + _h(extra) + " to spare at the lane's recent pace"),
        ],
        "",
    )
    workdays = _num(r, "deliver_slack_workdays")
    working = _fmt(workdays.fillna(0), " ({:.0f} working day(s))").where(workdays.notna(), "")
    return "promise in " + _h(_num(r, "deliver_slack_hours")) + working + pace


def _silence(r: pd.DataFrame) -> pd.Series:
    scan = _num(r, "hours_since_last_scan")
    event = _num(r, "hours_since_last_event")
    gap = pd.Series(np.where(_flag(r, "scan_gap_active"), " (past its lane's usual gap)", ""))
    gap.index = r.index
    return _pick(
        r.index,
        [
            (
                _flag(r, "lost_active") & scan.notna(),
                "no carrier scan for " + _h(scan) + ": possibly lost",
            ),
            (scan.notna(), "no carrier scan for " + _h(scan) + gap),
            (event.notna(), "nothing new on the order for " + _h(event)),
        ],
        "no carrier scan yet",
    )


def _milestone(r: pd.DataFrame) -> pd.Series:
    stage = "'" + _text(r, "current_milestone").str.replace("_", " ", regex=False) + "'"
    hours = _num(r, "hours_in_milestone")
    text = ("at " + stage).mask(hours.notna(), _h(hours) + " at " + stage)
    last = _text(r, "last_event", "")
    differs = ~last.isin(["", "unknown"]) & (last != _text(r, "current_milestone", ""))
    return text + (", last event '" + last.str.replace("_", " ", regex=False) + "'").where(
        differs, ""
    )


def _shipping(r: pd.DataFrame) -> pd.Series:
    slack = _num(r, "ship_slack_hours")
    shipped = _num(r, "hours_since_shipped").notna()
    return _pick(
        r.index,
        [
            (_flag(r, "no_first_scan_active"), "label created but the carrier has not scanned it"),
            (_flag(r, "ship_late_active"), "not shipped by its ship-by time"),
            (shipped & (slack >= 0), "shipped on time"),
            (shipped & (slack < 0), "shipped " + _h(-slack) + " after ship-by"),
            (slack >= 0, "ship-by in " + _h(slack)),
            (slack < 0, _h(-slack) + " past ship-by"),
        ],
        "shipping status unknown",
    )


def _kind(r: pd.DataFrame, column: str, before: str, after: str = "") -> pd.Series:
    """' (value)' / ': value' for a known category, else ''."""
    value = _text(r, column)
    return (before + value + after).where(value != "unknown", "")


def _hold(r: pd.DataFrame) -> pd.Series:
    kind = _kind(r, "fulfillment_hold_category", " (", ")")
    held = _num(r, "fulfillment_hold_hours")
    since = (" for " + _h(held)).where(held.notna(), "")
    return _pick(
        r.index,
        [
            (_flag(r, "fulfillment_hold_active"), "on hold at the warehouse" + kind + since),
            (_flag(r, "fulfillment_hold_occurred"), "was on hold at the warehouse" + kind),
        ],
        "no warehouse hold",
    )


def _exception(r: pd.DataFrame) -> pd.Series:
    why = _kind(r, "carrier_exception_reason", ": ")
    count = _num(r, "exception_scan_count")
    return _pick(
        r.index,
        [
            (_flag(r, "carrier_exception_active"), "carrier reported an exception" + why),
            (count > 0, _fmt(count.fillna(0), "{:.0f} carrier exception scan(s)")),
            (_flag(r, "carrier_exception_occurred"), "carrier reported an exception earlier" + why),
        ],
        "no carrier exception",
    )


def _edd(r: pd.DataFrame) -> pd.Series:
    gap = _num(r, "edd_vs_promise_hours")
    revisions = _num(r, "edd_revisions")
    moved = _fmt(revisions.fillna(0), "; estimate changed {:.0f} time(s)")
    moved = moved.where(revisions > 0, "")
    text = _pick(
        r.index,
        [
            (gap > 0, "carrier's estimate is " + _h(gap) + " past the promise"),
            (gap <= 0, "carrier's estimate is " + _h(-gap) + " before the promise"),
        ],
        "no carrier estimate yet",
    )
    return text + moved


def _lane(r: pd.DataFrame) -> pd.Series:
    transit = _num(r, "lane_transit_hours")
    extra = (" (" + _h(transit) + " in transit)").where(transit.notna(), "")
    rate = _pct(_num(r, "lane_late_rate"))
    return "lane " + _text(r, "lane") + " ran " + rate + " late over the last 14 days" + extra


def _carrier(r: pd.DataFrame) -> pd.Series:
    rate = _pct(_num(r, "carrier_late_rate"))
    return _text(r, "carrier") + " ran " + rate + " late over the last 14 days"


def _site(r: pd.DataFrame) -> pd.Series:
    queue = _fmt(_num(r, "warehouse_queue_days").fillna(0).round(1), "{:.1f}")
    ahead = _num(r, "queue_ahead_days")
    ship = _num(r, "warehouse_ship_hours")
    # the order's own place in the queue when it waits there, else the site's recent ship time
    place = _fmt(ahead.fillna(0).round(1), ", {:.1f} days of them ahead").where(ahead.notna(), "")
    extra = (", " + _h(ship) + " to ship lately").where(ship.notna() & ahead.isna(), "")
    pace = _num(r, "warehouse_pace")
    slow = (", shipping at " + _pct(pace.fillna(0)) + " of its recent pace").where(pace < 0.8, "")
    return (
        _text(r, "warehouse_name") + ": " + queue + " days of orders to ship" + place + extra + slow
    )


def _peers(r: pd.DataFrame) -> pd.Series:
    """The worst of the peer shares (ml.features peer_context) as a sentence."""
    parts = []
    for group, who in (("destination_region", "to "), ("carrier", "with ")):
        name = _text(r, group)
        for signal, what in (
            ("silent", " silent past their lane's usual gap"),
            ("exception", " under a carrier exception"),
            ("edd_late", " estimated past their promise"),
        ):
            share = _num(r, f"{group}_{signal}_share")
            parts.append(
                (share, "about " + _pct(share.fillna(0)) + " of parcels " + who + name + what)
            )
    shares = np.column_stack([share.fillna(-1).to_numpy() for share, _ in parts])
    worst = shares.argmax(axis=1)
    texts = np.column_stack([text.to_numpy(dtype=object) for _, text in parts])
    out = pd.Series(texts[np.arange(len(r)), worst], index=r.index, dtype=object)
    return out.where(shares.max(axis=1) >= 0, "no parcels in the carrier's hands to compare")


def _service(r: pd.DataFrame) -> pd.Series:
    return _text(r, "service_code") + " service"


def _customer(r: pd.DataFrame) -> pd.Series:
    shipments = _num(r, "shipment_count")
    value = _num(r, "order_value")
    split = _fmt(shipments.fillna(0), ", {:.0f} shipments").where(shipments > 1, "")
    worth = _fmt(value.fillna(0).round(0), ", order value {:.0f}").where(value.notna(), "")
    return _text(r, "customer_tier") + " customer" + split + worth


def _wismo(r: pd.DataFrame) -> pd.Series:
    count = _num(r, "wismo_ticket_count").fillna(0)
    asked = _fmt(count, "customer asked where the order is ({:.0f} ticket(s))")
    return asked.where(count > 0, "no WISMO ticket")


# group -> (the features credited to it, its sentence)
REASON_GROUPS: dict[str, tuple[tuple[str, ...], Writer]] = {
    "promise_slack": (
        (
            "deliver_slack_hours",
            "deliver_slack_workdays",
            "hours_since_placed",
            "slack_after_expected_transit",
        ),
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
        (
            "current_milestone",
            "last_event",
            "milestone_rank",
            "hours_in_milestone",
            "hours_since_shipped",
        ),
        _milestone,
    ),
    "shipping": (
        (
            "ship_slack_hours",
            "ship_slack_workdays",
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
            "warehouse_name_late_rate",
            "warehouse_name_transit_hours",
            "warehouse_queue_days",
            "warehouse_ship_hours",
            "queue_ahead_days",
            "warehouse_pace",
        ),
        _site,
    ),
    "carrier_network": (
        tuple(f"{g}_{s}_share" for g in PEER_GROUPS for s in PEER_SIGNALS),
        _peers,
    ),
    "service": (("service_code",), _service),
    "customer": (("customer_tier", "order_value", "item_count", "shipment_count"), _customer),
    "wismo": (("wismo_ticket_count",), _wismo),
}


# columns a sentence reads beyond its own group's
_ALSO_READS: dict[str, tuple[str, ...]] = {
    "shipping": ("hours_since_shipped",),
    "carrier_network": ("destination_region", "carrier"),
}


def reasons_json(
    features: pd.DataFrame, deltas: np.ndarray, chosen: np.ndarray, groups: list[str]
) -> np.ndarray:
    """Per row, its reasons as JSON text: [{"feature", "text", "contribution"}, ...] for the
    groups `chosen` lists (column indices into `groups`, -1 = none, trailing). Each group's
    sentences are written once, for all the rows that show it."""
    n, slots = chosen.shape
    frame = features.reset_index(drop=True)
    rounded = np.round(deltas, 4)
    pieces = [np.full(n, "", dtype=object) for _ in range(slots)]
    for g, group in enumerate(groups):
        shown = chosen == g
        rows = np.flatnonzero(shown.any(axis=1))
        if len(rows) == 0:
            continue
        columns, writer = REASON_GROUPS[group]
        reads = [c for c in (*columns, *_ALSO_READS.get(group, ())) if c in frame.columns]
        text = writer(frame[reads].iloc[rows]).to_numpy(dtype=object)
        value = _fmt(pd.Series(rounded[rows, g]), "{!r}").to_numpy(dtype=object)
        item = '{"feature": "' + group + '", "text": "' + text + '", "contribution": ' + value + "}"
        for k in range(slots):
            at = shown[rows, k]
            pieces[k][rows[at]] = item[at]
    out = "[" + pieces[0]
    for k in range(1, slots):
        out = out + np.where(pieces[k] == "", "", ", ") + pieces[k]
    return out + "]"
