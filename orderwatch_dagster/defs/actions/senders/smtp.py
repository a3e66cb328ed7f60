"""Customer e-mail over SMTP: `smtplib` + `email.message.EmailMessage`, at most once.

SMTP has no idempotency key, so the sender never resends. It talks the transaction step by
step (`mail`, `rcpt`, `data`: smtplib's own commands) to know where a failure happened:
anything before the DATA command is answered with 354 leaves no message at the server
(`NOT_ACCEPTED`, or `REJECTED` for a recipient the server refuses for good); once the content
is on its way, only a 250 proves delivery and anything else is `UNCERTAIN`.
"""

from __future__ import annotations

import hashlib
import smtplib
import ssl
from dataclasses import dataclass
from datetime import UTC, datetime
from email.message import EmailMessage
from email.policy import SMTP as SMTP_POLICY
from email.utils import format_datetime, parseaddr
from typing import ClassVar

from pydantic import Field

from orderwatch_dagster.defs.actions.senders.base import (
    EnvSetting,
    Refused,
    SenderResource,
    require,
)
from orderwatch_dagster.lib.outbound import Attempt, DeliveryResult, FollowUp, Outbound, Outcome

SECURITY_MODES = ("starttls", "ssl", "none")


def message_id(idempotency_key: str, domain: str) -> str:
    """A Message-ID that is the same for the same decision (RFC 5322 msg-id)."""
    digest = hashlib.sha256(idempotency_key.encode("utf-8")).hexdigest()[:32]
    return f"<{digest}.orderwatch@{domain}>"


@dataclass(frozen=True)
class _Envelope:
    sender: str
    recipient: str
    message: EmailMessage

    @property
    def label(self) -> str:
        return f"email {self.message['Message-ID']} to {self.recipient}"


class SmtpEmailSender(SenderResource):
    """E-mail (`channel="email"`): `recipient` is the address, `subject` and `body_text`
    required, `body_html` optional (multipart/alternative), `metadata["list_unsubscribe"]`
    becomes a List-Unsubscribe header. `security`: starttls (port 587), ssl (465) or none."""

    host: str = "localhost"
    port: int = 587
    security: str = Field(default="starttls", description="starttls | ssl | none")
    username: str | None = None
    password: str | None = Field(default=None, description="dg.EnvVar only")
    from_address: str = ""
    reply_to: str | None = None
    message_id_domain: str | None = Field(
        default=None, description="Right-hand side of Message-ID; default: the From domain"
    )
    timeout_s: float = 30.0
    ca_file: str | None = Field(default=None, description="A private CA bundle for TLS")

    channels: ClassVar[tuple[str, ...]] = ("email",)
    enable_var: ClassVar[str] = "ORDERWATCH_SMTP_ENABLED"
    required: ClassVar[tuple[str, ...]] = ("host", "from_address")
    env: ClassVar[tuple[EnvSetting, ...]] = (
        EnvSetting("ORDERWATCH_SMTP_HOST", "host", "localhost", "SMTP server"),
        EnvSetting("ORDERWATCH_SMTP_PORT", "port", "587", "SMTP port"),
        EnvSetting(
            "ORDERWATCH_SMTP_SECURITY", "security", "starttls", "`starttls`, `ssl` or `none`"
        ),
        EnvSetting("ORDERWATCH_SMTP_USERNAME", "username", "(none: no AUTH)", "SMTP AUTH user"),
        EnvSetting("ORDERWATCH_SMTP_PASSWORD", "password", "(none)", "SMTP AUTH password", True),
        EnvSetting("ORDERWATCH_SMTP_FROM", "from_address", "(required)", "From address"),
        EnvSetting("ORDERWATCH_SMTP_REPLY_TO", "reply_to", "(none)", "Reply-To address"),
        EnvSetting("ORDERWATCH_SMTP_CA_FILE", "ca_file", "(system CAs)", "CA bundle for TLS"),
    )

    def _prepare(self, message: Outbound) -> _Envelope:
        if self.security not in SECURITY_MODES:
            raise Refused(f"security must be one of {', '.join(SECURITY_MODES)}")
        recipient = require(message.recipient, "recipient address")
        if "@" not in parseaddr(recipient)[1]:
            raise Refused(f"not an e-mail address: {recipient!r}")
        sender = self.from_address or "orderwatch@localhost"
        domain = self.message_id_domain or sender.rpartition("@")[2] or "localhost"
        email = EmailMessage()
        try:
            email["From"] = sender
            email["To"] = recipient
            email["Subject"] = require(message.subject, "subject")
            # The wall clock, not the simulated "now": receiving servers judge this header.
            email["Date"] = format_datetime(datetime.now(UTC))
            email["Message-ID"] = message_id(message.idempotency_key, domain)
            email["Auto-Submitted"] = "auto-generated"  # RFC 3834: no auto-replies to us
            if self.reply_to:
                email["Reply-To"] = self.reply_to
            if message.metadata.get("list_unsubscribe"):
                email["List-Unsubscribe"] = str(message.metadata["list_unsubscribe"])
        except ValueError as error:  # a newline in a header value (header injection)
            raise Refused(f"bad header: {error}") from None
        email.set_content(require(message.body_text, "body_text"))
        if message.body_html:
            email.add_alternative(message.body_html, subtype="html")
        return _Envelope(parseaddr(sender)[1], parseaddr(recipient)[1], email)

    def _preview(self, prepared: _Envelope) -> str:
        return prepared.label

    def _connect(self, context: ssl.SSLContext) -> smtplib.SMTP:
        if self.security == "ssl":
            return smtplib.SMTP_SSL(self.host, self.port, timeout=self.timeout_s, context=context)
        return smtplib.SMTP(self.host, self.port, timeout=self.timeout_s)

    def _deliver(self, message: Outbound, prepared: _Envelope) -> DeliveryResult:
        label = f"SMTP {self.host}:{self.port}"
        mid = prepared.message["Message-ID"]
        transaction = _Transaction()
        smtp: smtplib.SMTP | None = None
        failed = True
        try:
            context = ssl.create_default_context(cafile=self.ca_file)
            smtp = self._connect(context)
            refused = self._transact(smtp, prepared, transaction, context)
            failed = False
        except smtplib.SMTPDataError as error:
            # Raised by data() only when DATA itself is refused: the content was not sent.
            refused, failed = ("DATA", error.smtp_code, error.smtp_error), False
        except (smtplib.SMTPException, OSError) as error:
            code = getattr(error, "smtp_code", None)  # None: no reply (timeout, disconnect)
            attempt = Attempt(label, status=code, error=f"{type(error).__name__}: {error}"[:300])
            if transaction.in_data:
                return _uncertain(attempt, f"{type(error).__name__} during DATA", mid)
            return DeliveryResult(
                Outcome.NOT_ACCEPTED,
                detail=f"{type(error).__name__} before DATA: nothing was sent",
                history=(attempt,),
            )
        finally:
            _close(smtp, quit=not failed)
        if refused is not None:
            return _refused_before_data(label, *refused)
        attempt = Attempt(label, status=transaction.code)
        text = _text(transaction.reply)
        if transaction.code == 250:
            return DeliveryResult(
                Outcome.ACCEPTED, detail=f"250 {text}", provider_id=mid, history=(attempt,)
            )
        # The content was sent and the server did not say 250: it may still deliver it.
        return _uncertain(attempt, f"{transaction.code} {text} after the message content", mid)

    def _transact(
        self,
        smtp: smtplib.SMTP,
        prepared: _Envelope,
        transaction: _Transaction,
        context: ssl.SSLContext,
    ) -> tuple[str, int, bytes] | None:
        """EHLO, STARTTLS, AUTH, MAIL, RCPT, DATA; a refusal before DATA is returned."""
        smtp.ehlo()
        if self.security == "starttls":
            smtp.starttls(context=context)
            smtp.ehlo()
        if self.username:
            smtp.login(self.username, self.password or "")
        transaction.code, transaction.reply = smtp.mail(prepared.sender)
        if transaction.code != 250:
            return ("MAIL FROM", transaction.code, transaction.reply)
        transaction.code, transaction.reply = smtp.rcpt(prepared.recipient)
        if transaction.code not in (250, 251):
            return ("RCPT TO", transaction.code, transaction.reply)
        transaction.in_data = True
        transaction.code, transaction.reply = smtp.data(
            prepared.message.as_bytes(policy=SMTP_POLICY)
        )
        return None


