"""The e-mail sender against a real SMTP server (aiosmtpd on 127.0.0.1).

The server records every transaction it sees, so "sent once" and "never twice" are counted
where the mail arrives, not where it was sent.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import Any

import pytest

from orderwatch_dagster.defs.actions.senders.smtp import SmtpEmailSender, message_id
from orderwatch_dagster.lib.outbound import FollowUp, Outbound, Outcome

IN_CI = os.environ.get("CI", "").lower() == "true"

try:
    from smtp_server import (
        RecordingHandler,
        SMTPServer,
        free_port,
        password_authenticator,
        tls_files,
    )
except ImportError as error:  # aiosmtpd is a dev dependency
    if IN_CI:
        raise
    pytest.skip(f"aiosmtpd is not installed: {error}", allow_module_level=True)

MESSAGE = Outbound(
    "order-1001:ship_late:1:delay_email",
    "email",
    "Ann Lee <ann@example.com>",
    "Your order #1001 is delayed.\n.\nA line with a single dot stays a line.",
    subject="Order #1001: new delivery estimate",
    body_html="<p>Your order <b>#1001</b> is delayed.</p>",
    metadata={"list_unsubscribe": "<mailto:unsubscribe@shop.example.com>"},
)


@pytest.fixture
def handler() -> RecordingHandler:
    return RecordingHandler()


@pytest.fixture
def server(handler: RecordingHandler) -> Iterator[SMTPServer]:
    with SMTPServer(handler) as running:
        yield running


def sender(port: int, **kw: Any) -> SmtpEmailSender:
    config = {
        "enabled": True,
        "host": "127.0.0.1",
        "port": port,
        "security": "none",
        "from_address": "orders@shop.example.com",
        "reply_to": "support@shop.example.com",
        "timeout_s": 2.0,
        **kw,
    }
    return SmtpEmailSender(**config)


def test_the_email_arrives_with_the_right_headers(
    server: SMTPServer, handler: RecordingHandler
) -> None:
    result = sender(server.port).send(MESSAGE)
    assert result.outcome is Outcome.ACCEPTED, result
    assert "queued as TEST1" in result.detail
    (received,) = handler.messages
    assert received.mail_from == "orders@shop.example.com"
    assert received.rcpt_tos == ["ann@example.com"]
    mail = received.message
    assert mail["From"] == "orders@shop.example.com"
    assert mail["To"] == "Ann Lee <ann@example.com>"
    assert mail["Subject"] == "Order #1001: new delivery estimate"
    assert mail["Reply-To"] == "support@shop.example.com"
    assert mail["Auto-Submitted"] == "auto-generated"
    assert mail["List-Unsubscribe"] == "<mailto:unsubscribe@shop.example.com>"
    assert mail["Date"] is not None and mail["Date"].datetime.tzinfo is not None
    assert mail["Message-ID"] == result.provider_id
    assert mail["Message-ID"] == message_id(MESSAGE.idempotency_key, "shop.example.com")
    assert mail.get_content_type() == "multipart/alternative"
    plain = mail.get_body(("plain",)).get_content()
    assert plain.splitlines()[1] == "."  # dot-stuffing undone by the server: content intact
    assert mail.get_body(("html",)).get_content().strip() == MESSAGE.body_html


def test_the_message_id_follows_the_idempotency_key() -> None:
    first = message_id("order-1:episode-1:delay", "shop.example.com")
    assert first == message_id("order-1:episode-1:delay", "shop.example.com")
    assert first != message_id("order-1:episode-2:delay", "shop.example.com")
    assert first.startswith("<") and first.endswith("@shop.example.com>")


def test_a_4xx_before_data_is_not_accepted_and_goes_once_later(
    server: SMTPServer, handler: RecordingHandler
) -> None:
    handler.rcpt_reply = "450 4.2.0 Greylisted, try again later"
    first = sender(server.port).send(MESSAGE)
    assert first.outcome is Outcome.NOT_ACCEPTED
    assert first.history[0].status == 450
    assert handler.messages == []  # nothing arrived
    handler.rcpt_reply = "250 OK"  # the job's next run
    assert sender(server.port).send(MESSAGE).outcome is Outcome.ACCEPTED
    assert len(handler.messages) == 1


def test_a_temporary_mail_from_refusal_is_not_accepted(
    server: SMTPServer, handler: RecordingHandler
) -> None:
    handler.mail_reply = "421 4.7.0 Too many connections"
    result = sender(server.port).send(MESSAGE)
    assert result.outcome is Outcome.NOT_ACCEPTED and handler.messages == []


def test_an_unknown_recipient_is_rejected_for_good(
    server: SMTPServer, handler: RecordingHandler
) -> None:
    handler.rcpt_reply = "550 5.1.1 No such user"
    result = sender(server.port).send(MESSAGE)
    assert result.outcome is Outcome.REJECTED
    assert result.follow_up is FollowUp.INVALID_RECIPIENT
    assert handler.messages == []


def test_connection_refused_is_not_accepted() -> None:
    result = sender(free_port()).send(MESSAGE)
    assert result.outcome is Outcome.NOT_ACCEPTED
    assert "Connection refused" in (result.history[0].error or "")


def test_a_timeout_after_data_is_uncertain_and_never_resent(
    server: SMTPServer, handler: RecordingHandler
) -> None:
    """The server has the message but its 250 never comes: fate unknown, one transaction."""
    handler.stall_after_data_s = 1.5
    result = sender(server.port, timeout_s=0.4).send(MESSAGE)
    assert result.outcome is Outcome.UNCERTAIN
    assert "DATA" in result.detail and "not resent" in result.detail
    assert result.provider_id == message_id(MESSAGE.idempotency_key, "shop.example.com")
    assert handler.transactions == 1 and len(handler.messages) == 1


def test_a_failure_reply_after_the_content_is_uncertain(
    server: SMTPServer, handler: RecordingHandler
) -> None:
    handler.data_reply = "451 4.3.0 Error in processing"
    result = sender(server.port).send(MESSAGE)
    assert result.outcome is Outcome.UNCERTAIN
    assert result.history[0].status == 451
    assert handler.transactions == 1


@pytest.fixture(scope="module")
def tls(tmp_path_factory: pytest.TempPathFactory) -> Any:
    files = tls_files(tmp_path_factory.mktemp("smtp-tls"))
    if files is None:
        message = "the openssl command is needed to make a test certificate"
        if IN_CI:
            pytest.fail(message + " (CI=true: the TLS tests must run)")
        pytest.skip(message)
    return files


def test_starttls_and_auth(tls: Any) -> None:
    """Certificate checked against the given CA, STARTTLS, then AUTH (aiosmtpd refuses AUTH
    in the clear)."""
    handler = RecordingHandler()
    with SMTPServer(
        handler,
        tls_context=tls.server_context(),
        require_starttls=True,
        authenticator=password_authenticator("orders", "s3cret"),
        auth_required=True,
    ) as server:
        ok = sender(server.port, security="starttls", ca_file=str(tls.cert),
                    username="orders", password="s3cret").send(MESSAGE)  # fmt: skip
        plain = sender(server.port, security="none").send(MESSAGE)
        untrusted = sender(server.port, security="starttls", username="orders",
                           password="s3cret").send(MESSAGE)  # fmt: skip
    assert ok.outcome is Outcome.ACCEPTED, ok
    assert untrusted.outcome is Outcome.NOT_ACCEPTED  # self-signed: verified, refused
    assert "CERTIFICATE_VERIFY_FAILED" in (untrusted.history[0].error or "")
    assert handler.sessions[0] == (True, True)  # TLS and authenticated
    assert plain.outcome is Outcome.NOT_ACCEPTED  # the server insists on STARTTLS
    assert len(handler.messages) == 1


def test_implicit_tls(tls: Any) -> None:
    handler = RecordingHandler()
    with SMTPServer(handler, ssl_context=tls.server_context()) as server:
        result = sender(server.port, security="ssl", ca_file=str(tls.cert)).send(MESSAGE)
        plain = sender(server.port, security="none", timeout_s=0.5).send(MESSAGE)
    assert result.outcome is Outcome.ACCEPTED, result
    assert plain.outcome is Outcome.NOT_ACCEPTED  # the listener speaks only TLS
    assert len(handler.messages) == 1


def test_a_header_injection_is_refused_before_any_connection() -> None:
    evil = Outbound("k", "email", "ann@example.com", "x", subject="Hi\r\nBcc: all@example.com")
    result = sender(free_port()).send(evil)
    assert result.outcome is Outcome.REJECTED and result.attempts == 0
