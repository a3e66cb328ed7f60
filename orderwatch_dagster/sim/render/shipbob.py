"""ShipBob Orders API: the order with its shipments, one version per shipment status change."""

from __future__ import annotations

from typing import Any

from orderwatch_dagster.sim.render.common import (
    CARRIER_SERVICE,
    TRACKING_URL,
    email,
    last_event,
    utc_offset,
)
from orderwatch_dagster.sim.world import OrderPlan, epoch

SHIPBOB_ID_BASE = 300_000_000
SHIPBOB_SHIPMENT_BASE = 400_000_000


def orders_page(records: list[dict], more: bool, side: list[dict]) -> list[dict]:
    return records  # ShipBob returns a bare JSON array


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
        "phone_number": f"555-01{plan.customer % 100:02d}",
    }
    created = utc_offset(plan.released_at or plan.placed_at)
    per_shipment = []
    for shipment in plan.shipments:
        shipped = utc_offset(shipment.shipped_at) if shipment.shipped_at else None
        tracking = {
            "carrier": shipment.carrier,
            "tracking_number": shipment.tracking_code,
            "carrier_service": CARRIER_SERVICE.get(
                (shipment.carrier, shipment.service or plan.service),
                shipment.service or plan.service,
            ),
            "tracking_url": TRACKING_URL[shipment.carrier].format(shipment.tracking_code),
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


# ShipBob's status reference (developer.shipbob.com "Status Reference"): detail name ->
# (id, description), exactly as published; Processing 200 is the Completed shipment's detail
# while it waits for the carrier's first scan (sim/threepl.py follows the carrier from there).
_DETAILS = {
    "Picked": (100, "Picking Completed"),
    "Packed": (101, "Packing Completed"),
    "Labeled": (102, "Label Generated"),
    "Processing": (200, "Waiting For Carrier Pickup"),
    "InTransit": (201, "Shipment In Transit"),
    "OutForDelivery": (202, "Shipment Out For Delivery"),
    "Delivered": (203, "Shipment Delivered"),
    "DeliveryException": (204, "OrderTracking contains CatchAll date"),
    "OutOfStock": (303, "No Stock On Hand For Sku"),
    "InvalidAddress": (401, "Invalid Address"),
}
_CARRIER_DETAILS = frozenset(("InTransit", "OutForDelivery", "Delivered", "DeliveryException"))


def shipbob_order(plan: OrderPlan, moment: int) -> dict:
    const = _shipbob_constants(plan)
    order_id = SHIPBOB_ID_BASE + plan.index
    reference = str(plan.order_id)
    shipments = []
    statuses = []
    for shipment, (shipped_text, tracking, products) in zip(
        plan.shipments, const["shipments"], strict=True
    ):
        current = last_event(shipment.wms, moment)
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
                    "id": _DETAILS[detail][0],
                    "name": detail,
                    "description": _DETAILS[detail][1],
                    "extra_information": (
                        {"sku": plan.lines[shipment.line_indexes[0]][0].sku}
                        if detail == "OutOfStock"
                        else {}
                    ),
                }
            )
        shipped_at = shipped_text if shipped else None
        # the carrier's latest news as ShipBob synced it; the hand-over until the first one
        tracked = utc_offset(at) if detail in _CARRIER_DETAILS else shipped_at
        shipments.append(
            {
                "id": SHIPBOB_SHIPMENT_BASE + plan.index * 4 + shipment.k,
                "order_id": order_id,
                "reference_id": reference,
                "recipient": const["recipient"],
                "created_date": const["created"],
                "last_update_at": utc_offset(at),
                "last_tracking_update_at": tracked,
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
