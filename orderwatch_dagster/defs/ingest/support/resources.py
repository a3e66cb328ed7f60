"""Zendesk Support connector for the support feed."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime
from typing import Any, ClassVar

import requests

from orderwatch_dagster.defs.ingest.connector import FeedConnector, Page
from orderwatch_dagster.lib.http import ConnectorError, json_body
from orderwatch_dagster.lib.settings import EnvSetting

ZENDESK_MAX_PAGE_SIZE = 100  # cursor pagination on /tickets.json
ZENDESK_MAX_EXPORT_PAGE = 1000  # incremental export per_page


def zendesk_next(response: requests.Response, feed: str) -> tuple[str, None] | None:
    """Both Zendesk cursors: list `meta.has_more` + `links.next`, export `end_of_stream` +
    `after_url`. "More" without the URL to fetch it is an error (the cursor then holds), not
    the end of the stream."""
    body = json_body(response, feed)
    if not isinstance(body, dict):
        return None
    meta, links = body.get("meta"), body.get("links")
    if isinstance(meta, dict) and isinstance(links, dict):
        if not meta.get("has_more"):
            return None
        if not links.get("next"):
            raise ConnectorError(f"{feed}: {response.url} says has_more but has no links.next")
        return links["next"], None
    if "end_of_stream" in body:
        if body["end_of_stream"]:
            return None
        if not body.get("after_url"):
            raise ConnectorError(f"{feed}: {response.url}: end_of_stream false, no after_url")
        return body["after_url"], None
    return None


class ZendeskConnector(FeedConnector):
    """Zendesk `Ticket`s (feed support_tickets) with their requesters sideloaded
    (`include=users`; feed support_users reads them from the same pages).

    HTTP: `base_url` = `https://<subdomain>.zendesk.com/api/v2` (from `subdomain` unless set in
    full). Auth: with `email` set, basic auth `<email>/token` : API token; otherwise the key is
    an OAuth access token sent as `Authorization: Bearer`. The key comes from env
    `ZENDESK_API_TOKEN`.
    Without `updated_since`: `GET tickets.json?page[size]=100`, cursor-paged (`meta.has_more`,
    `links.next`). With it: the incremental export
    `GET incremental/tickets/cursor.json?start_time=<unix>`, paged by `after_url` until
    `end_of_stream`, with `exclude_deleted=true` (Zendesk "Excluding deleted tickets"). Both
    bodies carry `{"tickets": [...]}`. A ticket deleted after it was loaded keeps its last
    stored state downstream: deletions are not tracked.
    """

    email: str | None = None
    subdomain: str | None = None  # <subdomain>.zendesk.com

    source: ClassVar[str] = "support"
    env_var: ClassVar[str] = "ZENDESK_API_TOKEN"
    key_description: ClassVar[str] = "API token (or OAuth access token)"
    default_base_url: ClassVar[str] = "https://{subdomain}.zendesk.com/api/v2"
    default_page_size: ClassVar[int] = ZENDESK_MAX_PAGE_SIZE

    @classmethod
    def extra_settings(cls, prefix: str) -> tuple[EnvSetting, ...]:
        return (
            EnvSetting(prefix + "SUBDOMAIN", "subdomain", None, "`<subdomain>` of .zendesk.com"),
            EnvSetting(
                prefix + "EMAIL",
                "email",
                None,
                "Agent e-mail for API-token auth; unset: the token is an OAuth bearer token",
            ),
        )

    def _url_fields(self) -> dict[str, str | None]:
        return {"subdomain": self.subdomain}

    def _auth_headers(self) -> dict[str, str]:
        return {} if self.email else {"Authorization": f"Bearer {self.api_key or ''}"}

    def _basic_auth(self) -> tuple[str, str] | None:
        return (f"{self.email}/token", self.api_key or "") if self.email else None

    def _http_pages(self, feed: str, updated_since: datetime | None) -> Iterator[Page]:
        params: dict[str, Any]
        if updated_since is None:
            url = self._url("tickets.json")
            params = {"page[size]": min(self.page_size, ZENDESK_MAX_PAGE_SIZE), "include": "users"}
        else:
            url = self._url("incremental/tickets/cursor.json")
            params = {
                "start_time": int(updated_since.timestamp()),
                "per_page": min(self.page_size, ZENDESK_MAX_EXPORT_PAGE),
                # The export lists deleted tickets with status "deleted", which no vocabulary
                # here has (lib/feeds.py ZENDESK_STATUS); the plain list never shows them.
                "exclude_deleted": "true",
                # the requesters beside the tickets (feed support_users reads them from these
                # pages): a ticket without an order number is linked by its requester's e-mail
                "include": "users",
            }
        return self._follow(feed, url, params, lambda response: zendesk_next(response, feed))
