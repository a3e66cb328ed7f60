"""Customer SMS through Twilio's Messages API (`POST /2010-04-01/Accounts/{sid}/Messages.json`).

Form-encoded `To`, `From` or `MessagingServiceSid`, `Body` (and `StatusCallback` when set),
HTTP basic auth with the Account SID and auth token (tests/fixtures/vendor/twilio/
openapi_messages_create.json is Twilio's own description of the request). Twilio offers no
idempotency key for creating a message, so a timeout or 5xx after sending is `UNCERTAIN`,
never resent. Twilio's error codes tell an opt-out (21610: the recipient replied STOP) and a
number that is not a usable mobile number (21211, 21614) apart from other refusals, so the
job can stop texting that number. The Account SID is bound as a secret like the token, so the
ledger's label masks it (`Accounts/AC…/Messages.json`) and urllib3's log lines never show it.
"""

from __future__ import annotations

import dataclasses
import re
from typing import ClassVar
from urllib.parse import urlencode

from pydantic import Field
from urllib3.util import make_headers

from orderwatch_dagster.defs.actions.senders.base import (
    EnvSetting,
    HttpSenderResource,
    Refused,
    require,
)
from orderwatch_dagster.defs.actions.senders.transport import REDACTED, Request
from orderwatch_dagster.lib.outbound import DeliveryResult, FollowUp, Outbound, Outcome

E164 = re.compile(r"^\+[1-9][0-9]{6,14}$")
MAX_BODY_CHARS = 1600  # Twilio refuses longer bodies (error 21617)

# Twilio REST error codes that say something about the recipient. Not 21612 ("cannot be sent
# with the current combination of 'To' and/or 'From'"): its causes include our own From
# number and sender-ID rules, so it must not stop a customer's texts for good.
OPT_OUT_CODES = frozenset({21610})  # "Attempt to send to unsubscribed recipient"
INVALID_RECIPIENT_CODES = frozenset(
    {
        21211,  # invalid 'To' phone number
        21614,  # 'To' number is not a valid mobile number (a landline)
    }
)


def classify_twilio_error(code: int | None) -> FollowUp | None:
    """What a Twilio error code means for the next message to the same number."""
    if code in OPT_OUT_CODES:
        return FollowUp.OPT_OUT
    if code in INVALID_RECIPIENT_CODES:
        return FollowUp.INVALID_RECIPIENT
    return None


class TwilioSmsSender(HttpSenderResource):
    """SMS (`channel="sms"`): `recipient` is an E.164 number, `body_text` the message."""

    base_url: str = "https://api.twilio.com"
    account_sid: str | None = Field(default=None, description="dg.EnvVar('TWILIO_ACCOUNT_SID')")
    auth_token: str | None = Field(default=None, description="dg.EnvVar('TWILIO_AUTH_TOKEN')")
    from_number: str | None = None
    messaging_service_sid: str | None = Field(
        default=None, description="Send through a Messaging Service instead of From"
    )
    status_callback: str | None = None

    channels: ClassVar[tuple[str, ...]] = ("sms",)
    enable_var: ClassVar[str] = "ORDERWATCH_TWILIO_ENABLED"
    required: ClassVar[tuple[str, ...]] = ("base_url", "account_sid", "auth_token")
    env: ClassVar[tuple[EnvSetting, ...]] = (
        EnvSetting("TWILIO_ACCOUNT_SID", "account_sid", "(required)", "Account SID", True),
        EnvSetting("TWILIO_AUTH_TOKEN", "auth_token", "(required)", "Auth token", True),
        EnvSetting("ORDERWATCH_TWILIO_FROM", "from_number", "(none)", "Sender number (E.164)"),
        EnvSetting(
            "ORDERWATCH_TWILIO_MESSAGING_SERVICE_SID",
            "messaging_service_sid",
            "(none)",
            "Messaging Service SID (instead of From)",
        ),
        EnvSetting(
            "ORDERWATCH_TWILIO_STATUS_CALLBACK",
            "status_callback",
            "(none)",
            "URL Twilio posts delivery status to",
        ),
        EnvSetting("ORDERWATCH_TWILIO_URL", "base_url", "https://api.twilio.com", "API base URL"),
    )

    def _config_problems(self) -> list[str]:
        problems = super()._config_problems()
        if not (self.messaging_service_sid or self.from_number):
            problems.append(
                f"set {self._var('from_number')} or {self._var('messaging_service_sid')}"
            )
        elif not self.messaging_service_sid and not E164.match(self.from_number or ""):
            problems.append(f"{self._var('from_number')} is not an E.164 number")
        return problems

    def _prepare(self, message: Outbound) -> Request:
        to = require(message.recipient, "recipient number")
        if not E164.match(to):
            raise Refused(f"not an E.164 phone number: {to!r}")
        body = require(message.body_text, "body_text")
        if len(body) > MAX_BODY_CHARS:
            raise Refused(f"SMS body has {len(body)} characters; Twilio allows {MAX_BODY_CHARS}")
        form = {"To": to, "Body": body}
        if self.messaging_service_sid:
            form["MessagingServiceSid"] = self.messaging_service_sid
        else:
            form["From"] = str(self.from_number)
        if self.status_callback:
            form["StatusCallback"] = self.status_callback
        sid = str(self.account_sid)
        path = "2010-04-01/Accounts/{}/Messages.json"
        return Request(
            "POST",
            self._url(path.format(sid)),
            label=self._label("POST", path.format("AC" + REDACTED)),
            body=urlencode(form).encode("utf-8"),
            headers={"Content-Type": "application/x-www-form-urlencoded"},
            secrets=(sid,),
        )

    def _deliver(self, message: Outbound, prepared: Request) -> DeliveryResult:
        auth = make_headers(basic_auth=f"{self.account_sid}:{self.auth_token}")
        headers = {**prepared.headers, "Authorization": auth["authorization"]}
        exchange = self._exchange(dataclasses.replace(prepared, headers=headers))
        body = exchange.json()
        body = body if isinstance(body, dict) else {}
        outcome = exchange.outcome()
        if outcome is Outcome.ACCEPTED:
            return exchange.result(
                detail=f"HTTP {exchange.status} status {body.get('status')}",
                provider_id=body.get("sid"),
            )
        code = body.get("code") if isinstance(body.get("code"), int) else None
        if outcome is Outcome.REJECTED and code is not None:
            follow_up = classify_twilio_error(code)
            why = " (recipient opted out)" if follow_up is FollowUp.OPT_OUT else ""
            return exchange.result(
                detail=f"Twilio {code}: {body.get('message', '')}"[:280] + why,
                follow_up=follow_up,
            )
        return exchange.result(
            detail=exchange.summary() + (f" (Twilio {code})" if code is not None else "")
        )
