"""The simulated world: incidents, site queues and one self-contained plan per order.

Every order is planned from its own RNG seeded by (seed, index); the world's latent
structure (placements per day, incidents, site queues: sim/network.py) from RNGs seeded by
the seed alone, so any order can be regenerated alone and nothing global grows with the
number of orders planned. An order's shipments live in sim/shipment.py, its tickets and
returns in sim/support.py, what its signals showed when in sim/truth.py.
"""

from __future__ import annotations

import hashlib
import random
import zlib
from bisect import bisect
from datetime import UTC, date, datetime, time, timedelta
from itertools import accumulate

from orderwatch_dagster.sim.calendar import (
    SHOP_TZ,
    add_business_days,
    order_day,
    promise_deadline,
)
from orderwatch_dagster.sim.config import MerchantConfig
from orderwatch_dagster.sim.model import (
    CARRIERS_BY_SERVICE,
    CUSTOMER_ID_BASE,
    DAY,
    FAILURE_MODES,
    FIRST_NAMES,
    HOUR,
    HOUR_CUM,
    HUBS,
    LAST_NAMES,
    ORDER_ID_BASE,
    REGION_SITE,
    ROOT_CAUSE_TYPE,
    SERVICE_CUM,
    SERVICES,
    SKUS,
    STREET_TYPES,
    STREETS,
    EddEvent,
    FoEvent,
    OrderPlan,
    ReturnPlan,
    Scan,
    ShipmentPlan,
    StateEvent,
    StatusChange,
    TicketPlan,
    WmsEvent,
    epoch,
    pick,
    ri,
    to_dt,
)
from orderwatch_dagster.sim.network import (
    REGIONS,
    Incident,
    SiteQueues,
    cumulative,
    day_counts,
    day_weights,
)
from orderwatch_dagster.sim.shipment import ShipmentLife
from orderwatch_dagster.sim.support import settle
from orderwatch_dagster.sim.truth import record_onsets

__all__ = [
    "CUSTOMER_ID_BASE",
    "DAY",
    "FAILURE_MODES",
    "HOUR",
    "ORDER_ID_BASE",
    "EddEvent",
    "FoEvent",
    "OrderPlan",
    "ReturnPlan",
    "Scan",
    "ShipmentPlan",
    "StateEvent",
    "StatusChange",
    "TicketPlan",
    "WmsEvent",
    "World",
    "epoch",
]

REPEAT_CUSTOMERS = 0.25  # share of orders from a customer who ordered before
# Payments captured hours to days after checkout (bank transfer, buy now pay later, a fraud
# review); card payments are captured within minutes (Shopify's automatic capture).
DELAYED_PAYMENT = 0.05
PAYMENT_NOISE_RANGES = {
    "delayed_payment": (0.038, 0.062)
}  # of orders (sim/shipment.py NOISE_RANGES)
ADDRESS_ISSUE = 0.010  # orders with an address the 3PL or the carrier cannot use
ADDRESS_HELD = 0.6  # ... of which the 3PL holds (else the carrier corrects it at the door)


