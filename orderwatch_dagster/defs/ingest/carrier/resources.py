"""EasyPost Trackers connector for the carrier feed."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime, timedelta
from typing import Any, ClassVar

import requests

from orderwatch_dagster.defs.ingest.connector import FeedConnector, Page, iso_utc
from orderwatch_dagster.lib.http import ConnectorError, json_body
from orderwatch_dagster.lib.settings import EnvSetting, now

EASYPOST_MAX_PAGE_SIZE = 100
LOOKBACK_DAYS = 30  # a parcel's tracker rarely changes after a month


class EasyPostConnector(FeedConnector):
    """EasyPost `GET /trackers` (feed carrier_trackers): `{"trackers": [...], "has_more": bool}`.

    HTTP: `base_url` = `https://api.easypost.com/v2`; the API key is the basic-auth username
    (empty password), from env `EASYPOST_API_KEY`. Paging: while `has_more`, repeat the request
    with `before_id` = the last tracker id of the page (docs.easypost.com "Pagination", as
    EasyPost's own SDKs do).

    EasyPost's list filters by tracker *creation* time (`start_datetime`; records come newest
    created first), not by update time. So the update cursor cannot narrow the request: a tracker
    created before the last poll keeps getting scans. Every poll asks for every tracker created
    in the last `lookback_days` (env ORDERWATCH_CARRIER_LOOKBACK_DAYS, default 30), or since the
    cursor when that is older (a poller that was down longer); re-reading unchanged trackers is
    harmless (loads are idempotent). A tracker still updated after `lookback_days` is missed by
    polling: pair the poll with EasyPost's `tracker.updated` webhooks dropped as files (Events
    parse as pages of this feed, as do AfterShip tracking responses). Not verified: whether
    EasyPost caps how far back `start_datetime` may reach.
    """

    source: ClassVar[str] = "carrier"
    env_var: ClassVar[str] = "EASYPOST_API_KEY"
    key_description: ClassVar[str] = "API key (basic auth)"
    default_base_url: ClassVar[str] = "https://api.easypost.com/v2"
    default_page_size: ClassVar[int] = EASYPOST_MAX_PAGE_SIZE

    lookback_days: int = LOOKBACK_DAYS

    @classmethod
    def extra_settings(cls, prefix: str) -> tuple[EnvSetting, ...]:
        return (
            EnvSetting(
                prefix + "LOOKBACK_DAYS",
                "lookback_days",
                str(LOOKBACK_DAYS),
                "Trackers created this many days back are re-read on every poll",
                integer=True,
                minimum=1,
            ),
        )

    def _basic_auth(self) -> tuple[str, str] | None:
        return (self.api_key or "", "")

    def created_since(self, updated_since: datetime | None) -> datetime:
        """The creation-time start of a poll: the lookback window before "now"
        (lib/settings.py), or the cursor if older."""
        window = now() - timedelta(days=self.lookback_days)
        return window if updated_since is None else min(window, updated_since)

    def _http_pages(self, feed: str, updated_since: datetime | None) -> Iterator[Page]:
        url = self._url("trackers")
        params: dict[str, Any] = {
            "page_size": min(self.page_size, EASYPOST_MAX_PAGE_SIZE),
            "start_datetime": iso_utc(self.created_since(updated_since)),
        }

        def next_request(
            response: requests.Response,
        ) -> tuple[str, dict[str, Any] | None] | None:
            body = json_body(response, feed)
            if not (isinstance(body, dict) and body.get("has_more")):
                return None
            trackers = body.get("trackers")
            last = trackers[-1] if isinstance(trackers, list) and trackers else None
            if not (isinstance(last, dict) and last.get("id")):
                # "more" with nothing to page from: ending here would pass for a complete read
                raise ConnectorError(
                    f"{feed}: {response.url} says has_more but gives no tracker id to page from"
                )
            return url, {**params, "before_id": last["id"]}

        return self._follow(feed, url, params, next_request)
