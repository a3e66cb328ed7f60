"""`make bench BENCH_ARGS="--only world"`: how much the simulated world gives away.

Reads a world's landing pages and `ground_truth.csv` directly (pure Python, no pipeline) and
evaluates each single shortcut signal 24 h before every order's promise, as an hourly poll
would have known it then (record versions whose vendor time is at or before that moment):

- EDD later than the promise: the latest tracker version's `est_delivery_date` (any parcel)
- any exception scan: an exception `status_detail` in the tracking history
- PendingLate: a ShipBob version so far had a shipment `PendingLate`
- an active hold: the latest FulfillmentOrder is `on_hold`, or a ShipBob shipment is
  `Exception` / `OnHold`
- no scan for 48 h: a parcel with a tracker, not delivered, whose newest scan is 48 h old

Precision and recall are over missed promises among orders whose outcome is known at the
clock (not cancelled, promise deadline before the clock).
"""

from __future__ import annotations

import csv
import json
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from datetime import date, datetime
from pathlib import Path

try:
    import orjson

    _loads = orjson.loads
except ImportError:  # pragma: no cover
    _loads = json.loads

EXCEPTION_DETAILS = frozenset(
    ("weather_delay", "delayed", "address_correction", "delivery_exception", "lost", "return")
)
SIGNALS = ("edd_past_promise", "exception_scan", "pending_late", "active_hold", "no_scan_48h")
HOUR = 3600


def _t(text: str | None) -> int | None:
    if not text:
        return None
    return int(datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp())


@dataclass
class TrackerVersion:
    updated: int
    created: int
    est: date | None
    last_scan: int
    first_exception: int | None
    delivered: bool


@dataclass
class Order:
    promised: date
    deadline: int
    missed: bool
    mode: str
    cancelled: bool = False
    codes: set[str] = field(default_factory=set)
    shipbob: list[tuple[int, bool, bool]] = field(default_factory=list)  # (t, late, held)
    holds: dict[int, list[tuple[int, bool]]] = field(default_factory=dict)  # fo -> (t, held)


def _records(folder: Path, key: str | None) -> list[dict]:
    found: list[dict] = []
    for path in sorted(folder.glob("*.json")):
        body = _loads(path.read_bytes())
        found.extend(body if key is None else body[key])
    return found


def load(landing: Path) -> tuple[dict[int, Order], dict[str, list[TrackerVersion]], int]:
    orders: dict[int, Order] = {}
    with (landing / "ground_truth.csv").open(newline="") as handle:
        for row in csv.DictReader(handle):
            orders[int(row["order_id"])] = Order(
                promised=date.fromisoformat(row["promised_delivery_date"]),
                deadline=_t(row["promised_deliver_by"]) or 0,
                missed=row["missed_promise"] == "true",
                mode=row["failure_mode"],
            )
    for path in sorted((landing / "storefront_orders").glob("*.json")):
        for record in _loads(path.read_bytes())["orders"]:
            order = orders.get(record["id"])
            if order is None:
                continue
            order.cancelled = order.cancelled or record["cancelled_at"] is not None
            order.codes.update(f["tracking_number"] for f in record["fulfillments"])
    for path in sorted((landing / "wms_shipments").glob("*.json")):
        for record in _loads(path.read_bytes()):
            order = orders.get(int(record["reference_id"]))
            if order is None:
                continue
            shipments = record["shipments"]
            at = max(_t(s["last_update_at"]) or 0 for s in shipments)
            late = any(s["estimated_fulfillment_date_status"] == "PendingLate" for s in shipments)
            held = any(s["status"] in ("Exception", "OnHold") for s in shipments)
            order.shipbob.append((at, late, held))
    for path in sorted((landing / "oms_fulfillment_orders").glob("*.json")):
        for record in _loads(path.read_bytes())["fulfillment_orders"]:
            order = orders.get(record["order_id"])
            if order is not None:
                order.holds.setdefault(record["id"], []).append(
                    (_t(record["updated_at"]) or 0, record["status"] == "on_hold")
                )
    trackers: dict[str, list[TrackerVersion]] = defaultdict(list)
    for path in sorted((landing / "carrier_trackers").glob("*.json")):
        for record in _loads(path.read_bytes())["trackers"]:
            details = record["tracking_details"]
            scans = [_t(d["datetime"]) or 0 for d in details]
            exceptions = [
                _t(d["datetime"]) or 0 for d in details if d["status_detail"] in EXCEPTION_DETAILS
            ]
            est = record.get("est_delivery_date")
            trackers[record["tracking_code"]].append(
                TrackerVersion(
                    updated=_t(record["updated_at"]) or 0,
                    created=_t(record["created_at"]) or 0,
                    est=date.fromisoformat(est[:10]) if est else None,
                    last_scan=max(scans) if scans else 0,
                    first_exception=min(exceptions) if exceptions else None,
                    delivered=record["status"] == "delivered",
                )
            )
    for versions in trackers.values():
        versions.sort(key=lambda v: v.updated)
    clock = json.loads((landing / "simulation.json").read_text())["clock"]
    return orders, trackers, _t(clock) or 0