class World:
    """World parameters, placements, customers, incidents, site queues; plans orders."""

    def __init__(
        self, config: MerchantConfig, *, seed: int, start: date, days: int, orders_per_day: int
    ) -> None:
        self.config = config
        self.seed = seed
        self.start = start
        self.days = days
        self.orders_per_day = orders_per_day
        self.start_epoch = int(datetime.combine(start, time(0), tzinfo=UTC).timestamp())
        self.holidays = config.holidays
        self.dest_cum = tuple(accumulate(d.weight for d in config.destinations))
        self.sites = {w.state: w for w in config.warehouses}
        self._day_cache: dict[int, list[int]] = {}
        self._bd_cache: dict[tuple[date, int], date] = {}
        weights = day_weights(start, days, random.Random(seed * 104_729 + 3))
        self.day_first = cumulative(day_counts(weights, days * orders_per_day))
        self.incidents = self._incidents()
        self.queues = SiteQueues(
            config, self._inbound(), self.incidents, random.Random(seed * 7 + 11)
        )

    # -- calendar helpers ------------------------------------------------------------
    def add_bd(self, day: date, n: int) -> date:
        key = (day, n)
        hit = self._bd_cache.get(key)
        if hit is None:
            hit = add_business_days(day, n, self.holidays)
            self._bd_cache[key] = hit
        return hit

    def order_day(self, t: int, cutoff: time) -> date:
        return order_day(to_dt(t), cutoff, self.holidays, SHOP_TZ)

    @property
    def total_orders(self) -> int:
        return self.days * self.orders_per_day

    # -- placements --------------------------------------------------------------------
    def day_bounds(self, day: int) -> tuple[int, int]:
        """Order indexes [first, end) placed on world day `day` (counts vary by day)."""
        return self.day_first[day], self.day_first[day + 1]

    def _day_times(self, day: int) -> list[int]:
        times = self._day_cache.get(day)
        if times is None:
            count = self.day_first[day + 1] - self.day_first[day]
            rng = random.Random(self.seed * 1_000_003 + 7_777_777 * (day + 1))
            hours = [bisect(HOUR_CUM, rng.random() * HOUR_CUM[-1]) for _ in range(count)]
            base = self.start_epoch + day * DAY
            times = sorted(base + h * HOUR + rng.randrange(HOUR) for h in hours)
            if len(self._day_cache) > 8:
                self._day_cache.clear()
            self._day_cache[day] = times
        return times

    def placed_at(self, index: int) -> int:
        """Placement time: sorted within each UTC day so names follow placement order."""
        day = bisect(self.day_first, index) - 1
        return self._day_times(day)[index - self.day_first[day]]

    def tracker_id(self, index: int, k: int) -> str:
        digest = hashlib.md5(f"{self.seed}:{index}:{k}".encode(), usedforsecurity=False)
        return "trk_" + digest.hexdigest()

    # -- world incidents -------------------------------------------------------------
    def _incidents(self) -> list[Incident]:
        rng = random.Random(self.seed * 7919 + 17)
        found: list[Incident] = []
        last = max(0, self.days - 1)

        def window(low: int, high: int) -> tuple[date, date]:
            first = self.start + timedelta(days=ri(rng, 0, max(0, last)))
            return first, first + timedelta(days=ri(rng, low, high) - 1)

        def count(per_days: float) -> int:
            expected = self.days / per_days
            return int(expected) + (rng.random() < expected - int(expected))

        for site in self.config.warehouses:  # staffing gaps, system outages
            for _ in range(count(20)):
                first, end = window(1, 2)
                found.append(
                    Incident("site_slowdown", site.name, first, end, 0.55 + 0.3 * rng.random())
                )
        for _ in range(count(4)):
            sku = rng.choice(SKUS)
            first, end = window(2, 7)
            found.append(Incident("stock_out", sku.sku, first, end, 1.0))
        for _ in range(count(6)):
            carrier = rng.choice(tuple(HUBS))
            hub = rng.choice(HUBS[carrier])
            first, end = window(1, 2)
            found.append(Incident("hub_outage", f"{carrier} {hub[0]}", first, end, 0.8))
        for _ in range(count(7)):
            carrier = rng.choice(tuple(HUBS))
            first, end = window(2, 4)
            region = rng.choice(REGIONS)
            found.append(
                Incident(
                    "carrier_slowdown",
                    f"{carrier} {region}",
                    first,
                    end,
                    0.3 + 0.3 * rng.random(),
                )
            )
        for _ in range(count(7)):
            first, end = window(1, 3)
            found.append(
                Incident("weather", rng.choice(REGIONS), first, end, 0.3 + 0.3 * rng.random())
            )
        return found

    def incident(self, mode: str, entity: str, day: date) -> Incident | None:
        for found in self.incidents:
            if found.mode == mode and found.entity == entity and found.covers(day):
                return found
        return None

    def _site_shares(self) -> dict[str, float]:
        """Expected share of orders each site ships (the routing rule in `plan`)."""
        total = sum(d.weight for d in self.config.destinations)
        n = len(self.config.warehouses)
        shares = {w.name: 0.0 for w in self.config.warehouses}
        for dest in self.config.destinations:
            preferred = REGION_SITE.get(dest.region, ("PA",))
            for state in preferred:
                site = self.sites.get(state, self.config.warehouses[0])
                shares[site.name] += 0.9 * dest.weight / total / len(preferred)
            for site in self.config.warehouses:
                shares[site.name] += 0.1 * dest.weight / total / n
        return shares

    def _inbound(self) -> dict[str, dict[date, float]]:
        """Expected volume each site plans to ship per business day (its queue's inbound)."""
        shares = self._site_shares()
        cutoff = self.config.services["ground"].cutoff
        per_day: dict[date, int] = {}
        for day in range(self.days):
            for t in self._day_times(day):
                od = self.order_day(t, cutoff)
                per_day[od] = per_day.get(od, 0) + 1
        self._day_cache.clear()
        inbound: dict[str, dict[date, float]] = {w.name: {} for w in self.config.warehouses}
        for site in self.config.warehouses:
            volumes = inbound[site.name]
            for od, orders in per_day.items():
                volume = orders * shares[site.name]
                for lag, part in ((site.handling_days, 0.6), (site.handling_days - 1, 0.4)):
                    day = self.add_bd(od, max(0, lag))
                    volumes[day] = volumes.get(day, 0.0) + volume * part
        return inbound

    # -- customers ---------------------------------------------------------------------
    def customer_of(self, index: int) -> int:
        """The customer number of order `index`: its own, or an earlier order's customer."""
        while True:
            rng = random.Random((self.seed << 24) ^ (index * 40_503) ^ 0xC057)
            if index < 20 or rng.random() >= REPEAT_CUSTOMERS:
                return index
            index = index - 1 - int(rng.random() * min(index - 1, 20_000))

    def _customer(self, number: int, plan: OrderPlan) -> None:
        rng = random.Random((self.seed << 32) ^ (number * 2_246_822_519) ^ 0xC0FFEE)
        plan.destination = pick(rng, self.config.destinations, self.dest_cum)
        plan.first_name = rng.choice(FIRST_NAMES)
        plan.last_name = rng.choice(LAST_NAMES)
        plan.street = f"{ri(rng, 1, 9899)} {rng.choice(STREETS)} {rng.choice(STREET_TYPES)}"
        plan.zip = f"{plan.destination.zip3}{ri(rng, 0, 99):02d}"
        plan.vip = rng.random() < 0.08
        first_order = self.placed_at(number)
        plan.customer_created_at = first_order - ri(rng, 0, 700) * DAY - rng.randrange(DAY)
        plan.customer = number

    # -- one order -------------------------------------------------------------------
    def plan(self, index: int) -> OrderPlan:
        rng = random.Random((self.seed << 40) ^ (index * 2_654_435_761) ^ 0x5EED)
        plan = self._order(index, rng)
        if rng.random() < 0.015:
            self._cancel(plan, rng)
            return plan
        self._order_issues(plan, rng)
        for shipment in plan.shipments:
            ShipmentLife(self, plan, shipment, rng).run()
        settle(self, plan, rng)
        record_onsets(plan)
        return plan

    def _order(self, index: int, rng: random.Random) -> OrderPlan:
        placed = self.placed_at(index)
        cfg = self.config
        paid, pending = placed + ri(rng, 20, 600), False
        # Drawn from a hash, not the order's RNG: the payment moves no other draw of the world.
        draw = zlib.crc32(f"payment:{self.seed}:{index}".encode()) % 10_000
        if draw < DELAYED_PAYMENT * 10_000:
            # captured 4 h to 4 days later (the gateway settles, or a fraud review clears)
            spread = zlib.crc32(f"capture:{self.seed}:{index}".encode()) % (92 * HOUR)
            paid, pending = placed + 4 * HOUR + spread, True
        plan = OrderPlan(
            index=index,
            placed_at=placed,
            paid_at=paid,
            payment_pending=pending,
            released_at=placed + ri(rng, 300, HOUR),
            cancelled_at=None,
            destination=cfg.destinations[0],
            service=pick(rng, SERVICES, SERVICE_CUM),
            vip=False,
            customer_created_at=0,
            first_name="",
            last_name="",
            street="",
            zip="",
            lines=[],
            promised=date.min,
            deadline=0,
            promise_attribute=rng.random() < 0.9,
            warehouse=cfg.warehouses[0],
            shipments=[],
            fo_events={},
            promised_ship=date.min,
        )
        self._customer(self.customer_of(index), plan)
        level = cfg.services[plan.service]
        preferred = REGION_SITE.get(plan.destination.region, ("PA",))
        if rng.random() < 0.9:
            site = self.sites.get(rng.choice(preferred), cfg.warehouses[0])
        else:
            site = rng.choice(cfg.warehouses)
        plan.warehouse = site
        carriers, carrier_cum = CARRIERS_BY_SERVICE[plan.service]
        carrier = pick(rng, carriers, carrier_cum)
        n_lines = pick(rng, (1, 2, 3), (0.6, 0.9, 1.0))
        split = rng.random() < 0.05
        if split and n_lines == 1:
            n_lines = 2
        plan.lines = [
            (sku, pick(rng, (1, 2, 3), (0.8, 0.95, 1.0))) for sku in rng.sample(SKUS, n_lines)
        ]
        handling = 0 if plan.vip else site.handling_days
        od = self.order_day(placed, level.cutoff)
        plan.promised_ship = self.add_bd(od, handling)
        plan.promised = self.add_bd(plan.promised_ship, level.transit_days)
        plan.deadline = int(promise_deadline(plan.promised, plan.destination.tz).timestamp())
        # Which shipment lines go where: a split sends the last line separately.
        groups = [tuple(range(n_lines - 1)), (n_lines - 1,)] if split else [tuple(range(n_lines))]
        for k, lines in enumerate(groups):
            where = site if k == 0 or rng.random() < 0.5 else rng.choice(cfg.warehouses)
            plan.shipments.append(
                ShipmentPlan(
                    k=k,
                    warehouse=where,
                    carrier=carrier,
                    line_indexes=lines,
                    tracking_code=self._tracking_code(carrier, index, k),
                    tracker_id=self.tracker_id(index, k),
                )
            )
        for shipment in plan.shipments:
            fo = plan.fo_events.setdefault(shipment.warehouse.name, [FoEvent(placed, "open", None)])
            if len(fo) == 1:
                fo.append(FoEvent(plan.released_at or placed, "in_progress", None))
            shipment.wms.append(
                WmsEvent(plan.released_at or placed, "Processing", None, "PendingOnTime")
            )
        return plan

    def _order_issues(self, plan: OrderPlan, rng: random.Random) -> None:
        """Order-level draws the shipments then act on: an unusable address."""
        plan.memo["address"] = None
        if rng.random() < ADDRESS_ISSUE:
            plan.memo["address"] = "hold" if rng.random() < ADDRESS_HELD else "carrier"

    def _tracking_code(self, carrier: str, index: int, k: int) -> str:
        # Unique per (index, k) within a world (up to 25M orders); the seed varies the prefix.
        serial = index * 4 + k
        if carrier == "UPS":
            return f"1Z{(self.seed * 7919) % 10**6:06d}03{serial:08d}"
        if carrier == "FedEx":
            return f"7{self.seed % 100:02d}{serial:09d}"
        return f"9400{self.seed % 10**6:06d}{serial:012d}"

    def _cancel(self, plan: OrderPlan, rng: random.Random) -> None:
        """Cancelled before shipping (noise, not an exception)."""
        released = plan.released_at or plan.placed_at
        at = plan.placed_at + ri(rng, 20 * 60, 18 * HOUR)
        plan.cancelled_at = at
        if at < released:
            plan.released_at = None  # never reached the 3PL
            for shipment in plan.shipments:
                shipment.wms.clear()
            for events in plan.fo_events.values():
                del events[1:]
        else:
            for shipment in plan.shipments:
                shipment.wms.append(WmsEvent(at, "Cancelled", None, "Unavailable"))
        for events in plan.fo_events.values():
            events.append(FoEvent(at, "cancelled", None))

    def attribute(self, plan: OrderPlan) -> None:
        """The miss's cause: the delay that cost most (the earliest among equals)."""
        if not plan.missed:
            return
        causes = sorted(plan.causes, key=lambda c: (-c.days, c.at))
        if causes:
            cause = causes[0]
            plan.failure_mode = cause.mode
            plan.root_cause_type = ROOT_CAUSE_TYPE[cause.mode]
            plan.root_cause_entity = cause.entity
        else:  # late on the carrier's own transit time with no incident
            plan.failure_mode = "transit_delay"
            plan.root_cause_type = "carrier"
            plan.root_cause_entity = plan.shipments[0].carrier
