"""Loop Returns connector for the returns feed."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any, ClassVar

import requests

from orderwatch_dagster.defs.ingest.connector import FeedConnector, Page
from orderwatch_dagster.lib.feeds import LOOP_STATE
from orderwatch_dagster.lib.http import json_body
from orderwatch_dagster.lib.settings import EnvSetting, now

LOOP_MAX_PAGE_SIZE = 750
LOOP_MAX_WINDOW = timedelta(days=120)  # Loop rejects from/to ranges longer than 120 days
BACKFILL_DAYS = 365


def _loop_time(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S")


class LoopConnector(FeedConnector):
    """Loop "Detailed Returns List" (feed returns): `{"returns": [...], "nextPageUrl": ...}`.

    HTTP: `base_url` = `https://api.loopreturns.com/api/v1`; the key goes in `X-Authorization`,
    from env `LOOP_API_KEY`. `GET warehouse/return/list?paginate=true&pageSize=...` with
    `filter=updated_at` and a `from`/`to` range (docs.loopreturns.com "Detailed Returns List"):
    - `from` = `updated_since`, or on the first run (no cursor) `backfill_days` before now (env
      ORDERWATCH_RETURNS_BACKFILL_DAYS, default 365): without `from`/`to` Loop answers only the
      last 24 h, and the cursor would then move past everything older for good;
    - the range is split into windows of at most 120 days (Loop rejects longer ones);
    - Loop's default `state` filter is open/closed/expired only, so each window is asked once per
      state of the registry's vocabulary (lib/feeds.py LOOP_STATE, which adds cancelled and
      review). The docs describe `state` as one value; one request stream per state is what they
      surely accept (a comma-separated list is not documented).
    Paging: follow `nextPageUrl` until it is null.
    """

    backfill_days: int = BACKFILL_DAYS

    source: ClassVar[str] = "returns"
    env_var: ClassVar[str] = "LOOP_API_KEY"
    key_description: ClassVar[str] = "API key (X-Authorization)"
    default_base_url: ClassVar[str] = "https://api.loopreturns.com/api/v1"
    default_page_size: ClassVar[int] = 250

    @classmethod
    def extra_settings(cls, prefix: str) -> tuple[EnvSetting, ...]:
        return (
            EnvSetting(
                prefix + "BACKFILL_DAYS",
                "backfill_days",
                str(BACKFILL_DAYS),
                "First run (no cursor): returns updated this many days back are read",
                integer=True,
                minimum=1,
            ),
        )

    def _auth_headers(self) -> dict[str, str]:
        return {"X-Authorization": self.api_key or ""}

    def _windows(self, updated_since: datetime | None) -> list[dict[str, Any]]:
        end = now()
        start = updated_since or end - timedelta(days=self.backfill_days)
        # A cursor ahead of "now" (should not happen: lib/ingest_guards.py) still gives a window.
        end = max(end, start + timedelta(seconds=1))
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
                for state in sorted(LOOP_STATE):
                    params: dict[str, Any] = {
                        "paginate": "true",
                        "pageSize": min(self.page_size, LOOP_MAX_PAGE_SIZE),
                        "filter": "updated_at",
                        "state": state,
                        **window,
                    }
                    yield from self._follow(feed, url, params, next_request, session)
