"""Loop returns: the returns customers start in Loop's portal.

A return carries Loop's own ids (`id`, `order_id` = Loop's order) and the storefront's in
`provider_order_id` / `provider_line_item_id`. A parcel the carrier sends back (return to
sender) is not a Loop return: it shows in the carrier's tracker and the 3PL's shipment.
"""

from __future__ import annotations

from orderwatch_dagster.sim.render.common import email, last_event, line_item_id, money, utc
from orderwatch_dagster.sim.world import OrderPlan, ReturnPlan

RETURN_ID_BASE = 80_000_000
LOOP_ORDER_BASE = 60_000_000
LOOP_LINE_ITEM_BASE = 90_000_000


def returns_page(records: list[dict], more: bool, side: list[dict]) -> dict:
    return {"returns": records}


def loop_return(plan: OrderPlan, ret: ReturnPlan, moment: int) -> dict:
    current = last_event(ret.events, moment) or ret.events[0]
    sku, qty = plan.lines[ret.line_index]
    return_id = RETURN_ID_BASE + plan.index * 4 + ret.k
    return {
        "id": return_id,
        "state": current.status,
        "created_at": utc(ret.events[0].at),
        "updated_at": utc(current.at),
        "order_id": LOOP_ORDER_BASE + plan.index,
        "order_name": plan.name,
        "provider_order_id": str(plan.order_id),
        "customer": email(plan),
        "currency": "USD",
        "total": money(sku.price_cents * qty),
        "outcome": ret.outcome,
        "return_method": "shipping_label",
        "label_status": "delivered" if current.status == "closed" else "in_transit",
        "tracking_number": ret.tracking_number,
        "carrier": "USPS",
        "line_items": [
            {
                "line_item_id": LOOP_LINE_ITEM_BASE + return_id,
                "provider_line_item_id": str(line_item_id(plan, ret.line_index)),
                "product_id": 8_000_000_000 + sku.index // 6,
                "variant_id": 40_000_000_000 + sku.index,
                "sku": sku.sku,
                "title": sku.title,
                "price": money(sku.price_cents),
                "return_reason": ret.reason,
                "parent_return_reason": "Customer return",
            }
        ],
    }
