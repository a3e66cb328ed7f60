"""Customer e-mail over SMTP: `smtplib` + `email.message.EmailMessage`, at most once.

SMTP has no idempotency key, so the sender never resends. It talks the transaction step by
step (smtplib's `mail`, `rcpt`, then `putcmd("data")` / `getreply()` and the content) to know
where a failure happened, and classifies as RFC 5321 does:
- until the content and its final dot are out (connection, EHLO, STARTTLS, AUTH, MAIL, RCPT,
  DATA and its 354, writing the content) nothing can be delivered: a 4xx or a lost connection
  is `NOT_ACCEPTED`; a 5xx to RCPT is `REJECTED` — with `follow_up=invalid_recipient` only
  when the enhanced status code says the address is bad (5.1.x), while 5.7.x (relaying
  denied, policy, auth) is our configuration (`NOT_ACCEPTED`, `fix_config`), as are a 5xx to
  MAIL or DATA, refused credentials and an untrusted certificate;
- after the content, the reply to its final dot decides: 2xx `ACCEPTED`, 4xx `NOT_ACCEPTED`
  (the server did not take responsibility; greylisting and scanning temp-fails expect a later
  retry), 5xx `REJECTED`; no reply (timeout, connection lost) is `UNCERTAIN`.

Addresses: a non-ASCII domain goes out as its IDNA A-label; a non-ASCII local part needs the
server's SMTPUTF8 (then `MAIL FROM:<..> SMTPUTF8 BODY=8BITMIME` and UTF-8 headers); without
it the message is `REJECTED` before MAIL (a non-ASCII From address: `NOT_ACCEPTED`,
`fix_config`). Bodies use a 7-bit transfer encoding
(quoted-printable or base64), so no `BODY=8BITMIME` is needed otherwise.
"""

from __future__ import annotations

import hashlib
import re
import smtplib
import ssl
from dataclasses import dataclass
from datetime import UTC, datetime
from email.headerregistry import Address
from email.message import EmailMessage
from email.policy import SMTP as SMTP_POLICY
from email.policy import default as DEFAULT_POLICY
from email.utils import format_datetime, parseaddr
from pathlib import Path
from typing import ClassVar
from urllib.parse import quote, urlencode

from pydantic import Field

from orderwatch_dagster.defs.actions.senders.base import (
    EnvSetting,
    Refused,
    SenderResource,
    require,
)
from orderwatch_dagster.lib.ledger import UNSUBSCRIBE_TOKEN
from orderwatch_dagster.lib.outbound import Attempt, DeliveryResult, FollowUp, Outbound, Outcome

SECURITY_MODES = ("starttls", "ssl", "none")
# RFC 3463 enhanced status code at the start of a reply's text ("5.1.1 No such user").
ENHANCED_CODE = re.compile(rb"^\s*([245])\.(\d{1,3})\.(\d{1,3})\b")
# Any non-ASCII body becomes quoted-printable or base64 (email.contentmanager).
BUILD_POLICY = DEFAULT_POLICY.clone(cte_type="7bit")
# Failures that a setting causes (credentials, AUTH or TLS the server does not offer, a
# certificate our CA bundle does not trust, a password smtplib cannot encode).
CONFIG_ERRORS = (
    smtplib.SMTPAuthenticationError,
    smtplib.SMTPNotSupportedError,
    ssl.SSLCertVerificationError,
    UnicodeError,
)


def message_id(idempotency_key: str, domain: str) -> str:
    """A Message-ID that is the same for the same decision (RFC 5322 msg-id)."""
    digest = hashlib.sha256(idempotency_key.encode("utf-8")).hexdigest()[:32]
    return f"<{digest}.orderwatch@{domain}>"


@dataclass(frozen=True)
class Mailbox:
    """One address as SMTP needs it: the domain as an IDNA A-label, the local part as is."""

    name: str
    local: str
    domain: str  # ASCII (A-label)

    @property
    def addr(self) -> str:
        return f"{self.local}@{self.domain}"

    @property
    def needs_smtputf8(self) -> bool:
        return not self.local.isascii()

    def header(self) -> Address:
        return Address(display_name=self.name, username=self.local, domain=self.domain)


