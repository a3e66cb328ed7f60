"""Real delivery channels, one module per provider, each a `dg.ConfigurableResource` that
implements `lib.outbound.Sender` and is off (dry-run) until its `ORDERWATCH_*_ENABLED`
variable says true (README "Outbound channels").

`senders_from_env()` builds all of them from the environment, keyed for `dg.Definitions`
resources; `by_channel()` maps each `Outbound.channel` to the sender that delivers it.
"""

from __future__ import annotations

from collections.abc import Mapping

from orderwatch_dagster.defs.actions.senders.base import SenderResource
from orderwatch_dagster.defs.actions.senders.shipbob import ShipBobRerouteSender
from orderwatch_dagster.defs.actions.senders.shopify import ShopifyOrderTagSender
from orderwatch_dagster.defs.actions.senders.slack import SlackWebhookSender
from orderwatch_dagster.defs.actions.senders.smtp import SmtpEmailSender
from orderwatch_dagster.defs.actions.senders.twilio import TwilioSmsSender
from orderwatch_dagster.defs.actions.senders.zendesk import ZendeskTicketSender

SENDERS: dict[str, type[SenderResource]] = {
    "email_sender": SmtpEmailSender,
    "sms_sender": TwilioSmsSender,
    "zendesk_sender": ZendeskTicketSender,
    "shopify_sender": ShopifyOrderTagSender,
    "shipbob_sender": ShipBobRerouteSender,
    "slack_sender": SlackWebhookSender,
}

__all__ = [
    "SENDERS",
    "SenderResource",
    "ShipBobRerouteSender",
    "ShopifyOrderTagSender",
    "SlackWebhookSender",
    "SmtpEmailSender",
    "TwilioSmsSender",
    "ZendeskTicketSender",
    "by_channel",
    "senders_from_env",
]


def senders_from_env(environ: Mapping[str, str] | None = None) -> dict[str, SenderResource]:
    """Every sender as the environment configures it (read when the definitions load;
    secrets bound as `dg.EnvVar`). With no variable set, all are off."""
    return {key: cls.from_env(environ) for key, cls in SENDERS.items()}


def by_channel(senders: Mapping[str, SenderResource]) -> dict[str, SenderResource]:
    """`Outbound.channel` → the sender for it."""
    return {channel: s for s in senders.values() for channel in s.channels}
