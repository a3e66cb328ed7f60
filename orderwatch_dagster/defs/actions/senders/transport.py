"""One HTTP request to a provider, delivered at most once, with every try kept for the ledger.

urllib3's `Retry` does all retrying. Two kinds of retry are safe for any method: a connection
that never opened (nothing was sent) and a throttle answer (429, or 503 with `Retry-After`:
the provider says it did not take the request). A try whose fate is unknown (read timeout,
connection lost after sending, other 5xx) is retried only when the request is idempotent
(an idempotency key the provider honours, or an operation with set semantics); otherwise the
request ends uncertain and goes to the human queue.

The whole sequence of tries decides the outcome: once one try may have reached the provider,
a later "not accepted" proves nothing, so only an accepted last try beats an earlier unknown.

Statuses: 2xx taken; 429 and 503 + `Retry-After` not taken; 401/403 (credentials or
permissions) and 301/307/308 (the endpoint moved; the request must be made elsewhere) not
taken and our configuration's fault (`FollowUp.FIX_CONFIG`); 408 not taken; any other 3xx
unknown (a 302/303 after a POST can mean "done, see other"); 409 and 5xx unknown; any other
4xx refused.

A URL may carry a credential (a Slack webhook path, a Twilio Account SID): `Request.secrets`
lists such parts, which are cut from error texts and, while the request runs, from urllib3's
own log records (its retry warnings and debug lines print the request path).
"""

from __future__ import annotations

import json
import logging
import threading
from collections import Counter
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from enum import Enum
from typing import Any

import urllib3
from urllib3.exceptions import ConnectTimeoutError, HTTPError
from urllib3.util.retry import Retry

from orderwatch_dagster.lib.outbound import Attempt, DeliveryResult, FollowUp, Outcome

USER_AGENT = "orderwatch/0.1 (+urllib3)"
# Retried for idempotent requests only. 409: a concurrent request under the same key may still
# be running (Zendesk answers so while the first create is in progress).
UNKNOWN_FATE_STATUSES = frozenset({409, 500, 502, 503, 504})
MOVED = frozenset({301, 307, 308})  # make the request at another URI: not processed here
NOT_AUTHORIZED = frozenset({401, 403})
REDACTED = "…"
URLLIB3_LOGGERS = (
    "urllib3.connectionpool",
    "urllib3.connection",
    "urllib3.poolmanager",
    "urllib3.response",
    "urllib3.util.retry",
)


class _Redactor(logging.Filter):
    """Cuts the secrets of the requests in flight out of urllib3's log records. A logger's
    filter sees the records created on that logger, so it sits on each urllib3 module's."""

    def __init__(self) -> None:
        super().__init__()
        self._secrets: Counter[str] = Counter()
        self._lock = threading.Lock()

    @contextmanager
    def hiding(self, secrets: tuple[str, ...]) -> Iterator[None]:
        with self._lock:
            self._secrets.update(secrets)
        try:
            yield
        finally:
            with self._lock:
                self._secrets.subtract(secrets)
                self._secrets = +self._secrets  # drop the ones no request uses any more

    def filter(self, record: logging.LogRecord) -> bool:
        with self._lock:
            secrets = list(self._secrets)
        if secrets:
            try:
                text = record.getMessage()
            except (TypeError, ValueError):  # a malformed record: logging reports it itself
                return True
            clean = redact(text, secrets)
            if clean != text:
                record.msg, record.args = clean, None
        return True


def redact(text: str, secrets: tuple[str, ...] | list[str]) -> str:
    # Longest first, so a secret that contains another is cut whole.
    for secret in sorted(filter(None, secrets), key=len, reverse=True):
        text = text.replace(secret, REDACTED)
    return text


_REDACTOR = _Redactor()
for _name in URLLIB3_LOGGERS:
    logging.getLogger(_name).addFilter(_REDACTOR)


@dataclass(frozen=True)
class RetryPolicy:
    connect: int = 2  # connection never opened: safe for every method
    throttled: int = 0  # 429 / 503 + Retry-After inside one send (0: the job sends it later)
    unknown: int = 2  # read timeouts and 5xx, used only for idempotent requests
    backoff_factor: float = 0.5
    retry_after_max_s: int = 30  # longer Retry-After waits are cut to this (urllib3)
    connect_timeout_s: float = 10.0
    read_timeout_s: float = 30.0


class _Fate(Enum):
    TAKEN = "taken"  # 2xx
    NOT_TAKEN = "not_taken"  # provably not processed: no connection, throttled, 408
    MISCONFIGURED = "misconfigured"  # not processed because of our side: 401/403, moved
    REFUSED = "refused"  # a definitive 4xx answer
    UNKNOWN = "unknown"  # may have been processed


