"""ShipBob's side of a shipment after it left the site: the status detail follows the carrier.

ShipBob's status reference (docs/feeds.md "wms_shipments") gives a Completed shipment a detail
that tracks the carrier: Processing 200 (waiting for the carrier's first scan), InTransit 201,
OutForDelivery 202, Delivered 203, DeliveryException 204 (a failed drop-off or a parcel going
back). ShipBob learns each from its own carrier polling, so each lands a few hours after the
scan reached the tracker. The lag is drawn from a hash of the tracking code, not from the
order's RNG, so adding these versions moves no other draw of the world.
"""

from __future__ import annotations

import zlib

from orderwatch_dagster.sim.model import HOUR, ShipmentPlan, WmsEvent

# EasyPost scan (status, status_detail) -> the ShipBob Completed detail it moves the shipment to
_FOLLOWS = {
    "in_transit": "InTransit",
    "out_for_delivery": "OutForDelivery",
    "delivered": "Delivered",
    "failure": "DeliveryException",
    "return_to_sender": "DeliveryException",
}
SYNC_LAG = (HOUR, 6 * HOUR)  # ShipBob's carrier sync after the tracker showed the scan


def _lag(tracking_code: str, n: int) -> int:
    low, high = SYNC_LAG
    return low + zlib.crc32(f"{tracking_code}:{n}".encode()) % (high - low)


def follow_carrier(shipment: ShipmentPlan) -> None:
    """Completed versions whose detail follows the carrier's scans (no repeat of a detail in a
    row: the 3PL shows a state change once)."""
    if shipment.shipped_at is None:
        return
    wms = shipment.wms
    completed = [i for i, e in enumerate(wms) if e.status == "Completed"]
    if not completed:
        return
    first = wms[completed[0]]
    # Handed over, no carrier scan yet: ShipBob's "Waiting For Carrier Pickup".
    wms[completed[0]] = first._replace(detail=first.detail or "Processing")
    efd = first.efd_status
    shown = {e.detail for e in wms if e.status == "Completed"}
    last_detail, added = "Processing", []
    for n, scan in enumerate(sorted(shipment.scans, key=lambda s: s.arrival)):
        detail = _FOLLOWS.get(scan.status)
        if scan.status == "in_transit" and last_detail != "Processing":
            continue  # in transit once: later hub scans do not change ShipBob's detail
        if detail is None or detail == last_detail:
            continue
        last_detail = detail
        if detail == "DeliveryException" and "DeliveryException" in shown:
            continue  # the return to sender already carries it (sim/shipment.py)
        added.append(WmsEvent(scan.arrival + _lag(shipment.tracking_code, n), "Completed",
                              detail, efd))  # fmt: skip
    wms.extend(added)
    wms.sort(key=lambda event: event.at)
