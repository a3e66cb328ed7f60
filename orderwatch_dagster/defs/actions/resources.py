"""The action job's resources: `ActionSink` (where messages go) and `ActionControls` (the
safety switches), both bound from the environment when the code location loads.

`ActionSink` delivers each `Outbound` through the real sender for its channel when that sender
is enabled (defs/actions/senders/, each off until its `ORDERWATCH_*_ENABLED` is true), and
otherwise into the local outbox (`ORDERWATCH_HOME/outbox/messages/`), which is what
`make demo` uses: no account anywhere.
"""

import json
import os
from datetime import UTC, datetime, timedelta
from pathlib import Path

import dagster as dg
from pydantic import Field

from orderwatch_dagster.defs.actions.senders import (
    ShipBobRerouteSender,
    ShopifyOrderTagSender,
    SlackWebhookSender,
    SmtpEmailSender,
    TwilioSmsSender,
    ZendeskTicketSender,
    senders_from_env,
)
from orderwatch_dagster.lib import settings
from orderwatch_dagster.lib.outbound import DeliveryResult, Outbound, Outcome
from orderwatch_dagster.lib.settings import EnvSetting

KILL_SWITCH = EnvSetting(
    "ORDERWATCH_ACTIONS_KILL_SWITCH", "kill_switch", "false", "`true`: the action job does nothing"
)
DRY_RUN = EnvSetting(
    "ORDERWATCH_ACTIONS_DRY_RUN",
    "dry_run",
    "false",
    "`true`: decide and write packets, record and send nothing",
)
MAX_MESSAGES = EnvSetting(
    "ORDERWATCH_ACTIONS_MAX_MESSAGES",
    "max_messages",
    None,
    "Customer messages per run above which the run sends none and alerts (default: the policy's)",
    integer=True,
)
SHOP_NAME = EnvSetting("ORDERWATCH_SHOP_NAME", "shop_name", "our shop", "Signature of messages")
PACKET_BASE_URL = EnvSetting(
    "ORDERWATCH_PACKET_BASE_URL",
    "packet_base_url",
    None,
    "URL where ORDERWATCH_HOME/outbox/packets/ is served: tasks and escalations link there",
)
REROUTE_SERVICE = EnvSetting(
    "ORDERWATCH_SHIPBOB_FASTER_SERVICE_ID",
    "reroute_shipping_service_id",
    None,
    "ShipBob shipping service id a ship-late / predicted-late reroute moves the shipment to"
    " (unset: those reroutes are tasks for a person)",
    integer=True,
    minimum=1,
)
ACTION_SETTINGS: tuple[EnvSetting, ...] = (
    KILL_SWITCH,
    DRY_RUN,
    MAX_MESSAGES,
    SHOP_NAME,
    PACKET_BASE_URL,
    REROUTE_SERVICE,
)


def outbox_dir(configured: str | None = None) -> Path:
    return Path(configured) if configured else settings.home() / "outbox"


def is_replay(now: datetime | None = None) -> bool:
    """ORDERWATCH_AS_OF set to a moment behind the clock (the simulator's clock file, else the
    wall clock): the run re-evaluates the past and must send nothing."""
    if not settings.AS_OF.read():
        return False
    moment = now or settings.now()
    clock = settings.clock_path()
    text = clock.read_text().strip() if clock.is_file() else ""
    reference = settings.parse_timestamp(text) if text else datetime.now(UTC)
    return moment < reference - timedelta(minutes=1)


class OutboxSender:
    """The local sink: one JSON file per message (idempotency key = file name) and a line in
    `deliveries.jsonl` per delivery, so a duplicate would show as two lines."""

    channels = (
        "email",
        "sms",
        "ticket_reply",
        "ticket_note",
        "ticket_create",
        "order_tags",
        "reroute",
        "slack",
    )

    def __init__(self, folder: Path) -> None:
        self.folder = folder

    def send(self, message: Outbound) -> DeliveryResult:
        target = self.folder / "messages" / message.channel / f"{message.idempotency_key}.json"
        target.parent.mkdir(parents=True, exist_ok=True)
        body = {
            "idempotency_key": message.idempotency_key,
            "channel": message.channel,
            "recipient": message.recipient,
            "subject": message.subject,
            "body_text": message.body_text,
            "body_html": message.body_html,
            "metadata": message.metadata,
        }
        tmp = target.with_suffix(".tmp")
        tmp.write_text(json.dumps(body, indent=2, default=str))
        os.replace(tmp, target)
        line = {
            "idempotency_key": message.idempotency_key,
            "channel": message.channel,
            "at": datetime.now(UTC).isoformat(),
        }
        with (self.folder / "deliveries.jsonl").open("a") as log:
            log.write(json.dumps(line) + "\n")
        return DeliveryResult(
            Outcome.OUTBOX, detail="written to the outbox", provider_id=str(target)
        )


class ActionSink(dg.ConfigurableResource):
    """Routes a message to its channel's real sender when enabled, else to the local outbox."""

    outbox: str | None = Field(default=None, description="Default ORDERWATCH_HOME/outbox")
    email_sender: SmtpEmailSender
    sms_sender: TwilioSmsSender
    ticket_sender: ZendeskTicketSender
    order_tag_sender: ShopifyOrderTagSender
    reroute_sender: ShipBobRerouteSender
    slack_sender: SlackWebhookSender

    def outbox_path(self) -> Path:
        return outbox_dir(self.outbox)

    def send(self, message: Outbound) -> DeliveryResult:
        for sender in (
            self.email_sender,
            self.sms_sender,
            self.ticket_sender,
            self.order_tag_sender,
            self.reroute_sender,
            self.slack_sender,
        ):
            if message.channel in sender.channels and sender.enabled:
                return sender.send(message)
        return OutboxSender(self.outbox_path()).send(message)

    def live_channels(self) -> list[str]:
        senders = (
            self.email_sender,
            self.sms_sender,
            self.ticket_sender,
            self.order_tag_sender,
            self.reroute_sender,
            self.slack_sender,
        )
        return sorted(c for s in senders if s.enabled for c in s.channels)


class ActionControls(dg.ConfigurableResource):
    kill_switch: bool = False
    dry_run: bool = False
    max_messages: int | None = None
    shop_name: str = "our shop"
    packet_base_url: str | None = None
    reroute_shipping_service_id: int | None = None


def sink_from_env() -> ActionSink:
    return ActionSink(**senders_from_env())


def controls_from_env() -> ActionControls:
    values = {s.field: s.value() for s in ACTION_SETTINGS}
    return ActionControls(
        kill_switch=str(values["kill_switch"]).lower() == "true",
        dry_run=str(values["dry_run"]).lower() == "true",
        max_messages=values["max_messages"],
        shop_name=str(values["shop_name"]),
        packet_base_url=values["packet_base_url"],
        reroute_shipping_service_id=values["reroute_shipping_service_id"],
    )