@dataclass
class _Try:
    response: urllib3.BaseHTTPResponse | None = None
    error: Exception | None = None
    never_sent: bool = False  # failed before any connection was tried (a malformed URL)


class _LoggingRetry(Retry):
    """urllib3's Retry that also appends every failed try to a list shared by its copies
    (`MaxRetryError` keeps only the last reason; the ledger needs all of them), and honours
    `Retry-After` statuses only when throttle retries are wanted at all."""

    def __init__(
        self,
        *args: Any,
        tries: list[_Try] | None = None,
        retry_after_statuses: frozenset[int] = frozenset(),
        **kwargs: Any,
    ) -> None:
        super().__init__(*args, **kwargs)
        self.tries: list[_Try] = [] if tries is None else tries
        self.RETRY_AFTER_STATUS_CODES = retry_after_statuses

    def new(self, **kw: Any) -> _LoggingRetry:
        retry = super().new(**kw)
        retry.tries = self.tries
        retry.RETRY_AFTER_STATUS_CODES = self.RETRY_AFTER_STATUS_CODES
        return retry

    def increment(  # type: ignore[override]
        self,
        method: str | None = None,
        url: str | None = None,
        response: urllib3.BaseHTTPResponse | None = None,
        error: Exception | None = None,
        _pool: Any = None,
        _stacktrace: Any = None,
    ) -> _LoggingRetry:
        self.tries.append(_Try(response=response, error=error))
        return super().increment(method, url, response, error, _pool, _stacktrace)


def _retry(method: str, policy: RetryPolicy, idempotent: bool, tries: list[_Try]) -> Retry:
    unknown = policy.unknown if idempotent else 0
    throttled = frozenset({429}) if policy.throttled else frozenset()
    return _LoggingRetry(
        total=policy.connect + unknown + policy.throttled + unknown,
        connect=policy.connect,
        read=unknown,  # 0: a read timeout exhausts at once and is recorded, never resent
        status=policy.throttled + unknown,  # one budget for both kinds of status retry
        other=0,
        redirect=0,
        raise_on_redirect=False,
        allowed_methods=frozenset({method}),
        status_forcelist=throttled | (UNKNOWN_FATE_STATUSES if idempotent else frozenset()),
        # 503 is "not taken" only with Retry-After (urllib3 checks these codes for it)
        retry_after_statuses=throttled | {503} if policy.throttled else frozenset(),
        backoff_factor=policy.backoff_factor,
        retry_after_max=policy.retry_after_max_s,
        respect_retry_after_header=True,
        raise_on_status=False,
        tries=tries,
    )


def _fate(attempt: _Try) -> _Fate:
    if attempt.never_sent:
        return _Fate.NOT_TAKEN
    if attempt.response is None:
        # NewConnectionError subclasses ConnectTimeoutError: the request never left.
        return _Fate.NOT_TAKEN if isinstance(attempt.error, ConnectTimeoutError) else _Fate.UNKNOWN
    status = attempt.response.status
    if 200 <= status < 300:
        return _Fate.TAKEN
    if status == 429 or status == 408:
        return _Fate.NOT_TAKEN
    if status == 503 and attempt.response.headers.get("Retry-After"):
        return _Fate.NOT_TAKEN
    if status in NOT_AUTHORIZED or status in MOVED:
        return _Fate.MISCONFIGURED
    if 300 <= status < 400 or status == 409 or status >= 500:
        return _Fate.UNKNOWN
    return _Fate.REFUSED


def _describe(error: Exception, secrets: tuple[str, ...] = ()) -> str:
    # Drop urllib3's "<connection object at 0x..>:" / "HTTPConnectionPool(...):" prefix.
    text = str(error).split(": ", 1)[-1] if ": " in str(error) else str(error)
    return redact(f"{type(error).__name__}: {text}", secrets)[:300]


def _retry_after(response: urllib3.BaseHTTPResponse | None) -> float | None:
    value = response.headers.get("Retry-After") if response is not None else None
    if value is None:
        return None
    try:
        return float(Retry().parse_retry_after(value))
    except HTTPError:
        return None


