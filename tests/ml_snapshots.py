"""A small synthetic as-of layer for the ml tests: rows shaped like marts.order_state_snapshots
(order_state's columns + as_of), every order at every grid moment after it was placed, each
row showing only what had happened by its as_of. Fast and deterministic; the simulated world
is what the benchmark measures on."""

from __future__ import annotations

from functools import cache

import numpy as np
import pandas as pd

START = pd.Timestamp("2026-10-01", tz="UTC")
RULES = ("ship_late", "no_first_scan", "scan_gap", "carrier_exception", "fulfillment_hold", "lost")


def _orders(n: int, days: int, rng: np.random.Generator) -> pd.DataFrame:
    placed = START + pd.to_timedelta(np.sort(rng.uniform(0, days * 24, n)), unit="h")
    warehouse = rng.choice(["site-a", "site-b", "site-c"], n)
    region = rng.choice(["r1", "r2", "r3", "r4"], n)
    carrier = rng.choice(["c1", "c2"], n)
    hold = rng.random(n) < 0.08
    stall = rng.random(n) < 0.08
    ship_h = rng.uniform(8, 30, n) + np.where(hold, rng.uniform(40, 90, n), 0)
    transit_h = rng.uniform(30, 70, n) + np.where(carrier == "c2", 10, 0)
    transit_h += np.where(stall, rng.uniform(40, 100, n), 0)
    promise = placed + pd.to_timedelta(np.full(n, 120.0), unit="h")
    shipped = placed + pd.to_timedelta(ship_h, unit="h")
    delivered = shipped + pd.to_timedelta(transit_h, unit="h")
    return pd.DataFrame(
        {
            "order_id": np.arange(1_000, 1_000 + n, dtype=np.int64),
            "placed_at": placed,
            "promised_ship_by": placed + pd.to_timedelta(36.0, unit="h"),
            "promised_deliver_by": promise,
            "shipped_at": shipped,
            "delivered_at": delivered,
            "hold_from": placed + pd.to_timedelta(4.0, unit="h"),
            "hold": hold,
            "stall_from": shipped + pd.to_timedelta(12.0, unit="h"),
            "stall": stall,
            "warehouse_name": warehouse,
            "destination_region": region,
            "carrier": carrier,
            "customer_tier": rng.choice(["standard", "vip"], n, p=[0.9, 0.1]),
            "service_code": "ground",
            "order_value": rng.uniform(20, 300, n).round(2),
            "is_cancelled": rng.random(n) < 0.02,
        }
    )


def _state(orders: pd.DataFrame, as_of: pd.Timestamp) -> pd.DataFrame:
    o = orders[orders["placed_at"] <= as_of]
    shipped = o["shipped_at"].where(o["shipped_at"] <= as_of)
    delivered = o["delivered_at"].where(o["delivered_at"] <= as_of)
    stalled = o["stall"] & (o["stall_from"] <= as_of) & delivered.isna()
    last_scan = shipped.where(shipped.notna())
    scanning = shipped.notna() & delivered.isna() & ~stalled
    last_scan = last_scan.where(~scanning, as_of - pd.Timedelta(hours=3))
    last_scan = last_scan.where(~stalled, o["stall_from"])
    last_scan = last_scan.where(delivered.isna(), delivered)
    milestone = np.where(
        delivered.notna(),
        "delivered",
        np.where(shipped.notna(), "in_transit", "released_to_warehouse"),
    )
    held = o["hold"] & (o["hold_from"] <= as_of) & shipped.isna()
    passed = o["promised_deliver_by"] < as_of
    missed = passed & delivered.isna() | (delivered > o["promised_deliver_by"])
    silent = (as_of - last_scan).dt.total_seconds() / 3600.0
    frame = o[
        [
            "order_id",
            "placed_at",
            "promised_ship_by",
            "promised_deliver_by",
            "warehouse_name",
            "destination_region",
            "carrier",
            "customer_tier",
            "service_code",
            "order_value",
            "is_cancelled",
        ]
    ].copy()
    frame["as_of"] = as_of
    frame["current_milestone"] = np.where(frame["is_cancelled"], "cancelled", milestone)
    frame["last_event_at"] = last_scan.where(last_scan.notna(), o["placed_at"])
    frame["last_scan_at"] = last_scan
    frame["shipped_at"] = shipped
    frame["delivered_at"] = delivered
    frame["lane"] = frame["warehouse_name"] + " -> " + frame["destination_region"]
    frame["shipment_count"] = 1
    frame["wismo_ticket_count"] = (stalled & (silent > 48)).astype(int)
    frame["is_open"] = ~frame["is_cancelled"] & delivered.isna()
    frame["missed_promise"] = missed & ~frame["is_cancelled"]
    frame["ship_late_active"] = shipped.isna() & (o["promised_ship_by"] < as_of)
    frame["fulfillment_hold_active"] = held
    frame["fulfillment_hold_category"] = np.where(held, "inventory", None)
    frame["scan_gap_active"] = stalled & (silent > 36)
    frame["lost_active"] = stalled & (silent > 24 * 7)
    frame["no_first_scan_active"] = False
    frame["carrier_exception_active"] = False
    frame["carrier_exception_reason"] = None
    for rule in RULES:
        frame[f"{rule}_occurred"] = frame[f"{rule}_active"]
    frame["promise_missed_active"] = frame["missed_promise"] & frame["is_open"]
    frame["promise_missed_occurred"] = frame["missed_promise"]
    return frame


def synthetic_snapshots(
    n_orders: int = 1500, days: int = 24, step_hours: int = 12, seed: int = 3
) -> pd.DataFrame:
    """Every order at every as_of of a `step_hours` grid over `days` (a copy: callers edit it)."""
    return _cached(n_orders, days, step_hours, seed).copy()


@cache
def _cached(n_orders: int, days: int, step_hours: int, seed: int) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    orders = _orders(n_orders, days, rng)
    grid = pd.date_range(
        START + pd.Timedelta(hours=step_hours),
        periods=days * 24 // step_hours,
        freq=f"{step_hours}h",
    )
    return pd.concat([_state(orders, t) for t in grid], ignore_index=True)
