"""Render an order plan as each vendor's record, as of a moment (docs/feeds.md is the contract).

Every builder is a pure function of (plan, moment): the same plan rendered at the same
moment gives the same dict, which is what makes continuation calls consistent.
"""

from __future__ import annotations

import time as _time
from datetime import datetime
from functools import lru_cache
from typing import Any

from orderwatch_dagster.sim.calendar import SHOP_TZ
from orderwatch_dagster.sim.config import load_config
from orderwatch_dagster.sim.world import (
    CUSTOMER_ID_BASE,
    OrderPlan,
    ReturnPlan,
    Scan,
    ShipmentPlan,
    TicketPlan,
    epoch,
)

ZENDESK_ORDER_FIELD_ID = 360012345678
SHOP_DOMAIN = "orderwatch-demo.myshopify.com"
SHIPBOB_ID_BASE = 300_000_000
SHIPBOB_SHIPMENT_BASE = 400_000_000
FULFILLMENT_ORDER_BASE = 6_000_000_000_000
FULFILLMENT_BASE = 4_000_000_000_000
LINE_ITEM_BASE = 13_000_000_000_000
RETURN_ID_BASE = 80_000_000
TICKET_ID_BASE = 200_000

_SHOPIFY_SHIPMENT_STATUS = {
    "pre_transit": "label_printed",
    "in_transit": "in_transit",
    "out_for_delivery": "out_for_delivery",
    "delivered": "delivered",
    "available_for_pickup": "ready_for_pickup",
    "return_to_sender": "failure",
}
_TRACKING_URL = {
    "USPS": "https://tools.usps.com/go/TrackConfirmAction?tLabels={}",
    "UPS": "https://www.ups.com/track?tracknum={}",
    "FedEx": "https://www.fedex.com/fedextrack/?trknbr={}",
}
_CARRIER_SERVICE = {
    ("USPS", "ground"): "Ground Advantage",
    ("USPS", "express"): "Priority Mail",
    ("UPS", "ground"): "Ground",
    ("UPS", "express"): "2nd Day Air",
    ("UPS", "overnight"): "Next Day Air",
    ("FedEx", "ground"): "FEDEX_GROUND",
    ("FedEx", "express"): "FEDEX_2_DAY",
    ("FedEx", "overnight"): "STANDARD_OVERNIGHT",
}


# Formatting dominates emission time: split epoch seconds by hand, cache per day / hour.
@lru_cache(maxsize=8192)
def _day_prefix(day: int) -> str:
    return _time.strftime("%Y-%m-%d", _time.gmtime(day * 86400))


# "HH:MM:SS" for every second of a day (~5 MB): one list index instead of three formats.
_HMS: list[str] = [
    f"{h:02d}:{m:02d}:{s:02d}" for h in range(24) for m in range(60) for s in range(60)
]


def _clock(t: int) -> str:
    day, rest = divmod(t, 86400)
    return _day_prefix(day) + "T" + _HMS[rest]


def utc(t: int) -> str:
    """EasyPost / Zendesk style: 2026-10-05T18:03:11Z."""
    return _clock(t) + "Z"


def utc_offset(t: int) -> str:
    """ShipBob style: 2026-10-05T18:03:11+00:00."""
    return _clock(t) + "+00:00"