def mailbox(value: str) -> Mailbox:
    """`Ann <ann@exämple.com>` → its parts; Refused for anything that is not one address."""
    if any(c in value for c in "\r\n"):
        raise Refused("an address with a line break")
    name, addr = parseaddr(value)
    local, at, domain = addr.rpartition("@")
    if not at or not local or not domain or any(c.isspace() for c in addr):
        raise Refused(f"not an e-mail address: {value!r}")
    try:
        ascii_domain = domain.encode("idna").decode("ascii")
    except UnicodeError:
        raise Refused(f"not a valid mail domain: {domain!r}") from None
    return Mailbox(name, local, ascii_domain.lower())


@dataclass(frozen=True)
class _Envelope:
    sender: Mailbox
    recipient: Mailbox
    message: EmailMessage

    @property
    def smtputf8(self) -> bool:
        return self.sender.needs_smtputf8 or self.recipient.needs_smtputf8

    def content(self) -> bytes:
        """The message as sent after DATA: CRLF lines, dot-stuffed, ending in CRLF.CRLF."""
        data = self.message.as_bytes(policy=SMTP_POLICY.clone(utf8=self.smtputf8))
        data = re.sub(rb"(?m)^\.", b"..", data)  # RFC 5321 4.5.2 transparency
        return data + (b"" if data.endswith(b"\r\n") else b"\r\n") + b".\r\n"


@dataclass
class _Transaction:
    """Where the SMTP transaction got to, so a failure can be classified."""

    code: int | None = None
    reply: bytes = b""
    content_sent: bool = False  # the content and its final dot went out: it may be taken


