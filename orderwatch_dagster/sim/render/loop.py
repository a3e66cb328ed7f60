"""Loop returns."""

from __future__ import annotations

from orderwatch_dagster.sim.render.common import email, last_event, line_item_id, money, utc
from orderwatch_dagster.sim.world import OrderPlan, ReturnPlan

RETURN_ID_BASE = 80_000_000


def returns_page(records: list[dict], more: bool) -> dict:
    return {"returns": records}


def loop_return(plan: OrderPlan, ret: ReturnPlan, moment: int) -> dict:
    current = last_event(ret.events, moment) or ret.events[0]
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
