"""Zendesk Tickets API: internal notes and public replies on a ticket, new tickets (tasks).

- `ticket_note` / `ticket_reply`: `PUT /api/v2/tickets/{id}.json` with
  `{"ticket": {"comment": {"body", "html_body", "public"}, "status", "group_id",
  "assignee_id", "additional_tags", "remove_tags"}}`; `recipient` is the ticket id.
- `ticket_create`: `POST /api/v2/tickets.json` with `{"ticket": {"subject", "comment",
  "group_id", "tags", "type", "priority", "status", "external_id", "requester"}}` and an
  `Idempotency-Key` header. Zendesk stores the first answer under the key (for about two
  hours) and replays it for a repeat, so a create whose fate is unknown is retried with the
  same key; a comment update has no key and is `UNCERTAIN` instead.

`metadata` carries the ticket fields: `status` (`new` only for creates: Zendesk refuses to set
an existing ticket back to new), `group_id` (creates and updates; else `queue`, the policy's
task queue, looked up in `ORDERWATCH_ZENDESK_GROUP_IDS`: `carrier_claims=360001,warehouse=360002`,
`*` for any other queue; a queue with no group stays in (or is created in) the default group,
tagged
`orderwatch_queue_<queue>` either way so a Zendesk trigger can route it), `assignee_id`,
`tags` (added), `remove_tags`,
`priority`, `type`, `external_id` (default for creates: `recipient`, the order name the support
feed links by), `requester` (`{"email", "name"}`), `public` (creates: default false, an
internal task). A 401/403 (the API user lacks access) is `NOT_ACCEPTED` with
`follow_up=fix_config`; 409 is unknown (a concurrent request under the same key).
"""

from __future__ import annotations

import dataclasses
import hashlib
from typing import Any, ClassVar

from pydantic import Field
from urllib3.util import make_headers

from orderwatch_dagster.defs.actions.senders.base import (
    EnvSetting,
    HttpSenderResource,
    Refused,
    as_int,
    require,
    string_list,
)
from orderwatch_dagster.defs.actions.senders.transport import Exchange, Request
from orderwatch_dagster.lib.outbound import DeliveryResult, Outbound, Outcome

TICKET_STATUSES = ("new", "open", "pending", "hold", "solved")  # "closed" is Zendesk's own
UPDATE_STATUSES = TICKET_STATUSES[1:]  # a ticket cannot go back to "new"
MAX_IDEMPOTENCY_KEY = 255


def idempotency_key(key: str) -> str:
    """The job's key as Zendesk takes it (long keys are hashed, still stable)."""
    if len(key) <= MAX_IDEMPOTENCY_KEY:
        return key
    return "sha256:" + hashlib.sha256(key.encode("utf-8")).hexdigest()


def parse_group_ids(text: str | None) -> dict[str, int]:
    """`queue=id,queue=id,*=id` → {queue: id}; a malformed pair raises naming it."""
    groups: dict[str, int] = {}
    for pair in (text or "").split(","):
        if not pair.strip():
            continue
        queue, sep, value = pair.partition("=")
        if not sep or not queue.strip() or not value.strip().isdigit():
            raise ValueError(f"{pair.strip()!r} is not queue=<numeric group id>")
        groups[queue.strip()] = int(value)
    return groups


def _comment(message: Outbound, public: bool) -> dict[str, Any]:
    comment: dict[str, Any] = {"body": require(message.body_text, "body_text"), "public": public}
    if message.body_html:
        comment["html_body"] = message.body_html
    return comment


def _common_fields(meta: dict[str, Any], statuses: tuple[str, ...]) -> dict[str, Any]:
    fields: dict[str, Any] = {}
    status = meta.get("status")
    if status is not None:
        if status not in statuses:
            raise Refused(f"ticket status must be one of {', '.join(statuses)}")
        fields["status"] = status
    for name in ("group_id", "assignee_id"):
        if meta.get(name) is not None:
            fields[name] = as_int(meta[name], name)
    return fields


