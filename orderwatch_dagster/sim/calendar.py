"""The delivery promise shown at checkout: one pure rule, mirrored by the dbt unit tests.

ship_day = first business day on/after placement (shop-local), the next business day when
placed strictly after the service's cut-off; + handling business days (VIP: 0); promised
delivery date = that + transit business days. Business days are Mon–Fri minus holidays.
The promise ends at the end of that date in the destination's time zone.
"""

from __future__ import annotations

from collections.abc import Collection
from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

SHOP_TZ = ZoneInfo("America/New_York")


def is_business_day(day: date, holidays: Collection[date]) -> bool:
    return day.weekday() < 5 and day not in holidays


def next_business_day(day: date, holidays: Collection[date]) -> date:
    """The first business day strictly after `day`."""
    day += timedelta(days=1)
    while not is_business_day(day, holidays):
        day += timedelta(days=1)
    return day


def add_business_days(day: date, n: int, holidays: Collection[date]) -> date:
    """`day` moved forward by n business days (n=0 returns `day` unchanged)."""
    for _ in range(n):
        day = next_business_day(day, holidays)
    return day


def order_day(
    placed_at: datetime, cutoff: time, holidays: Collection[date], shop_tz: ZoneInfo = SHOP_TZ
) -> date:
    """The business day an order counts as received on (cut-off and weekends applied)."""
    local = placed_at.astimezone(shop_tz)
    day = local.date()
    if not is_business_day(day, holidays):
        return next_business_day(day, holidays)
    # at or after the cut-off counts from the next business day (seeds/service_levels.csv,
    # dbt_project/macros/promises.sql)
    if local.time().replace(tzinfo=None) >= cutoff:
        return next_business_day(day, holidays)
    return day


def promised_ship_date(
    placed_at: datetime,
    *,
    cutoff: time,
    handling_days: int,
    holidays: Collection[date],
    shop_tz: ZoneInfo = SHOP_TZ,
) -> date:
    return add_business_days(
        order_day(placed_at, cutoff, holidays, shop_tz), handling_days, holidays
    )


def promised_delivery_date(
    placed_at: datetime,
    *,
    cutoff: time,
    handling_days: int,
    transit_days: int,
    holidays: Collection[date],
    shop_tz: ZoneInfo = SHOP_TZ,
) -> date:
    """The date shown to the customer (note_attributes `promised_delivery_date`)."""
    ship = promised_ship_date(
        placed_at, cutoff=cutoff, handling_days=handling_days, holidays=holidays, shop_tz=shop_tz
    )
    return add_business_days(ship, transit_days, holidays)


def promise_deadline(promised: date, destination_tz: ZoneInfo) -> datetime:
    """End of the promised date in the destination's zone (next local midnight), in UTC.

    A delivery at or after this instant missed the promise.
    """
    midnight = datetime.combine(promised + timedelta(days=1), time(0), tzinfo=destination_tz)
    return midnight.astimezone(UTC)
