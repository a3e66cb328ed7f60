"""The world's latent structure: incidents, site queues, transit by zone, carrier calendars.

Everything here is drawn from the world seed alone (never from an order), so every order of a
world sees the same incidents and the same warehouse queues, and any order can be planned
alone. Orders then sample their own position in these structures (sim/world.py).

- Site queues: each fulfillment site works business days with a daily capacity (a weekday
  pattern, day-to-day noise, dips during staffing/system incidents) against its inbound
  volume (placements follow a weekday pattern and one promotion peak; weekend orders land on
  Monday). Unserved volume carries over first-in first-out, so a backlog shows in a site's
  throughput before any single order is late.
- Transit: nominal business days by zone (origin site region -> destination region) and
  service; a carrier-specific right tail (several % a day late, 1-2 % two or more days);
  each carrier counts days on its own calendar (USPS: Mon-Sat without holidays; UPS: Mon-Fri
  including merchant holidays; FedEx: Mon-Sat including merchant holidays).
- Incidents (dozens per 30 days): site slowdowns, SKU stock-outs, hub scan outages, carrier
  slowdowns in a region, regional storms (announced the day before).
"""

from __future__ import annotations

import random
from bisect import bisect
from dataclasses import dataclass
from datetime import date, timedelta
from itertools import accumulate
from statistics import median

from orderwatch_dagster.sim.calendar import is_business_day
from orderwatch_dagster.sim.config import MerchantConfig, Warehouse

REGIONS = ("west", "mountain", "midwest", "northeast", "southeast", "south_central")
SITE_REGION = {"CA": "west", "TX": "south_central", "IL": "midwest", "PA": "northeast"}
# Ground business days between regions (symmetric); same region: 2.
_ZONE: dict[frozenset[str], int] = {
    frozenset(("west", "mountain")): 3,
    frozenset(("west", "midwest")): 4,
    frozenset(("west", "south_central")): 4,
    frozenset(("west", "southeast")): 5,
    frozenset(("west", "northeast")): 5,
    frozenset(("mountain", "midwest")): 3,
    frozenset(("mountain", "south_central")): 3,
    frozenset(("mountain", "southeast")): 4,
    frozenset(("mountain", "northeast")): 4,
    frozenset(("midwest", "northeast")): 3,
    frozenset(("midwest", "southeast")): 3,
    frozenset(("midwest", "south_central")): 3,
    frozenset(("northeast", "southeast")): 3,
    frozenset(("northeast", "south_central")): 4,
    frozenset(("southeast", "south_central")): 3,
}
REMOTE = {"AK": 3, "HI": 3}  # extra ground days to non-contiguous states

# Extra business days beyond the nominal transit: (values, cumulative probabilities).
TRANSIT_TAIL: dict[str, tuple[tuple[int, ...], tuple[float, ...]]] = {
    "USPS": ((0, 1, 2, 3), (0.915, 0.975, 0.993, 1.0)),
    "UPS": ((0, 1, 2, 3), (0.945, 0.985, 0.996, 1.0)),
    "FedEx": ((0, 1, 2, 3), (0.935, 0.982, 0.995, 1.0)),
}
EARLY = 0.12  # share of multi-day parcels that arrive a day before the nominal date

# Placements by weekday (Mon..Sun) and the promotion peak (day offset -> factor).
WEEKDAY_VOLUME = (1.12, 1.08, 1.02, 0.98, 0.92, 0.86, 1.02)
PEAK = (2.3, 1.5, 1.15)
CAPACITY_HEADROOM = 1.12  # a site's capacity over its usual inbound for that weekday
OVERTIME = 0.3  # extra capacity a backlogged site finds


def zone_days(site: Warehouse, dest_region: str, dest_code: str) -> int:
    origin = SITE_REGION.get(site.state, "midwest")
    days = 2 if origin == dest_region else _ZONE.get(frozenset((origin, dest_region)), 4)
    return days + REMOTE.get(dest_code, 0)


def nominal_transit(service: str, zone: int) -> int:
    if service == "same_day":
        return 0
    if service == "overnight":
        return 1
    if service == "express":
        return 1 if zone <= 2 else 2
    return zone


def carrier_works(carrier: str, day: date, holidays: frozenset[date]) -> bool:
    weekday = day.weekday()
    if carrier == "USPS":
        return weekday < 6 and day not in holidays
    if carrier == "UPS":
        return weekday < 5
    return weekday < 6  # FedEx Home Delivery runs Saturdays


