"""What every vendor renderer shares: timestamp styles, money, ids, the customer's identity.

Every renderer is a pure function of (plan, moment): the same plan rendered at the same
moment gives the same dict, which is what makes continuation calls consistent.
"""

from __future__ import annotations

import time as _time
from datetime import datetime
from functools import lru_cache
from typing import TypeVar

from orderwatch_dagster.sim.calendar import SHOP_TZ
from orderwatch_dagster.sim.world import OrderPlan

LINE_ITEM_BASE = 13_000_000_000_000

# Shopify addresses carry the province's name beside its code (`province`, `province_code`).
US_STATES = {
    "AL": "Alabama", "AK": "Alaska", "AZ": "Arizona", "AR": "Arkansas", "CA": "California",
    "CO": "Colorado", "CT": "Connecticut", "DE": "Delaware", "DC": "District of Columbia",
    "FL": "Florida", "GA": "Georgia", "HI": "Hawaii", "ID": "Idaho", "IL": "Illinois",
    "IN": "Indiana", "IA": "Iowa", "KS": "Kansas", "KY": "Kentucky", "LA": "Louisiana",
    "ME": "Maine", "MD": "Maryland", "MA": "Massachusetts", "MI": "Michigan", "MN": "Minnesota",
    "MS": "Mississippi", "MO": "Missouri", "MT": "Montana", "NE": "Nebraska", "NV": "Nevada",
    "NH": "New Hampshire", "NJ": "New Jersey", "NM": "New Mexico", "NY": "New York",
    "NC": "North Carolina", "ND": "North Dakota", "OH": "Ohio", "OK": "Oklahoma",
    "OR": "Oregon", "PA": "Pennsylvania", "RI": "Rhode Island", "SC": "South Carolina",
    "SD": "South Dakota", "TN": "Tennessee", "TX": "Texas", "UT": "Utah", "VT": "Vermont",
    "VA": "Virginia", "WA": "Washington", "WV": "West Virginia", "WI": "Wisconsin",
    "WY": "Wyoming",
}  # fmt: skip

TRACKING_URL = {
    "USPS": "https://tools.usps.com/go/TrackConfirmAction?tLabels={}",
    "UPS": "https://www.ups.com/track?tracknum={}",
    "FedEx": "https://www.fedex.com/fedextrack/?trknbr={}",
}
CARRIER_SERVICE = {
    ("USPS", "ground"): "Ground Advantage",
    ("USPS", "express"): "Priority Mail",
    ("USPS", "overnight"): "Priority Mail Express",
    ("UPS", "ground"): "Ground",
    ("UPS", "express"): "2nd Day Air",
    ("UPS", "overnight"): "Next Day Air",
    ("FedEx", "ground"): "FEDEX_GROUND",
    ("FedEx", "express"): "FEDEX_2_DAY",
    ("FedEx", "overnight"): "STANDARD_OVERNIGHT",
}


# Formatting dominates emission time: split epoch seconds by hand, cache per day / hour.
@lru_cache(maxsize=8192)
def _day_prefix(day: int) -> str:
    return _time.strftime("%Y-%m-%d", _time.gmtime(day * 86400))


# "HH:MM:SS" for every second of a day (~5 MB): one list index instead of three formats.
_HMS: list[str] = [
    f"{h:02d}:{m:02d}:{s:02d}" for h in range(24) for m in range(60) for s in range(60)
]


def _clock(t: int) -> str:
    day, rest = divmod(t, 86400)
    return _day_prefix(day) + "T" + _HMS[rest]


def utc(t: int) -> str:
    """EasyPost / Zendesk style: 2026-10-05T18:03:11Z."""
    return _clock(t) + "Z"


def utc_offset(t: int) -> str:
    """ShipBob style: 2026-10-05T18:03:11+00:00."""
    return _clock(t) + "+00:00"


@lru_cache(maxsize=65536)
def _shop_offset(hour: int) -> tuple[int, str]:
    # Offsets change only on whole UTC hours, so one lookup per hour is exact.
    offset = datetime.fromtimestamp(hour * 3600, SHOP_TZ).utcoffset()
    seconds = int(offset.total_seconds()) if offset is not None else 0
    sign = "-" if seconds < 0 else "+"
    hh, mm = divmod(abs(seconds) // 60, 60)
    return seconds, f"{sign}{hh:02d}:{mm:02d}"


def shop(t: int) -> str:
    """Shopify style: shop-local with offset, 2026-10-05T14:03:11-04:00."""
    seconds, suffix = _shop_offset(t // 3600)
    return _clock(t + seconds) + suffix


def money(cents: int) -> str:
    return f"{cents // 100}.{cents % 100:02d}"


Event = TypeVar("Event", bound=tuple)  # type: ignore[type-arg]


def last_event(events: list[Event], moment: int) -> Event | None:
    """The latest event at or before `moment` (events are sorted by time, their first field)."""
    found = None
    for event in events:
        if event[0] <= moment:
            found = event
        else:
            break
    return found


def email(plan: OrderPlan) -> str:
    return f"{plan.first_name.lower()}.{plan.last_name.lower()}{plan.customer}@example.com"


def line_item_id(plan: OrderPlan, n: int) -> int:
    return LINE_ITEM_BASE + plan.index * 4 + n
