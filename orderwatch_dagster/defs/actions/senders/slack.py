"""Escalations to a Slack incoming webhook: `POST` JSON `{"text", "blocks"}`.

The webhook URL is the credential (whoever has it can post), so it comes only from
`dg.EnvVar`, the ledger shows `hooks.slack.com/services/…`, and its path is cut from error
texts and from urllib3's log lines (transport.py). Slack answers `ok` (200) or a plain-text
error: `invalid_payload` / `user_not_found` (400) are this message's fault (`REJECTED`);
`action_prohibited` (403), `channel_not_found` / `no_service` (404) and `channel_is_archived`
(410) say the workspace, channel or webhook must be fixed: nothing was posted, so the
escalation stays pending (`NOT_ACCEPTED`, `follow_up=fix_config`) instead of being lost. 429
carries `Retry-After`. Incoming webhooks take no idempotency key, so a timeout or 5xx is
`UNCERTAIN`.

`channel="slack"`: `recipient` names the webhook (for the ledger), `subject` is the header,
`body_text` the packet summary (Slack mrkdwn, escaped), `metadata["packet_url"]` the link to
the order packet, `metadata["fields"]` up to ten `{label: value}` pairs (order, severity,
promise, ...). Texts are cut to Block Kit's limits before escaping, so no entity is split.
"""

from __future__ import annotations

from typing import Any, ClassVar

from pydantic import Field
from urllib3.util import parse_url

from orderwatch_dagster.defs.actions.senders.base import (
    EnvSetting,
    HttpSenderResource,
    Refused,
    is_http_url,
    require,
)
from orderwatch_dagster.defs.actions.senders.transport import REDACTED, Request
from orderwatch_dagster.lib.outbound import DeliveryResult, FollowUp, Outbound, Outcome

MAX_HEADER = 150  # Block Kit: header text
MAX_SECTION = 3000  # Block Kit: section text
MAX_FIELDS = 10  # Block Kit: section fields
MAX_FIELD = 2000  # Block Kit: one section field's text
MAX_URL = 3000  # Block Kit: a button's url
# Nothing was posted and the webhook's workspace, channel or URL needs fixing.
CONFIG_STATUSES = frozenset({403, 404, 410})


def mrkdwn_escape(text: str) -> str:
    """Slack's three control characters (&, <, >), so names cannot become links or mentions."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def _cut(text: str, limit: int) -> str:
    """`text` escaped, as many whole characters as fit in `limit` (an entity is never split)."""
    pieces, size = [], 0
    for char in text[:limit]:
        piece = mrkdwn_escape(char)
        if size + len(piece) > limit:
            break
        pieces.append(piece)
        size += len(piece)
    return "".join(pieces)


def _field(label: Any, value: Any) -> dict[str, str]:
    head = f"*{_cut(str(label), 100)}*\n"
    return {"type": "mrkdwn", "text": head + _cut(str(value), MAX_FIELD - len(head))}


def escalation_blocks(
    title: str, summary: str, fields: dict[str, Any], packet_url: str | None
) -> list[dict[str, Any]]:
    blocks: list[dict[str, Any]] = [
        {"type": "header", "text": {"type": "plain_text", "text": title[:MAX_HEADER]}},
        {"type": "section", "text": {"type": "mrkdwn", "text": _cut(summary, MAX_SECTION)}},
    ]
    if fields:
        shown = list(fields.items())[:MAX_FIELDS]
        blocks.append({"type": "section", "fields": [_field(k, v) for k, v in shown]})
    linkable = packet_url and len(packet_url) <= MAX_URL and is_http_url(packet_url)
    if linkable:
        button = {
            "type": "button",
            "text": {"type": "plain_text", "text": "Open the order packet"},
            "url": packet_url,
        }
        blocks.append({"type": "actions", "elements": [button]})
    elif packet_url:  # a file on the ops host, or too long a link: shown, not linked
        text = f"Packet: `{_cut(packet_url, MAX_SECTION - 12)}`"
        blocks.append({"type": "context", "elements": [{"type": "mrkdwn", "text": text}]})
    return blocks


class SlackWebhookSender(HttpSenderResource):
    """Slack incoming webhook for escalations to the ops lead."""

    webhook_url: str | None = Field(
        default=None, description="dg.EnvVar('ORDERWATCH_SLACK_WEBHOOK_URL')"
    )

    channels: ClassVar[tuple[str, ...]] = ("slack",)
    enable_var: ClassVar[str] = "ORDERWATCH_SLACK_ENABLED"
    required: ClassVar[tuple[str, ...]] = ("webhook_url",)
    env: ClassVar[tuple[EnvSetting, ...]] = (
        EnvSetting(
            "ORDERWATCH_SLACK_WEBHOOK_URL",
            "webhook_url",
            "(required)",
            "Incoming webhook URL",
            True,
        ),
    )

    def _config_problems(self) -> list[str]:
        problems = super()._config_problems()
        if self.webhook_url and not is_http_url(self.webhook_url):
            # Never the value: the URL is the credential.
            problems.append(f"{self._var('webhook_url')} is not an http(s) URL")
        return problems

    def _prepare(self, message: Outbound) -> Request:
        summary = require(message.body_text, "body_text")
        title = message.subject or "orderwatch escalation"
        fields = message.metadata.get("fields") or {}
        if not isinstance(fields, dict):
            raise Refused("metadata['fields'] must be a dict")
        packet_url = message.metadata.get("packet_url")
        if packet_url is not None and not isinstance(packet_url, str):
            raise Refused("metadata['packet_url'] must be a string")
        payload = {
            "text": _cut(f"{title}: {summary}", MAX_SECTION),  # notification / fallback text
            "blocks": escalation_blocks(title, summary, fields, packet_url),
        }
        url = parse_url(str(self.webhook_url))  # checked by _config_problems
        path = url.path or "/"
        shown = "/services/" + REDACTED if path.startswith("/services/") else "/" + REDACTED
        return Request.json_body(
            "POST",
            str(self.webhook_url),
            f"POST {url.netloc}{shown}",
            payload,
            secrets=(str(self.webhook_url), *([path] if len(path) > 1 else [])),
        )

    def _deliver(self, message: Outbound, prepared: Request) -> DeliveryResult:
        exchange = self._exchange(prepared)
        outcome = exchange.outcome()
        reason = exchange.text(100)
        if outcome is Outcome.ACCEPTED:
            return exchange.result(detail=f"HTTP {exchange.status} {exchange.text(40)}")
        if exchange.status in CONFIG_STATUSES and outcome is not Outcome.UNCERTAIN:
            return exchange.result(
                outcome=Outcome.NOT_ACCEPTED,
                detail=f"HTTP {exchange.status}: {reason}: nothing was posted; fix the webhook "
                "or its channel, then it goes out",
                follow_up=FollowUp.FIX_CONFIG,
            )
        if outcome is Outcome.REJECTED:
            return exchange.result(detail=f"HTTP {exchange.status}: {reason}")
        return exchange.result(detail=f"{exchange.summary()}: {reason}" if reason else None)
