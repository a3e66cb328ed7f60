"""Customers' opt-outs into `ops.contact_blocks` (the action run never uses a blocked address or
number on that channel again, lib/action_run.py), from the paths a customer really takes:

- an e-mail's unsubscribe link or mailto (senders/smtp.py `List-Unsubscribe`): both carry the
  recipient's random unsubscribe token (`lib/ledger.py` `unsubscribe_token`, issued by the action
  run), never the address, so whatever serves the link (or reads the mailbox) records it with
  `orderwatch opt-out --channel email --key K`; a key orderwatch did not issue is refused;
- an SMS reply: Twilio posts each incoming message to the Messaging webhook as a form
  (`From`, `Body`, and `OptOutType` = STOP / START / HELP with Advanced Opt-Out). A STOP
  (OptOutType, else one of Twilio's default keywords) is an opt-out, an OptOutType START an
  opt-in again; `orderwatch opt-out --twilio-inbound FILE` reads one
  form body per line. Twilio itself refuses later messages to a number that replied STOP
  (error 21610), which the SMS sender classifies as an opt-out (senders/twilio.py) and the run
  records too: this path only makes the block arrive before the next send;
- by hand: `orderwatch opt-out --channel email|sms --recipient <address or number>`.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from urllib.parse import parse_qs

from orderwatch_dagster.lib import ledger as lg
from orderwatch_dagster.lib.packets import mask_email, mask_phone
from orderwatch_dagster.lib.warehouse_session import WarehouseSession

# Twilio's default opt-out keywords (a whole message, any case), for a webhook without
# OptOutType (no Advanced Opt-Out), and their spaced spellings ("STOP ALL", "OPT OUT"): on
# consent we err towards the block (a missed stop texts someone who asked us not to; Twilio
# would not catch it, as these are not its keywords). Without OptOutType nothing is read as an
# opt-in: a START lifts a block only when Twilio itself says so (OptOutType=START).
STOP_WORDS = frozenset(
    {"STOP", "STOPALL", "UNSUBSCRIBE", "CANCEL", "END", "QUIT", "OPTOUT", "REVOKE"}
)
SPACED_STOP_WORDS = frozenset({"STOP ALL", "OPT OUT"})
CHANNELS = ("email", "sms")


@dataclass(frozen=True)
class InboundSms:
    phone: str
    action: str  # stop | start | none


def parse_twilio_inbound(form_body: str) -> InboundSms | None:
    """One incoming-message webhook body (application/x-www-form-urlencoded)."""
    form = {k: v[-1] for k, v in parse_qs(form_body.strip(), keep_blank_values=True).items()}
    phone = form.get("From", "").strip()
    if not phone:
        return None
    kind = form.get("OptOutType", "").strip().upper()
    if not kind:  # no Advanced Opt-Out: Twilio's default keywords
        word = " ".join(form.get("Body", "").split()).upper()
        kind = "STOP" if word in STOP_WORDS | SPACED_STOP_WORDS else ""
    action = {"STOP": "stop", "START": "start"}.get(kind, "none")
    return InboundSms(phone, action)


def masked(channel: str, recipient: str) -> str:
    return mask_email(recipient) if channel == "email" else mask_phone(recipient)


def record_opt_out(
    session: WarehouseSession,
    channel: str,
    *,
    at: datetime,
    recipient: str | None = None,
    key: str | None = None,
    reason: str = "opt_out",
) -> str:
    """Block `recipient` (or the block key an unsubscribe link carried) on `channel`."""
    if channel not in CHANNELS:
        raise ValueError(f"channel must be one of {', '.join(CHANNELS)}")
    if not recipient and not key:
        raise ValueError("a recipient or a block key is needed")
    if channel == "sms" and recipient:
        recipient = lg.normal_phone(recipient)
        if not lg.E164.match(recipient):
            raise ValueError("an SMS recipient is an E.164 number: +<country code><number>")
    lg.ensure_ops(session)
    if key:
        if not lg.UNSUBSCRIBE_TOKEN.match(key):
            raise ValueError("not an unsubscribe key (32 characters of A-Z a-z 0-9 _ -)")
        issued = lg.token_block(session, key)
        if issued is None or issued[0] != channel:
            raise ValueError(f"no {channel} unsubscribe key like this was issued")
    block = issued[1] if key else lg.block_key(channel, str(recipient))
    shown = masked(channel, recipient) if recipient else f"key {block[:8]}…"
    lg.write_block(session, channel, recipient or "", shown, reason, at, known_key=block)
    return block


def apply_twilio_inbound(
    session: WarehouseSession, bodies: list[str], at: datetime
) -> dict[str, int]:
    """Each STOP blocks the sender's number for SMS; each START lifts its opt-out."""
    counts = {"stop": 0, "start": 0, "none": 0}
    for body in bodies:
        inbound = parse_twilio_inbound(body) if body.strip() else None
        if inbound is None:
            continue
        counts[inbound.action] += 1
        if inbound.action == "stop":
            record_opt_out(session, "sms", at=at, recipient=inbound.phone, reason="opt_out")
        elif inbound.action == "start":
            lg.ensure_ops(session)
            lg.remove_opt_out(session, lg.block_key("sms", inbound.phone))
    return counts