class SmtpEmailSender(SenderResource):
    """E-mail (`channel="email"`): `recipient` is the address, `subject` and `body_text`
    required, `body_html` optional (multipart/alternative); `List-Unsubscribe` from
    `unsubscribe_mailto` / `unsubscribe_url` (or `metadata["list_unsubscribe"]`).
    `security`: starttls (port 587), ssl (465) or none (no AUTH then: a password is never
    sent in clear text)."""

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
    unsubscribe_mailto: str | None = Field(
        default=None, description="Address List-Unsubscribe's mailto writes to"
    )
    unsubscribe_url: str | None = Field(
        default=None, description="https endpoint of List-Unsubscribe's one-click link"
    )

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
        EnvSetting(
            "ORDERWATCH_SMTP_UNSUBSCRIBE_MAILTO",
            "unsubscribe_mailto",
            "(none)",
            "Mailbox of `List-Unsubscribe`'s mailto (subject: the recipient's block key)",
        ),
        EnvSetting(
            "ORDERWATCH_SMTP_UNSUBSCRIBE_URL",
            "unsubscribe_url",
            "(none)",
            "https one-click unsubscribe endpoint (`?channel=email&key=<block key>`, RFC 8058)",
        ),
    )

    def _config_problems(self) -> list[str]:
        problems = super()._config_problems()
        if self.security not in SECURITY_MODES:
            problems.append(f"{self._var('security')} must be {', '.join(SECURITY_MODES)}")
        elif self.security == "none" and self.username:
            problems.append(
                f"{self._var('username')} with {self._var('security')}=none would send the "
                "password in clear text: use starttls or ssl"
            )
        if self.ca_file and not Path(self.ca_file).is_file():
            problems.append(f"{self._var('ca_file')} is not a readable file")
        if self.unsubscribe_url and not self.unsubscribe_url.startswith("https://"):
            # RFC 8058: one-click unsubscribe only over https
            problems.append(f"{self._var('unsubscribe_url')} must be an https URL")
        for field in ("from_address", "reply_to", "unsubscribe_mailto"):
            value = getattr(self, field)
            try:
                if value:
                    mailbox(value)
            except Refused:
                problems.append(f"{self._var(field)} is not an e-mail address")
        return problems

    def _prepare(self, message: Outbound) -> _Envelope:
        recipient = mailbox(require(message.recipient, "recipient address"))
        sender = mailbox(self.from_address)  # checked by _config_problems
        email = EmailMessage(policy=BUILD_POLICY)
        try:
            email["From"] = sender.header()
            email["To"] = recipient.header()
            email["Subject"] = require(message.subject, "subject")
            # The wall clock, not the simulated "now": receiving servers judge this header.
            email["Date"] = format_datetime(datetime.now(UTC))
            domain = self.message_id_domain or sender.domain
            email["Message-ID"] = message_id(message.idempotency_key, domain)
            email["Auto-Submitted"] = "auto-generated"  # RFC 3834: no auto-replies to us
            if self.reply_to:
                email["Reply-To"] = mailbox(self.reply_to).header()
            self._unsubscribe_headers(email, message)
        except ValueError as error:  # a newline in a header value (header injection)
            raise Refused(f"bad header: {error}") from None
        email.set_content(require(message.body_text, "body_text"))
        if message.body_html:
            email.add_alternative(message.body_html, subtype="html")
        return _Envelope(sender, recipient, email)

    def _unsubscribe_headers(self, email: EmailMessage, message: Outbound) -> None:
        """`List-Unsubscribe` (RFC 2369) with a mailto and / or an https link, both carrying
        the recipient's unsubscribe token (`metadata["unsubscribe_token"]`, issued by the
        action run, lib/ledger.py; lib/opt_outs.py records it), and `List-Unsubscribe-Post`
        (RFC 8058 one-click) when there is an https link. A message's own
        `metadata["list_unsubscribe"]` wins; one without a token gets no configured link (a
        key anyone could derive from the address would let anyone unsubscribe anyone)."""
        given = message.metadata.get("list_unsubscribe")
        token = str(message.metadata.get("unsubscribe_token") or "")
        links = [str(given)] if given else []
        configured = not given and UNSUBSCRIBE_TOKEN.match(token) is not None
        if configured and self.unsubscribe_mailto:
            to = mailbox(self.unsubscribe_mailto).addr
            links.append(f"<mailto:{to}?subject={quote(f'unsubscribe {token}')}>")
        if configured and self.unsubscribe_url:
            sep = "&" if "?" in self.unsubscribe_url else "?"
            links.append(
                f"<{self.unsubscribe_url}{sep}{urlencode({'channel': 'email', 'key': token})}>"
            )
        if links:
            email["List-Unsubscribe"] = ", ".join(links)
        if any(link.startswith("<https://") for link in links):
            email["List-Unsubscribe-Post"] = "List-Unsubscribe=One-Click"

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
        except (smtplib.SMTPException, OSError, UnicodeError) as error:
            code = getattr(error, "smtp_code", None)  # None: no reply (timeout, disconnect)
            attempt = Attempt(label, status=code, error=f"{type(error).__name__}: {error}"[:300])
            if transaction.content_sent:
                # No idempotency in SMTP: a second try could deliver a second copy.
                return DeliveryResult(
                    Outcome.UNCERTAIN,
                    detail=f"{type(error).__name__} after the message content: fate unknown, "
                    "not resent",
                    provider_id=mid,
                    history=(attempt,),
                )
            return DeliveryResult(
                Outcome.NOT_ACCEPTED,
                detail=f"{type(error).__name__} before the message content: nothing was sent",
                history=(attempt,),
                follow_up=FollowUp.FIX_CONFIG if isinstance(error, CONFIG_ERRORS) else None,
            )
        finally:
            _close(smtp, quit=not failed)
        if refused is not None:
            return refused
        return _after_content(label, transaction.code or 0, transaction.reply, mid)

    def _transact(
        self,
        smtp: smtplib.SMTP,
        envelope: _Envelope,
        transaction: _Transaction,
        context: ssl.SSLContext,
    ) -> DeliveryResult | None:
        """EHLO, STARTTLS, AUTH, MAIL, RCPT, DATA, content; a refusal before the content is
        returned, the reply to the content is left in `transaction`."""
        label = f"SMTP {self.host}:{self.port}"
        smtp.ehlo_or_helo_if_needed()
        if self.security == "starttls":
            smtp.starttls(context=context)
            smtp.ehlo_or_helo_if_needed()
        if self.username:
            smtp.login(self.username, self.password or "")
        options: list[str] = []
        if envelope.smtputf8:
            if not smtp.has_extn("smtputf8"):
                return _no_smtputf8(label, envelope)
            options = ["SMTPUTF8", *(["BODY=8BITMIME"] if smtp.has_extn("8bitmime") else [])]
        code, reply = smtp.mail(envelope.sender.addr, options)
        if code != 250:
            return _refused_before_content(label, "MAIL FROM", code, reply)
        code, reply = smtp.rcpt(envelope.recipient.addr)
        if code not in (250, 251):
            return _refused_before_content(label, "RCPT TO", code, reply)
        smtp.putcmd("data")
        code, reply = smtp.getreply()
        if code != 354:
            return _refused_before_content(label, "DATA", code, reply)
        # If sending fails, the final dot (the last bytes) never left: the server discards
        # an unterminated message, so only from here on may it have been taken.
        smtp.send(envelope.content())
        transaction.content_sent = True
        transaction.code, transaction.reply = smtp.getreply()
        return None


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


