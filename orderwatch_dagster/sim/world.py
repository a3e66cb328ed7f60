"""The simulated world: world-wide incidents plus one self-contained plan per order.

Every order is planned from its own RNG seeded by (seed, index), and world incidents
(backlogs, lane scan gaps, regional weather, hot SKUs) from a world RNG seeded by the seed,
so any order can be regenerated alone and nothing global grows with the order count.
A plan holds every timestamp of the order's life (epoch seconds, UTC), including those
after the clock; the vendor renderers (`sim/render/`) then show it as of any moment.
"""

from __future__ import annotations

import hashlib
import random
from bisect import bisect
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from functools import lru_cache
from itertools import accumulate
from typing import Any, NamedTuple
from zoneinfo import ZoneInfo

from orderwatch_dagster.sim.calendar import (
    SHOP_TZ,
    add_business_days,
    order_day,
    promise_deadline,
)
from orderwatch_dagster.sim.config import Destination, MerchantConfig, Warehouse

FAILURE_MODES: tuple[str, ...] = (
    "warehouse_backlog",
    "stock_out",
    "invalid_address",
    "label_never_accepted",
    "scan_gap",
    "lost_parcel",
    "weather_delay",
    "failed_delivery",
    "return_to_sender",
)

HOUR = 3600
DAY = 86400
ORDER_ID_BASE = 5_000_000_000_000
CUSTOMER_ID_BASE = 7_000_000_000_000
ORDER_NUMBER_BASE = 1001

# Per-order probabilities of the failures that are not tied to a world incident.
_ORDER_MODE_RATES: tuple[tuple[str, float], ...] = (
    ("stock_out", 0.012),
    ("invalid_address", 0.010),
    ("label_never_accepted", 0.006),
    ("lost_parcel", 0.004),
    ("failed_delivery", 0.012),
    ("return_to_sender", 0.004),
)
_ORDER_MODE_CUM = tuple(accumulate(rate for _, rate in _ORDER_MODE_RATES))
BACKLOG_HIT = 0.45  # share of a backlogged site's orders that slip
LANE_HIT = 0.7  # share of parcels on a gapped lane that stop scanning
WEATHER_HIT = 0.45  # share of a storm region's deliveries that slip

# Traffic by UTC hour (US shoppers: quiet 05–12 UTC, busy 15–03 UTC).
_HOUR_WEIGHTS = (8, 7, 6, 4, 3, 2, 1, 1, 1, 1, 2, 3, 5, 7, 8, 9, 10, 10, 10, 10, 10, 10, 9, 9)
_HOUR_CUM = tuple(accumulate(_HOUR_WEIGHTS))

_SERVICES = ("ground", "express", "overnight")
_SERVICE_CUM = (0.70, 0.92, 1.0)
_CARRIERS_BY_SERVICE: dict[str, tuple[tuple[str, ...], tuple[float, ...]]] = {
    "ground": (("USPS", "UPS", "FedEx"), (0.40, 0.75, 1.0)),
    "express": (("USPS", "UPS", "FedEx"), (0.10, 0.60, 1.0)),
    "overnight": (("UPS", "FedEx"), (0.5, 1.0)),
}
# Transit variance in business days against the nominal service (negative = early).
_TRANSIT_VAR: dict[str, tuple[tuple[int, ...], tuple[float, ...]]] = {
    "ground": ((-2, -1, 0, 1), (0.10, 0.35, 0.975, 1.0)),
    "express": ((-1, 0, 1), (0.10, 0.975, 1.0)),
    "overnight": ((0, 1), (0.98, 1.0)),
}
# Which site serves a region first (the rest goes to any site: stock is spread).
_REGION_SITE: dict[str, tuple[str, ...]] = {
    "west": ("CA",),
    "mountain": ("CA", "TX"),
    "midwest": ("IL",),
    "northeast": ("PA",),
    "southeast": ("PA", "TX"),
    "south_central": ("TX",),
}
HUBS: dict[str, tuple[tuple[str, str, str], ...]] = {
    "USPS": (("KANSAS CITY", "MO", "64121"), ("ATLANTA", "GA", "30320"), ("DENVER", "CO", "80266")),
    "UPS": (("LOUISVILLE", "KY", "40209"), ("HODGKINS", "IL", "60525"), ("ONTARIO", "CA", "91761")),
    "FedEx": (
        ("MEMPHIS", "TN", "38118"),
        ("INDIANAPOLIS", "IN", "46241"),
        ("FORT WORTH", "TX", "76177"),
    ),
}

