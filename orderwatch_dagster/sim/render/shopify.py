"""Shopify Admin REST: Customer, Order (with fulfillments) and FulfillmentOrder records."""

from __future__ import annotations

from functools import lru_cache

from orderwatch_dagster.sim.calendar import SHOP_TZ
from orderwatch_dagster.sim.config import load_config
from orderwatch_dagster.sim.render.common import (
    TRACKING_URL,
    US_STATES,
    email,
    last_event,
    line_item_id,
    money,
    shop,
)
from orderwatch_dagster.sim.world import (
    CUSTOMER_ID_BASE,
    OrderPlan,
    ShipmentPlan,
    StatusChange,
    epoch,
)

FULFILLMENT_ORDER_BASE = 6_000_000_000_000
FULFILLMENT_BASE = 4_000_000_000_000

_SHOPIFY_SHIPMENT_STATUS = {
    "pre_transit": "label_printed",
    "in_transit": "in_transit",
    "out_for_delivery": "out_for_delivery",
    "delivered": "delivered",
    "available_for_pickup": "ready_for_pickup",
    "return_to_sender": "failure",
}


def orders_page(records: list[dict], more: bool, side: list[dict]) -> dict:
    return {"orders": records}  # the next page is in the Link header, not the body


def customers_page(records: list[dict], more: bool, side: list[dict]) -> dict:
    return {"customers": records}


def fulfillment_orders_page(records: list[dict], more: bool, side: list[dict]) -> dict:
    return {"fulfillment_orders": records}


@lru_cache(maxsize=16)
def _service_title(code: str) -> str:
    level = load_config().services.get(code)
    return level.title if level else code


def shipment_status_changes(shipment: ShipmentPlan) -> list[StatusChange]:
    """(carrier time, arrival, Shopify shipment_status) where the mapped status changes."""
    if shipment.status_changes is not None:
        return shipment.status_changes
    out: list[StatusChange] = []
    previous = ""
    for scan in shipment.scans:
        status = _SHOPIFY_SHIPMENT_STATUS.get(scan.status, "failure")
        if scan.status == "failure" and scan.detail == "delivery_exception":
            status = "attempted_delivery"
        if status != previous:
            out.append(StatusChange(scan.at, scan.arrival, status))
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
        "province": US_STATES.get(dest.code, dest.code),
        "province_code": dest.code,
        "zip": plan.zip,
        "country": "United States",
        "country_code": "US",
    }


def customer_tags(plan: OrderPlan) -> str:
    return "VIP, newsletter" if plan.vip else ("newsletter" if plan.customer % 3 == 0 else "")


def shopify_customer(plan: OrderPlan) -> dict:
    return {
        "id": CUSTOMER_ID_BASE + plan.customer,
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
                "tracking_url": TRACKING_URL[shipment.carrier].format(shipment.tracking_code),
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
    # Captured: `paid` (the order's update time moves); before: a card payment is `authorized`,
    # a method that settles later (bank transfer, BNPL, a review) `pending`.
    waiting = "pending" if plan.payment_pending else "authorized"
    financial = "paid" if plan.paid_at <= moment else waiting
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
        # Set at checkout and never moved (Shopify: the date shown on the order); the capture
        # time is the transaction's, seen here as the version that turns `paid`.
        "processed_at": shop(plan.placed_at),
        "payment_gateway_names": ["bank_deposit" if plan.payment_pending else "shopify_payments"],
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
            "id": CUSTOMER_ID_BASE + plan.customer,
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
    current = last_event(events, moment) or events[0]
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
        # REST FulfillmentOrder destination: `country` and `province` by name, no codes
        # (GraphQL's FulfillmentOrderDestination has countryCode instead).
        "destination": {
            "id": fo_id + 1,
            "address1": plan.street,
            "address2": None,
            "city": dest.city,
            "company": None,
            "country": "United States",
            "email": email(plan),
            "first_name": plan.first_name,
            "last_name": plan.last_name,
            "phone": None,
            "province": US_STATES.get(dest.code, dest.code),
            "zip": plan.zip,
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
