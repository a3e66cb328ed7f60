"""EasyPost Trackers connector for the carrier feed."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime
from typing import Any, ClassVar

import requests

from orderwatch_dagster.defs.ingest.connector import FeedConnector, Page, iso_utc
from orderwatch_dagster.lib.http import json_body

EASYPOST_MAX_PAGE_SIZE = 100


class EasyPostConnector(FeedConnector):
    """EasyPost `GET /trackers` (feed carrier_trackers): `{"trackers": [...], "has_more": bool}`.

    HTTP: `base_url` = `https://api.easypost.com/v2`; the API key is the basic-auth username
    (empty password), from env `EASYPOST_API_KEY`. `updated_since` -> `start_datetime`.
    Paging: while `has_more`, repeat the request with `before_id` = the last tracker id of the
    page (as EasyPost's own SDKs do). Note EasyPost filters the list by tracker *creation*
    time, so a poll with `updated_since` misses later updates of older trackers: in production
    pair it with EasyPost's `tracker.updated` webhooks dropped as files (Events parse as pages
    of this feed, as do AfterShip tracking responses).
    """

    source: ClassVar[str] = "carrier"
    env_var: ClassVar[str] = "EASYPOST_API_KEY"
    key_description: ClassVar[str] = "API key (basic auth)"
    default_base_url: ClassVar[str] = "https://api.easypost.com/v2"
    default_page_size: ClassVar[int] = EASYPOST_MAX_PAGE_SIZE

    def _basic_auth(self) -> tuple[str, str] | None:
        return (self.api_key or "", "")

    def _http_pages(self, feed: str, updated_since: datetime | None) -> Iterator[Page]:
        url = self._url("trackers")
        params: dict[str, Any] = {"page_size": min(self.page_size, EASYPOST_MAX_PAGE_SIZE)}
        if updated_since is not None:
            params["start_datetime"] = iso_utc(updated_since)

        def next_request(
            response: requests.Response,
        ) -> tuple[str, dict[str, Any] | None] | None:
            body = json_body(response, feed)
            trackers = body.get("trackers") if isinstance(body, dict) else None
            if not (isinstance(body, dict) and body.get("has_more") and trackers):
                return None
            return url, {**params, "before_id": trackers[-1]["id"]}

        return self._follow(feed, url, params, next_request)
