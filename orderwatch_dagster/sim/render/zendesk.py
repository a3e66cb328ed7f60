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


# Wording varies, and other questions mention delivery too: subjects alone do not classify,
# and no keyword list sees every status question (some say only "any update?").
_WISMO_NAMED = (
    "Where is my order {name}?",
    "Order {name} status",
    "{name} hasn't arrived",
    "Tracking for {name}",
)
_WISMO_UNNAMED = (
    "Where is my package?",
    "Delivery status?",
    "Still waiting",
    "Has my order shipped?",
)
_WISMO_TEXT = (
    "Hi, I ordered {what} and it still hasn't arrived. Can you tell me when it will be delivered?",
    "The tracking for {what} has not updated for days. Is the parcel lost?",
    "When will {what} ship? It has been a while since I placed it.",
    "I need {what} by the weekend, will it arrive in time?",
    "Any news on {what}? Thanks.",
    "Still no sign of {what}, where is it?",
)
_OTHER = (  # (subject, description, tag)
    ("Question about my order {name}", "Hi, can I change the size on my order? Thanks.",
     "product_question"),
    ("Delivery address for {name}", "Can you deliver to my work address instead?",
     "address_change"),
    ("Return for order {name}", "The shoes are too small, how do I return them?", "returns"),
    ("Discount code", "My discount code did not apply at checkout.", "billing"),
    ("Delivery instructions", "Please leave the parcel with my neighbour if I am out.",
     "delivery_instructions"),
    ("Damaged item {name}", "My order arrived today but the box was crushed and one item is "
     "broken.", "damaged"),
    ("Cancel order {name}", "Please cancel my order before it ships, I ordered the wrong "
     "colour.", "cancellation"),
    ("Charged twice", "I was charged twice for my order, can you refund one payment?",
     "billing"),
)  # fmt: skip


def _text(plan: OrderPlan, ticket: TicketPlan, ticket_id: int) -> tuple[str, str, list[str]]:
    pick = ticket_id // 4 + ticket.k  # deterministic per ticket
    if not ticket.wismo:
        subject, description, tag = _OTHER[pick % len(_OTHER)]
        name = plan.name if ticket.link != "none" else ""
        return " ".join(subject.format(name=name).split()), description, [tag]
    named = ticket.link == "external_id"
    templates = _WISMO_NAMED if named else _WISMO_UNNAMED
    subject = templates[pick % len(templates)].format(name=plan.name)
    what = f"order {plan.name}" if named else "my order"
    description = _WISMO_TEXT[(pick // len(templates)) % len(_WISMO_TEXT)].format(what=what)
    return subject, description, ["order_status", "wismo"] if ticket.tagged else []


def _via(plan: OrderPlan, channel: str) -> dict:
    """Zendesk's via object: the channel and, for e-mail, who wrote to which address."""
    if channel != "email":
        return {"channel": channel, "source": {"from": {}, "to": {}, "rel": None}}
    return {
        "channel": channel,
        "source": {
            "from": {"address": email(plan), "name": f"{plan.first_name} {plan.last_name}"},
            "to": {"address": "support@orderwatch-demo.zendesk.com", "name": "Support"},
            "rel": None,
        },
    }


def zendesk_ticket(plan: OrderPlan, ticket: TicketPlan, moment: int) -> dict:
    current = last_event(ticket.events, moment) or ticket.events[0]
    ticket_id = TICKET_ID_BASE + plan.index * 4 + ticket.k
    subject, description, tags = _text(plan, ticket, ticket_id)
    order_field = plan.order_number if ticket.link != "none" else None
    return {
        "url": f"https://orderwatch-demo.zendesk.com/api/v2/tickets/{ticket_id}.json",
        "id": ticket_id,
        "external_id": plan.name if ticket.link == "external_id" else None,
        "via": _via(plan, ticket.channel),
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


def ticket_truth(plan: OrderPlan, ticket: TicketPlan) -> list[str]:
    """A row of ground_truth_tickets.csv: which order a ticket is about, and whether it is a
    status question (tagged or not), for measuring how tickets are linked and classified."""
    return [
        str(TICKET_ID_BASE + plan.index * 4 + ticket.k),
        str(plan.order_id),
        plan.name,
        utc(ticket.created_at),
        "true" if ticket.wismo else "false",
        "true" if ticket.wismo and ticket.tagged else "false",
        ticket.link,
    ]


TICKET_TRUTH_COLUMNS = (
    "ticket_id",
    "order_id",
    "order_name",
    "created_at",
    "is_status_question",
    "is_tagged_wismo",
    "names_order_by",
)
