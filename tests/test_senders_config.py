"""Senders as Dagster resources configured by the environment, the README's table of their
variables, and the pure consent/timing helpers."""

from __future__ import annotations

import base64
import re
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import dagster as dg
import pytest
from http_server import Reply, ScriptedHTTPServer

from orderwatch_dagster.defs.actions.senders import (
    SENDERS,
    TwilioSmsSender,
    by_channel,
    senders_from_env,
)
from orderwatch_dagster.defs.actions.senders.consent import is_opt_out, quiet_until, stops_channel
from orderwatch_dagster.defs.actions.senders.shipbob import reroute_blocker
from orderwatch_dagster.lib.outbound import DeliveryResult, FollowUp, Outbound, Outcome

README = Path(__file__).parent.parent / "README.md"
SID = "AC" + "f" * 32
SMS = Outbound("k-env", "sms", "+14155550123", "Your order is late.")


@pytest.fixture(name="http_server")
def _http_server() -> Iterator[ScriptedHTTPServer]:
    with ScriptedHTTPServer() as server:
        yield server


# One valid message per channel: each would go out from a configured, enabled sender.
ONE_PER_CHANNEL = {
    "email": Outbound("k-mail", "email", "ann@example.com", "Late.", subject="Order #1001"),
    "sms": SMS,
    "ticket_note": Outbound("k-note", "ticket_note", "4016", "Packet"),
    "ticket_reply": Outbound("k-reply", "ticket_reply", "4016", "On its way."),
    "ticket_create": Outbound("k-task", "ticket_create", "#1001", "Packet", subject="Lost"),
    "order_tags": Outbound("k-tag", "order_tags", "450789469", "",
                           metadata={"add_tags": ["orderwatch:delayed"]}),
    "reroute": Outbound("k-rr", "reroute", "987654", "", metadata={
        "action": "change_shipping_service", "shipment_status": "Processing",
        "shipping_service_id": 3}),
    "slack": Outbound("k-esc", "slack", "ops", "VIP order lost", subject="Escalation"),
}  # fmt: skip


def test_with_no_variable_every_sender_is_off_and_answers_dry_run() -> None:
    """The production construction (`senders_from_env`) with an empty environment: every
    channel's message is a dry run, built from nothing and sent nowhere."""
    senders = senders_from_env({})
    assert set(senders) == set(SENDERS)
    channels = by_channel(senders)
    assert set(channels) == set(ONE_PER_CHANNEL)
    for channel, message in ONE_PER_CHANNEL.items():
        sender = channels[channel]
        result = sender.send(message)
        assert result.outcome is Outcome.DRY_RUN, (channel, result)
        assert result.attempts == 0 and result.history == ()
        assert sender.enable_var in result.detail


# What each sender needs once enabled, by variable (nothing else set).
NEEDED = {
    "email_sender": ["ORDERWATCH_SMTP_FROM"],
    "sms_sender": ["TWILIO_ACCOUNT_SID", "TWILIO_AUTH_TOKEN",
                   "ORDERWATCH_TWILIO_FROM or ORDERWATCH_TWILIO_MESSAGING_SERVICE_SID"],
    "ticket_sender": ["ORDERWATCH_ZENDESK_URL", "ZENDESK_API_TOKEN"],
    "order_tag_sender": ["ORDERWATCH_SHOPIFY_URL", "SHOPIFY_ACCESS_TOKEN"],
    "reroute_sender": ["SHIPBOB_ACCESS_TOKEN"],
    "slack_sender": ["ORDERWATCH_SLACK_WEBHOOK_URL"],
}  # fmt: skip


@pytest.mark.parametrize("key", sorted(NEEDED))
def test_an_enabled_sender_without_its_settings_keeps_every_message_pending(key: str) -> None:
    """Enabled and nothing else: `not_accepted` naming every missing variable, for every
    channel the sender carries, before anything is built (nothing is lost to `rejected`)."""
    cls = SENDERS[key]
    sender = senders_from_env({cls.enable_var: "true"})[key]
    assert sender.enabled
    for channel in cls.channels:
        result = sender.send(ONE_PER_CHANNEL[channel])
        assert result.outcome is Outcome.NOT_ACCEPTED, (channel, result)
        assert result.follow_up is FollowUp.FIX_CONFIG and result.attempts == 0
        for variable in NEEDED[key]:
            assert variable in result.detail, (variable, result.detail)