@dataclass
class Exchange:
    """The tries of one request and what they prove, for the sender to refine."""

    label: str  # "POST api.twilio.com/..." without any secret
    tries: list[_Try]
    idempotent: bool = False
    secrets: tuple[str, ...] = ()  # cut from every error text

    @property
    def response(self) -> urllib3.BaseHTTPResponse | None:
        return self.tries[-1].response if self.tries else None

    @property
    def status(self) -> int | None:
        return self.response.status if self.response is not None else None

    def json(self) -> Any:
        try:
            return json.loads(self.response.data) if self.response is not None else None
        except ValueError:
            return None

    def text(self, limit: int = 300) -> str:
        if self.response is None:
            return ""
        return self.response.data.decode("utf-8", errors="replace")[:limit]

    def history(self) -> tuple[Attempt, ...]:
        return tuple(
            Attempt(self.label, status=t.response.status)
            if t.response is not None
            else Attempt(self.label, error=self._error(t))
            for t in self.tries
        )

    def _error(self, attempt: _Try) -> str:
        return _describe(attempt.error, self.secrets) if attempt.error else "no answer"

    def outcome(self) -> Outcome:
        fates = [_fate(t) for t in self.tries]
        last = fates[-1]
        if last is _Fate.TAKEN:
            return Outcome.ACCEPTED
        if last is _Fate.UNKNOWN or _Fate.UNKNOWN in fates[:-1]:
            return Outcome.UNCERTAIN
        if last in (_Fate.NOT_TAKEN, _Fate.MISCONFIGURED):
            return Outcome.NOT_ACCEPTED
        return Outcome.REJECTED

    def misconfigured(self) -> bool:
        """Not taken because of our credentials, permissions or endpoint (resending is
        useless until a person fixes the configuration)."""
        last = _fate(self.tries[-1])
        return last is _Fate.MISCONFIGURED and self.outcome() is Outcome.NOT_ACCEPTED

    def summary(self) -> str:
        """What the tries show, in words; the sender adds the provider's own reason."""
        outcome, n = self.outcome(), len(self.tries)
        tries = f"{n} tr{'y' if n == 1 else 'ies'}"
        last = self.tries[-1]
        answer = f"HTTP {last.response.status}" if last.response is not None else self._error(last)
        if outcome is Outcome.UNCERTAIN:
            why = (
                "retried as an idempotent request, still unknown"
                if self.idempotent
                else "fate unknown, not resent (no idempotency key)"
            )
            return f"{answer} after {tries}: {why}"
        if self.misconfigured():
            return f"{answer} after {tries}: refused before processing; check the sender's settings"
        if outcome is Outcome.NOT_ACCEPTED:
            return f"{answer} after {tries}: not accepted, nothing was taken"
        return f"{answer} after {tries}"

    def result(
        self,
        *,
        outcome: Outcome | None = None,
        detail: str | None = None,
        provider_id: str | None = None,
        follow_up: FollowUp | None = None,
    ) -> DeliveryResult:
        outcome = outcome or self.outcome()
        if follow_up is None and outcome is Outcome.NOT_ACCEPTED and self.misconfigured():
            follow_up = FollowUp.FIX_CONFIG
        return DeliveryResult(
            outcome=outcome,
            detail=detail if detail is not None else self.summary(),
            provider_id=provider_id,
            retry_after_s=_retry_after(self.response) if outcome is Outcome.NOT_ACCEPTED else None,
            attempts=len(self.tries),
            history=self.history(),
            follow_up=follow_up,
        )


@dataclass(frozen=True)
class Request:
    method: str
    url: str
    label: str  # what the ledger shows for this request (never a secret)
    body: bytes = b""
    headers: Mapping[str, str] = field(default_factory=dict)
    idempotent: bool = False  # an idempotency key the provider honours, or set semantics
    secrets: tuple[str, ...] = ()  # parts of `url` that are credentials (redacted everywhere)

    @classmethod
    def json_body(cls, method: str, url: str, label: str, payload: Any, **kw: Any) -> Request:
        headers = {"Content-Type": "application/json", **kw.pop("headers", {})}
        return cls(method, url, label, json.dumps(payload).encode("utf-8"), headers, **kw)


def send(request: Request, policy: RetryPolicy) -> Exchange:
    """Send `request` under `policy`; never raises for network trouble or an HTTP status."""
    tries: list[_Try] = []
    retry = _retry(request.method, policy, request.idempotent, tries)
    # One pool per request: a reused keep-alive socket the server closed would turn a clean
    # "not sent" into an unknown fate.
    pool = urllib3.PoolManager(
        timeout=urllib3.Timeout(connect=policy.connect_timeout_s, read=policy.read_timeout_s)
    )
    exchange = Exchange(request.label, tries, request.idempotent, request.secrets)
    try:
        with _REDACTOR.hiding(request.secrets):
            response = pool.request(
                request.method,
                request.url,
                body=request.body or None,
                headers={
                    "User-Agent": USER_AGENT,
                    "Accept": "application/json",
                    **request.headers,
                },
                retries=retry,
                redirect=False,
            )
    except HTTPError as error:
        # MaxRetryError after the last try; its reason is already the last entry of `tries`.
        if not tries:
            tries.append(_Try(error=error, never_sent=True))
    else:
        if not tries or tries[-1].response is not response:
            tries.append(_Try(response=response))
    finally:
        pool.clear()
    return exchange
