"""A real SMTP server on 127.0.0.1 for the e-mail sender tests (aiosmtpd, no mocking).

    with SMTPServer(RecordingHandler()) as server:
        ...  # point SmtpEmailSender at server.port
        server.handler.messages  # what arrived, parsed

The handler can answer MAIL/RCPT with a chosen reply, answer the message content with a
chosen reply, stall before its 354 to DATA (a client timeout before the content) or after the
content (a client timeout after it), and counts QUITs. `tls_files` makes a self-signed
certificate with the openssl command line for STARTTLS / SMTPS tests.
"""

from __future__ import annotations

import asyncio
import shutil
import socket
import ssl
import subprocess
from dataclasses import dataclass, field
from email import message_from_bytes, message_from_string, policy
from email.message import EmailMessage
from pathlib import Path
from typing import Any

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, AuthResult, LoginPassword


def free_port() -> int:
    """A port nothing listens on (bound, read, released)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class Received:
    mail_from: str
    rcpt_tos: list[str]
    message: EmailMessage
    raw: bytes = b""  # the content as it arrived (dot-stuffing undone)
    mail_options: list[str] = field(default_factory=list)  # SMTPUTF8, BODY=8BITMIME, ...


@dataclass
class RecordingHandler:
    mail_reply: str = "250 OK"
    rcpt_reply: str = "250 OK"
    data_reply: str = "250 2.0.0 Ok: queued as TEST1"
    stall_after_data_s: float = 0.0  # sleep before answering the content (client timeout)
    stall_before_354_s: float = 0.0  # sleep before answering the DATA command itself
    messages: list[Received] = field(default_factory=list)
    transactions: int = 0  # MAIL FROM commands seen
    quits: int = 0  # QUIT commands seen
    sessions: list[tuple[bool, bool]] = field(default_factory=list)  # (TLS, authenticated)

    async def handle_MAIL(
        self, server: Any, session: Any, envelope: Any, address: str, options: list[str]
    ) -> str:
        self.transactions += 1
        self.sessions.append((session.ssl is not None, bool(session.authenticated)))
        if not self.mail_reply.startswith("250"):
            return self.mail_reply
        envelope.mail_from = address
        envelope.mail_options.extend(options)
        return self.mail_reply

    async def handle_RCPT(
        self, server: Any, session: Any, envelope: Any, address: str, options: list[str]
    ) -> str:
        if not self.rcpt_reply.startswith("2"):
            return self.rcpt_reply
        envelope.rcpt_tos.append(address)
        return self.rcpt_reply

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        raw = envelope.original_content
        if "SMTPUTF8" in envelope.mail_options:  # UTF-8 headers (RFC 6532)
            parsed = message_from_string(raw.decode("utf-8"), policy=policy.default)
        else:
            parsed = message_from_bytes(raw, policy=policy.default)
        assert isinstance(parsed, EmailMessage)
        received = Received(
            envelope.mail_from, list(envelope.rcpt_tos), parsed, raw, list(envelope.mail_options)
        )
        self.messages.append(received)
        if self.stall_after_data_s:
            await asyncio.sleep(self.stall_after_data_s)
        return self.data_reply

    async def handle_QUIT(self, server: Any, session: Any, envelope: Any) -> str:
        self.quits += 1
        return "221 Bye"


class _StallingSMTP(SMTP):
    """aiosmtpd's server, able to stall before its 354 to DATA."""

    async def smtp_DATA(self, arg: str) -> None:
        stall = getattr(self.event_handler, "stall_before_354_s", 0.0)
        if stall:
            await asyncio.sleep(stall)
        await super().smtp_DATA(arg)


class _Controller(Controller):
    def factory(self) -> SMTP:
        return _StallingSMTP(self.handler, **self.SMTP_kwargs)


def password_authenticator(login: str, password: str) -> Any:
    def authenticate(server: Any, session: Any, envelope: Any, mechanism: str, data: Any) -> Any:
        ok = (
            isinstance(data, LoginPassword)
            and data.login.decode() == login
            and data.password.decode() == password
        )
        # handled=False: aiosmtpd answers a failure with its own 535 (True means we did)
        return AuthResult(success=ok, handled=False)

    return authenticate


class SMTPServer:
    """aiosmtpd's threaded Controller on 127.0.0.1 and a free port. It offers SMTPUTF8 and
    8BITMIME unless `enable_SMTPUTF8=False` is passed (aiosmtpd's Controller default)."""

    def __init__(self, handler: RecordingHandler, **smtp_kwargs: Any) -> None:
        self.handler = handler
        self.port = free_port()
        self._controller = _Controller(
            handler, hostname="127.0.0.1", port=self.port, ready_timeout=10, **smtp_kwargs
        )

    def __enter__(self) -> SMTPServer:
        self._controller.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._controller.stop()


@dataclass(frozen=True)
class TlsFiles:
    cert: Path
    key: Path

    def server_context(self) -> ssl.SSLContext:
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.load_cert_chain(self.cert, self.key)
        return context


def tls_files(folder: Path) -> TlsFiles | None:
    """A self-signed certificate for 127.0.0.1 / localhost, or None without openssl."""
    openssl = shutil.which("openssl")
    if openssl is None:
        return None
    cert, key = folder / "cert.pem", folder / "key.pem"
    subprocess.run(
        [
            openssl, "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
            "-subj", "/CN=localhost", "-addext", "subjectAltName=IP:127.0.0.1,DNS:localhost",
            "-keyout", str(key), "-out", str(cert),
        ],
        check=True,
        capture_output=True,
    )  # fmt: skip
    return TlsFiles(cert, key)
