"""Escalations to a Slack incoming webhook: `POST` JSON `{"text", "blocks"}`.

The webhook URL is the credential (whoever has it can post), so it comes only from
`dg.EnvVar` and the ledger shows `hooks.slack.com/services/…`. Slack answers `ok` (200) or a
plain-text error (`invalid_payload` 400, `action_prohibited` 403, `channel_not_found` 404,
`channel_is_archived` 410); 429 carries `Retry-After`. Incoming webhooks take no idempotency
key, so a timeout or 5xx is `UNCERTAIN`.

`channel="slack"`: `recipient` names the webhook (for the ledger), `subject` is the header,
`body_text` the packet summary (Slack mrkdwn, escaped), `metadata["packet_url"]` the link to
the order packet, `metadata["fields"]` up to ten `{label: value}` pairs (order, severity,
promise, ...).
"""

from __future__ import annotations

from typing import Any, ClassVar
from urllib.parse import urlsplit

from pydantic import Field

from orderwatch_dagster.defs.actions.senders.base import (
    EnvSetting,
    HttpSenderResource,
    Refused,
    require,
)
from orderwatch_dagster.defs.actions.senders.transport import Request
from orderwatch_dagster.lib.outbound import DeliveryResult, Outbound, Outcome

MAX_HEADER = 150  # Block Kit: header text
MAX_SECTION = 3000  # Block Kit: section text
MAX_FIELDS = 10  # Block Kit: section fields


def mrkdwn_escape(text: str) -> str:
    """Slack's three control characters (&, <, >), so names cannot become links or mentions."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def escalation_blocks(
    title: str, summary: str, fields: dict[str, Any], packet_url: str | None
) -> list[dict[str, Any]]:
    section = {"type": "mrkdwn", "text": mrkdwn_escape(summary)[:MAX_SECTION]}
    blocks: list[dict[str, Any]] = [
        {"type": "header", "text": {"type": "plain_text", "text": title[:MAX_HEADER]}},
        {"type": "section", "text": section},
    ]
    if fields:
        blocks.append(
            {
                "type": "section",
                "fields": [
                    {
                        "type": "mrkdwn",
                        "text": f"*{mrkdwn_escape(str(k))}*\n{mrkdwn_escape(str(v))}"[:2000],
                    }
                    for k, v in list(fields.items())[:MAX_FIELDS]
                ],
            }
        )
    if packet_url and urlsplit(packet_url).scheme in ("http", "https"):
        blocks.append(
            {
                "type": "actions",
                "elements": [
                    {
                        "type": "button",
                        "text": {"type": "plain_text", "text": "Open the order packet"},
                        "url": packet_url,
                    }
                ],
            }
        )
    elif packet_url:  # a file on the ops host: shown, not linked (Slack links only http/s)
        blocks.append(
            {
                "type": "context",
                "elements": [{"type": "mrkdwn", "text": f"Packet: `{mrkdwn_escape(packet_url)}`"}],
            }
        )
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

    def _prepare(self, message: Outbound) -> dict[str, Any]:
        summary = require(message.body_text, "body_text")
        title = message.subject or "orderwatch escalation"
        fields = message.metadata.get("fields") or {}
        if not isinstance(fields, dict):
            raise Refused("metadata['fields'] must be a dict")
        return {
            "text": f"{title}: {summary}"[:MAX_SECTION],  # notification / fallback text
            "blocks": escalation_blocks(title, summary, fields, message.metadata.get("packet_url")),
        }

    def _preview(self, prepared: dict[str, Any]) -> str:
        return f"slack message with {len(prepared['blocks'])} blocks"

    def _deliver(self, message: Outbound, prepared: dict[str, Any]) -> DeliveryResult:
        assert self.webhook_url  # _missing_config
        url = urlsplit(self.webhook_url)
        label = f"POST {url.netloc}{'/services/…' if url.path.startswith('/services/') else '/…'}"
        exchange = self._exchange(Request.json_body("POST", self.webhook_url, label, prepared))
        if exchange.outcome() is Outcome.ACCEPTED:
            return exchange.result(detail=f"HTTP {exchange.status} {exchange.text(40)}")
        if exchange.outcome() is Outcome.REJECTED:
            return exchange.result(detail=f"HTTP {exchange.status}: {exchange.text(100)}")
        return exchange.result()