class ZendeskTicketSender(HttpSenderResource):
    """Zendesk write-back. Auth like the support connector: with `email`, basic auth
    `<email>/token` + API token; without, the token is an OAuth bearer token."""

    base_url: str = Field(default="", description="https://<subdomain>.zendesk.com/api/v2")
    email: str | None = None
    api_token: str | None = Field(default=None, description="dg.EnvVar('ZENDESK_API_TOKEN')")
    group_ids: str | None = Field(default=None, description="queue=group_id pairs, comma-separated")

    channels: ClassVar[tuple[str, ...]] = ("ticket_note", "ticket_reply", "ticket_create")
    enable_var: ClassVar[str] = "ORDERWATCH_ZENDESK_ENABLED"
    required: ClassVar[tuple[str, ...]] = ("base_url", "api_token")
    env: ClassVar[tuple[EnvSetting, ...]] = (
        EnvSetting(
            "ORDERWATCH_ZENDESK_URL",
            "base_url",
            "(required)",
            "`https://<subdomain>.zendesk.com/api/v2`",
        ),
        EnvSetting("ZENDESK_EMAIL", "email", "(none: OAuth token)", "Agent e-mail for API token"),
        EnvSetting("ZENDESK_API_TOKEN", "api_token", "(required)", "API or OAuth token", True),
        EnvSetting(
            "ORDERWATCH_ZENDESK_GROUP_IDS",
            "group_ids",
            "(none: default group)",
            "Task queue → group id, `carrier_claims=360001,warehouse=360002,*=360009`",
        ),
    )

    def _config_problems(self) -> list[str]:
        problems = super()._config_problems()
        try:
            parse_group_ids(self.group_ids)
        except ValueError as error:
            problems.append(f"{self._var('group_ids')}: {error}")
        return problems

    def group_for(self, queue: str | None) -> int | None:
        groups = parse_group_ids(self.group_ids)
        return groups.get(queue or "", groups.get("*"))

    def _auth(self) -> dict[str, str]:
        if self.email:
            basic = make_headers(basic_auth=f"{self.email}/token:{self.api_token}")
            return {"Authorization": basic["authorization"]}
        return {"Authorization": f"Bearer {self.api_token}"}

    def _prepare(self, message: Outbound) -> Request:
        meta = dict(message.metadata)
        if meta.get("group_id") is None and meta.get("queue"):
            meta["group_id"] = self.group_for(str(meta["queue"]))
        if message.channel == "ticket_create":
            return self._create(message, meta)
        ticket_id = str(require(message.recipient, "ticket id"))
        if not ticket_id.isdigit():
            raise Refused(f"not a Zendesk ticket id: {ticket_id!r}")
        ticket: dict[str, Any] = {
            "comment": _comment(message, public=message.channel == "ticket_reply"),
            **_common_fields(meta, UPDATE_STATUSES),
        }
        tags = string_list(meta.get("tags"), "tags")
        if meta.get("queue"):
            tags.append(f"orderwatch_queue_{meta['queue']}")
        if tags:
            ticket["additional_tags"] = list(dict.fromkeys(tags))
        if meta.get("remove_tags"):
            ticket["remove_tags"] = string_list(meta["remove_tags"], "remove_tags")
        path = f"tickets/{ticket_id}.json"
        return Request.json_body(
            "PUT", self._url(path), self._label("PUT", path), {"ticket": ticket}
        )

    def _create(self, message: Outbound, meta: dict[str, Any]) -> Request:
        ticket: dict[str, Any] = {
            "subject": require(message.subject, "subject"),
            "comment": _comment(message, public=bool(meta.get("public", False))),
            **_common_fields(meta, TICKET_STATUSES),
        }
        external_id = meta.get("external_id") or message.recipient
        if external_id:
            ticket["external_id"] = str(external_id)
        tags = string_list(meta.get("tags"), "tags")
        if meta.get("queue"):
            tags.append(f"orderwatch_queue_{meta['queue']}")
        if tags:
            ticket["tags"] = list(dict.fromkeys(tags))
        for name in ("type", "priority"):
            if meta.get(name):
                ticket[name] = str(meta[name])
        if meta.get("requester"):
            if not isinstance(meta["requester"], dict):
                raise Refused("requester must be a dict like {'email': ..., 'name': ...}")
            ticket["requester"] = dict(meta["requester"])
        return Request.json_body(
            "POST",
            self._url("tickets.json"),
            self._label("POST", "tickets.json"),
            {"ticket": ticket},
            headers={"Idempotency-Key": idempotency_key(message.idempotency_key)},
            idempotent=True,
        )

    def _deliver(self, message: Outbound, prepared: Request) -> DeliveryResult:
        request = dataclasses.replace(prepared, headers={**prepared.headers, **self._auth()})
        exchange = self._exchange(request)
        if exchange.outcome() is Outcome.ACCEPTED:
            return exchange.result(
                detail=_accepted_detail(exchange), provider_id=_provider_id(exchange)
            )
        body = exchange.json()
        if exchange.outcome() is Outcome.REJECTED and isinstance(body, dict):
            reason = body.get("description") or body.get("error") or exchange.text()
            details = f" {body['details']}" if body.get("details") else ""
            return exchange.result(detail=f"HTTP {exchange.status}: {reason}{details}"[:300])
        return exchange.result()


def _provider_id(exchange: Exchange) -> str | None:
    body = exchange.json()
    if not isinstance(body, dict):
        return None
    ticket = body.get("ticket") if isinstance(body.get("ticket"), dict) else {}
    ticket_id = ticket.get("id")
    audit = body.get("audit") if isinstance(body.get("audit"), dict) else {}
    events = audit.get("events") if isinstance(audit.get("events"), list) else []
    comments = [e.get("id") for e in events if isinstance(e, dict) and e.get("type") == "Comment"]
    if comments and ticket_id is not None:
        return f"ticket {ticket_id} comment {comments[0]}"
    return f"ticket {ticket_id}" if ticket_id is not None else None


def _accepted_detail(exchange: Exchange) -> str:
    detail = f"HTTP {exchange.status}"
    lookup = exchange.response.headers.get("x-idempotency-lookup") if exchange.response else None
    if lookup == "hit":
        detail += ": Zendesk replayed the ticket first created under this Idempotency-Key"
    return detail
