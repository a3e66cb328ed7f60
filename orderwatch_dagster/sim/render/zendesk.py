"""Zendesk tickets and their cursor-paged list body."""

from __future__ import annotations

from orderwatch_dagster.sim.render.common import last_event, utc
from orderwatch_dagster.sim.world import OrderPlan, TicketPlan

ZENDESK_ORDER_FIELD_ID = 360012345678
ZENDESK_TICKETS_URL = "https://orderwatch-demo.zendesk.com/api/v2/tickets.json"
TICKET_ID_BASE = 200_000


def tickets_page(records: list[dict], more: bool) -> dict:
    after = f"cur_{records[-1]['id']}" if more else None
    next_url = f"{ZENDESK_TICKETS_URL}?page[after]={after}" if after else None
    return {
        "tickets": records,
        "meta": {
            "has_more": more,
            "after_cursor": after,
            "before_cursor": f"cur_{records[0]['id']}",
        },
        "links": {"next": next_url, "prev": None},
    }


def zendesk_ticket(plan: OrderPlan, ticket: TicketPlan, moment: int) -> dict:
    current = last_event(ticket.events, moment) or ticket.events[0]
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