_CATEGORIES = (
    ("TEE", "Organic Cotton Tee", 2800, 180),
    ("HOOD", "Fleece Hoodie", 6400, 650),
    ("MUG", "Stoneware Mug", 2200, 420),
    ("CAP", "Canvas Cap", 2600, 120),
    ("BAG", "Waxed Tote Bag", 4800, 500),
    ("SOCK", "Merino Socks", 1800, 90),
    ("BTL", "Insulated Bottle", 3400, 380),
    ("NTBK", "Dot Grid Notebook", 1600, 300),
    ("CNDL", "Soy Candle", 2400, 450),
    ("BLKT", "Wool Throw Blanket", 12800, 1400),
)
_STREETS = ("Oak", "Maple", "Cedar", "Elm", "Pine", "Lake", "Hill")
_STREET_TYPES = ("St", "Ave", "Rd", "Blvd", "Ln")
_VARIANTS = ("S", "M", "L", "BLK", "NAT", "XL")
FIRST_NAMES = (
    "Ava",
    "Liam",
    "Mia",
    "Noah",
    "Zoe",
    "Eli",
    "Ivy",
    "Owen",
    "Lena",
    "Omar",
    "Rosa",
    "Theo",
)
LAST_NAMES = (
    "Garcia",
    "Nguyen",
    "Smith",
    "Patel",
    "Kim",
    "Brown",
    "Lopez",
    "Cohen",
    "Okafor",
    "Silva",
)


@dataclass(frozen=True)
class Sku:
    index: int
    sku: str
    title: str
    price_cents: int
    grams: int


SKUS: tuple[Sku, ...] = tuple(
    Sku(
        index=n,
        sku=f"OW-{cat}-{var}",
        title=f"{title} / {var}",
        price_cents=price + 200 * (n % 3),
        grams=grams,
    )
    for n, ((cat, title, price, grams), var) in enumerate(
        (c, v) for c in _CATEGORIES for v in _VARIANTS
    )
)


@lru_cache(maxsize=16384)
def _midnight(day: date, tz: ZoneInfo) -> float:
    return datetime(day.year, day.month, day.day, tzinfo=tz).timestamp()


def epoch(day: date, hours: float, tz: ZoneInfo) -> int:
    """Local wall time `hours` after midnight of `day` in `tz`, as epoch seconds."""
    return int(_midnight(day, tz) + hours * HOUR)


def local_date(t: int, tz: ZoneInfo) -> date:
    return datetime.fromtimestamp(t, tz).date()


def to_dt(t: int) -> datetime:
    return datetime.fromtimestamp(t, UTC)


def _pick(rng: random.Random, values: Sequence[Any], cum: Sequence[float]) -> Any:
    """Weighted choice by cumulative weights (cheaper than rng.choices for one draw)."""
    return values[bisect(cum, rng.random() * cum[-1])]


def _ri(rng: random.Random, low: int, high: int) -> int:
    """Uniform int in [low, high] (rng.randint costs ~10x more in the hot loop)."""
    return low + int(rng.random() * (high - low + 1))


@dataclass(frozen=True)
class Incident:
    """A world event: a site backlog, a lane that stops scanning, or a storm over a region."""

    mode: str
    entity: str  # warehouse name, "<warehouse> -> <region>" lane, or region
    first_day: date
    last_day: date  # inclusive

    def covers(self, day: date) -> bool:
        return self.first_day <= day <= self.last_day


class WmsEvent(NamedTuple):
    """One ShipBob shipment state (a version of the 3PL's record)."""

    at: int
    status: str
    detail: str | None  # status_details name
    efd_status: str  # estimated_fulfillment_date_status


class FoEvent(NamedTuple):
    """One FulfillmentOrder state at a location."""

    at: int
    status: str
    hold: str | None  # fulfillment_holds reason


class StateEvent(NamedTuple):
    """A ticket's or a return's state from `at` on."""

    at: int
    status: str


class StatusChange(NamedTuple):
    """A change of the Shopify fulfillment `shipment_status` a carrier scan causes."""

    at: int  # the scan's carrier time
    arrival: int  # when the scan reached the tracker
    status: str


Location = tuple[str | None, str | None, str | None]  # (city, state, zip) of a scan


@dataclass(slots=True)
class Scan:
    at: int  # event time (the carrier's `datetime`)
    arrival: int  # when EasyPost had it (tracker version time)
    status: str
    detail: str
    message: str
    city: str | None
    state: str | None
    zip: str | None


@dataclass(slots=True)
class ShipmentPlan:
    k: int
    warehouse: Warehouse
    carrier: str
    line_indexes: tuple[int, ...]
    tracking_code: str
    tracker_id: str
    wms: list[WmsEvent] = field(default_factory=list)  # ShipBob shipment history
    label_at: int | None = None
    shipped_at: int | None = None  # handed to the carrier (ShipBob actual_fulfillment_date)
    delivered_at: int | None = None
    planned_delivery: date | None = None
    scans: list[Scan] = field(default_factory=list)
    status_changes: list[StatusChange] | None = None  # memo (render/shopify.py)


@dataclass(slots=True)
class TicketPlan:
    k: int
    created_at: int
    wismo: bool
    channel: str
    use_external_id: bool
    events: list[StateEvent]


@dataclass(slots=True)
class ReturnPlan:
    k: int
    outcome: str
    line_index: int
    reason: str
    events: list[StateEvent]
    tracking_number: str


