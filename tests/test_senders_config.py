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


def test_with_no_variable_every_sender_is_off() -> None:
    senders = senders_from_env({})
    assert set(senders) == set(SENDERS)
    assert not any(sender.enabled for sender in senders.values())
    channels = by_channel(senders)
    assert set(channels) == {
        "email", "sms", "ticket_note", "ticket_reply", "ticket_create",
        "order_tags", "reroute", "slack",
    }  # fmt: skip


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
        {"ORDERWATCH_TWILIO_ENABLED": "1", "ORDERWATCH_TWILIO_FROM": "+15005550006"}
    )
    result = sender.send(SMS)
    assert result.outcome is Outcome.NOT_ACCEPTED and result.attempts == 0
    assert "TWILIO_ACCOUNT_SID" in result.detail and "TWILIO_AUTH_TOKEN" in result.detail
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


def test_opt_out_classification() -> None:
    opted_out = DeliveryResult(Outcome.REJECTED, follow_up=FollowUp.OPT_OUT)
    invalid = DeliveryResult(Outcome.REJECTED, follow_up=FollowUp.INVALID_RECIPIENT)
    refused = DeliveryResult(Outcome.REJECTED, detail="Twilio 21602: body required")
    assert is_opt_out(opted_out) and not is_opt_out(invalid) and not is_opt_out(refused)
    assert stops_channel(opted_out) and stops_channel(invalid) and not stops_channel(refused)


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
        (None, [], False),
    ],
)
def test_what_shipbob_allows_per_shipment_state(
    status: str | None, details: list[str | int], allowed: bool
) -> None:
    assert (reroute_blocker(status, details) is None) is allowed
