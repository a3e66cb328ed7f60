"""Real delivery channels, one module per provider, each a `dg.ConfigurableResource` that
implements `lib.outbound.Sender` and is off (dry-run) until its `ORDERWATCH_*_ENABLED`
variable says true (README "Outbound channels").

`senders_from_env()` builds all of them from the environment when it is called, keyed by
resource name (`email_sender`, `ticket_sender`, `reroute_sender`, ...); `by_channel()` maps
each `Outbound.channel` to the sender that delivers it. Nothing here binds them as resources:
the definitions of the action job's resources decide what is bound under each key.
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
    "ticket_sender": ZendeskTicketSender,
    "order_tag_sender": ShopifyOrderTagSender,
    "reroute_sender": ShipBobRerouteSender,
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
    """Every sender as the environment configures it (plain settings read now, secrets bound
    as `dg.EnvVar`). With no variable set, all are off and answer `dry_run`."""
    return {key: cls.from_env(environ) for key, cls in SENDERS.items()}


def by_channel(senders: Mapping[str, SenderResource]) -> dict[str, SenderResource]:
    """`Outbound.channel` → the sender for it."""
    return {channel: s for s in senders.values() for channel in s.channels}