def _latest(versions: list, at: int, time_of: int = 0) -> object | None:
    found = None
    for version in versions:
        if (version[time_of] if isinstance(version, tuple) else version.updated) <= at:
            found = version
        else:
            break
    return found


def signals_at(order: Order, trackers: dict[str, list[TrackerVersion]], at: int) -> set[str]:
    fired: set[str] = set()
    for code in order.codes:
        version = _latest(trackers.get(code, []), at)
        if not isinstance(version, TrackerVersion):
            continue
        if version.est is not None and version.est > order.promised:
            fired.add("edd_past_promise")
        if version.first_exception is not None and version.first_exception <= at:
            fired.add("exception_scan")
        if not version.delivered and at - version.last_scan >= 48 * HOUR:
            fired.add("no_scan_48h")
    versions = sorted(order.shipbob)
    if any(late for t, late, _ in versions if t <= at):
        fired.add("pending_late")  # ShipBob has said PendingLate by now
    shipbob = _latest(versions, at)
    if isinstance(shipbob, tuple) and shipbob[2]:
        fired.add("active_hold")
    for history in order.holds.values():
        fo = _latest(sorted(history), at)
        if isinstance(fo, tuple) and fo[1]:
            fired.add("active_hold")
    return fired


def evaluate(landing: Path) -> dict[str, object]:
    orders, trackers, clock = load(landing)
    known = [o for o in orders.values() if not o.cancelled and o.deadline <= clock]
    missed = [o for o in known if o.missed]
    fired_by: dict[str, list[bool]] = {s: [] for s in SIGNALS}
    no_signal = 0
    for order in known:
        fired = signals_at(order, trackers, order.deadline - 24 * HOUR)
        for signal in SIGNALS:
            if signal in fired:
                fired_by[signal].append(order.missed)
        no_signal += order.missed and not fired
    table = {}
    for signal, outcomes in fired_by.items():
        hits = sum(outcomes)
        table[signal] = (
            hits / len(outcomes) if outcomes else 0.0,
            hits / len(missed) if missed else 0.0,
            len(outcomes),
        )
    # Parcels late with no incident behind them, labelled >= 48 h before the promise.
    quiet_late = 0
    early_estimate = 0
    for order in missed:
        if order.mode != "transit_delay":
            continue
        for code in order.codes:
            versions = trackers.get(code)
            if not versions or versions[0].created > order.deadline - 48 * HOUR:
                continue
            quiet_late += 1
            first = versions[0]
            early_estimate += first.est is not None and first.est > order.promised
    return {
        "orders": len(known),
        "missed": len(missed),
        "miss_rate": len(missed) / len(known) if known else 0.0,
        "by_cause": Counter(o.mode for o in missed),
        "signals": table,
        "no_signal_share": no_signal / len(missed) if missed else 0.0,
        "quiet_late_parcels": quiet_late,
        "quiet_late_first_edd_past": early_estimate / quiet_late if quiet_late else 0.0,
    }


def report(results: dict[int, dict[str, object]], days: int, per_day: int) -> str:
    seeds = sorted(results)
    lines = [
        "# World: how much the simulated feeds give away\n",
        f"Worlds: {days} days × {per_day:,} orders/day, seeds {', '.join(map(str, seeds))}, "
        "simulated one-shot with full history (`python -m orderwatch_dagster.sim`); figures "
        "from the landing pages and `ground_truth.csv` directly (bench/world.py). Orders "
        "counted: not cancelled, promise deadline before the clock.\n",
        "| seed | orders | missed | miss rate | misses with no direct signal 24 h before "
        "| late parcels, no incident, labelled ≥ 48 h before | … first EDD past the promise |",
        "|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for seed in seeds:
        r = results[seed]
        lines.append(
            f"| {seed} | {r['orders']:,} | {r['missed']:,} | {r['miss_rate']:.1%} | "
            f"{r['no_signal_share']:.1%} | {r['quiet_late_parcels']:,} | "
            f"{r['quiet_late_first_edd_past']:.1%} |"
        )
    lines += [
        "\n## Single shortcut signals, 24 h before each promise\n",
        "| signal | "
        + " | ".join(f"seed {s} precision | seed {s} recall | seed {s} fired" for s in seeds)
        + " |",
        "|---|" + "---:|---:|---:|" * len(seeds),
    ]
    for signal in SIGNALS:
        cells = []
        for seed in seeds:
            precision, recall, fired = results[seed]["signals"][signal]  # type: ignore[index]
            cells.append(f"{precision:.1%} | {recall:.1%} | {fired:,}")
        lines.append(f"| {signal} | " + " | ".join(cells) + " |")
    lines += [
        "\n## Misses by cause\n",
        "| cause | " + " | ".join(f"seed {s}" for s in seeds) + " |",
    ]
    lines.append("|---|" + "---:|" * len(seeds))
    causes = sorted({c for r in results.values() for c in r["by_cause"]})  # type: ignore[attr-defined]
    for cause in causes:
        cells = [str(results[s]["by_cause"].get(cause, 0)) for s in seeds]  # type: ignore[attr-defined]
        lines.append(f"| {cause} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"
