"""EasyPost Tracker records, as the tracker reads at a moment."""

from __future__ import annotations

from functools import lru_cache

from orderwatch_dagster.sim.render.common import CARRIER_SERVICE, utc
from orderwatch_dagster.sim.world import EddEvent, OrderPlan, Scan, ShipmentPlan


def last_estimate(shipment: ShipmentPlan, moment: int) -> EddEvent | None:
    found = None
    for event in shipment.edd:
        if event.known_at <= moment:
            found = event
    return found


def trackers_page(records: list[dict], more: bool, side: list[dict]) -> dict:
    return {"trackers": records, "has_more": more}


def tracker_arrivals(shipment: ShipmentPlan) -> list[int]:
    """Every moment the tracker changes: a scan reaches it, or the estimate is revised."""
    return [scan.arrival for scan in shipment.scans] + [e.known_at for e in shipment.edd]


@lru_cache(maxsize=4096)
def _location(city: str | None, state: str | None, zip_code: str | None) -> dict:
    # Shared (never mutated) so a page serialises one object many times, cheaply.
    return {
        "object": "TrackingLocation",
        "city": city,
        "state": state,
        "country": "US" if state else None,
        "zip": zip_code,
    }


def _detail(scan: Scan, carrier: str) -> dict:
    return {
        "object": "TrackingDetail",
        "message": scan.message,
        "description": "",
        "status": scan.status,
        "status_detail": scan.detail,
        "datetime": utc(scan.at),
        "source": carrier,
        "carrier_code": "",
        "tracking_location": _location(scan.city, scan.state, scan.zip),
    }


def easypost_tracker(plan: OrderPlan, shipment: ShipmentPlan, moment: int) -> dict | None:
    """The tracker as EasyPost shows it at `moment` (None before the label exists)."""
    seen = [scan for scan in shipment.scans if scan.arrival <= moment]
    if not seen:
        return None
    latest = seen[-1]  # scans are in carrier-time order; a late one slots in, not on top
    estimate = last_estimate(shipment, moment)
    updated = max(
        [scan.arrival for scan in seen] + [e.known_at for e in shipment.edd if e.known_at <= moment]
    )
    site = shipment.warehouse
    dest = plan.destination
    service = shipment.service or plan.service
    est = estimate.day if estimate is not None else None
    delivered = latest.status == "delivered"
    finalized = latest.status in ("delivered", "return_to_sender") or latest.detail == "lost"
    return {
        "id": shipment.tracker_id,
        "object": "Tracker",
        "mode": "production",
        "tracking_code": shipment.tracking_code,
        "status": latest.status,
        "status_detail": latest.detail,
        "created_at": utc(seen[0].arrival),
        "updated_at": utc(updated),
        "signed_by": plan.last_name.upper() if delivered else None,
        "weight": None,
        "est_delivery_date": f"{est.isoformat()}T20:00:00Z" if est else None,
        # A tracker created from a tracking code (the 3PL bought the label): no EasyPost shipment.
        "shipment_id": None,
        "carrier": shipment.carrier,
        "tracking_details": [_detail(scan, shipment.carrier) for scan in seen],
        "fees": [],
        "carrier_detail": {
            "object": "CarrierDetail",
            "service": CARRIER_SERVICE.get((shipment.carrier, service), service),
            "container_type": None,
            "est_delivery_date_local": est.isoformat() if est else None,
            "est_delivery_time_local": None,
            "origin_location": f"{site.city.upper()} {site.state}, {site.zip}",
            "origin_tracking_location": _location(site.city.upper(), site.state, site.zip),
            "destination_location": f"{dest.city.upper()} {dest.code}, {plan.zip}",
            "destination_tracking_location": None,
            # The carrier's own guarantee (overnight services), never the merchant's promise.
            "guaranteed_delivery_date": shipment.guaranteed.isoformat()
            if shipment.guaranteed
            else None,
            "alternate_identifier": None,
            "initial_delivery_attempt": next(
                (
                    utc(s.at)
                    for s in seen
                    if s.status in ("delivered", "failure", "available_for_pickup")
                    and s.detail != "lost"
                ),
                None,
            ),
        },
        "finalized": finalized,
        "is_return": False,
        "public_url": f"https://track.easypost.com/{shipment.tracker_id}",
    }
