"""Consent and timing at the sender level: what a delivery result says about the recipient,
and quiet hours in the customer's own time zone (the job decides when and whether to send).

Quiet hours default to 21:00–08:00 local time, a window modelled on the TCPA's calling hours
(8:00–21:00, a rule for telephone solicitations; transactional texts are held to it here by
choice). The window may cross midnight; times are wall-clock times in the customer's zone,
so a DST change moves them with the clock, as the customer sees it.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, time, timedelta
from functools import partial
from zoneinfo import ZoneInfo

from orderwatch_dagster.lib.outbound import DeliveryResult, FollowUp

QUIET_START = time(21, 0)
QUIET_END = time(8, 0)


def is_opt_out(result: DeliveryResult) -> bool:
    """The recipient opted out of this channel (e.g. replied STOP): never use it again."""
    return result.follow_up is FollowUp.OPT_OUT


def stops_channel(result: DeliveryResult) -> bool:
    """The recipient cannot be reached on this channel again (opted out or unusable)."""
    return result.follow_up in (FollowUp.OPT_OUT, FollowUp.INVALID_RECIPIENT)


def _in_window(local: time, start: time, end: time) -> bool:
    if start == end:
        return False
    if start < end:
        return start <= local < end
    return local >= start or local < end  # across midnight


def quiet_until(
    at: datetime, time_zone: str, start: time = QUIET_START, end: time = QUIET_END
) -> datetime | None:
    """None when `at` (aware) is outside quiet hours in `time_zone`; otherwise the moment
    they end, in that zone (for the job to schedule the message)."""
    if at.tzinfo is None:
        raise ValueError("`at` must be timezone-aware")
    zone = ZoneInfo(time_zone)
    local = at.astimezone(zone)
    if not _in_window(local.time(), start, end):
        return None
    day = local.date() if local.time() < end else local.date() + timedelta(days=1)
    # Wall-clock 08:00 of that day in the zone (fold=0: the first of a repeated hour).
    return datetime.combine(day, end, tzinfo=zone)


def quiet_rule(window: tuple[time, time] | None) -> Callable[[datetime, str], datetime | None]:
    """`quiet_until` over the policy's window (`messages.quiet_hours`), else the default one."""
    if window is None:
        return quiet_until
    return partial(quiet_until, start=window[0], end=window[1])
