"""ShipBob's side of a shipment after it left the site: the status detail follows the carrier.

ShipBob's status reference (docs/feeds.md "wms_shipments") gives a Completed shipment a detail
that tracks the carrier: Processing 200 (waiting for the carrier's first scan), InTransit 201,
OutForDelivery 202, Delivered 203, DeliveryException 204 (a failed drop-off or a parcel going
back). ShipBob learns them from its own carrier sync, which runs every SYNC_EVERY hours: a
scan shows at the first sync at least an hour after it reached the tracker, and details that
meet at one sync collapse into the latest (an out-for-delivery and a delivery on the same
afternoon show as one Delivered version). The sync's minute within its slot is drawn from a
hash of the tracking code, not from the order's RNG, so these versions move no other draw.
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
SYNC_EVERY = 6 * HOUR  # ShipBob's carrier sync (UTC slots)
SYNC_DELAY = HOUR  # a scan is picked up by a sync at least this long after the tracker had it


def _synced(tracking_code: str, arrival: int) -> int:
    """The sync that picks a scan up: the first slot at least SYNC_DELAY after it, plus the
    minute within the slot this shipment is reached at."""
    slot = -(-(arrival + SYNC_DELAY) // SYNC_EVERY) * SYNC_EVERY
    return slot + zlib.crc32(tracking_code.encode()) % (30 * 60)


def follow_carrier(shipment: ShipmentPlan) -> None:
    """Completed versions whose detail follows the carrier's scans, one per sync (the latest
    detail at that sync; no repeat of the detail already shown)."""
    if shipment.shipped_at is None:
        return
    wms = shipment.wms
    completed = [i for i, e in enumerate(wms) if e.status == "Completed"]
    if not completed:
        return
    first = wms[completed[0]]
    # Handed over, no carrier scan yet: ShipBob's "Waiting For Carrier Pickup".
    wms[completed[0]] = first._replace(detail=first.detail or "Processing")
    by_sync: dict[int, str] = {}
    in_transit = False
    for scan in sorted(shipment.scans, key=lambda s: s.arrival):
        detail = _FOLLOWS.get(scan.status)
        if detail is None or (detail == "InTransit" and in_transit):
            continue  # in transit once: later hub scans do not change ShipBob's detail
        in_transit = True
        by_sync[_synced(shipment.tracking_code, scan.arrival)] = detail
    shown = "Processing"
    for at, detail in sorted(by_sync.items()):
        if detail != shown and at > first.at:
            wms.append(WmsEvent(at, "Completed", detail, first.efd_status))
            shown = detail
    wms.sort(key=lambda event: event.at)