@dataclass
class _Transaction:
    """Where the SMTP transaction got to, so a failure can be classified."""

    code: int | None = None
    reply: bytes = b""
    in_data: bool = False  # DATA was sent: from here on the message may have been taken


def _close(smtp: smtplib.SMTP | None, *, quit: bool) -> None:
    # QUIT once the outcome is known: its own failure changes nothing. After a broken
    # transaction just drop the socket (a hung server would make QUIT wait a full timeout).
    if smtp is None:
        return
    try:
        if quit:
            smtp.quit()
    except (smtplib.SMTPException, OSError):
        pass
    finally:
        smtp.close()


def _uncertain(attempt: Attempt, what: str, mid: str) -> DeliveryResult:
    # No idempotency in SMTP: a second try could deliver a second copy.
    return DeliveryResult(
        Outcome.UNCERTAIN,
        detail=f"{what}: fate unknown, not resent",
        provider_id=mid,
        history=(attempt,),
    )


def _text(reply: bytes | str) -> str:
    return (reply.decode("utf-8", "replace") if isinstance(reply, bytes) else reply)[:200]


def _refused_before_data(label: str, command: str, code: int, reply: bytes | str) -> DeliveryResult:
    attempt = Attempt(label, status=code)
    detail = f"{command} answered {code} {_text(reply)}"
    if 400 <= code < 500:  # temporary: greylisting, mailbox busy, rate limit
        return DeliveryResult(
            Outcome.NOT_ACCEPTED, detail=f"{detail}: nothing was sent", history=(attempt,)
        )
    if command == "RCPT TO":  # the server refuses this recipient for good
        return DeliveryResult(
            Outcome.REJECTED,
            detail=detail,
            history=(attempt,),
            follow_up=FollowUp.INVALID_RECIPIENT,
        )
    # MAIL FROM / DATA refused for good: our side (sender address, policy) needs fixing;
    # the message itself was never sent, so it stays pending.
    return DeliveryResult(
        Outcome.NOT_ACCEPTED, detail=f"{detail}: nothing was sent", history=(attempt,)
    )