@pytest.mark.parametrize(
    ("key", "env", "variable"),
    [
        ("order_tag_sender", {"ORDERWATCH_SHOPIFY_URL": "myshop.myshopify.com/admin/api/2025-07",
                              "SHOPIFY_ACCESS_TOKEN": "t"}, "ORDERWATCH_SHOPIFY_URL"),
        ("ticket_sender", {"ORDERWATCH_ZENDESK_URL": "https://[shop", "ZENDESK_API_TOKEN": "t"},
         "ORDERWATCH_ZENDESK_URL"),
        ("sms_sender", {"TWILIO_ACCOUNT_SID": SID, "TWILIO_AUTH_TOKEN": "t",
                        "ORDERWATCH_TWILIO_FROM": "555-0123"}, "ORDERWATCH_TWILIO_FROM"),
        ("email_sender", {"ORDERWATCH_SMTP_FROM": "orders@shop.example.com",
                          "ORDERWATCH_SMTP_SECURITY": "tls"}, "ORDERWATCH_SMTP_SECURITY"),
        ("slack_sender", {"ORDERWATCH_SLACK_WEBHOOK_URL":
                          "https://hooks.slack.com:99999/services/T0/B0/XXXXSECRET"},
         "ORDERWATCH_SLACK_WEBHOOK_URL"),
    ],
)  # fmt: skip
def test_an_invalid_setting_keeps_the_message_pending_and_names_it(
    key: str, env: dict[str, str], variable: str
) -> None:
    cls = SENDERS[key]
    sender = senders_from_env({cls.enable_var: "true", **env})[key]
    # Secrets are still dg.EnvVar names here; give them the values Dagster resolves at launch.
    resolved = sender.model_copy(update=dict(_fields(cls, env)))
    result = resolved.send(ONE_PER_CHANNEL[cls.channels[0]])
    assert result.outcome is Outcome.NOT_ACCEPTED and result.follow_up is FollowUp.FIX_CONFIG
    assert variable in result.detail and result.attempts == 0
    assert "XXXXSECRET" not in repr(result)  # a bad webhook URL is still a credential


def _fields(cls: type, env: dict[str, str]) -> list[tuple[str, str]]:
    """(field, value) for the variables set: what Dagster resolves the EnvVars to."""
    return [(s.field, env[s.var]) for s in cls.env if s.var in env]


