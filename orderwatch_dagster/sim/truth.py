"""Ground truth timing: when each signal showed in the feeds, and when each cause really began.

Signal onsets (`onset_<signal>_at`) are when a signal could first be seen in the feeds (a
scan's arrival at the tracker, a ShipBob or FulfillmentOrder version's time, a threshold
crossed), for every order: look-alikes on orders that arrive on time have onsets too.
`failure_onset` is the earliest onset before the breach, on missed orders only.

`scan_gaps` lists every gap of at least GAP between a parcel's carrier scans, on every parcel
of the order (`start/end`, the arrivals of the scans before and after it; `start/` while it
lasts), so a rule counting hours since the last scan is graded on the gaps it really saw.

Cause onsets (`cause_<kind>_at`) are when a delay's cause began in the world, whether or not
any feed ever showed it: the stock-out or the unusable address when the site got the order
(not the hold version that reports it), the storm's announcement, the hub going silent, the
last scan of a parcel that is then lost, a failed attempt at the door. Every order that met
the cause has one, late or not (a hold that cleared in time too). Grading a rule against
these, not against the feed field it reads, measures what it misses
(bench/rules_grading.py).
"""

from __future__ import annotations

from itertools import pairwise

from orderwatch_dagster.sim.model import DAY, HOUR, OrderPlan, ShipmentPlan, epoch

SIGNALS: tuple[str, ...] = (
    "exception_scan",  # a carrier exception: weather, delay, address, failed attempt, lost
    "hold",  # a FulfillmentOrder on hold or a ShipBob Exception / OnHold shipment
    "pending_late",  # ShipBob estimated_fulfillment_date_status PendingLate
    "ship_late",  # not handed to the carrier by the end of the promised ship day
    "silence_48h",  # a shipped, undelivered parcel with no new scan for 48 h
    "edd_past_promise",  # the carrier's estimate later than the promised date
)
EXCEPTION_DETAILS = frozenset(
    ("weather_delay", "delayed", "address_correction", "delivery_exception", "lost", "return")
)
SILENCE = 48 * HOUR
GAP = 24 * HOUR  # the truth's `scan_gaps`: every gap this long (a rule's threshold is longer)
# Cause kind -> the failure mode (sim/model.py FAILURE_MODES) it is a cause of. An address
# problem is two kinds: caught by the site (a hold) or only by the carrier at the door.
CAUSES: dict[str, str] = {
    "warehouse_backlog": "warehouse_backlog",  # the site's queue or a missed carrier pickup
    "stock_out": "stock_out",
    "address_hold": "invalid_address",
    "address_carrier": "invalid_address",
    "label_never_accepted": "label_never_accepted",  # handed over, never scanned for days
    "scan_gap": "scan_gap",  # the hub outage silenced the parcel
    "lost_parcel": "lost_parcel",  # from its last scan
    "weather_delay": "weather_delay",
    "carrier_slowdown": "carrier_slowdown",
    "transit_delay": "transit_delay",
    "failed_delivery": "failed_delivery",
    "return_to_sender": "return_to_sender",
}


def record_cause(plan: OrderPlan, kind: str, began: int) -> None:
    """The earliest time a cause of this kind began on the order (sim/shipment.py)."""
    if kind not in CAUSES:
        raise ValueError(f"unknown cause kind {kind!r}")
    plan.cause_onsets[kind] = min(plan.cause_onsets.get(kind, began), began)


def _silence(shipment: ShipmentPlan) -> int | None:
    """48 h without a carrier scan, counted from the carrier's first scan (its acceptance, or
    a hub's when it skipped acceptance): a label the carrier never scanned is no_first_scan's
    to see, not a silence."""
    seen = sorted(scan.arrival for scan in shipment.scans if scan.status != "pre_transit")
    if shipment.shipped_at is None or not seen:
        return None
    last = seen[0]
    for arrival in seen[1:]:
        if arrival - last >= SILENCE:
            return last + SILENCE
        last = arrival
    delivered = shipment.delivered_at is not None
    return None if delivered else last + SILENCE


def scan_gaps(shipment: ShipmentPlan) -> list[tuple[int, int | None]]:
    """Every gap of at least GAP between the parcel's carrier scans, by their arrival at the
    tracker (from its first scan, as _silence counts), and the silence after its last scan
    while it is undelivered (end None): (last scan before it, the scan that ended it)."""
    seen = sorted(scan.arrival for scan in shipment.scans if scan.status != "pre_transit")
    if shipment.shipped_at is None or not seen:
        return []
    gaps: list[tuple[int, int | None]] = [(a, b) for a, b in pairwise(seen) if b - a >= GAP]
    if shipment.delivered_at is None:
        gaps.append((seen[-1], None))
    return gaps


def ship_by(plan: OrderPlan) -> int:
    """The end of the promised ship day at the warehouse (truth `promised_ship_by`)."""
    return epoch(plan.promised_ship, 24.0, plan.warehouse.tz) - 1


def record_onsets(plan: OrderPlan) -> None:
    found: dict[str, list[int]] = {signal: [] for signal in SIGNALS}
    for events in plan.fo_events.values():
        found["hold"] += [e.at for e in events if e.status == "on_hold"]
    deadline_to_ship = ship_by(plan)
    for shipment in plan.shipments:
        found["hold"] += [e.at for e in shipment.wms if e.status in ("Exception", "OnHold")]
        found["pending_late"] += [e.at for e in shipment.wms if e.efd_status == "PendingLate"]
        if shipment.shipped_at is None or shipment.shipped_at > deadline_to_ship:
            found["ship_late"].append(deadline_to_ship)
        # available_for_pickup too: a failed attempt the carrier reports only so (EasyPost's
        # canonical status, which carrier_exception reads)
        found["exception_scan"] += [
            s.arrival
            for s in shipment.scans
            if s.detail in EXCEPTION_DETAILS or s.status == "available_for_pickup"
        ]
        silent = _silence(shipment)
        if silent is not None:
            found["silence_48h"].append(silent)
        plan.scan_gaps += scan_gaps(shipment)
        found["edd_past_promise"] += [
            e.known_at for e in shipment.edd if e.day is not None and e.day > plan.promised
        ]
    plan.onsets = {signal: min(times) for signal, times in found.items() if times}
    if plan.missed:
        before = [t for t in plan.onsets.values() if t < plan.deadline]
        plan.failure_onset = min(before) if before else None


def onset_columns() -> tuple[str, ...]:
    return tuple(f"onset_{signal}_at" for signal in SIGNALS)


def cause_columns() -> tuple[str, ...]:
    return tuple(f"cause_{kind}_at" for kind in CAUSES)


__all__ = [
    "CAUSES",
    "DAY",
    "SIGNALS",
    "cause_columns",
    "onset_columns",
    "record_cause",
    "record_onsets",
    "ship_by",
]