def carrier_add_days(carrier: str, day: date, n: int, holidays: frozenset[date]) -> date:
    for _ in range(n):
        day += timedelta(days=1)
        while not carrier_works(carrier, day, holidays):
            day += timedelta(days=1)
    return day


@dataclass(frozen=True)
class Incident:
    """A world event over [first_day, last_day]: who/what it hits and how hard."""

    mode: str  # site_slowdown, stock_out, hub_outage, carrier_slowdown, weather
    entity: str  # site name, SKU, "<carrier> <hub city>", "<carrier> <region>", region
    first_day: date
    last_day: date  # inclusive
    severity: float  # capacity factor (site), hit share (others)

    def covers(self, day: date) -> bool:
        return self.first_day <= day <= self.last_day


@dataclass(frozen=True)
class QueueDay:
    backlog: float  # volume waiting before this day's inbound
    inbound: float
    capacity: float


class SiteQueues:
    """FIFO queues per site over the world's business days (aggregate volume, not orders)."""

    def __init__(
        self,
        config: MerchantConfig,
        inbound: dict[str, dict[date, float]],
        incidents: list[Incident],
        rng: random.Random,
    ) -> None:
        self.holidays = config.holidays
        self.days: dict[str, dict[date, QueueDay]] = {}
        self.order: dict[str, list[date]] = {}
        for site in config.warehouses:
            volumes = inbound.get(site.name, {})
            if not volumes:
                continue
            first, last = min(volumes), max(volumes) + timedelta(days=30)
            business = []
            day = first
            while day <= last:
                if is_business_day(day, self.holidays):
                    business.append(day)
                day += timedelta(days=1)
            # Sites staff for their usual volume per weekday (the median: not for the peak).
            usual = {
                weekday: median([v for d, v in volumes.items() if d.weekday() == weekday] or [0.0])
                for weekday in range(5)
            }
            backlog = 0.0
            rows: dict[date, QueueDay] = {}
            for day in business:
                factor = 0.92 + 0.16 * rng.random()
                for incident in incidents:
                    hit = incident.mode == "site_slowdown" and incident.entity == site.name
                    if hit and incident.covers(day):
                        factor *= incident.severity
                usual_day = usual[day.weekday()]
                # Overtime: a backlogged site works longer hours, up to OVERTIME more.
                overtime = min(OVERTIME, backlog / usual_day) if usual_day else 0.0
                capacity = CAPACITY_HEADROOM * usual_day * factor * (1 + overtime)
                arriving = volumes.get(day, 0.0)
                rows[day] = QueueDay(backlog, arriving, capacity)
                backlog = max(0.0, backlog + arriving - capacity)
            self.days[site.name] = rows
            self.order[site.name] = business

    def delay(self, site: str, day: date, position: float) -> tuple[int, float]:
        """Business days after `day` an order at `position` (0..1 of the day's inbound) is
        served, and how far into that day's work (0..1) it comes."""
        rows = self.days.get(site)
        if not rows or day not in rows:
            return 0, position
        business = self.order[site]
        start = bisect(business, day) - 1
        row = rows[day]
        rank = row.backlog + position * row.inbound
        served = 0.0
        for k, current in enumerate(business[start:]):
            capacity = rows[current].capacity
            if served + capacity >= rank or k > 20:
                return k, (rank - served) / capacity if capacity else 0.0
            served += capacity
        return 0, position


def day_weights(start: date, days: int, rng: random.Random) -> tuple[float, ...]:
    """Relative placements per UTC day: weekday pattern, noise, one promotion peak."""
    weights = [WEEKDAY_VOLUME[(start + timedelta(days=d)).weekday()] for d in range(days)]
    weights = [w * (0.93 + 0.14 * rng.random()) for w in weights]
    if days >= 5:
        peak = int(days * (0.35 + 0.3 * rng.random()))
        for offset, factor in enumerate(PEAK):
            if peak + offset < days:
                weights[peak + offset] *= factor
    return tuple(weights)


def day_counts(weights: tuple[float, ...], total: int) -> tuple[int, ...]:
    """Integer orders per day summing to `total` (largest remainder)."""
    scale = total / sum(weights)
    raw = [w * scale for w in weights]
    counts = [int(x) for x in raw]
    order = sorted(range(len(raw)), key=lambda i: raw[i] - counts[i], reverse=True)
    for i in order[: total - sum(counts)]:
        counts[i] += 1
    return tuple(counts)


def cumulative(counts: tuple[int, ...]) -> tuple[int, ...]:
    return (0, *accumulate(counts))