@dataclass(slots=True)
class OrderPlan:
    index: int
    placed_at: int
    paid_at: int
    released_at: int | None
    cancelled_at: int | None
    destination: Destination
    service: str
    vip: bool
    customer_created_at: int
    first_name: str
    last_name: str
    street: str
    zip: str
    lines: list[tuple[Sku, int]]  # (sku, quantity)
    promised: date
    deadline: int
    promise_attribute: bool
    warehouse: Warehouse
    shipments: list[ShipmentPlan]
    fo_events: dict[str, list[FoEvent]]  # FulfillmentOrder history per location name
    promised_ship: date
    failure_mode: str = "none"
    failure_onset: int | None = None
    root_cause_type: str = ""
    root_cause_entity: str = ""
    delivered_at: int | None = None
    tickets: list[TicketPlan] = field(default_factory=list)
    returns: list[ReturnPlan] = field(default_factory=list)
    memo: dict[str, Any] = field(default_factory=dict)  # render-time constants (render/)

    @property
    def order_id(self) -> int:
        return ORDER_ID_BASE + self.index

    @property
    def order_number(self) -> str:
        return str(ORDER_NUMBER_BASE + self.index)

    @property
    def name(self) -> str:
        return f"#{ORDER_NUMBER_BASE + self.index}"

    @property
    def missed(self) -> bool:
        if self.cancelled_at is not None:
            return False
        return self.delivered_at is None or self.delivered_at >= self.deadline

    def total_cents(self) -> int:
        return sum(sku.price_cents * qty for sku, qty in self.lines) + self.shipping_cents()

    def shipping_cents(self) -> int:
        return {"ground": 0 if self.vip else 595, "express": 1495, "overnight": 2995}[self.service]


@dataclass(slots=True)
class _Leg:
    """One shipment being planned: what the steps of `World._fulfil` hand to each other."""

    plan: OrderPlan
    shipment: ShipmentPlan
    rng: random.Random
    mode: str  # the failure this shipment carries ("none" for all but the primary)
    address_variant: str = "hold"  # an invalid address caught by the 3PL or by the carrier
    base_day: date = date.min  # the day handling counts from
    earliest: int = 0  # no pick before this
    ship_day: date = date.min
    label: int = 0
    pickup: int = 0
    accept: int = 0
    deliver_day: date = date.min  # planned (nominal + transit variance)
    final_day: date = date.min  # after incident delays
    hub: Location = (None, None, None)
    where: Location = (None, None, None)
    t: int = 0  # time of the last in-transit scan
    ofd: int = 0
    at_dest: int = 0
    released: int = field(init=False)
    site: Warehouse = field(init=False)
    origin: Location = field(init=False)
    dest_loc: Location = field(init=False)

    def __post_init__(self) -> None:
        self.released = self.plan.released_at or self.plan.placed_at
        self.earliest = self.released + 600
        self.site = self.shipment.warehouse
        self.origin = (self.site.city.upper(), self.site.state, self.site.zip)
        dest = self.plan.destination
        self.dest_loc = (dest.city.upper(), dest.code, self.plan.zip)

    @property
    def carrier_address_issue(self) -> bool:
        return self.mode == "invalid_address" and self.address_variant == "carrier"

    def lag(self, low: int, high: int) -> int:
        return _ri(self.rng, low, high)

    def scan(
        self,
        at: int,
        low: int,
        high: int,
        status: str,
        detail: str,
        message: str,
        where: Location,
    ) -> None:
        """Append a carrier scan at `at`, seen by EasyPost `low`..`high` seconds later."""
        self.shipment.scans.append(
            Scan(at, at + self.lag(low, high), status, detail, message, *where)
        )

    def out_for_delivery(self, at: int) -> None:
        self.scan(at, 120, 1800, "out_for_delivery", "out_for_delivery", "Out for Delivery",
                  self.dest_loc)  # fmt: skip


