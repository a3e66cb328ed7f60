"""The e-mail sender against a real SMTP server (aiosmtpd on 127.0.0.1).

The server records every transaction it sees, so "sent once" and "never twice" are counted
where the mail arrives, not where it was sent.
"""

from __future__ import annotations

import dataclasses
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
    assert handler.quits == 1  # the session ends with QUIT once the outcome is known
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


def test_the_unsubscribe_headers_carry_the_recipients_token(
    server: SMTPServer, handler: RecordingHandler
) -> None:
    """RFC 2369 List-Unsubscribe with a mailto and an https link, RFC 8058 one-click POST;
    both carry the random token `orderwatch opt-out --key` records (lib/opt_outs.py), not the
    address nor anything computed from it."""
    from urllib.parse import parse_qs, unquote, urlsplit

    key = "Zq3v_8kLm0pR-tY7wXa2bC4dE6fG9hJ1"  # lib/ledger.py unsubscribe_token's shape
    plain = dataclasses.replace(MESSAGE, metadata={"unsubscribe_token": key})
    mailer = sender(
        server.port,
        unsubscribe_mailto="unsubscribe@shop.example.com",
        unsubscribe_url="https://shop.example.com/unsubscribe",
    )
    assert mailer.send(plain).outcome is Outcome.ACCEPTED
    (received,) = handler.messages
    mail = received.message
    links = [link.strip().strip("<>") for link in mail["List-Unsubscribe"].split(",")]
    mailto, https = links
    assert mailto.startswith("mailto:unsubscribe@shop.example.com?subject=")
    assert unquote(mailto.split("subject=", 1)[1]) == f"unsubscribe {key}"
    query = parse_qs(urlsplit(https).query)
    assert https.startswith("https://shop.example.com/unsubscribe?")
    assert query == {"channel": ["email"], "key": [key]}
    assert mail["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    assert "ann@" not in mail["List-Unsubscribe"]  # the address itself is in no link
    # without an https link no one-click header (RFC 8058 needs one)
    handler.messages.clear()
    mailto_only = sender(server.port, unsubscribe_mailto="unsubscribe@shop.example.com")
    assert mailto_only.send(plain).outcome is Outcome.ACCEPTED
    assert handler.messages[0].message["List-Unsubscribe-Post"] is None
    assert "http" not in handler.messages[0].message["List-Unsubscribe"]
    # an http (not https) endpoint is a setting to fix, never a message sent without it
    bad = sender(server.port, unsubscribe_url="http://shop.example.com/u").send(plain)
    assert bad.outcome is Outcome.NOT_ACCEPTED and "ORDERWATCH_SMTP_UNSUBSCRIBE_URL" in bad.detail
    # no issued token (or a malformed one): no configured link at all, never a derived key
    handler.messages.clear()
    for metadata in ({}, {"unsubscribe_token": "ann@example.com"}):
        untokened = dataclasses.replace(MESSAGE, metadata=metadata)
        assert mailer.send(untokened).outcome is Outcome.ACCEPTED
    assert all(m.message["List-Unsubscribe"] is None for m in handler.messages)


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


@pytest.mark.parametrize(
    ("reply", "outcome", "follow_up"),
    [
        # 5.1.x: the address is bad; the job stops e-mailing it
        ("550 5.1.1 No such user", Outcome.REJECTED, FollowUp.INVALID_RECIPIENT),
        ("553 5.1.3 Bad recipient address syntax", Outcome.REJECTED, FollowUp.INVALID_RECIPIENT),
        # 5.7.x: relaying / policy / auth, our configuration; the message stays pending
        ("550 5.7.1 Relaying denied", Outcome.NOT_ACCEPTED, FollowUp.FIX_CONFIG),
        # a permanent refusal that does not say why: this message, not the address
        ("550 Mailbox unavailable", Outcome.REJECTED, None),
        ("552 5.2.2 Mailbox full", Outcome.REJECTED, None),
    ],
)
def test_a_refused_recipient_is_classified_by_its_enhanced_code(
    server: SMTPServer,
    handler: RecordingHandler,
    reply: str,
    outcome: Outcome,
    follow_up: FollowUp | None,
) -> None:
    handler.rcpt_reply = reply
    result = sender(server.port).send(MESSAGE)
    assert (result.outcome, result.follow_up) == (outcome, follow_up)
    assert result.history[0].status == int(reply[:3])
    assert handler.messages == []


def test_a_permanent_mail_from_refusal_is_our_configuration(
    server: SMTPServer, handler: RecordingHandler
) -> None:
    handler.mail_reply = "553 5.7.1 Sender address rejected: not owned by user"
    result = sender(server.port).send(MESSAGE)
    assert result.outcome is Outcome.NOT_ACCEPTED and result.follow_up is FollowUp.FIX_CONFIG
    assert handler.messages == []


def test_a_251_forwarding_recipient_is_accepted(
    server: SMTPServer, handler: RecordingHandler
) -> None:
    handler.rcpt_reply = "251 2.1.5 User not local; will forward"
    result = sender(server.port).send(MESSAGE)
    assert result.outcome is Outcome.ACCEPTED, result
    assert len(handler.messages) == 1


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
    assert "after the message content" in result.detail and "not resent" in result.detail
    assert result.provider_id == message_id(MESSAGE.idempotency_key, "shop.example.com")
    assert handler.transactions == 1 and len(handler.messages) == 1
    assert handler.quits == 0  # a broken session is dropped, not QUIT (no second wait)


def test_a_timeout_before_the_354_is_not_accepted(
    server: SMTPServer, handler: RecordingHandler
) -> None:
    """DATA was sent but its 354 never came: the content never left, nothing can arrive."""
    handler.stall_before_354_s = 1.5
    result = sender(server.port, timeout_s=0.4).send(MESSAGE)
    assert result.outcome is Outcome.NOT_ACCEPTED, result
    assert "before the message content" in result.detail
    assert handler.transactions == 1 and handler.messages == []


@pytest.mark.parametrize(
    ("reply", "outcome"),
    [
        # RFC 5321: a 4yz/5yz to the final dot means the server did not take responsibility
        ("451 4.3.0 Error in processing", Outcome.NOT_ACCEPTED),
        ("554 5.6.0 Message content rejected", Outcome.REJECTED),
    ],
)
def test_a_failure_reply_to_the_content_is_not_taken(
    server: SMTPServer, handler: RecordingHandler, reply: str, outcome: Outcome
) -> None:
    handler.data_reply = reply
    result = sender(server.port).send(MESSAGE)
    assert result.outcome is outcome and result.follow_up is None
    assert result.history[0].status == int(reply[:3])
    assert handler.transactions == 1


def test_a_temporary_failure_after_the_content_goes_once_later(
    server: SMTPServer, handler: RecordingHandler
) -> None:
    handler.data_reply = "452 4.3.1 Insufficient system storage"
    assert sender(server.port).send(MESSAGE).outcome is Outcome.NOT_ACCEPTED
    handler.data_reply = "250 2.0.0 Ok: queued as TEST2"  # the job's next run
    assert sender(server.port).send(MESSAGE).outcome is Outcome.ACCEPTED
    assert handler.transactions == 2


JOSE = Outbound(
    "order-1005:ship_late:1:delay_email",
    "email",
    "José Núñez <josé@exämple.com>",
    "Bonjour José, votre commande part demain.",
    subject="Commande n° 1005",
)


def test_a_non_ascii_address_goes_with_smtputf8_when_the_server_offers_it(
    server: SMTPServer, handler: RecordingHandler
) -> None:
    result = sender(server.port).send(JOSE)
    assert result.outcome is Outcome.ACCEPTED, result
    (received,) = handler.messages
    assert received.rcpt_tos == ["josé@xn--exmple-cua.com"]  # the domain as its A-label
    assert "SMTPUTF8" in received.mail_options and "BODY=8BITMIME" in received.mail_options
    (to,) = received.message["To"].addresses
    assert (to.display_name, to.addr_spec) == ("José Núñez", "josé@xn--exmple-cua.com")
    assert received.message["Subject"] == "Commande n° 1005"


def test_a_non_ascii_local_part_without_smtputf8_is_refused_without_raising() -> None:
    handler = RecordingHandler()
    with SMTPServer(handler, enable_SMTPUTF8=False) as server:
        result = sender(server.port).send(JOSE)
    assert result.outcome is Outcome.REJECTED, result
    assert result.follow_up is None  # this server's limit, not a bad address
    assert "SMTPUTF8" in result.detail
    assert handler.transactions == 0 and handler.quits == 1


def test_a_non_ascii_from_address_without_smtputf8_is_our_configuration() -> None:
    handler = RecordingHandler()
    with SMTPServer(handler, enable_SMTPUTF8=False) as server:
        result = sender(server.port, from_address="pedidos@tïenda.example").send(MESSAGE)
        accepted = result.outcome  # an IDN domain alone needs nothing
        result = sender(server.port, from_address="pedidós@shop.example.com").send(MESSAGE)
    assert accepted is Outcome.ACCEPTED
    assert result.outcome is Outcome.NOT_ACCEPTED and result.follow_up is FollowUp.FIX_CONFIG
    assert handler.transactions == 1  # only the first one


def test_an_idn_domain_and_an_8bit_body_need_no_extension() -> None:
    """The domain goes as its A-label and the body in a 7-bit transfer encoding, so a server
    without SMTPUTF8 takes it and no BODY=8BITMIME is declared."""
    handler = RecordingHandler()
    message = Outbound(
        "k-idn", "email", "ann@exämple.com", "Olá Ann, a encomenda chegará amanhã.", subject="Olá"
    )
    with SMTPServer(handler, enable_SMTPUTF8=False) as server:
        result = sender(server.port).send(message)
    assert result.outcome is Outcome.ACCEPTED, result
    (received,) = handler.messages
    assert received.rcpt_tos == ["ann@xn--exmple-cua.com"] and received.mail_options == []
    assert received.raw.isascii()  # nothing 8-bit on the wire
    assert received.message["Content-Transfer-Encoding"] in ("quoted-printable", "base64")
    # decoded as it was sent: the text with SMTP's CRLF line ending
    assert received.message.get_content().splitlines() == [message.body_text]
    assert received.message["Subject"] == "Olá"


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
        wrong = sender(server.port, security="starttls", ca_file=str(tls.cert),
                       username="orders", password="guess").send(MESSAGE)  # fmt: skip
    assert ok.outcome is Outcome.ACCEPTED, ok
    assert untrusted.outcome is Outcome.NOT_ACCEPTED  # self-signed: verified, refused
    assert "CERTIFICATE_VERIFY_FAILED" in (untrusted.history[0].error or "")
    for ours in (untrusted, wrong):  # settings to fix, not a customer's problem
        assert ours.follow_up is FollowUp.FIX_CONFIG, ours
    assert wrong.outcome is Outcome.NOT_ACCEPTED and wrong.history[0].status == 535
    assert "guess" not in repr(wrong)
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


@pytest.mark.parametrize(
    ("recipient", "subject"),
    [
        ("ann@example.com", "Hi\r\nBcc: all@example.com"),
        ("ann@example.com\r\nBcc: all@example.com", "Hi"),
        ("not an address", "Hi"),
        ("ann@exa..mple.com", "Hi"),  # an empty IDNA label
    ],
)
def test_a_bad_address_or_header_is_refused_before_any_connection(
    recipient: str, subject: str
) -> None:
    result = sender(free_port()).send(Outbound("k", "email", recipient, "x", subject=subject))
    assert result.outcome is Outcome.REJECTED and result.attempts == 0
    assert result.detail.startswith("bad request")


@pytest.mark.parametrize(
    ("settings", "variables"),
    [
        ({"security": "tls"}, ["ORDERWATCH_SMTP_SECURITY"]),
        ({"username": "orders", "password": "s3cret"}, ["ORDERWATCH_SMTP_USERNAME"]),
        ({"from_address": ""}, ["ORDERWATCH_SMTP_FROM"]),
        ({"from_address": "orders at shop"}, ["ORDERWATCH_SMTP_FROM"]),
        ({"ca_file": "/nonexistent/ca.pem"}, ["ORDERWATCH_SMTP_CA_FILE"]),
    ],
)
def test_a_bad_setting_keeps_the_message_pending_and_names_it(
    server: SMTPServer, handler: RecordingHandler, settings: dict[str, Any], variables: list[str]
) -> None:
    result = sender(server.port, **settings).send(MESSAGE)  # security="none" unless given
    assert result.outcome is Outcome.NOT_ACCEPTED and result.follow_up is FollowUp.FIX_CONFIG
    assert result.attempts == 0 and all(v in result.detail for v in variables)
    assert "s3cret" not in repr(result)
    assert handler.transactions == 0 and handler.sessions == []