def _text(reply: bytes | str) -> str:
    return (reply.decode("utf-8", "replace") if isinstance(reply, bytes) else reply)[:200]


def _enhanced(reply: bytes | str) -> tuple[int, int] | None:
    """(class subject, detail) of an RFC 3463 code: "5.1.1 ..." → (1, 1)."""
    raw = reply.encode("utf-8", "replace") if isinstance(reply, str) else reply
    match = ENHANCED_CODE.match(raw)
    return (int(match.group(2)), int(match.group(3))) if match else None


def _no_smtputf8(label: str, envelope: _Envelope) -> DeliveryResult:
    attempt = Attempt(label, status=None, error="the server does not offer SMTPUTF8")
    if envelope.sender.needs_smtputf8:  # our From address: a setting to change
        return DeliveryResult(
            Outcome.NOT_ACCEPTED,
            detail="the From address has a non-ASCII local part and the server does not offer "
            "SMTPUTF8: nothing was sent",
            history=(attempt,),
            follow_up=FollowUp.FIX_CONFIG,
        )
    # This server can never carry this address; another server might, so no follow-up.
    return DeliveryResult(
        Outcome.REJECTED,
        detail="the recipient's address has a non-ASCII local part and the server does not "
        "offer SMTPUTF8: nothing was sent",
        history=(attempt,),
    )


def _refused_before_content(
    label: str, command: str, code: int, reply: bytes | str
) -> DeliveryResult:
    attempt = Attempt(label, status=code)
    detail = f"{command} answered {code} {_text(reply)}: nothing was sent"
    if 400 <= code < 500:  # temporary: greylisting, mailbox busy, rate limit
        return DeliveryResult(Outcome.NOT_ACCEPTED, detail=detail, history=(attempt,))
    enhanced = _enhanced(reply)
    if command == "RCPT TO" and 500 <= code < 600 and (enhanced is None or enhanced[0] != 7):
        # The server refuses this recipient for good; only 5.1.x says the address is bad.
        bad_address = enhanced is not None and enhanced[0] == 1
        return DeliveryResult(
            Outcome.REJECTED,
            detail=detail,
            history=(attempt,),
            follow_up=FollowUp.INVALID_RECIPIENT if bad_address else None,
        )
    # MAIL FROM / DATA refused for good, or a 5.7.x policy refusal (relaying denied, auth
    # needed): our side needs fixing, and the message, never sent, stays pending.
    return DeliveryResult(
        Outcome.NOT_ACCEPTED, detail=detail, history=(attempt,), follow_up=FollowUp.FIX_CONFIG
    )


def _after_content(label: str, code: int, reply: bytes, mid: str) -> DeliveryResult:
    """The reply to the content's final dot (RFC 5321 4.2.5, 3.3)."""
    attempt = Attempt(label, status=code)
    text = f"{code} {_text(reply)}"
    if 200 <= code < 300:
        return DeliveryResult(Outcome.ACCEPTED, detail=text, provider_id=mid, history=(attempt,))
    if 400 <= code < 500:  # the server did not take responsibility: once more, later
        return DeliveryResult(
            Outcome.NOT_ACCEPTED, detail=f"{text} after the content: not taken", history=(attempt,)
        )
    if 500 <= code < 600:
        return DeliveryResult(
            Outcome.REJECTED, detail=f"{text} after the content: refused", history=(attempt,)
        )
    return DeliveryResult(  # not an SMTP reply to the content: it may still deliver it
        Outcome.UNCERTAIN,
        detail=f"{text} after the content: fate unknown, not resent",
        provider_id=mid,
        history=(attempt,),
    )