class World:
    """World parameters, incidents and per-order planning."""

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
        self._day_cache: tuple[int, list[int]] = (-1, [])
        self._bd_cache: dict[tuple[date, int], date] = {}
        self.incidents = self._incidents()
        self.hot_skus = tuple(random.Random(seed * 31 + 5).sample(SKUS, 3))

    # -- world incidents -------------------------------------------------------------
    def _incidents(self) -> list[Incident]:
        rng = random.Random(self.seed * 7919 + 17)
        found: list[Incident] = []
        last = max(0, self.days - 1)
        site_weights = (1.0,) * len(self.config.warehouses)
        for _ in range(max(1, round(self.days / 15))):
            site = rng.choices(self.config.warehouses, weights=site_weights)[0]
            first = self.start + timedelta(days=_ri(rng, 0, max(0, last - 2)))
            found.append(Incident("warehouse_backlog", site.name, first, first + timedelta(days=2)))
        # Lanes from each region's main site, weighted by how much volume they carry.
        volume: dict[str, int] = {}
        for dest in self.config.destinations:
            volume[dest.region] = volume.get(dest.region, 0) + dest.weight
        lanes = [(states[0], region) for region, states in _REGION_SITE.items()]
        lane_weights = [volume.get(region, 1) for _, region in lanes]
        for _ in range(max(1, round(self.days / 10))):
            state, region = rng.choices(lanes, weights=lane_weights)[0]
            site = self.sites.get(state, self.config.warehouses[0])
            first = self.start + timedelta(days=rng.randint(0, max(0, last - 2)))
            found.append(
                Incident("scan_gap", f"{site.name} -> {region}", first, first + timedelta(days=2))
            )
        regions = ("northeast", "southeast", "midwest", "south_central", "west")
        for _ in range(max(1, round(self.days / 15))):
            region = rng.choice(regions)
            # Storms hit deliveries, which land a few days after orders are placed.
            first = self.start + timedelta(days=_ri(rng, 2, max(2, last)))
            found.append(Incident("weather_delay", region, first, first + timedelta(days=2)))
        return found

    def _incident(self, mode: str, entity: str, day: date) -> Incident | None:
        for incident in self.incidents:
            if incident.mode == mode and incident.entity == entity and incident.covers(day):
                return incident
        return None

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

    def placed_at(self, index: int) -> int:
        """Placement time: sorted within each UTC day so names follow placement order."""
        day, slot = divmod(index, self.orders_per_day)
        if self._day_cache[0] != day:
            rng = random.Random(self.seed * 1_000_003 + 7_777_777 * (day + 1))
            hours = [
                bisect(_HOUR_CUM, rng.random() * _HOUR_CUM[-1]) for _ in range(self.orders_per_day)
            ]
            base = self.start_epoch + day * DAY
            times = sorted(base + h * HOUR + rng.randrange(HOUR) for h in hours)
            self._day_cache = (day, times)
        return self._day_cache[1][slot]

    def tracker_id(self, index: int, k: int) -> str:
        digest = hashlib.md5(f"{self.seed}:{index}:{k}".encode(), usedforsecurity=False)
        return "trk_" + digest.hexdigest()

    # -- one order -------------------------------------------------------------------
    def plan(self, index: int) -> OrderPlan:
        rng = random.Random((self.seed << 40) ^ (index * 2_654_435_761) ^ 0x5EED)
        placed = self.placed_at(index)
        cfg = self.config
        dest = _pick(rng, cfg.destinations, self.dest_cum)
        service = _pick(rng, _SERVICES, _SERVICE_CUM)
        level = cfg.services[service]
        vip = rng.random() < 0.08
        preferred = _REGION_SITE.get(dest.region, ("PA",))
        if rng.random() < 0.9:
            site = self.sites.get(rng.choice(preferred), cfg.warehouses[0])
        else:
            site = rng.choice(cfg.warehouses)
        carriers, carrier_cum = _CARRIERS_BY_SERVICE[service]
        carrier = _pick(rng, carriers, carrier_cum)
        n_lines = _pick(rng, (1, 2, 3), (0.6, 0.9, 1.0))
        split = rng.random() < 0.05
        if split and n_lines == 1:
            n_lines = 2
        skus = rng.sample(SKUS, n_lines)
        lines = [(sku, _pick(rng, (1, 2, 3), (0.8, 0.95, 1.0))) for sku in skus]
        cancelled = rng.random() < 0.015
        handling = 0 if vip else site.handling_days
        od = self.order_day(placed, level.cutoff)
        promised_ship = self.add_bd(od, handling)
        promised = self.add_bd(promised_ship, level.transit_days)
        deadline = int(promise_deadline(promised, dest.tz).timestamp())
        first = rng.choice(FIRST_NAMES)
        last = rng.choice(LAST_NAMES)
        plan = OrderPlan(
            index=index,
            placed_at=placed,
            paid_at=placed + _ri(rng, 20, 600),
            released_at=placed + _ri(rng, 300, HOUR),
            cancelled_at=None,
            destination=dest,
            service=service,
            vip=vip,
            customer_created_at=placed - _ri(rng, 0, 700) * DAY - rng.randrange(DAY),
            first_name=first,
            last_name=last,
            street=f"{_ri(rng, 1, 9899)} {rng.choice(_STREETS)} {rng.choice(_STREET_TYPES)}",
            zip=f"{dest.zip3}{_ri(rng, 0, 99):02d}",
            lines=lines,
            promised=promised,
            deadline=deadline,
            promise_attribute=rng.random() < 0.9,
            warehouse=site,
            shipments=[],
            fo_events={},
            promised_ship=promised_ship,
        )
        # Which shipment lines go where: a split sends the last line separately.
        primary_lines = tuple(range(n_lines - 1)) if split else tuple(range(n_lines))
        primary = ShipmentPlan(
            k=0,
            warehouse=site,
            carrier=carrier,
            line_indexes=primary_lines,
            tracking_code=self._tracking_code(carrier, index, 0),
            tracker_id=self.tracker_id(index, 0),
        )
        plan.shipments.append(primary)
        if split:
            other = site if rng.random() < 0.5 else rng.choice(cfg.warehouses)
            plan.shipments.append(
                ShipmentPlan(
                    k=1,
                    warehouse=other,
                    carrier=carrier,
                    line_indexes=(n_lines - 1,),
                    tracking_code=self._tracking_code(carrier, index, 1),
                    tracker_id=self.tracker_id(index, 1),
                )
            )

        mode = "none"
        if not cancelled:
            backlog = self._incident("warehouse_backlog", site.name, od)
            if backlog is not None and rng.random() < BACKLOG_HIT:
                mode = "warehouse_backlog"
            else:
                u = rng.random()
                for (name, _), edge in zip(_ORDER_MODE_RATES, _ORDER_MODE_CUM, strict=True):
                    if u < edge:
                        mode = name
                        break
        if mode == "stock_out":
            hot = rng.choice(self.hot_skus)
            plan.lines[primary_lines[0]] = (hot, plan.lines[primary_lines[0]][1])
        plan.failure_mode = mode

        released = plan.released_at
        assert released is not None
        for shipment in plan.shipments:
            fo = plan.fo_events.setdefault(shipment.warehouse.name, [FoEvent(placed, "open", None)])
            if len(fo) == 1:
                fo.append(FoEvent(released, "in_progress", None))
            shipment.wms.append(WmsEvent(released, "Processing", None, "PendingOnTime"))

        if cancelled:
            self._cancel(plan, rng, od)
            return plan
        for shipment in plan.shipments:
            self._fulfil(plan, shipment, rng, od, level.transit_days, level.cutoff)
        self._settle(plan, rng)
        return plan

    def _tracking_code(self, carrier: str, index: int, k: int) -> str:
        # Unique per (index, k) within a world (up to 25M orders); the seed varies the prefix.
        serial = index * 4 + k
        if carrier == "UPS":
            return f"1Z{(self.seed * 7919) % 10**6:06d}03{serial:08d}"
        if carrier == "FedEx":
            return f"7{self.seed % 100:02d}{serial:09d}"
        return f"9400{self.seed % 10**6:06d}{serial:012d}"

    def _cancel(self, plan: OrderPlan, rng: random.Random, od: date) -> None:
        """Cancelled before shipping (noise, not an exception)."""
        released = plan.released_at or plan.placed_at
        at = plan.placed_at + _ri(rng, 20 * 60, 18 * HOUR)
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

    def _fulfil(
        self,
        plan: OrderPlan,
        shipment: ShipmentPlan,
        rng: random.Random,
        od: date,
        transit: int,
        cutoff: time,
    ) -> None:
        """One shipment's life, step by step (the steps draw from `rng` in this order)."""
        leg = _Leg(plan, shipment, rng, mode=plan.failure_mode if shipment.k == 0 else "none")
        leg.base_day = od
        self._hold_before_pick(leg, cutoff)
        self._warehouse(leg)
        self._label_and_acceptance(leg, transit)
        self._incident_mode(leg)
        self._line_haul(leg)
        if leg.mode == "lost_parcel":
            self._lose(leg)
            return
        self._last_mile(leg)

    def _hold_before_pick(self, leg: _Leg, cutoff: time) -> None:
        """Holds in the OMS/3PL before picking: stock-out backorder or a bad address."""
        plan, shipment, rng = leg.plan, leg.shipment, leg.rng
        leg.address_variant = "hold" if rng.random() < 0.6 else "carrier"
        if not (
            leg.mode == "stock_out"
            or (leg.mode == "invalid_address" and leg.address_variant == "hold")
        ):
            return
        fo = plan.fo_events[shipment.warehouse.name]
        hold_at = leg.released + _ri(rng, 600, 3 * HOUR)
        resume_at = hold_at + _ri(rng, int(1.5 * DAY), 6 * DAY)
        if leg.mode == "stock_out":
            sku = plan.lines[shipment.line_indexes[0]][0]
            fo.append(FoEvent(hold_at, "on_hold", "inventory_out_of_stock"))
            shipment.wms.append(
                WmsEvent(hold_at, "Exception", "OutOfStock", "AwaitingInventoryAllocation")
            )
            plan.root_cause_type, plan.root_cause_entity = "sku", sku.sku
        else:
            resume_at = hold_at + _ri(rng, int(0.8 * DAY), 3 * DAY)
            fo.append(FoEvent(hold_at, "on_hold", "incorrect_address"))
            shipment.wms.append(WmsEvent(hold_at, "OnHold", "InvalidAddress", "Unavailable"))
            plan.root_cause_type, plan.root_cause_entity = "address", plan.name
        plan.failure_onset = hold_at
        fo.append(FoEvent(resume_at, "in_progress", None))
        shipment.wms.append(WmsEvent(resume_at, "Processing", None, "PendingLate"))
        leg.earliest = resume_at + 600
        leg.base_day = self.order_day(resume_at, cutoff)

    def _warehouse(self, leg: _Leg) -> None:
        """Ship day (a backlog slips it), then pick, pack, label and carrier pickup."""
        plan, shipment, rng, site = leg.plan, leg.shipment, leg.rng, leg.site
        handling = 0 if plan.vip else site.handling_days
        early = handling > 0 and rng.random() < 0.4
        ship_day = self.add_bd(leg.base_day, handling - 1 if early else handling)
        if leg.mode == "warehouse_backlog":
            expected = epoch(ship_day, 11.0, site.tz)
            plan.failure_onset = max(expected, leg.earliest)
            plan.root_cause_type, plan.root_cause_entity = "warehouse", site.name
            shipment.wms.append(WmsEvent(plan.failure_onset, "Processing", None, "PendingLate"))
            # The slip always carries it past the promised ship date (else it is no failure).
            ship_day = self.add_bd(max(ship_day, plan.promised_ship), _ri(rng, 1, 3))
        day_open = epoch(ship_day, 8.0, site.tz)
        pick = max(leg.earliest, day_open + _ri(rng, 0, 5 * HOUR))
        pack = pick + _ri(rng, 600, 90 * 60)
        label = pack + _ri(rng, 300, 1800)
        pickup = max(label + 1800, epoch(ship_day, 17.5 + 2.5 * rng.random(), site.tz))
        late_ship = ship_day > plan.promised_ship
        efd = "PendingLate" if late_ship else "PendingOnTime"
        shipment.wms.append(WmsEvent(pick, "Processing", "Picked", efd))
        shipment.wms.append(WmsEvent(pack, "Processing", "Packed", efd))
        shipment.wms.append(WmsEvent(label, "LabeledCreated", None, efd))
        done = "FulfilledLate" if late_ship else "FulfilledOnTime"
        shipment.wms.append(WmsEvent(pickup, "Completed", None, done))
        shipment.label_at = label
        shipment.shipped_at = pickup
        fo = plan.fo_events[site.name]
        same_site = [s.shipped_at for s in plan.shipments if s.warehouse.name == site.name]
        if all(same_site):
            fo.append(FoEvent(max(t for t in same_site if t is not None), "closed", None))
            fo.sort(key=lambda event: event.at)
        leg.ship_day, leg.label, leg.pickup = ship_day, label, pickup

    def _label_and_acceptance(self, leg: _Leg, transit: int) -> None:
        """Label scan, the carrier's acceptance scan time and the planned delivery day."""
        plan, shipment, rng, site = leg.plan, leg.shipment, leg.rng, leg.site
        label_scan = Scan(
            leg.label + 60,
            leg.label + leg.lag(60, 900),  # seen from the label's time, not the scan's
            "pre_transit",
            "label_created",
            "Shipping Label Created, USPS Awaiting Item"
            if shipment.carrier == "USPS"
            else "Shipment information sent to carrier",
            *leg.origin,
        )
        shipment.scans.append(label_scan)
        accept = leg.pickup + leg.lag(1800, 3 * HOUR)
        if leg.mode == "label_never_accepted":
            plan.failure_onset = leg.pickup + DAY
            plan.root_cause_type, plan.root_cause_entity = "carrier", shipment.carrier
            found_day = self.add_bd(local_date(leg.pickup, site.tz), _ri(rng, 2, 4))
            accept = epoch(found_day, 18.0 + 3 * rng.random(), site.tz)
        var_values, var_cum = _TRANSIT_VAR[plan.service]
        days_in_transit = max(1, transit + _pick(rng, var_values, var_cum))
        accept_day = local_date(accept - 4 * HOUR, site.tz)  # late-evening scans count that day
        if accept_day not in self.holidays and accept_day.weekday() < 5:
            start_day = accept_day
        else:
            start_day = self.add_bd(accept_day, 1)
        leg.deliver_day = self.add_bd(start_day, days_in_transit)
        shipment.planned_delivery = leg.deliver_day
        leg.accept = accept

    def _incident_mode(self, leg: _Leg) -> None:
        """World incidents on the primary shipment of an order with no failure of its own."""
        plan, rng = leg.plan, leg.rng
        if leg.shipment.k != 0 or leg.mode != "none":
            return
        region = plan.destination.region
        lane = self._incident("scan_gap", f"{leg.site.name} -> {region}", leg.ship_day)
        if lane is not None and rng.random() < LANE_HIT:
            leg.mode = plan.failure_mode = "scan_gap"
            plan.root_cause_type, plan.root_cause_entity = "lane", lane.entity
            return
        storm = self._incident("weather_delay", region, leg.deliver_day)
        if storm is not None and rng.random() < WEATHER_HIT:
            leg.mode = plan.failure_mode = "weather_delay"
            plan.root_cause_type, plan.root_cause_entity = "region", region

    def _line_haul(self, leg: _Leg) -> None:
        """Acceptance scan, then in-transit scans up to the destination facility."""
        plan, shipment, rng = leg.plan, leg.shipment, leg.rng
        leg.hub = rng.choice(HUBS[shipment.carrier])
        leg.scan(
            leg.accept,
            120,
            2400,
            "in_transit",
            "received_at_origin_facility",
            "Accepted at Origin Facility",
            leg.origin,
        )
        extra_days = 0
        if leg.mode == "weather_delay":
            extra_days = _ri(rng, 1, 3)
        elif leg.carrier_address_issue:
            extra_days = _ri(rng, 1, 2)
        leg.final_day = self.add_bd(leg.deliver_day, extra_days)
        leg.t = leg.accept
        leg.where = leg.origin
        if leg.mode == "scan_gap":
            self._scan_gap(leg)
        dest = plan.destination
        leg.ofd = epoch(leg.final_day, 7.0 + 2.5 * rng.random(), dest.tz)
        leg.at_dest = leg.ofd - _ri(rng, 2 * HOUR, 6 * HOUR)
        if leg.carrier_address_issue:
            # Reaches the destination on time, where the address turns out to be wrong.
            leg.at_dest = min(leg.at_dest, epoch(leg.deliver_day, 4.0 + 2 * rng.random(), dest.tz))
        self._in_transit_scans(leg)

    def _scan_gap(self, leg: _Leg) -> None:
        """One scan after acceptance, then the lane goes dark for 2–4 days, then resumes."""
        plan, rng = leg.plan, leg.rng
        # The delivery slips at least to the business day after the scans resume.
        gap_from = leg.accept + _ri(rng, 4 * HOUR, 20 * HOUR)
        leg.scan(gap_from, 120, 2400, "in_transit", "departed_facility",
                 "Departed Shipping Partner Facility", leg.origin)  # fmt: skip
        plan.failure_onset = gap_from + DAY
        gap_days = _ri(rng, 2, 4)
        t = gap_from + gap_days * DAY + _ri(rng, 0, 6 * HOUR)
        leg.t, leg.where = t, leg.hub
        leg.scan(t, 120, 2400, "in_transit", "arrived_at_facility",
                 "Arrived at Shipping Partner Facility", leg.hub)  # fmt: skip
        slipped = self.add_bd(leg.deliver_day, gap_days - 1)
        leg.final_day = max(slipped, self.add_bd(local_date(t, plan.destination.tz), 1))

    def _in_transit_scans(self, leg: _Leg) -> None:
        """In-transit scans: every 4–30 h, none on Sundays, half of Saturdays skipped."""
        rng = leg.rng
        moves = 0
        stop_after = _ri(rng, 1, 3) if leg.mode == "lost_parcel" else -1
        t = leg.t
        while True:
            t += _ri(rng, 4 * HOUR, 30 * HOUR)
            if t >= leg.at_dest - HOUR:
                break
            weekday = ((t - 5 * HOUR) // DAY + 3) % 7  # epoch day 0 was a Thursday
            if weekday == 6 or (weekday == 5 and rng.random() < 0.5):
                continue
            moves += 1
            leg.where = leg.hub if moves % 3 else leg.origin
            detail, message = (
                ("departed_facility", "Departed Shipping Partner Facility")
                if moves % 2
                else ("arrived_at_facility", "Arrived at Shipping Partner Facility")
            )
            leg.scan(t, 120, 2400, "in_transit", detail, message, leg.where)
            if moves == stop_after:
                break
        leg.t = t

    def _lose(self, leg: _Leg) -> None:
        """The parcel stops scanning; a lost scan follows days later."""
        plan, shipment, rng = leg.plan, leg.shipment, leg.rng
        last_seen = shipment.scans[-1].at
        plan.failure_onset = last_seen + DAY
        plan.root_cause_type, plan.root_cause_entity = "carrier", shipment.carrier
        lost_at = last_seen + _ri(rng, 5, 8) * DAY + _ri(rng, 0, 8 * HOUR)
        leg.scan(
            lost_at,
            120,
            2400,
            "failure",
            "lost",
            "Package is lost and cannot be delivered",
            leg.where,
        )

    def _last_mile(self, leg: _Leg) -> None:
        """Destination facility, exceptions on the way, out for delivery, the outcome."""
        plan, shipment, rng = leg.plan, leg.shipment, leg.rng
        scans = shipment.scans
        leg.scan(
            leg.at_dest,
            120,
            2400,
            "in_transit",
            "arrived_at_destination",
            "Arrived at Post Office"
            if shipment.carrier == "USPS"
            else "Arrived at Destination Facility",
            leg.dest_loc,
        )
        if leg.mode == "weather_delay":
            storm_at = epoch(leg.deliver_day, 6.0 + 3 * rng.random(), plan.destination.tz)
            # The storm hits on the planned delivery day; the parcel then crawls on.
            storm_at = min(max(storm_at, leg.accept + HOUR), scans[-1].at - 600)
            plan.failure_onset = storm_at
            scans.insert(
                len(scans) - 1,
                Scan(
                    storm_at,
                    storm_at + leg.lag(120, 2400),
                    "in_transit",
                    "weather_delay",
                    "Delivery delayed due to severe weather",
                    *leg.dest_loc,
                ),
            )
            scans.sort(key=lambda s: s.at)
        if leg.carrier_address_issue:
            fix_at = min(leg.at_dest + _ri(rng, HOUR, 4 * HOUR), leg.ofd - 600)
            plan.failure_onset = fix_at
            plan.root_cause_type, plan.root_cause_entity = "address", plan.name
            leg.scan(
                fix_at,
                120,
                2400,
                "in_transit",
                "address_correction",
                "Address information corrected; delivery rescheduled",
                leg.dest_loc,
            )
        leg.out_for_delivery(leg.ofd)
        delivered = leg.ofd + _ri(rng, HOUR, 10 * HOUR)
        if leg.mode in ("failed_delivery", "return_to_sender"):
            plan.failure_onset = delivered
            if leg.mode == "return_to_sender" or rng.random() < 0.5:
                next_try = self._delivery_exception(leg, delivered)
                if next_try is None:
                    return
                delivered = next_try
            else:
                leg.scan(
                    delivered,
                    120,
                    1800,
                    "available_for_pickup",
                    "arrived_at_pickup_location",
                    "Available for Pickup",
                    leg.dest_loc,
                )
                delivered = delivered + _ri(rng, 1, 3) * DAY + _ri(rng, 0, 4 * HOUR)
            plan.root_cause_type, plan.root_cause_entity = "carrier", shipment.carrier
        self._deliver(leg, delivered)

    def _delivery_exception(self, leg: _Leg, attempted: int) -> int | None:
        """A failed attempt: the next attempt's delivery time, or None when sent back."""
        plan, shipment, rng = leg.plan, leg.shipment, leg.rng
        dest = plan.destination
        leg.scan(
            attempted,
            120,
            1800,
            "failure",
            "delivery_exception",
            "Delivery Attempted - No Access to Delivery Location"
            if leg.mode == "failed_delivery"
            else "Delivery Exception - Addressee Unknown",
            leg.dest_loc,
        )
        if leg.mode == "return_to_sender":
            plan.root_cause_type, plan.root_cause_entity = "address", plan.name
            rts_at = epoch(
                self.add_bd(leg.final_day, _ri(rng, 2, 4)), 10 + 6 * rng.random(), dest.tz
            )
            leg.scan(
                rts_at,
                120,
                1800,
                "return_to_sender",
                "return",
                "Return to Sender Processed",
                leg.dest_loc,
            )
            back = rts_at + _ri(rng, 3, 6) * DAY
            plan.returns.append(
                ReturnPlan(
                    k=0,
                    outcome="return_to_sender",
                    line_index=shipment.line_indexes[0],
                    reason="undeliverable",
                    events=[
                        StateEvent(back, "open"),
                        StateEvent(back + _ri(rng, HOUR, 2 * DAY), "closed"),
                    ],
                    tracking_number=shipment.tracking_code,
                )
            )
            return None
        redo = self.add_bd(local_date(attempted, dest.tz), 1)
        ofd2 = epoch(redo, 7.0 + 2.5 * rng.random(), dest.tz)
        leg.out_for_delivery(ofd2)
        return ofd2 + _ri(rng, HOUR, 10 * HOUR)

    def _deliver(self, leg: _Leg, delivered: int) -> None:
        shipment, rng = leg.shipment, leg.rng
        scans = shipment.scans
        leg.scan(
            delivered,
            120,
            1800,
            "delivered",
            "arrived_at_destination",
            "Delivered, In/At Mailbox" if shipment.carrier == "USPS" else "Delivered",
            leg.dest_loc,
        )
        shipment.delivered_at = delivered
        if rng.random() < 0.015:
            # A scan the carrier uploads late: dated before delivery, first seen after it.
            late = scans[-3] if len(scans) >= 4 else scans[-2]
            late.arrival = scans[-1].arrival + _ri(rng, HOUR, 12 * HOUR)

    def _settle(self, plan: OrderPlan, rng: random.Random) -> None:
        """Eventual delivery, WISMO tickets and customer returns."""
        times = [s.delivered_at for s in plan.shipments]
        plan.delivered_at = None if None in times else max(t for t in times if t is not None)
        missed = plan.missed
        first_ship = min((s.shipped_at or plan.placed_at) for s in plan.shipments)
        k = 0
        if rng.random() < (0.35 if missed else 0.03):
            if missed:
                opened = plan.deadline + _ri(rng, -12 * HOUR, 48 * HOUR)
            else:
                end = plan.delivered_at or plan.deadline
                opened = first_ship + int((end - first_ship) * rng.random())
            opened = max(opened, plan.placed_at + HOUR)
            plan.tickets.append(self._ticket(k, opened, True, rng))
            k += 1
        if rng.random() < 0.01:
            opened = plan.placed_at + _ri(rng, HOUR, 3 * DAY)
            plan.tickets.append(self._ticket(k, opened, False, rng))
        if plan.delivered_at is not None and rng.random() < 0.06:
            created = plan.delivered_at + _ri(rng, 2 * DAY, 14 * DAY)
            closed = created + _ri(rng, 4 * DAY, 10 * DAY)
            outcome = _pick(rng, ("refund", "exchange", "credit"), (0.6, 0.85, 1.0))
            plan.returns.append(
                ReturnPlan(
                    k=len(plan.returns),
                    outcome=outcome,
                    line_index=rng.randrange(len(plan.lines)),
                    reason=rng.choice(("too_small", "too_large", "changed_mind", "defective")),
                    events=[StateEvent(created, "open"), StateEvent(closed, "closed")],
                    tracking_number=f"9202{(plan.index * 7 + 3) % 10**18:018d}",
                )
            )

    def _ticket(self, k: int, opened: int, wismo: bool, rng: random.Random) -> TicketPlan:
        replied = opened + _ri(rng, 10 * 60, 6 * HOUR)
        solved = replied + _ri(rng, HOUR, 30 * HOUR)
        return TicketPlan(
            k=k,
            created_at=opened,
            wismo=wismo,
            channel=rng.choice(("email", "web", "chat")),
            use_external_id=rng.random() < 0.7,
            events=[
                StateEvent(opened, "new"),
                StateEvent(replied, "open"),
                StateEvent(solved, "solved"),
            ],
        )
