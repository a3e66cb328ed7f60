"""What every sender shares: off until enabled, configured from the environment, one `send`.

A sender builds its request first (bad input is refused the same way whether it is on or
off), then returns `DRY_RUN` unless `enabled`; only an enabled sender opens a connection.
Settings are read when the definitions load; secrets are bound as `dg.EnvVar`, so Dagster
resolves them at launch and hides them in the UI (README "Outbound channels").
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, ClassVar

import dagster as dg
from pydantic import Field

from orderwatch_dagster.defs.actions.senders.transport import Exchange, Request, RetryPolicy, send
from orderwatch_dagster.lib.outbound import DeliveryResult, Outbound, Outcome


@dataclass(frozen=True)
class EnvSetting:
    var: str
    field: str
    default: str  # as the README shows it
    description: str
    secret: bool = False  # bound as dg.EnvVar(var), never read here


class Refused(Exception):
    """The message cannot be turned into a valid request (missing field, bad channel)."""


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
        try:
            if message.channel not in self.channels:
                raise Refused(
                    f"{type(self).__name__} sends {', '.join(self.channels)}, "
                    f"not {message.channel!r}"
                )
            prepared = self._prepare(message)
        except (Refused, ValueError, TypeError) as refusal:
            # The message cannot become a valid request; nothing left this process.
            return DeliveryResult(Outcome.REJECTED, detail=f"bad request: {refusal}", attempts=0)
        if isinstance(prepared, DeliveryResult):
            return prepared  # decided without the provider (e.g. nothing the API allows)
        if not self.enabled:
            return DeliveryResult(
                Outcome.DRY_RUN,
                detail=f"{type(self).__name__} is off (set {self.enable_var}=true): "
                f"{self._preview(prepared)}",
                attempts=0,
            )
        missing = self._missing_config()
        if missing:
            # A configuration gap, not the message's fault: it stays pending until fixed.
            return DeliveryResult(
                Outcome.NOT_ACCEPTED,
                detail=f"{type(self).__name__} is on but not configured: set {', '.join(missing)}",
                attempts=0,
            )
        return self._deliver(message, prepared)

    # Subclasses: build the request (raise Refused on bad input), then deliver it.
    def _prepare(self, message: Outbound) -> Any:
        raise NotImplementedError

    def _deliver(self, message: Outbound, prepared: Any) -> DeliveryResult:
        raise NotImplementedError

    def _missing_config(self) -> list[str]:
        """Variables an enabled sender still needs (names only, never values)."""
        var_of = {setting.field: setting.var for setting in self.env}
        return [var_of.get(name, name) for name in self.required if not getattr(self, name)]

    def _preview(self, prepared: Any) -> str:
        return prepared.label if isinstance(prepared, Request) else type(prepared).__name__


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
        if not self.base_url:
            raise Refused(f"{type(self).__name__}: no base_url configured")
        return f"{self.base_url.rstrip('/')}/{path.lstrip('/')}"

    def _exchange(self, request: Request) -> Exchange:
        return send(request, self._policy())


def require(value: Any, what: str) -> Any:
    if value in (None, "", [], {}):
        raise Refused(f"missing {what}")
    return value


def string_list(value: Any, what: str) -> list[str]:
    if value is None:
        return []
    if isinstance(value, str) or not all(isinstance(v, str) for v in value):
        raise Refused(f"{what} must be a list of strings")
    return list(value)
