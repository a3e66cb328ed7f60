"""What every sender shares: off until enabled, configured from the environment, one `send`.

`send` decides in this order, so a setting can never cost a message: a channel the sender does
not carry is refused; an off sender answers `DRY_RUN`; an enabled sender whose configuration is
incomplete or invalid answers `NOT_ACCEPTED` (follow-up `fix_config`) naming the variables, and
the message stays pending. Only then is the request built: a message that cannot become a
valid request is `REJECTED` (`Refused`); any other exception there is a bug and propagates.
`from_env` reads the settings when it is called; secrets are bound as `dg.EnvVar`, so Dagster
resolves them at launch and hides them in the UI (README "Outbound channels").
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, ClassVar

import dagster as dg
from pydantic import Field
from urllib3.exceptions import LocationParseError
from urllib3.util import parse_url

from orderwatch_dagster.defs.actions.senders.transport import Exchange, Request, RetryPolicy, send
from orderwatch_dagster.lib.outbound import DeliveryResult, FollowUp, Outbound, Outcome


@dataclass(frozen=True)
class EnvSetting:
    var: str
    field: str
    default: str  # as the README shows it
    description: str
    secret: bool = False  # bound as dg.EnvVar(var), never read here


class Refused(Exception):
    """The message cannot be turned into a valid request (missing field, bad value)."""


class SenderResource(dg.ConfigurableResource):
    enabled: bool = Field(default=False, description="Off (dry-run) unless true")

    channels: ClassVar[tuple[str, ...]] = ()
    env: ClassVar[tuple[EnvSetting, ...]] = ()
    enable_var: ClassVar[str] = ""
    required: ClassVar[tuple[str, ...]] = ()  # fields an enabled sender cannot work without

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> SenderResource:
        """The sender as the environment configures it: plain settings now, secrets at launch.

        A secret is bound only when its variable is set, so an unset optional secret (an SMTP
        server without AUTH) stays empty; a required one missing makes `send` say so.
        """
        environ = os.environ if environ is None else environ
        config: dict[str, Any] = {}
        if environ.get(cls.enable_var, "").strip():
            config["enabled"] = environ[cls.enable_var].strip()
        for setting in cls.env:
            value = environ.get(setting.var, "").strip()
            if value:
                config[setting.field] = dg.EnvVar(setting.var) if setting.secret else value
        return cls(**config)

    def send(self, message: Outbound) -> DeliveryResult:
        """Deliver one message once; never raises for a provider's answer (lib/outbound.py)."""
        name = type(self).__name__
        if message.channel not in self.channels:
            return _refused(f"{name} sends {', '.join(self.channels)}, not {message.channel!r}")
        if not self.enabled:
            return DeliveryResult(
                Outcome.DRY_RUN,
                detail=f"{name} is off (set {self.enable_var}=true): nothing was sent",
                attempts=0,
            )
        problems = self._config_problems()
        if problems:
            # Not the message's fault: it stays pending until the setting is fixed.
            return DeliveryResult(
                Outcome.NOT_ACCEPTED,
                detail=f"{name} is on but not configured: {'; '.join(problems)}",
                attempts=0,
                follow_up=FollowUp.FIX_CONFIG,
            )
        try:
            prepared = self._prepare(message)
        except Refused as refusal:
            return _refused(str(refusal))
        if isinstance(prepared, DeliveryResult):
            return prepared  # decided without the provider (e.g. nothing the API allows)
        return self._deliver(message, prepared)

    # Subclasses: build the request (raise Refused on bad input), then deliver it.
    def _prepare(self, message: Outbound) -> Any:
        raise NotImplementedError

    def _deliver(self, message: Outbound, prepared: Any) -> DeliveryResult:
        raise NotImplementedError

    def _var(self, field: str) -> str:
        """The environment variable behind a field (the field name when it has none)."""
        return next((s.var for s in self.env if s.field == field), field)

    def _config_problems(self) -> list[str]:
        """What an enabled sender still needs, by variable name (never a value)."""
        return [f"set {self._var(name)}" for name in self.required if not getattr(self, name)]


class HttpSenderResource(SenderResource):
    """A sender over HTTP: urllib3 retries as `transport.RetryPolicy` describes."""

    base_url: str = ""
    connect_retries: int = Field(default=2, description="Retries when no connection opened")
    throttle_retries: int = Field(
        default=0, description="Retries of 429 / 503+Retry-After within one send (0: next run)"
    )
    unknown_retries: int = Field(
        default=2, description="Retries of timeouts / 5xx, only for idempotent requests"
    )
    backoff_factor: float = 0.5
    retry_after_max_s: int = 30
    connect_timeout_s: float = 10.0
    read_timeout_s: float = 30.0

    required: ClassVar[tuple[str, ...]] = ("base_url",)

    def _config_problems(self) -> list[str]:
        problems = super()._config_problems()
        if self.base_url and not is_http_url(self.base_url):
            problems.append(f"{self._var('base_url')} is not an http(s) URL")
        return problems

    def _policy(self) -> RetryPolicy:
        return RetryPolicy(
            connect=self.connect_retries,
            throttled=self.throttle_retries,
            unknown=self.unknown_retries,
            backoff_factor=self.backoff_factor,
            retry_after_max_s=self.retry_after_max_s,
            connect_timeout_s=self.connect_timeout_s,
            read_timeout_s=self.read_timeout_s,
        )

    def _url(self, path: str) -> str:
        return f"{self.base_url.rstrip('/')}/{path.lstrip('/')}"

    def _label(self, method: str, path: str) -> str:
        """`METHOD host/base-path/path` for the ledger (`base_url` is checked, never secret)."""
        url = parse_url(self.base_url)
        return f"{method} {url.netloc}{(url.path or '').rstrip('/')}/{path.lstrip('/')}"

    def _exchange(self, request: Request) -> Exchange:
        return send(request, self._policy())


def is_http_url(value: str) -> bool:
    """An absolute http(s) URL with a host and a valid port (urllib3 can send to it)."""
    try:
        url = parse_url(value)
    except LocationParseError:
        return False
    return url.scheme in ("http", "https") and bool(url.host)


def _refused(why: str) -> DeliveryResult:
    # The message cannot become a valid request; nothing left this process.
    return DeliveryResult(Outcome.REJECTED, detail=f"bad request: {why}", attempts=0)


def require(value: Any, what: str) -> Any:
    if value in (None, "", [], {}):
        raise Refused(f"missing {what}")
    return value


def as_int(value: Any, what: str) -> int:
    """An id from `Outbound.metadata` as an int, or a refusal naming the field."""
    if isinstance(value, bool):
        raise Refused(f"{what} must be an integer id, not {value!r}")
    try:
        return int(value)
    except (TypeError, ValueError):
        raise Refused(f"{what} must be an integer id, not {value!r}") from None


def string_list(value: Any, what: str) -> list[str]:
    if value is None:
        return []
    if isinstance(value, str) or not isinstance(value, list | tuple):
        raise Refused(f"{what} must be a list of strings")
    if not all(isinstance(v, str) for v in value):
        raise Refused(f"{what} must be a list of strings")
    return list(value)
