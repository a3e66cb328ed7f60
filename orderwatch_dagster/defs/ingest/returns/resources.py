"""Loop Returns connector for the returns feed."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any, ClassVar

import requests

from orderwatch_dagster.defs.ingest.connector import FeedConnector, Page
from orderwatch_dagster.lib.http import json_body

LOOP_MAX_PAGE_SIZE = 750
LOOP_MAX_WINDOW = timedelta(days=120)  # Loop rejects from/to ranges longer than 120 days


def _loop_time(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S")


class LoopConnector(FeedConnector):
    """Loop "Detailed Returns List" (feed returns): `{"returns": [...], "nextPageUrl": ...}`.

    HTTP: `base_url` = `https://api.loopreturns.com/api/v1`; the key goes in `X-Authorization`,
    from env `LOOP_API_KEY`. `GET warehouse/return/list?paginate=true&pageSize=...`;
    `updated_since` -> `from` (with `to` = now and `filter=updated_at`), split into windows
    of at most 120 days. Without `updated_since` Loop answers its default (the last 24 h).
    Loop's default `state` filter is open/closed/expired: cancelled and review returns need a
    `state` parameter this connector does not send yet.
    Paging: follow `nextPageUrl` until it is null.
    """

    source: ClassVar[str] = "returns"
    env_var: ClassVar[str] = "LOOP_API_KEY"
    key_description: ClassVar[str] = "API key (X-Authorization)"
    default_base_url: ClassVar[str] = "https://api.loopreturns.com/api/v1"
    default_page_size: ClassVar[int] = 250

    def _auth_headers(self) -> dict[str, str]:
        return {"X-Authorization": self.api_key or ""}

    def _windows(self, updated_since: datetime | None) -> list[dict[str, Any]]:
        if updated_since is None:
            return [{}]
        # A cursor ahead of the wall clock (a simulated world) still gives one valid window.
        start = updated_since
        end = max(datetime.now(UTC), start + timedelta(seconds=1))
        windows = []
        while True:
            stop = min(start + LOOP_MAX_WINDOW, end)
            windows.append({"from": _loop_time(start), "to": _loop_time(stop)})
            if stop >= end:
                return windows
            start = stop

    def _http_pages(self, feed: str, updated_since: datetime | None) -> Iterator[Page]:
        def next_request(
            response: requests.Response,
        ) -> tuple[str, dict[str, Any] | None] | None:
            body = json_body(response, feed)
            next_url = body.get("nextPageUrl") if isinstance(body, dict) else None
            return (next_url, None) if next_url else None

        url = self._url("warehouse/return/list")
        with self._session() as session:
            for window in self._windows(updated_since):
                params: dict[str, Any] = {
                    "paginate": "true",
                    "pageSize": min(self.page_size, LOOP_MAX_PAGE_SIZE),
                    **window,
                }
                if window:
                    params["filter"] = "updated_at"
                yield from self._follow(feed, url, params, next_request, session)