def test_an_env_configured_sender_resolves_its_secrets_at_launch(
    http_server: ScriptedHTTPServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Plain settings from the environment at load; the token only as dg.EnvVar, resolved
    when the run starts, used by an asset that takes the sender as a typed resource."""
    env = {
        "ORDERWATCH_TWILIO_ENABLED": "true",
        "ORDERWATCH_TWILIO_URL": http_server.url,
        "ORDERWATCH_TWILIO_FROM": "+15005550006",
        "TWILIO_ACCOUNT_SID": SID,
        "TWILIO_AUTH_TOKEN": "token-from-env",
    }
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    sender = senders_from_env()["sms_sender"]
    assert isinstance(sender, TwilioSmsSender) and sender.enabled
    assert isinstance(sender.auth_token, dg.EnvVar)  # the name, resolved only at launch
    http_server.route(f"/2010-04-01/Accounts/{SID}/Messages.json", Reply(201, {"sid": "SM1"}))

    @dg.asset
    def probe(sms_sender: TwilioSmsSender) -> dg.MaterializeResult:
        result = sms_sender.send(SMS)
        return dg.MaterializeResult(metadata={"outcome": result.outcome.value})

    run = dg.materialize([probe], resources={"sms_sender": sender})
    assert run.success
    metadata = run.asset_materializations_for_node("probe")[0].metadata
    assert metadata["outcome"].value == "accepted"
    (request,) = http_server.requests
    credentials = base64.b64decode(request.headers["Authorization"].split()[1]).decode()
    assert credentials == f"{SID}:token-from-env"


def test_an_enabled_sender_without_its_secret_keeps_the_message_pending(
    http_server: ScriptedHTTPServer,
) -> None:
    sender = TwilioSmsSender.from_env(
        {
            "ORDERWATCH_TWILIO_ENABLED": "1",
            "ORDERWATCH_TWILIO_FROM": "+15005550006",
            "ORDERWATCH_TWILIO_URL": http_server.url,
        }
    )
    result = sender.send(SMS)
    assert result.outcome is Outcome.NOT_ACCEPTED and result.attempts == 0
    assert result.follow_up is FollowUp.FIX_CONFIG
    assert "TWILIO_ACCOUNT_SID" in result.detail and "TWILIO_AUTH_TOKEN" in result.detail
    assert "ORDERWATCH_TWILIO_FROM" not in result.detail  # what is set is not asked for
    assert http_server.requests == []


def _readme_rows() -> dict[str, str]:
    text = README.read_text()
    section = text.split("## Outbound channels", 1)[1].split("\n## ", 1)[0]
    rows = re.findall(r"^\| `([A-Z0-9_]+)` \| ([^|]+) \|", section, flags=re.MULTILINE)
    return {var: default.strip().strip("`") for var, default in rows}


def test_the_readme_lists_every_variable_with_its_default() -> None:
    expected: dict[str, str] = {}
    for cls in SENDERS.values():
        expected[cls.enable_var] = "false"
        for setting in cls.env:
            expected[setting.var] = setting.default
            field_default = cls.model_fields[setting.field].default
            if not setting.default.startswith("("):  # a real value: it is the code's default
                assert setting.default == str(field_default), setting.var
    assert _readme_rows() == expected


def test_the_readme_lists_every_action_job_variable() -> None:
    """README "Acting on exceptions": the action job's own switches (resources.py), in order,
    with the code's defaults where it has one."""
    from orderwatch_dagster.defs.actions.resources import ACTION_SETTINGS

    section = README.read_text().split("## Acting on exceptions", 1)[1].split("\n## ", 1)[0]
    rows = re.findall(r"^\| `([A-Z0-9_]+)` \| ([^|]+) \|", section, flags=re.MULTILINE)
    assert [var for var, _ in rows] == [s.name for s in ACTION_SETTINGS]
    for (_, default), setting in zip(rows, ACTION_SETTINGS, strict=True):
        if setting.default is not None:
            assert default.strip().strip("`") == setting.default, setting.name


def test_opt_out_classification() -> None:
    opted_out = DeliveryResult(Outcome.REJECTED, follow_up=FollowUp.OPT_OUT)
    invalid = DeliveryResult(Outcome.REJECTED, follow_up=FollowUp.INVALID_RECIPIENT)
    refused = DeliveryResult(Outcome.REJECTED, detail="Twilio 21602: body required")
    ours = DeliveryResult(Outcome.NOT_ACCEPTED, follow_up=FollowUp.FIX_CONFIG)
    assert is_opt_out(opted_out) and not is_opt_out(invalid) and not is_opt_out(refused)
    assert stops_channel(opted_out) and stops_channel(invalid) and not stops_channel(refused)
    assert not stops_channel(ours)  # our configuration never stops a customer's channel


NY = "America/New_York"


@pytest.mark.parametrize(
    ("at", "zone", "until"),
    [
        # 22:30 EDT: quiet until 08:00 the next morning
        (datetime(2026, 10, 5, 2, 30, tzinfo=UTC), NY, datetime(2026, 10, 5, 8, 0)),
        # 07:59 EDT: one minute left
        (datetime(2026, 10, 5, 11, 59, tzinfo=UTC), NY, datetime(2026, 10, 5, 8, 0)),
        (datetime(2026, 10, 5, 12, 0, tzinfo=UTC), NY, None),  # 08:00 EDT
        (datetime(2026, 10, 6, 0, 59, tzinfo=UTC), NY, None),  # 20:59 EDT
        # the same instant is 18:30 in Los Angeles: not quiet there
        (datetime(2026, 10, 5, 1, 30, tzinfo=UTC), "America/Los_Angeles", None),
        # the night the clocks go forward (2026-03-08): 01:30 EST → 08:00 EDT
        (datetime(2026, 3, 8, 6, 30, tzinfo=UTC), NY, datetime(2026, 3, 8, 8, 0)),
    ],
)
def test_quiet_hours_in_the_customers_time_zone(
    at: datetime, zone: str, until: datetime | None
) -> None:
    result = quiet_until(at, zone)
    if until is None:
        assert result is None
    else:
        assert result is not None
        assert result.replace(tzinfo=None) == until and result.tzinfo == ZoneInfo(zone)
        assert result > at


def test_quiet_hours_need_an_aware_time() -> None:
    with pytest.raises(ValueError):
        quiet_until(datetime(2026, 10, 5, 23, 0), NY)


@pytest.mark.parametrize(
    ("status", "details", "allowed"),
    [
        ("Processing", [], True),
        ("OnHold", ["InvalidAddress"], True),
        ("Exception", [303], True),
        ("Processing", ["Picked"], False),
        ("Processing", [101], False),
        ("Completed", ["InTransit"], False),
        ("Cancelled", [], False),
        ("LabeledCreated", [], False),
        ("Processing", ["Labeled"], False),
        ("None", [], True),
        (None, [], False),
    ],
)
def test_what_shipbob_allows_per_shipment_state(
    status: str | None, details: list[str | int], allowed: bool
) -> None:
    assert (reroute_blocker(status, details) is None) is allowed
