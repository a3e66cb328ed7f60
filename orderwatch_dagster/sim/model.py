"""The simulator's vocabulary: plans (every timestamp of an order's life), events, catalogue.

A plan holds every timestamp of the order's life (epoch seconds, UTC), including those after
the clock; the vendor renderers (`sim/render/`) then show it as of any moment.
"""

from __future__ import annotations

import random
from bisect import bisect
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from functools import lru_cache
from itertools import accumulate
from typing import Any, NamedTuple
from zoneinfo import ZoneInfo

from orderwatch_dagster.sim.config import Destination, Warehouse

# Ground truth `failure_mode`: the cause that made a missed order late ("none" when on time).
FAILURE_MODES: tuple[str, ...] = (
    "warehouse_backlog",  # the site's queue (capacity vs inbound) shipped it late
    "stock_out",  # a SKU stock-out held it
    "invalid_address",  # held for the address, or corrected by the carrier
    "label_never_accepted",  # label printed, the carrier never scanned it for days
    "scan_gap",  # a hub stopped scanning and the parcel slipped
    "lost_parcel",
    "weather_delay",  # a regional storm
    "carrier_slowdown",  # a carrier's regional slowdown
    "transit_delay",  # no incident: the carrier's own transit-time tail
    "failed_delivery",
    "return_to_sender",
)
ROOT_CAUSE_TYPE = {
    "warehouse_backlog": "warehouse",
    "stock_out": "sku",
    "invalid_address": "address",
    "label_never_accepted": "carrier",
    "scan_gap": "lane",
    "lost_parcel": "carrier",
    "weather_delay": "region",
    "carrier_slowdown": "carrier",
    "transit_delay": "carrier",
    "failed_delivery": "carrier",
    "return_to_sender": "address",
}

HOUR = 3600
DAY = 86400
ORDER_ID_BASE = 5_000_000_000_000
CUSTOMER_ID_BASE = 7_000_000_000_000
ORDER_NUMBER_BASE = 1001

# Traffic by UTC hour (US shoppers: quiet 05–12 UTC, busy 15–03 UTC).
HOUR_WEIGHTS = (8, 7, 6, 4, 3, 2, 1, 1, 1, 1, 2, 3, 5, 7, 8, 9, 10, 10, 10, 10, 10, 10, 9, 9)
HOUR_CUM = tuple(accumulate(HOUR_WEIGHTS))

SERVICES = ("ground", "express", "overnight")
SERVICE_CUM = (0.70, 0.92, 1.0)
CARRIERS_BY_SERVICE: dict[str, tuple[tuple[str, ...], tuple[float, ...]]] = {
    "ground": (("USPS", "UPS", "FedEx"), (0.40, 0.75, 1.0)),
    "express": (("USPS", "UPS", "FedEx"), (0.10, 0.60, 1.0)),
    "overnight": (("UPS", "FedEx"), (0.5, 1.0)),
}
# Which site serves a region first (the rest goes to any site: stock is spread).
REGION_SITE: dict[str, tuple[str, ...]] = {
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
STREETS = ("Oak", "Maple", "Cedar", "Elm", "Pine", "Lake", "Hill")
STREET_TYPES = ("St", "Ave", "Rd", "Blvd", "Ln")
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


def pick(rng: random.Random, values: Sequence[Any], cum: Sequence[float]) -> Any:
    """Weighted choice by cumulative weights (cheaper than rng.choices for one draw)."""
    return values[bisect(cum, rng.random() * cum[-1])]


def ri(rng: random.Random, low: int, high: int) -> int:
    """Uniform int in [low, high] (rng.randint costs ~10x more in the hot loop)."""
    return low + int(rng.random() * (high - low + 1))


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


class EddEvent(NamedTuple):
    """The carrier's estimated delivery date from `known_at` on (None: no estimate)."""

    known_at: int
    day: date | None


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
    edd: list[EddEvent] = field(default_factory=list)  # the carrier's estimate over time
    scans: list[Scan] = field(default_factory=list)
    status_changes: list[StatusChange] | None = None  # memo (render/shopify.py)
    service: str | None = None  # a late shipment upgraded to a faster service (else the order's)
    guaranteed: date | None = None  # the carrier's guaranteed delivery day (overnight only)


@dataclass(slots=True)
class TicketPlan:
    k: int
    created_at: int
    wismo: bool  # a status question (tagged `wismo` only when `tagged`)
    channel: str
    link: str  # how it names the order: "external_id", "field" or "none" (e-mail only)
    events: list[StateEvent]
    tagged: bool = True


@dataclass(slots=True)
class ReturnPlan:
    k: int
    outcome: str
    line_index: int
    reason: str
    events: list[StateEvent]
    tracking_number: str


class Cause(NamedTuple):
    """Something that delayed the order: a failure mode, who caused it, days it cost, when."""

    mode: str
    entity: str
    days: float
    at: int


@dataclass(slots=True)
class OrderPlan:
    index: int
    placed_at: int
    paid_at: int  # payment captured (the order's financial_status turns `paid`)
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
    # a payment method that settles days later (bank transfer, buy now pay later, a manual
    # review): the order is `pending` until then, not `authorized` (sim/world.py DELAYED_PAYMENT)
    payment_pending: bool = False
    customer: int = 0  # customer number (repeat customers share it across orders)
    causes: list[Cause] = field(default_factory=list)  # every delay the order met
    onsets: dict[str, int] = field(default_factory=dict)  # signal -> first observable time
    scan_gaps: list[tuple[int, int | None]] = field(default_factory=list)  # (start, end) truth
    cause_onsets: dict[str, int] = field(default_factory=dict)  # cause kind -> began (truth)
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