@lru_cache(maxsize=65536)
def _shop_offset(hour: int) -> tuple[int, str]:
    # Offsets change only on whole UTC hours, so one lookup per hour is exact.
    offset = datetime.fromtimestamp(hour * 3600, SHOP_TZ).utcoffset()
    seconds = int(offset.total_seconds()) if offset is not None else 0
    sign = "-" if seconds < 0 else "+"
    hh, mm = divmod(abs(seconds) // 60, 60)
    return seconds, f"{sign}{hh:02d}:{mm:02d}"


def shop(t: int) -> str:
    """Shopify style: shop-local with offset, 2026-10-05T14:03:11-04:00."""
    seconds, suffix = _shop_offset(t // 3600)
    return _clock(t + seconds) + suffix


@lru_cache(maxsize=16)
def _service_title(code: str) -> str:
    level = load_config().services.get(code)
    return level.title if level else code


def money(cents: int) -> str:
    return f"{cents // 100}.{cents % 100:02d}"


def _last(events: list[tuple], moment: int) -> tuple | None:  # type: ignore[type-arg]
    found = None
    for event in events:
        if event[0] <= moment:
            found = event
        else:
            break
    return found


# -- Shopify ------------------------------------------------------------------------------
def shipment_status_changes(shipment: ShipmentPlan) -> list[tuple[int, int, str]]:
    """(carrier time, arrival, Shopify shipment_status) where the mapped status changes."""
    if shipment.status_changes is not None:
        return shipment.status_changes
    out: list[tuple[int, int, str]] = []
    previous = ""
    for scan in shipment.scans:
        status = _SHOPIFY_SHIPMENT_STATUS.get(scan.status, "failure")
        if scan.status == "failure" and scan.detail == "delivery_exception":
            status = "attempted_delivery"
        if status != previous:
            out.append((scan.at, scan.arrival, status))
            previous = status
    shipment.status_changes = out
    return out


def refund_time(plan: OrderPlan) -> int | None:
    for ret in plan.returns:
        if ret.outcome == "refund":
            return ret.events[-1][0]
    return None


def order_change_times(plan: OrderPlan) -> list[int]:
    times = [plan.placed_at, plan.paid_at]
    if plan.cancelled_at is not None:
        times.append(plan.cancelled_at)
    for shipment in plan.shipments:
        if shipment.label_at is not None:
            times.append(shipment.label_at)
            times.extend(arrival for _, arrival, _ in shipment_status_changes(shipment))
    refunded = refund_time(plan)
    if refunded is not None:
        times.append(refunded)
    return times


def _address(plan: OrderPlan) -> dict:
    dest = plan.destination
    return {
        "first_name": plan.first_name,
        "last_name": plan.last_name,
        "address1": plan.street,
        "city": dest.city,
        "province": dest.code,
        "province_code": dest.code,
        "zip": plan.zip,
        "country": "United States",
        "country_code": "US",
    }


def email(plan: OrderPlan) -> str:
    return f"{plan.first_name.lower()}.{plan.last_name.lower()}{plan.index}@example.com"


def customer_tags(plan: OrderPlan) -> str:
    return "VIP, newsletter" if plan.vip else ("newsletter" if plan.index % 3 == 0 else "")


def shopify_customer(plan: OrderPlan) -> dict:
    return {
        "id": CUSTOMER_ID_BASE + plan.index,
        "email": email(plan),
        "first_name": plan.first_name,
        "last_name": plan.last_name,
        "created_at": shop(plan.customer_created_at),
        "updated_at": shop(plan.placed_at),
        "orders_count": 1,
        "state": "enabled",
        "total_spent": money(plan.total_cents()),
        "verified_email": True,
        "tags": customer_tags(plan),
        "currency": "USD",
        "default_address": {**_address(plan), "default": True},
    }


def line_item_id(plan: OrderPlan, n: int) -> int:
    return LINE_ITEM_BASE + plan.index * 4 + n


def shopify_order(plan: OrderPlan, moment: int) -> dict:
    cancelled = plan.cancelled_at is not None and plan.cancelled_at <= moment
    fulfillments = []
    updated = plan.placed_at
    if plan.paid_at <= moment:
        updated = plan.paid_at
    line_status: dict[int, str] = {}
    for shipment in plan.shipments:
        if shipment.label_at is None or shipment.label_at > moment:
            continue
        changes = [c for c in shipment_status_changes(shipment) if c[1] <= moment]
        status = max(changes)[2] if changes else "label_printed"
        f_updated = max([shipment.label_at] + [c[1] for c in changes])
        updated = max(updated, f_updated)
        for n in shipment.line_indexes:
            line_status[n] = "fulfilled"
        fulfillments.append(
            {
                "id": FULFILLMENT_BASE + plan.index * 4 + shipment.k,
                "order_id": plan.order_id,
                "status": "success",
                "tracking_company": shipment.carrier,
                "tracking_number": shipment.tracking_code,
                "tracking_numbers": [shipment.tracking_code],
                "tracking_url": _TRACKING_URL[shipment.carrier].format(shipment.tracking_code),
                "shipment_status": status,
                "created_at": shop(shipment.label_at),
                "updated_at": shop(f_updated),
                "location_id": shipment.warehouse.location_id,
                "line_items": [
                    {
                        "id": line_item_id(plan, n),
                        "sku": plan.lines[n][0].sku,
                        "quantity": plan.lines[n][1],
                    }
                    for n in shipment.line_indexes
                ],
            }
        )
    financial = "paid" if plan.paid_at <= moment else "authorized"
    if cancelled:
        assert plan.cancelled_at is not None
        financial = "refunded" if financial == "paid" else "voided"
        updated = max(updated, plan.cancelled_at)
    refunded = refund_time(plan)
    if refunded is not None and refunded <= moment:
        financial = "partially_refunded" if len(plan.lines) > 1 else "refunded"
        updated = max(updated, refunded)
    if not fulfillments:
        fulfillment_status = None
    elif len(line_status) == len(plan.lines):
        fulfillment_status = "fulfilled"
    else:
        fulfillment_status = "partial"
    subtotal = sum(sku.price_cents * qty for sku, qty in plan.lines)
    level_title = _service_title(plan.service)
    return {
        "id": plan.order_id,
        "admin_graphql_api_id": f"gid://shopify/Order/{plan.order_id}",
        "name": plan.name,
        "order_number": int(plan.order_number),
        "email": email(plan),
        "created_at": shop(plan.placed_at),
        # Capture time once paid (docs/feeds.md); never a future instant before that.
        "processed_at": shop(plan.paid_at if plan.paid_at <= moment else plan.placed_at),
        "updated_at": shop(updated),
        "cancelled_at": shop(plan.cancelled_at) if cancelled and plan.cancelled_at else None,
        "cancel_reason": "customer" if cancelled else None,
        "closed_at": None,
        "currency": "USD",
        "financial_status": financial,
        "fulfillment_status": fulfillment_status,
        "subtotal_price": money(subtotal),
        "total_price": money(plan.total_cents()),
        "total_weight": sum(sku.grams * qty for sku, qty in plan.lines),
        "source_name": "web",
        "tags": "",
        "customer": {
            "id": CUSTOMER_ID_BASE + plan.index,
            "email": email(plan),
            "first_name": plan.first_name,
            "last_name": plan.last_name,
            "tags": customer_tags(plan),
        },
        "shipping_address": _address(plan),
        "shipping_lines": [
            {
                "id": 9_000_000_000 + plan.index,
                "code": plan.service,
                "title": level_title,
                "price": money(plan.shipping_cents()),
                "source": "shopify",
            }
        ],
        "line_items": [
            {
                "id": line_item_id(plan, n),
                "variant_id": 40_000_000_000 + sku.index,
                "product_id": 8_000_000_000 + sku.index // 6,
                "sku": sku.sku,
                "title": sku.title,
                "quantity": qty,
                "price": money(sku.price_cents),
                "grams": sku.grams,
                "fulfillment_status": line_status.get(n),
            }
            for n, (sku, qty) in enumerate(plan.lines)
        ],
        "fulfillments": fulfillments,
        "note_attributes": (
            [{"name": "promised_delivery_date", "value": plan.promised.isoformat()}]
            if plan.promise_attribute
            else []
        ),
    }


# -- Shopify FulfillmentOrder ----------------------------------------------------------------
_REQUEST_STATUS = {
    "open": "unsubmitted",
    "in_progress": "accepted",
    "on_hold": "accepted",
    "closed": "closed",
    "cancelled": "cancellation_accepted",
}
_HOLD_NOTES = {
    "inventory_out_of_stock": "Backordered: waiting for inventory",
    "incorrect_address": "Address failed validation; customer contacted",
}


def fulfillment_order(plan: OrderPlan, location: str, j: int, moment: int) -> dict:
    events = plan.fo_events[location]
    current = _last(events, moment) or events[0]
    status = current[1]
    shipments = [s for s in plan.shipments if s.warehouse.name == location]
    site = shipments[0].warehouse
    request_status = _REQUEST_STATUS[status]
    if status == "cancelled" and len(events) == 2:
        request_status = "unsubmitted"  # cancelled before it was sent to the 3PL
    fo_id = FULFILLMENT_ORDER_BASE + plan.index * 4 + j
    dest = plan.destination
    return {
        "id": fo_id,
        "order_id": plan.order_id,
        "assigned_location_id": site.location_id,
        "assigned_location": {
            "name": site.name,
            "address1": None,
            "city": site.city,
            "province": site.state,
            "country_code": "US",
            "zip": site.zip,
            "location_id": site.location_id,
        },
        "request_status": request_status,
        "status": status,
        "fulfill_at": shop(plan.placed_at),
        "fulfill_by": shop(epoch(plan.promised_ship, 24.0, SHOP_TZ) - 1),
        "created_at": shop(plan.placed_at),
        "updated_at": shop(current[0]),
        "fulfillment_holds": (
            [{"reason": current[2], "reason_notes": _HOLD_NOTES.get(current[2], "")}]
            if status == "on_hold" and current[2]
            else []
        ),
        "destination": {
            "address1": plan.street,
            "city": dest.city,
            "province": dest.code,
            "zip": plan.zip,
            "country_code": "US",
        },
        "line_items": [
            {
                "id": fo_id * 10 + n,
                "fulfillment_order_id": fo_id,
                "line_item_id": line_item_id(plan, n),
                "inventory_item_id": 45_000_000_000 + plan.lines[n][0].index,
                "quantity": plan.lines[n][1],
                "fulfillable_quantity": 0 if status == "closed" else plan.lines[n][1],
                "variant_id": 40_000_000_000 + plan.lines[n][0].index,
            }
            for s in shipments
            for n in s.line_indexes
        ],
        "delivery_method": {"method_type": "shipping"},
    }


# -- ShipBob -----------------------------------------------------------------------------------
_DETAIL_TEXT = {
    "Picked": "Items picked from inventory",
    "Packed": "Items packed and ready for label",
    "OutOfStock": "One or more products are out of stock",
    "InvalidAddress": "The shipping address could not be validated",
}


def shipbob_versions(plan: OrderPlan) -> list[int]:
    return sorted({event[0] for s in plan.shipments for event in s.wms})


def _shipbob_status(statuses: list[str]) -> str:
    if "Cancelled" in statuses:
        return "Cancelled"
    if "Exception" in statuses:
        return "Exception"
    if "OnHold" in statuses:
        return "OnHold"
    done = statuses.count("Completed")
    if done == len(statuses):
        return "Fulfilled"
    return "PartiallyFulfilled" if done else "Processing"


def _shipbob_constants(plan: OrderPlan) -> dict[str, Any]:
    """Parts of the ShipBob order that never change between versions (built once per plan)."""
    memo = plan.memo.get("shipbob")
    if memo is not None:
        return memo
    dest = plan.destination
    recipient = {
        "name": f"{plan.first_name} {plan.last_name}",
        "address": {
            "address1": plan.street,
            "city": dest.city,
            "state": dest.code,
            "country": "US",
            "zip_code": plan.zip,
        },
        "email": email(plan),
        "phone_number": f"555-01{plan.index % 100:02d}",
    }
    created = utc_offset(plan.released_at or plan.placed_at)
    per_shipment = []
    for shipment in plan.shipments:
        shipped = utc_offset(shipment.shipped_at) if shipment.shipped_at else None
        tracking = {
            "carrier": shipment.carrier,
            "tracking_number": shipment.tracking_code,
            "carrier_service": _CARRIER_SERVICE.get((shipment.carrier, plan.service), plan.service),
            "tracking_url": _TRACKING_URL[shipment.carrier].format(shipment.tracking_code),
        }
        products = [
            {
                "id": 700_000 + plan.lines[n][0].index,
                "reference_id": plan.lines[n][0].sku,
                "sku": plan.lines[n][0].sku,
                "quantity": plan.lines[n][1],
            }
            for n in shipment.line_indexes
        ]
        per_shipment.append((shipped, tracking, products))
    memo = {
        "recipient": recipient,
        "created": created,
        "purchase": utc_offset(plan.placed_at),
        "efd": utc_offset(_end_of_ship_day(plan)),
        "products": [
            {"id": 700_000 + sku.index, "reference_id": sku.sku, "quantity": qty, "sku": sku.sku}
            for sku, qty in plan.lines
        ],
        "shipments": per_shipment,
    }
    plan.memo["shipbob"] = memo
    return memo


_DETAIL_IDS = {"Picked": 1, "Packed": 2, "OutOfStock": 10, "InvalidAddress": 20}


def shipbob_order(plan: OrderPlan, moment: int) -> dict:
    const = _shipbob_constants(plan)
    order_id = SHIPBOB_ID_BASE + plan.index
    reference = str(plan.order_id)
    shipments = []
    statuses = []
    for shipment, (shipped_text, tracking, products) in zip(
        plan.shipments, const["shipments"], strict=True
    ):
        current = _last(shipment.wms, moment)
        if current is None:
            continue
        at, status, detail, efd_status = current
        statuses.append(status)
        labelled = shipment.label_at is not None and shipment.label_at <= moment
        shipped = shipment.shipped_at is not None and shipment.shipped_at <= moment
        details = []
        if detail:
            details.append(
                {
                    "id": _DETAIL_IDS[detail],
                    "name": detail,
                    "description": _DETAIL_TEXT[detail],
                    "extra_information": (
                        {"sku": plan.lines[shipment.line_indexes[0]][0].sku}
                        if detail == "OutOfStock"
                        else {}
                    ),
                }
            )
        shipped_at = shipped_text if shipped else None
        shipments.append(
            {
                "id": SHIPBOB_SHIPMENT_BASE + plan.index * 4 + shipment.k,
                "order_id": order_id,
                "reference_id": reference,
                "recipient": const["recipient"],
                "created_date": const["created"],
                "last_update_at": utc_offset(at),
                "last_tracking_update_at": shipped_at,
                "status": status,
                "status_details": details,
                "location": {"id": shipment.warehouse.location_id, "name": shipment.warehouse.name},
                "tracking": {**tracking, "shipping_date": shipped_at} if labelled else None,
                "estimated_fulfillment_date": const["efd"],
                "estimated_fulfillment_date_status": efd_status,
                "actual_fulfillment_date": shipped_at,
                "products": products,
            }
        )
    return {
        "id": order_id,
        "created_date": const["created"],
        "purchase_date": const["purchase"],
        "reference_id": reference,
        "order_number": plan.order_number,
        "status": _shipbob_status(statuses),
        "shipping_method": plan.service,
        "recipient": const["recipient"],
        "products": const["products"],
        "shipments": shipments,
    }


def _end_of_ship_day(plan: OrderPlan) -> int:
    return epoch(plan.promised_ship, 24.0, plan.warehouse.tz) - 1


# -- EasyPost ------------------------------------------------------------------------------------
def tracker_arrivals(shipment: ShipmentPlan) -> list[int]:
    return [scan.arrival for scan in shipment.scans]


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
    updated = max(scan.arrival for scan in seen)
    site = shipment.warehouse
    dest = plan.destination
    est = shipment.planned_delivery
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
        "shipment_id": "shp_" + shipment.tracker_id[4:],
        "carrier": shipment.carrier,
        "tracking_details": [_detail(scan, shipment.carrier) for scan in seen],
        "fees": [],
        "carrier_detail": {
            "object": "CarrierDetail",
            "service": _CARRIER_SERVICE.get((shipment.carrier, plan.service), plan.service),
            "container_type": None,
            "est_delivery_date_local": est.isoformat() if est else None,
            "est_delivery_time_local": None,
            "origin_location": f"{site.city.upper()} {site.state}, {site.zip}",
            "destination_location": f"{dest.city.upper()} {dest.code}, {plan.zip}",
            "guaranteed_delivery_date": plan.promised.isoformat()
            if plan.service == "overnight"
            else None,
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


# -- Loop ----------------------------------------------------------------------------------------
def loop_return(plan: OrderPlan, ret: ReturnPlan, moment: int) -> dict:
    current = _last(ret.events, moment) or ret.events[0]
    sku, qty = plan.lines[ret.line_index]
    rts = ret.outcome == "return_to_sender"
    shipment = next((s for s in plan.shipments if ret.line_index in s.line_indexes), None)
    return {
        "id": RETURN_ID_BASE + plan.index * 4 + ret.k,
        "state": current[1],
        "created_at": utc(ret.events[0][0]),
        "updated_at": utc(current[0]),
        "order_id": plan.order_id,
        "order_name": plan.name,
        "customer": email(plan),
        "currency": "USD",
        "total": money(sku.price_cents * qty),
        "outcome": ret.outcome,
        "return_method": "carrier_return" if rts else "shipping_label",
        "label_status": "delivered" if current[1] == "closed" else "in_transit",
        "tracking_number": ret.tracking_number,
        "carrier": shipment.carrier if (rts and shipment) else "USPS",
        "line_items": [
            {
                "line_item_id": line_item_id(plan, ret.line_index),
                "product_id": 8_000_000_000 + sku.index // 6,
                "variant_id": 40_000_000_000 + sku.index,
                "sku": sku.sku,
                "title": sku.title,
                "price": money(sku.price_cents),
                "return_reason": ret.reason,
                "parent_return_reason": "Undeliverable" if rts else "Customer return",
            }
        ],
    }


# -- Zendesk -------------------------------------------------------------------------------------
def zendesk_ticket(plan: OrderPlan, ticket: TicketPlan, moment: int) -> dict:
    current = _last(ticket.events, moment) or ticket.events[0]
    ticket_id = TICKET_ID_BASE + plan.index * 4 + ticket.k
    if ticket.wismo:
        subject = f"Where is my order {plan.name}?"
        description = (
            f"Hi, I ordered {plan.name} and it still hasn't arrived. "
            "Can you tell me when it will be delivered?"
        )
        tags = ["order_status", "wismo"]
    else:
        subject = f"Question about my order {plan.name}"
        description = "Hi, can I change the size on my order? Thanks."
        tags = ["product_question"]
    return {
        "url": f"https://orderwatch-demo.zendesk.com/api/v2/tickets/{ticket_id}.json",
        "id": ticket_id,
        "external_id": plan.name if ticket.use_external_id else None,
        "via": {"channel": ticket.channel},
        "created_at": utc(ticket.created_at),
        "updated_at": utc(current[0]),
        "type": "question",
        "subject": subject,
        "description": description,
        "priority": "high" if plan.vip else "normal",
        "status": current[1],
        "requester_id": 10_000_000_000 + plan.index,
        "submitter_id": 10_000_000_000 + plan.index,
        "assignee_id": None if current[1] == "new" else 900_000_001 + plan.index % 5,
        "group_id": 360_000_000_111,
        "tags": tags,
        "custom_fields": [{"id": ZENDESK_ORDER_FIELD_ID, "value": plan.order_number}],
    }
