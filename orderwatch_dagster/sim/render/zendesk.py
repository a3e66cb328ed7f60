"""Zendesk tickets and their cursor-paged list body."""

from __future__ import annotations

from orderwatch_dagster.sim.render.common import email, last_event, utc
from orderwatch_dagster.sim.world import OrderPlan, TicketPlan

ZENDESK_ORDER_FIELD_ID = 360012345678
ZENDESK_TICKETS_URL = "https://orderwatch-demo.zendesk.com/api/v2/tickets.json"
TICKET_ID_BASE = 200_000


def tickets_page(records: list[dict], more: bool, users: list[dict]) -> dict:
    """A cursor-paged list with `include=users`: the requesters beside the tickets."""
    after = f"cur_{records[-1]['id']}" if more else None
    next_url = f"{ZENDESK_TICKETS_URL}?include=users&page[after]={after}" if after else None
    return {
        "tickets": records,
        "users": users,
        "meta": {
            "has_more": more,
            "after_cursor": after,
            "before_cursor": f"cur_{records[0]['id']}",
        },
        "links": {"next": next_url, "prev": None},
    }


REQUESTER_BASE = 10_000_000_000


def zendesk_user(plan: OrderPlan) -> dict:
    """The requester as `include=users` sideloads it beside the tickets."""
    user_id = REQUESTER_BASE + plan.customer
    return {
        "id": user_id,
        "url": f"https://orderwatch-demo.zendesk.com/api/v2/users/{user_id}.json",
        "name": f"{plan.first_name} {plan.last_name}",
        "email": email(plan),
        "role": "end-user",
        "created_at": utc(plan.customer_created_at),
        "updated_at": utc(plan.customer_created_at),
    }


def _text(plan: OrderPlan, ticket: TicketPlan) -> tuple[str, str, list[str]]:
    if not ticket.wismo:
        subject = f"Question about my order {plan.name}"
        return subject, "Hi, can I change the size on my order? Thanks.", ["product_question"]
    named = ticket.link == "external_id"
    subject = f"Where is my order {plan.name}?" if named else "Where is my package?"
    description = (
        f"Hi, I ordered {plan.name if named else 'something from you'} and it still hasn't "
        "arrived. Can you tell me when it will be delivered?"
    )
    return subject, description, ["order_status", "wismo"] if ticket.tagged else []


def zendesk_ticket(plan: OrderPlan, ticket: TicketPlan, moment: int) -> dict:
    current = last_event(ticket.events, moment) or ticket.events[0]
    ticket_id = TICKET_ID_BASE + plan.index * 4 + ticket.k
    subject, description, tags = _text(plan, ticket)
    order_field = plan.order_number if ticket.link != "none" or not ticket.wismo else None
    return {
        "url": f"https://orderwatch-demo.zendesk.com/api/v2/tickets/{ticket_id}.json",
        "id": ticket_id,
        "external_id": plan.name if ticket.link == "external_id" else None,
        "via": {"channel": ticket.channel},
        "created_at": utc(ticket.created_at),
        "updated_at": utc(current.at),
        "type": "question",
        "subject": subject,
        "description": description,
        "priority": "high" if plan.vip else "normal",
        "status": current.status,
        "requester_id": REQUESTER_BASE + plan.customer,
        "submitter_id": REQUESTER_BASE + plan.customer,
        "assignee_id": None if current.status == "new" else 900_000_001 + plan.index % 5,
        "group_id": 360_000_000_111,
        "tags": tags,
        "custom_fields": [{"id": ZENDESK_ORDER_FIELD_ID, "value": order_field}],
    }
