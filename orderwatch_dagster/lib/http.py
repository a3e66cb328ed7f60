"""The HTTP client every vendor connector shares: requests + urllib3 Retry, nothing home-made.

Retries (connect, read timeouts, 429/5xx) and `Retry-After` are urllib3's; this module only
turns the final outcome into a clear `ConnectorError` / `ConnectorAuthError`. Credentials travel
in headers or basic auth and never appear in a message or a log line.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping
from typing import Any

import requests
import urllib3
from requests.adapters import HTTPAdapter
from urllib3.util.retry import Retry

log = logging.getLogger(__name__)

RETRY_STATUSES: tuple[int, ...] = (429, 500, 502, 503, 504)
USER_AGENT = "orderwatch/0.1 (+requests)"


class ConnectorError(RuntimeError):
    """A page could not be fetched: retries exhausted, a non-retryable status, or a bad body."""


class ConnectorAuthError(ConnectorError):
    """HTTP 401/403: the API key is missing, wrong or lacks a scope. Never retried."""


class TruncatedBody(ConnectorError):
    """The body stopped short of its Content-Length (or its chunking broke) on every try.

    Carries the bytes that did arrive, so the caller can quarantine the page whole.
    """

    def __init__(self, message: str, url: str, partial: bytes) -> None:
        super().__init__(message)
        self.url = url
        self.partial = partial


def build_session(max_retries: int, backoff_factor: float) -> requests.Session:
    """A Session whose adapter retries GETs on connect/read errors and 429/500/502/503/504."""
    retry = Retry(
        total=max_retries,
        connect=max_retries,
        read=max_retries,  # read timeouts count here (GET is idempotent)
        status=max_retries,
        other=0,
        backoff_factor=backoff_factor,
        status_forcelist=RETRY_STATUSES,
        allowed_methods=frozenset({"GET"}),
        respect_retry_after_header=True,  # 429/503 Retry-After wins over the backoff
        raise_on_status=False,  # hand back the last response so the error can name its status
    )
    session = requests.Session()
    adapter = HTTPAdapter(max_retries=retry)
    session.mount("https://", adapter)
    session.mount("http://", adapter)
    session.headers["User-Agent"] = USER_AGENT
    session.headers["Accept"] = "application/json"
    return session


def get(
    session: requests.Session,
    url: str,
    *,
    feed: str,
    env_var: str,
    timeout: float,
    params: Mapping[str, Any] | None = None,
    headers: Mapping[str, str] | None = None,
    auth: tuple[str, str] | None = None,
    max_retries: int = 0,
    backoff_factor: float = 0.0,
) -> requests.Response:
    """GET one page; a 2xx response with its whole body, or a ConnectorError naming the URL and
    the last status.

    urllib3's Retry covers the request and the response head; the body is read afterwards,
    outside it. A body cut short in transit (fewer bytes than Content-Length, a broken chunk, a
    reset connection) is read again here, up to `max_retries` more times (GET is idempotent);
    after that `TruncatedBody` carries what arrived.
    """
    partial, where = b"", url
    for attempt in range(max_retries + 1):
        if attempt:
            time.sleep(backoff_factor * 2 ** (attempt - 1))
        response = _request(session, url, feed, env_var, timeout, params, headers, auth)
        chunks: list[bytes] = []
        try:
            # read1 hands over what arrived before a failure (iter_content would drop it)
            while chunk := response.raw.read1(65536, decode_content=True):
                chunks.append(chunk)
        except (urllib3.exceptions.HTTPError, OSError) as exc:
            partial, where = b"".join(chunks), response.url
            log.info("%s: body of %s cut short (try %d): %s", feed, where, attempt + 1, exc)
            response.close()
            continue
        response._content = b"".join(chunks)  # the whole body, where requests keeps it
        return response
    raise TruncatedBody(
        f"{feed}: GET {where}: the body was cut short on {max_retries + 1} tries "
        f"({len(partial)} bytes arrived the last time)",
        where,
        partial,
    )


def _request(
    session: requests.Session,
    url: str,
    feed: str,
    env_var: str,
    timeout: float,
    params: Mapping[str, Any] | None,
    headers: Mapping[str, str] | None,
    auth: tuple[str, str] | None,
) -> requests.Response:
    """The response head (body not read yet): a 2xx, or a ConnectorError."""
    log.info("%s: GET %s", feed, url)
    try:
        response = session.get(
            url, params=params, headers=headers, auth=auth, timeout=timeout, stream=True
        )
    except requests.RequestException as exc:
        # Exhausted connect/read retries surface here (MaxRetryError wrapped by requests).
        raise ConnectorError(
            f"{feed}: GET {url} failed after retries: {type(exc).__name__}: {_reason(exc)}"
        ) from None
    if response.status_code in (401, 403):
        response.close()
        raise ConnectorAuthError(
            f"{feed}: HTTP {response.status_code} from {response.url}: "
            f"check the API key (env {env_var})"
        )
    if not response.ok:
        retried = response.status_code in RETRY_STATUSES
        raise ConnectorError(
            f"{feed}: HTTP {response.status_code} from {response.url}"
            + (" after retries" if retried else "")
            + f": {response.text[:200]!r}"
        )
    return response


def _reason(exc: requests.RequestException) -> str:
    # requests wraps urllib3's MaxRetryError; its `reason` is the last underlying error.
    inner = exc.args[0] if exc.args else exc
    reason = getattr(inner, "reason", None)
    return str(reason if reason is not None else inner)


def json_body(response: requests.Response, feed: str) -> Any:
    """The decoded JSON of a page, for pagination only (the parser re-reads the raw bytes)."""
    try:
        return response.json()
    except ValueError:
        raise ConnectorError(
            f"{feed}: {response.url} answered {response.status_code} with a body that is not JSON"
        ) from None
