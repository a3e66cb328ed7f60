"""Feed-specific parsing that a spec's envelope keys cannot express, named as hooks on the
FeedSpec (lib/feeds.py) so the generic parser (lib/parsers.py) never tests a feed's name.

A hook may raise `Reject` for input it recognises as broken; the parser quarantines it.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from orderwatch_dagster.lib.records import QuarantineReason, Reject, read_time

# -- carrier: EasyPost Trackers, EasyPost webhook Events, AfterShip trackings -------------------


def _aftership_tracking(document: dict[str, Any]) -> dict[str, Any] | None:
    data = document.get("data")
    if "meta" in document and isinstance(data, dict) and isinstance(data.get("tracking"), dict):
        return data["tracking"]
    return None


def carrier_envelope(document: dict[str, Any]) -> list[Any] | None:
    """Carrier pages beyond `{"trackers": [...]}`: an AfterShip list or single response, an
    EasyPost Event (a webhook delivery) or a bare Tracker; None when it is none of these."""
    data = document.get("data")
    if "meta" in document and isinstance(data, dict) and isinstance(data.get("trackings"), list):
        return list(data["trackings"])
    single = _aftership_tracking(document)
    if single is not None:
        return [single]
    if document.get("object") == "Tracker":
        return [document]
    if document.get("object") == "Event":
        result = document.get("result")
        if isinstance(result, dict) and result.get("object") == "Tracker":
            return [result]
        raise Reject(
            QuarantineReason.UNEXPECTED_SHAPE,
            f"EasyPost Event {document.get('description')!r} carries no Tracker result",
        )
    return None


def carrier_element(element: Any) -> Any:
    """A list element or NDJSON line may be a webhook delivery: its Tracker / tracking."""
    if not isinstance(element, dict):
        return element
    if element.get("object") == "Event" and isinstance(element.get("result"), dict):
        return element["result"]
    return _aftership_tracking(element) or element


def carrier_format(payload: dict[str, Any]) -> str:
    """AfterShip trackings carry `slug` (the courier) and `tracking_number`; EasyPost Trackers
    carry `object: "Tracker"` and `tracking_code`. Decided by shape, so a quarantined record
    replayed on its own keeps its format."""
    if payload.get("object") != "Tracker" and "slug" in payload and "tracking_number" in payload:
        return "aftership"
    return "easypost"


# -- wms: ShipBob orders ------------------------------------------------------------------------


def shipbob_update_time(payload: dict[str, Any]) -> Any:
    """A ShipBob order has no updated_at: its version time is the latest shipment change
    (`shipments[].last_update_at`), else the order's `created_date` (docs/feeds.md)."""
    latest: tuple[datetime, Any] | None = None
    shipments = payload.get("shipments")
    for shipment in shipments if isinstance(shipments, list) else []:
        if isinstance(shipment, dict) and shipment.get("last_update_at") is not None:
            raw = shipment["last_update_at"]
            moment, _ = read_time("shipments[].last_update_at", raw)
            if latest is None or moment > latest[0]:
                latest = (moment, raw)
    return latest[1] if latest is not None else payload.get("created_date")


# -- support: Zendesk users sideloaded beside tickets -------------------------------------------


def zendesk_users_envelope(document: dict[str, Any]) -> list[Any] | None:
    """A Zendesk ticket page without `include=users` (or an export page that changed no user)
    carries no `users` key: it holds no user, which is not a broken page. None for anything
    that is not a Zendesk ticket page."""
    if isinstance(document.get("tickets"), list) or isinstance(document.get("ticket"), dict):
        return []
    return None
