"""The connector resource every feed reads through: two transports, one parser.

`transport="file"` (the embedded default) yields the JSON/NDJSON pages in
`<landing>/<feed>/`; `transport="http"` calls the vendor's list API with its own pagination,
updated-at filter and auth (one subclass per vendor, in `defs/ingest/<source>/resources.py`).
Either way a page is the exact body the vendor sends, so `lib.parsers.parse_page` reads both.
Every HTTP response body is first spooled to `<landing>/<feed>/http/<date>/` (an archive of
what the vendor sent, readable later by the file transport like any file drop); the page
handed on is those bytes, named by its URL.

Each source folder binds its connector in its own `defs/ingest/<source>/definitions.py` with
`connector_definitions`, configured by the variables `FeedConnector.settings()` declares (README
"Configuration"): one resource `<feed>_source` per feed of that source in the registry.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Generator, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, ClassVar

import dagster as dg
import requests

from orderwatch_dagster.defs.configuration import resource_fields
from orderwatch_dagster.lib import http
from orderwatch_dagster.lib.feeds import feed_spec, feeds_of
from orderwatch_dagster.lib.http import ConnectorAuthError, ConnectorError, TruncatedBody
from orderwatch_dagster.lib.settings import EnvSetting, landing_dir

__all__ = [
    "ConnectorAuthError",
    "ConnectorError",
    "FeedConnector",
    "Page",
    "bind_connectors",
    "connector_definitions",
    "connector_key",
    "iso_utc",
]

PAGE_SUFFIXES: tuple[str, ...] = (".json", ".ndjson")

# Given a page's response: the next request (url, params), or None on the last page.
NextRequest = Callable[[requests.Response], tuple[str, dict[str, Any] | None] | None]


@dataclass(frozen=True)
class Page:
    name: str  # ledger name: path relative to the landing folder, or the URL
    source: str  # absolute file path or URL (goes to raw._source)
    body: bytes
    content_hash: str  # sha256 hex of body

    @classmethod
    def of(cls, name: str, source: str, body: bytes) -> Page:
        return cls(name, source, body, hashlib.sha256(body).hexdigest())


TRANSPORTS = ("file", "http")


def connector_key(feed: str) -> str:
    """The resource key of a feed's connector (the raw asset's typed parameter of that name)."""
    return f"{feed}_source"


class FeedConnector(dg.ConfigurableResource):
    """Reads one vendor's feeds from the landing folder (file) or the vendor's API (http).

    Subclasses set `source`, `env_var` and implement `_http_pages`; the key is sent the way the
    vendor expects (`_auth_headers` / `_basic_auth`) and is never logged.
    """

    transport: str = "file"  # "file" | "http"
    landing_dir: str | None = None  # default: settings.landing_dir() at call time
    # may hold {placeholders} filled by `_url_fields` (e.g. Shopify's {shop})
    base_url: str | None = None
    api_key: str | None = None  # bound as dg.EnvVar(env_var) (defs/configuration.py)
    timeout_seconds: float = 30.0
    max_retries: int = 5
    backoff_factor: float = 0.5
    page_size: int = 250
    spool: bool = True  # archive every HTTP body under <landing>/<feed>/http/

    source: ClassVar[str]  # the source system (defs/ingest/<source>/); serves its feeds
    env_var: ClassVar[str] = "API_KEY"  # its key's variable, named in auth errors
    key_description: ClassVar[str] = "API key"
    default_base_url: ClassVar[str]  # the vendor's production API root
    default_page_size: ClassVar[int] = 250

    @classmethod
    def feeds(cls) -> tuple[str, ...]:
        """The registry's feeds of this connector's source system."""
        return tuple(spec.name for spec in feeds_of(cls.source))

    @classmethod
    def settings(cls) -> tuple[EnvSetting, ...]:
        """The variables of this source system, named `ORDERWATCH_<SOURCE>_...` (README
        "Configuration"): transport, base URL, the vendor's own extras, page size, the key."""
        prefix = cls.setting_prefix()
        return (
            EnvSetting(
                prefix + "TRANSPORT",
                "transport",
                "file",
                "`file`: pages in ORDERWATCH_HOME/landing/<feed>/; `http`: the vendor's API",
                choices=TRANSPORTS,
            ),
            EnvSetting(
                prefix + "BASE_URL", "base_url", cls.default_base_url, "API root for `http`"
            ),
            *cls.extra_settings(prefix),
            EnvSetting(
                prefix + "PAGE_SIZE",
                "page_size",
                str(cls.default_page_size),
                "Records per page",
                integer=True,
                minimum=1,
            ),
            EnvSetting(cls.env_var, "api_key", None, cls.key_description, secret=True),
        )

    @classmethod
    def setting_prefix(cls) -> str:
        return f"ORDERWATCH_{cls.source.upper()}_"

    @classmethod
    def extra_settings(cls, prefix: str) -> tuple[EnvSetting, ...]:
        """Vendor-specific variables (e.g. Shopify's shop), between base URL and page size."""
        return ()

    def pages(self, feed: str, updated_since: datetime | None) -> Iterator[Page]:
        """Every page of `feed`; `updated_since` narrows HTTP fetches (ignored for files)."""
        if feed not in self.feeds():
            served = ", ".join(self.feeds())
            raise ValueError(f"{type(self).__name__} serves {served}; not {feed!r}")
        if self.transport == "file" or feed_spec(feed).pages_of is not None:
            # A sideload (lib/feeds.py `pages_of`) reads the pages its parent feed landed: file
            # drops and, over HTTP, the parent's archive (so its raw asset runs after it).
            return self._file_pages(feed)
        if self.transport == "http":
            if not self.base_url:
                raise ConnectorError(f"{feed}: transport 'http' needs base_url")
            pages = self._http_pages(feed, updated_since)
            return self._spooled(feed, pages) if self.spool else pages
        raise ValueError(f"transport must be 'file' or 'http', not {self.transport!r}")

    def cursor_source(self, feed: str) -> str:
        """The source a stored cursor belongs to: `file`, or `http <API root>` (the base URL
        with its placeholders filled). A cursor stored under another one is dropped before a
        run (lib/ingest_guards.py), so switching a feed to HTTP reads the vendor in full once."""
        if self.transport == "http" and self.base_url:
            return f"http {self._base_url().rstrip('/')}"
        return self.transport

    # -- file drop -------------------------------------------------------------------------

    def landing_root(self) -> Path:
        return Path(self.landing_dir) if self.landing_dir else landing_dir()

    def _file_pages(self, feed: str) -> Iterator[Page]:
        root = self.landing_root()
        folder = root / feed_spec(feed).landing_folder
        if not folder.is_dir():
            return
        files = [
            path
            for path in folder.rglob("*")
            if path.is_file()
            and path.suffix.lower() in PAGE_SUFFIXES
            and not path.name.startswith(".")  # writers stage partial files as dotfiles
        ]
        # Sorted by ledger name; order does not matter for correctness (latest version wins).
        for path in sorted(files, key=lambda p: p.relative_to(root).as_posix()):
            yield Page.of(path.relative_to(root).as_posix(), str(path.resolve()), path.read_bytes())

    # -- http --------------------------------------------------------------------------------

    def _spooled(self, feed: str, pages: Iterator[Page]) -> Iterator[Page]:
        """Write each page's exact body to the landing folder before handing it on."""
        folder = self.landing_root() / feed / "http"
        for page in pages:
            stamp = datetime.now(UTC)
            target = (
                folder
                / stamp.strftime("%Y-%m-%d")
                / (f"{stamp.strftime('%H%M%S%f')}-{page.content_hash[:16]}.json")
            )
            target.parent.mkdir(parents=True, exist_ok=True)
            partial = target.with_name("." + target.name)  # dotfiles are never read as pages
            partial.write_bytes(page.body)
            partial.replace(target)
            yield page

    def _http_pages(self, feed: str, updated_since: datetime | None) -> Iterator[Page]:
        raise NotImplementedError(f"{type(self).__name__} has no HTTP transport")

    def _auth_headers(self) -> dict[str, str]:
        return {}

    def _basic_auth(self) -> tuple[str, str] | None:
        return None

    def _require_key(self, feed: str) -> str:
        if not self.api_key:
            raise ConnectorAuthError(f"{feed}: no API key configured (set env {self.env_var})")
        return self.api_key

    def _url_fields(self) -> dict[str, str | None]:
        """Values of the placeholders a vendor's base URL may hold."""
        return {}

    def _base_url(self) -> str:
        assert self.base_url is not None
        fields = self._url_fields()
        missing = [name for name, value in fields.items() if not value]
        if any("{" + name + "}" in self.base_url for name in missing):
            raise ConnectorError(
                f"{type(self).__name__}: base_url {self.base_url!r} needs {', '.join(missing)}"
            )
        return self.base_url.format(**fields) if fields else self.base_url

    def _url(self, path: str) -> str:
        return self._base_url().rstrip("/") + "/" + path.lstrip("/")

    def _session(self) -> requests.Session:
        return http.build_session(self.max_retries, self.backoff_factor)

    def _get(
        self,
        session: requests.Session,
        feed: str,
        url: str,
        params: dict[str, Any] | None = None,
    ) -> requests.Response:
        self._require_key(feed)
        return http.get(
            session,
            url,
            feed=feed,
            env_var=self.env_var,
            timeout=self.timeout_seconds,
            params=params,
            headers=self._auth_headers(),
            auth=self._basic_auth(),
            max_retries=self.max_retries,
            backoff_factor=self.backoff_factor,
        )

    def _get_or_yield_partial(
        self,
        session: requests.Session,
        feed: str,
        url: str,
        params: dict[str, Any] | None = None,
    ) -> Generator[Page, None, requests.Response]:
        """`_get`; a body cut short on every try (lib/http.py `TruncatedBody`) is yielded as a
        page of the bytes that arrived, which the parser quarantines whole (`bad_json`), and then
        the error is raised: the run fails, the cursor holds, nothing is silently lost. The
        response is the generator's return value."""
        try:
            return self._get(session, feed, url, params)
        except TruncatedBody as cut:
            yield Page.of(cut.url, cut.url, cut.partial)
            raise

    def _follow(
        self,
        feed: str,
        url: str,
        params: dict[str, Any] | None,
        next_request: NextRequest,
        session: requests.Session | None = None,
    ) -> Iterator[Page]:
        """Fetch `url`, yield its page, ask `next_request(response)` for the next (url, params).

        Shared by every vendor: only `next_request` (how the vendor says "there is more")
        differs. A next URL already fetched means a broken cursor: fail instead of looping.
        """
        owned = session is None
        active = session or self._session()
        seen: set[str] = set()
        request: tuple[str, dict[str, Any] | None] | None = (url, params)
        try:
            while request is not None:
                response = yield from self._get_or_yield_partial(active, feed, *request)
                if response.url in seen:
                    raise ConnectorError(f"{feed}: pagination loops back to {response.url}")
                seen.add(response.url)
                yield Page.of(response.url, response.url, response.content)
                request = next_request(response)
        finally:
            if owned:
                active.close()


def iso_utc(moment: datetime) -> str:
    """An aware datetime as ISO-8601 in UTC with `Z` (naive input is taken as UTC)."""
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC).isoformat().replace("+00:00", "Z")


def bind_connectors(connector: type[FeedConnector]) -> dg.Definitions:
    """One `<feed>_source` resource per registry feed of the connector's source, configured from
    the environment now (`FeedConnector.settings`, defs/configuration.py)."""
    settings = connector.settings()
    # The key is needed exactly when the system is read over HTTP (known from the settings).
    transport = next(s for s in settings if s.field == "transport").value()
    fields = resource_fields(settings, bind_secrets=transport == "http")
    return dg.Definitions(
        resources={connector_key(feed): connector(**fields) for feed in connector.feeds()}
    )


def connector_definitions(connector: type[FeedConnector]) -> Callable[[], dg.Definitions]:
    """A source folder's `@dg.definitions`: `bind_connectors`, each time the code location loads."""
    return dg.definitions(lambda: bind_connectors(connector))
