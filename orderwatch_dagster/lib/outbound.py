"""What the action job hands to a sender, and what a sender hands back (docs/architecture.md).

The action job decides and records; a sender (a local sink, SMTP, Twilio, Zendesk, Shopify,
ShipBob, Slack) only delivers one `Outbound` and classifies the provider's answer. The job
records the intent before calling `send` and the `DeliveryResult` after it, so a crash in
between leaves a pending intent that is never redone blindly.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, Protocol


class Outcome(StrEnum):
    ACCEPTED = "accepted"  # the provider took it (2xx, SMTP 250 after the content)
    # provably not taken (connection refused, 429/503 + Retry-After, SMTP 4xx, a sender that is
    # on but not configured): sent once on a later run
    NOT_ACCEPTED = "not_accepted"
    REJECTED = "rejected"  # answered and refused for good (4xx validation, opt-out): never retried
    UNCERTAIN = "uncertain"  # fate unknown (timeout or 5xx after sending): human queue
    DRY_RUN = "dry_run"  # the sender is off: nothing left this process
    # no real sender for the channel: written to the local outbox (ORDERWATCH_HOME/outbox/),
    # done for the ledger (never written twice) but reached nobody, so never counted as sent
    OUTBOX = "outbox"


@dataclass(frozen=True)
class Outbound:
    """One request to one provider. `idempotency_key` is stable per (order, episode or state,
    template): the same decision always yields the same key."""

    idempotency_key: str
    # email, sms, ticket_note, ticket_reply, ticket_create, order_tags, reroute, slack, outbox
    channel: str
    recipient: str  # e-mail address, phone number, ticket id, order id or webhook name
    body_text: str
    subject: str | None = None
    body_html: str | None = None
    metadata: dict[str, Any] = field(default_factory=dict)  # provider fields (tags, group_id, ...)


@dataclass(frozen=True)
class Attempt:
    """One try at the provider, as the ledger records it (for HTTP, every request urllib3's
    `Retry` made, collected by the sender's transport)."""

    request: str  # "POST api.twilio.com/2010-04-01/...", "SMTP smtp.example.com:587"; no secret
    status: int | None = None  # HTTP status or SMTP reply code, when the provider answered
    error: str | None = None  # what went wrong when it did not ("ReadTimeoutError: ...")


class FollowUp(StrEnum):
    """What the job should do next about the recipient or the request, beyond the outcome."""

    OPT_OUT = "opt_out"  # the recipient opted out (Twilio 21610): never use this channel again
    INVALID_RECIPIENT = "invalid_recipient"  # the address/number cannot receive this channel
    OPEN_TASK = "open_task"  # the provider offers nothing for this request: a human task instead
    # Our side is wrong (a missing setting, a refused credential or permission, a moved
    # endpoint): nothing was taken, and resending will not help until a person fixes the
    # sender's configuration. Comes with NOT_ACCEPTED; the message stays pending.
    FIX_CONFIG = "fix_config"


@dataclass(frozen=True)
class DeliveryResult:
    outcome: Outcome
    detail: str = ""  # the provider's status / error, never a credential
    provider_id: str | None = None  # Message-ID, Twilio SID, Zendesk ticket/comment id, ...
    retry_after_s: float | None = None  # from Retry-After when not accepted
    attempts: int = 1
    history: tuple[Attempt, ...] = ()  # every try, in order (len == attempts when it went out)
    follow_up: FollowUp | None = None


class Sender(Protocol):
    """A delivery channel. `send` never raises for a provider's answer or a message it cannot
    deliver: it classifies them."""

    channels: tuple[str, ...]

    def send(self, message: Outbound) -> DeliveryResult: ...
