"""One shipment's life: holds, the site's queue, pick/pack/label, the carrier leg, the EDD.

Each step draws from the order's RNG in a fixed order (determinism). What a step decides
shows only through vendor-visible events (ShipBob versions, FulfillmentOrder states, carrier
scans, the carrier's estimate) plus the plan's `causes` (ground truth, never rendered).

Signals are probabilistic and have look-alikes: exception scans on only part of the delayed
parcels and on a few that arrive on time; holds that clear in time; a hub outage silences
parcels that still arrive on time; the estimate moves only when the carrier learns of a
delay, not always, sometimes late, sometimes wrong.
"""

from __future__ import annotations

import random
from datetime import date, time, timedelta
from typing import Protocol

from orderwatch_dagster.sim.config import MerchantConfig
from orderwatch_dagster.sim.model import (
    DAY,
    HOUR,
    HUBS,
    Cause,
    EddEvent,
    FoEvent,
    OrderPlan,
    Scan,
    ShipmentPlan,
    WmsEvent,
    epoch,
    local_date,
    pick,
    ri,
)
from orderwatch_dagster.sim.network import (
    EARLY,
    TRANSIT_TAIL,
    Incident,
    SiteQueues,
    carrier_add_days,
    carrier_works,
    nominal_transit,
    zone_days,
)
from orderwatch_dagster.sim.threepl import follow_carrier
from orderwatch_dagster.sim.truth import record_cause


class World(Protocol):
    """What a shipment's life reads from the world (sim/world.py `World` implements it; a
    protocol, so this module does not import world.py, which imports it)."""

    config: MerchantConfig
    holidays: frozenset[date]
    queues: SiteQueues

    def add_bd(self, day: date, n: int) -> date: ...

    def order_day(self, t: int, cutoff: time) -> date: ...

    def incident(self, mode: str, entity: str, day: date) -> Incident | None: ...


Location = tuple[str | None, str | None, str | None]

# Per-shipment carrier failures (any shipment of a split order): (mode, cumulative share).
_CARRIER_FAILURES = (
    ("label_never_accepted", 0.005),
    ("lost_parcel", 0.0085),
    ("failed_delivery", 0.0185),
    ("return_to_sender", 0.0215),
)
NOISE = {
    "status_update": 0.20,  # an extra pre_transit status_update event at label time
    "no_acceptance_scan": 0.04,  # the first scan is at a hub
    "pickup_next_day": 0.08,  # label printed the day before the carrier picks up
    "repeated_scan": 0.03,  # an arrival scan delivered twice
    "late_upload": 0.015,  # a scan first seen after the delivery scan
    "false_delay_scan": 0.004,  # a `delayed` exception on a parcel that is on time
    "false_address_scan": 0.003,  # an address correction that costs nothing
    "pessimistic_edd": 0.05,  # the estimate moves 1-2 days later on an on-time parcel
}
# The rate each kind shows in a world: the chance above plus what other mechanisms add (a real
# delay the parcel recovers from also leaves a `delayed` scan on an on-time parcel), as a range
# wide enough for a 3,000-order world (about three standard errors). tests/test_sim.py
# asserts every entry; docs/feeds.md "Noise" states them. Shares are of shipped parcels unless
# named: `*_on_time` of parcels delivered in time, `late_upload` of delivered ones.
NOISE_RANGES = {
    "status_update": (0.17, 0.23),  # NOISE 20 %
    "no_acceptance_scan": (0.028, 0.052),  # NOISE 4 %
    "repeated_scan": (0.015, 0.035),  # 6 % of arrival scans (NOISE 3 % x 2) -> ~2.3 % parcels
    "late_upload": (0.008, 0.025),  # NOISE 1.5 % of delivered parcels with 3+ scans
    "pickup_next_day": (0.06, 0.10),  # NOISE 8 %, plus labels after PICKUP_CUTOFF, less holds
    "no_edd": (0.045, 0.085),  # EDD_ABSENT by carrier (USPS 12 %, UPS / FedEx 4 %)
    "edd_revised": (0.11, 0.19),  # delays the carrier revises for + pessimistic + storms
    "delay_scan_on_time": (0.012, 0.035),  # NOISE 0.4 % + real delays the parcel recovers
    "address_scan_on_time": (0.002, 0.014),  # NOISE 0.3 % + carrier corrections costing nothing
    "later_edd_on_time": (0.10, 0.18),  # NOISE 5 % pessimistic + storms + recovered delays
}
PICKUP_CUTOFF = 19.0  # labels printed later than this (site time) go with the next pickup
EDD_ABSENT = {"USPS": 0.12, "UPS": 0.04, "FedEx": 0.04}
EDD_UPDATE = 0.55  # the carrier revises its estimate after a delay it knows of
EDD_REVISION = (0.35, 0.75, 1.0)  # cumulative: the revision adds 1, 2 or 3 days
WEATHER_SCAN_HIT, WEATHER_SCAN_MISS = 0.6, 0.2  # weather scans on delayed / on-time parcels
DELAY_SCAN = 0.3  # a `delayed` scan on a parcel slowed by the carrier's network
LOCAL_RESCUE = 0.75  # shipping on the promised day, same region: a same-day courier
UPGRADE_LATE = 0.4  # late-shipped ground/express shipments upgraded to a faster service
STORM_REVISION = 0.5  # on-time parcels with a weather scan whose estimate moves anyway


class ShipmentLife:
    """Plans one shipment into its ShipBob versions, FulfillmentOrder states and scans."""

    def __init__(
        self, world: World, plan: OrderPlan, shipment: ShipmentPlan, rng: random.Random
    ) -> None:
        self.world = world
        self.plan = plan
        self.shipment = shipment
        self.rng = rng
        self.site = shipment.warehouse
        self.carrier = shipment.carrier
        dest = plan.destination
        self.origin: Location = (self.site.city.upper(), self.site.state, self.site.zip)
        self.dest_loc: Location = (dest.city.upper(), dest.code, plan.zip)
        self.released = plan.released_at or plan.placed_at
        self.level = world.config.services[plan.service]
        self.holidays = world.holidays

    # -- helpers -------------------------------------------------------------------------
    def lag(self, low: int, high: int) -> int:
        return ri(self.rng, low, high)

    def scan(self, at: int, status: str, detail: str, message: str, where: Location) -> Scan:
        found = Scan(at, at + self.lag(120, 2400), status, detail, message, *where)
        self.shipment.scans.append(found)
        return found

    def cause(
        self,
        mode: str,
        entity: str,
        days: float,
        at: int,
        *,
        began: int | None = None,
        kind: str | None = "",
    ) -> None:
        """A delay of the order; `began` (default `at`) is when its cause really began in the
        world, recorded per cause kind (default `mode`; None: recorded later, by the caller)
        for the ground truth (sim/truth.py CAUSES). Truth only: it draws nothing and shows in
        no feed."""
        self.plan.causes.append(Cause(mode, entity, days, at))
        if kind is not None:
            record_cause(self.plan, kind or mode, at if began is None else began)

    def run(self) -> None:
        od = self.world.order_day(self.plan.placed_at, self.level.cutoff)
        earliest, base_day = self._holds(od)
        self._warehouse(earliest, base_day)
        self._carrier()
        follow_carrier(self.shipment)

    # -- holds before picking ------------------------------------------------------------
    def _holds(self, od: date) -> tuple[int, date]:
        plan, shipment, rng = self.plan, self.shipment, self.rng
        earliest, base_day = self.released + 600, od
        fo = plan.fo_events[self.site.name]
        stocked = [
            (n, self.world.incident("stock_out", plan.lines[n][0].sku, od))
            for n in shipment.line_indexes
        ]
        out = next(((n, inc) for n, inc in stocked if inc is not None), None)
        if out is not None:
            n, incident = out
            assert incident is not None
            hold_at = self.released + self.lag(600, 3 * HOUR)
            restock = epoch(
                incident.last_day + timedelta(days=1), 9 + 6 * rng.random(), self.site.tz
            )
            resume = max(restock, hold_at + 2 * HOUR) + self.lag(0, DAY)
            sku = plan.lines[n][0].sku
            self._hold(fo, hold_at, resume, "inventory_out_of_stock", "Exception", "OutOfStock",
                       "AwaitingInventoryAllocation")  # fmt: skip
            # the SKU was out when the site got the order (or from the stock-out's first day),
            # never after the hold that reports it (the order may reach the site the evening
            # before the stock-out's first local day)
            out_since = epoch(incident.first_day, 0.0, self.site.tz)
            self.cause("stock_out", sku, (resume - hold_at) / DAY, hold_at,
                       began=min(max(self.released, out_since), hold_at))  # fmt: skip
            earliest = resume + 600
        if plan.memo.get("address") == "hold":
            hold_at = max(earliest, self.released + self.lag(600, 3 * HOUR))
            # Most addresses are fixed within the day; some take days.
            resume = hold_at + 2 * HOUR + min(int(rng.expovariate(1 / (20 * HOUR))), 4 * DAY)
            self._hold(fo, hold_at, resume, "incorrect_address", "OnHold", "InvalidAddress",
                       "Unavailable")  # fmt: skip
            # the address was unusable from checkout: the site had it at release
            self.cause("invalid_address", plan.name, (resume - hold_at) / DAY, hold_at,
                       began=self.released, kind="address_hold")  # fmt: skip
            earliest = resume + 600
        if earliest > self.released + 600:
            base_day = max(od, self.world.order_day(earliest, self.level.cutoff))
        return earliest, base_day

    def _hold(
        self,
        fo: list[FoEvent],
        hold_at: int,
        resume: int,
        reason: str,
        status: str,
        detail: str,
        efd: str,
    ) -> None:
        if fo[-1].status != "on_hold":
            fo.append(FoEvent(hold_at, "on_hold", reason))
            fo.append(FoEvent(resume, "in_progress", None))
        self.shipment.wms.append(WmsEvent(hold_at, status, detail, efd))
        self.shipment.wms.append(WmsEvent(resume, "Processing", None, "PendingOnTime"))

    # -- the site ------------------------------------------------------------------------
    def _warehouse(self, earliest: int, base_day: date) -> None:
        plan, shipment, rng, site, world = self.plan, self.shipment, self.rng, self.site, self.world
        handling = 0 if plan.vip else site.handling_days
        early = handling > 0 and rng.random() < 0.4
        planned = world.add_bd(base_day, handling - 1 if early else handling)
        wait, progress = world.queues.delay(site.name, planned, rng.random())
        ship_day = world.add_bd(planned, wait)
        if wait:
            self.cause("warehouse_backlog", site.name, wait, epoch(planned, 17.0, site.tz))
        pick_at = max(earliest, epoch(ship_day, 7.0 + 10.0 * progress, site.tz) + self.lag(0, 1800))
        pack = pick_at + self.lag(600, 90 * 60)
        label = pack + self.lag(300, 1800)
        pickup_day = local_date(label, site.tz)
        if (
            label > epoch(pickup_day, PICKUP_CUTOFF, site.tz)
            or rng.random() < NOISE["pickup_next_day"]
        ):
            pickup_day = world.add_bd(pickup_day, 1)
            if pickup_day > plan.promised_ship:  # missed the carrier's pickup: the site's delay
                self.cause("warehouse_backlog", site.name, 1, label)
        pickup = max(label + 1800, epoch(pickup_day, 17.5 + 2.5 * rng.random(), site.tz))
        dest = plan.destination
        if (
            plan.promised_ship < pickup_day == plan.promised
            and zone_days(site, dest.region, dest.code) <= 2
            and rng.random() < LOCAL_RESCUE
        ):
            # Shipping on the promised day itself: the merchant books a same-day courier.
            courier = max(label + 1800, epoch(pickup_day, 9.0 + 2.0 * rng.random(), site.tz))
            if courier < epoch(pickup_day, 15.0, site.tz):
                pickup, shipment.service = courier, "same_day"
        efd_end = epoch(plan.promised_ship, 24.0, plan.warehouse.tz) - 1
        late = pick_at > efd_end
        if late:
            # ShipBob marks it PendingLate once the estimated fulfillment date has passed.
            flagged = efd_end + self.lag(HOUR, 5 * HOUR)
            if flagged < pick_at:
                shipment.wms.append(WmsEvent(flagged, "Processing", None, "PendingLate"))
        efd = "PendingLate" if late else "PendingOnTime"
        shipment.wms.append(WmsEvent(pick_at, "Processing", "Picked", efd))
        shipment.wms.append(WmsEvent(pack, "Processing", "Packed", efd))
        shipment.wms.append(WmsEvent(label, "Processing", "Labeled", efd))
        shipped_late = local_date(pickup, site.tz) > plan.promised_ship
        shipment.wms.append(
            WmsEvent(
                pickup, "Completed", None, "FulfilledLate" if shipped_late else "FulfilledOnTime"
            )
        )
        shipment.wms.sort(key=lambda event: event.at)
        if late:  # once PendingLate, every later version before shipping says so
            shipment.wms[:] = [
                e._replace(efd_status="PendingLate")
                if e.at > efd_end and e.status == "Processing"
                else e
                for e in shipment.wms
            ]
        shipment.label_at, shipment.shipped_at = label, pickup
        fo = plan.fo_events[site.name]
        same_site = [s.shipped_at for s in plan.shipments if s.warehouse.name == site.name]
        if all(same_site):
            fo.append(FoEvent(max(t for t in same_site if t is not None), "closed", None))
            fo.sort(key=lambda event: event.at)

    # -- the carrier ---------------------------------------------------------------------
    def _carrier(self) -> None:
        plan, shipment, rng = self.plan, self.shipment, self.rng
        label, pickup = shipment.label_at, shipment.shipped_at
        assert label is not None and pickup is not None
        u = rng.random()
        mode = next((name for name, edge in _CARRIER_FAILURES if u < edge), "none")
        self.scan(label + 60, "pre_transit", "label_created",
                  "Shipping Label Created, USPS Awaiting Item" if self.carrier == "USPS"
                  else "Shipment information sent to carrier", self.origin)  # fmt: skip
        if rng.random() < NOISE["status_update"]:
            self.scan(label + self.lag(60, 1800), "pre_transit", "status_update",
                      f"Pre-Shipment Info Sent to {self.carrier}", (None, None, None))  # fmt: skip
        accept = pickup + self.lag(1800, 3 * HOUR)
        if mode == "label_never_accepted":
            found = self.world.add_bd(local_date(pickup, self.site.tz), ri(rng, 2, 4))
            accept = epoch(found, 18.0 + 3 * rng.random(), self.site.tz)
            self.cause(mode, self.carrier, (accept - pickup) / DAY, pickup + DAY, began=pickup)
        dest = plan.destination
        zone = zone_days(self.site, dest.region, dest.code)
        service = shipment.service or plan.service
        late_ship = local_date(pickup, self.site.tz) > plan.promised_ship
        if late_ship and service in ("ground", "express") and rng.random() < UPGRADE_LATE:
            # The 3PL/merchant buys a faster label to make up for shipping late.
            service = shipment.service = pick(rng, ("overnight", "express"), (0.6, 1.0))
        nominal_days = nominal_transit(service, zone)
        start = self._work_day(local_date(accept - 4 * HOUR, self.site.tz))
        nominal = carrier_add_days(self.carrier, start, nominal_days, self.holidays)
        edd = EddTrack(self, nominal_days, label)
        accepted = None
        if mode == "label_never_accepted" or rng.random() >= NOISE["no_acceptance_scan"]:
            accepted = self.scan(accept, "in_transit", "received_at_origin_facility",
                                 "Accepted at Origin Facility", self.origin)  # fmt: skip
        edd.accepted(nominal, accepted.arrival if accepted else accept + 6 * HOUR)
        if service == "overnight":
            shipment.guaranteed = nominal
        delays = Delays(self, nominal, accept)
        final = delays.final_day(nominal_days, start)
        self._transit(accept, final, delays, edd, mode)
        shipment.scans.sort(key=lambda found: found.at)
        edd.close()

    def _work_day(self, day: date) -> date:
        while not carrier_works(self.carrier, day, self.holidays):
            day += timedelta(days=1)
        return day

    def _transit(self, accept: int, final: date, delays: Delays, edd: EddTrack, mode: str) -> None:
        """In-transit scans to the destination, then the last mile (or silence)."""
        rng, dest = self.rng, self.plan.destination
        ofd = epoch(final, 7.0 + 2.5 * rng.random(), dest.tz)
        at_dest = ofd - self.lag(2 * HOUR, 6 * HOUR)
        if self.shipment.service == "same_day":  # out for delivery straight from the pickup
            ofd = max(ofd, accept + self.lag(HOUR, 2 * HOUR))
            at_dest = max(at_dest, accept + 600)
        if delays.address_issue:
            # Reaches the destination on time, where the address turns out to be wrong.
            at_dest = min(at_dest, epoch(delays.nominal, 4.0 + 2 * rng.random(), dest.tz))
        hub: Location = rng.choice(HUBS[self.carrier])
        t, moves, where = accept, 0, self.origin
        stop_after = ri(rng, 1, 3) if mode == "lost_parcel" else -1
        delayed_at = delays.signal_time(accept, at_dest)
        while True:
            t += self.lag(8 * HOUR, 30 * HOUR)
            if t >= at_dest - HOUR:
                break
            if delays.silent(t) or not carrier_works(self.carrier, local_date(t, dest.tz),
                                                     self.holidays):  # fmt: skip
                continue
            moves += 1
            where = hub if moves % 3 else self.origin
            detail, message = (
                ("departed_facility", "Departed Shipping Partner Facility")
                if moves % 2
                else ("arrived_at_facility", "Arrived at Shipping Partner Facility")
            )
            seen = self.scan(t, "in_transit", detail, message, where)
            if detail == "arrived_at_facility" and rng.random() < NOISE["repeated_scan"] * 2:
                self.scan(t + self.lag(300, 3600), "in_transit", detail, message, where)
            if delayed_at is not None and t >= delayed_at:
                delays.announce(seen.arrival, where, edd)
                delayed_at = None
            if moves == stop_after:
                break
        if mode == "lost_parcel":
            self._lose(where)
            return
        if delayed_at is not None:
            delays.announce(at_dest - 2 * HOUR, hub, edd)
        self._last_mile(at_dest, ofd, delays, mode)

    def _lose(self, where: Location) -> None:
        """Lost parcels mostly just go silent; a lost scan follows on a minority, days later."""
        shipment, rng = self.shipment, self.rng
        last_seen = shipment.scans[-1].at
        self.cause("lost_parcel", self.carrier, 30.0, last_seen + DAY, began=last_seen)
        if rng.random() < 0.3:
            lost_at = last_seen + ri(rng, 5, 8) * DAY + self.lag(0, 8 * HOUR)
            self.scan(lost_at, "failure", "lost", "Package is lost and cannot be delivered", where)

    def _last_mile(self, at_dest: int, ofd: int, delays: Delays, mode: str) -> None:
        rng, dest_loc = self.rng, self.dest_loc
        self.scan(at_dest, "in_transit", "arrived_at_destination",
                  "Arrived at Post Office" if self.carrier == "USPS"
                  else "Arrived at Destination Facility", dest_loc)  # fmt: skip
        if delays.address_issue or rng.random() < NOISE["false_address_scan"]:
            fix_at = min(at_dest + self.lag(HOUR, 4 * HOUR), ofd - 600)
            self.scan(fix_at, "in_transit", "address_correction",
                      "Address information corrected; delivery rescheduled", dest_loc)  # fmt: skip
            if delays.address_days:
                # the carrier finds the address wrong here, at the destination facility: the
                # cause's onset (a parcel lost before it never has one)
                record_cause(self.plan, "address_carrier", fix_at)
        self._out_for_delivery(ofd)
        same_day = self.shipment.service == "same_day"
        delivered = ofd + self.lag(HOUR, 3 * HOUR if same_day else 10 * HOUR)
        if mode in ("failed_delivery", "return_to_sender"):
            attempted = delivered
            if mode == "return_to_sender" or rng.random() < 0.5:
                retry = self._delivery_exception(attempted, mode)
                if retry is None:
                    return
                delivered = retry
            else:
                self.scan(attempted, "available_for_pickup", "arrived_at_pickup_location",
                          "Available for Pickup", dest_loc)  # fmt: skip
                delivered = attempted + ri(rng, 1, 3) * DAY + self.lag(0, 4 * HOUR)
            self.cause(mode, self.carrier, (delivered - attempted) / DAY, attempted)
        self.scan(delivered, "delivered", "arrived_at_destination",
                  "Delivered, In/At Mailbox" if self.carrier == "USPS" else "Delivered",
                  dest_loc)  # fmt: skip
        self.shipment.delivered_at = delivered
        scans = self.shipment.scans
        if rng.random() < NOISE["late_upload"] and len(scans) >= 3:
            # A scan the carrier uploads late: dated before delivery, first seen after it.
            late = scans[-3] if len(scans) >= 4 else scans[-2]
            late.arrival = scans[-1].arrival + self.lag(HOUR, 12 * HOUR)

    def _out_for_delivery(self, at: int) -> None:
        self.scan(at, "out_for_delivery", "out_for_delivery", "Out for Delivery", self.dest_loc)

    def _delivery_exception(self, attempted: int, mode: str) -> int | None:
        """A failed attempt: the next attempt's delivery time, or None when sent back."""
        rng, dest = self.rng, self.plan.destination
        self.scan(attempted, "failure", "delivery_exception",
                  "Delivery Attempted - No Access to Delivery Location" if mode == "failed_delivery"
                  else "Delivery Exception - Addressee Unknown", self.dest_loc)  # fmt: skip
        if mode == "return_to_sender":
            self.cause(mode, self.plan.name, 30.0, attempted)
            back_day = self.world.add_bd(local_date(attempted, dest.tz), ri(rng, 2, 4))
            rts = self.scan(epoch(back_day, 10 + 6 * rng.random(), dest.tz), "return_to_sender",
                            "return", "Return to Sender Processed", self.dest_loc)  # fmt: skip
            # Not a Loop return: the 3PL's shipment follows the carrier's exception instead.
            synced = rts.arrival + self.lag(HOUR, 6 * HOUR)
            last = self.shipment.wms[-1]
            self.shipment.wms.append(
                WmsEvent(synced, "Completed", "DeliveryException", last.efd_status)
            )
            return None
        redo = self.world.add_bd(local_date(attempted, dest.tz), 1)
        ofd = epoch(redo, 7.0 + 2.5 * rng.random(), dest.tz)
        self._out_for_delivery(ofd)
        return ofd + self.lag(HOUR, 10 * HOUR)


class Delays:
    """What slows this parcel beyond the nominal transit, and how (if at all) it shows."""

    def __init__(self, life: ShipmentLife, nominal: date, accept: int) -> None:
        self.life = life
        self.nominal = nominal
        rng, world, plan = life.rng, life.world, life.plan
        region = plan.destination.region
        carrier = life.carrier
        self.tail = pick(rng, *TRANSIT_TAIL[carrier])
        self.early = self.tail == 0 and rng.random() < EARLY
        self.extra = self.tail
        self.announced: str | None = None  # the exception scan detail that shows a delay
        if self.tail:
            life.cause("transit_delay", carrier, self.tail, accept)
            if rng.random() < DELAY_SCAN:
                self.announced = "delayed"
        slow = world.incident("carrier_slowdown", f"{carrier} {region}", nominal)
        if slow is not None and rng.random() < slow.severity:
            self.extra += 1
            slow_since = epoch(slow.first_day, 0.0, plan.destination.tz)
            life.cause("carrier_slowdown", slow.entity, 1, accept, began=max(accept, slow_since))
            if rng.random() < DELAY_SCAN + 0.1:
                self.announced = "delayed"
        storm = world.incident("weather", region, nominal) or world.incident(
            "weather", region, nominal - timedelta(days=1)
        )
        self.storm_scan = False
        if storm is not None:
            hit = rng.random() < storm.severity
            if hit:
                days = ri(rng, 1, 2)
                self.extra += days
                # the storm is announced at 14:00 the day before it (signal_time below)
                announced = epoch(storm.first_day - timedelta(days=1), 14.0, plan.destination.tz)
                life.cause("weather_delay", region, days, accept, began=max(accept, announced))
            self.storm_scan = rng.random() < (WEATHER_SCAN_HIT if hit else WEATHER_SCAN_MISS)
            self.storm_first = storm.first_day
        hub = rng.choice(HUBS[carrier])
        outage = world.incident(
            "hub_outage",
            f"{carrier} {hub[0]}",
            local_date(accept, life.site.tz) + timedelta(days=1),
        )
        self.silence: tuple[int, int] | None = None
        if outage is not None and rng.random() < outage.severity:
            tz = plan.destination.tz
            self.silence = (
                epoch(outage.first_day, 0.0, tz),
                epoch(outage.last_day + timedelta(days=1), 12.0, tz),
            )
            if rng.random() < 0.5:
                self.extra += 1
                silent_from = max(accept, self.silence[0])
                life.cause("scan_gap", outage.entity, 1, silent_from + DAY, began=silent_from)
        self.address_issue = plan.memo.get("address") == "carrier"
        self.address_days = 0
        if self.address_issue:
            days = pick(rng, (0, 1, 2), (0.4, 0.8, 1.0))
            self.extra += days
            self.address_days = days
            if days:  # its onset: the address scan at the destination (ShipmentLife._last_mile)
                life.cause("invalid_address", plan.name, days, accept, kind=None)
        self.false_delay = self.extra == 0 and rng.random() < NOISE["false_delay_scan"]
        if self.false_delay:
            self.announced = "delayed"

    def final_day(self, nominal_days: int, start: date) -> date:
        life = self.life
        if self.early and nominal_days >= 3:
            return carrier_add_days(life.carrier, start, nominal_days - 1, life.holidays)
        return carrier_add_days(life.carrier, self.nominal, self.extra, life.holidays)

    def silent(self, t: int) -> bool:
        return self.silence is not None and self.silence[0] <= t < self.silence[1]

    def signal_time(self, accept: int, at_dest: int) -> int | None:
        """When in transit the carrier learns of the delay (None: no delay to learn of)."""
        if self.extra == 0 and not self.false_delay and not self.storm_scan:
            return None
        if self.storm_scan:
            tz = self.life.plan.destination.tz
            announced = epoch(self.storm_first - timedelta(days=1), 14.0, tz)
            return max(accept + HOUR, min(announced, at_dest - 3 * HOUR))
        return accept + int((at_dest - accept) * (0.3 + 0.4 * self.life.rng.random()))

    def announce(self, known_at: int, where: Location, edd: EddTrack) -> None:
        """The delay becomes visible: maybe an exception scan, maybe a revised estimate."""
        life = self.life
        if self.storm_scan:
            life.scan(known_at + 60, "in_transit", "weather_delay",
                      "Delivery may be delayed due to severe weather", where)  # fmt: skip
        elif self.announced == "delayed":
            life.scan(known_at + 60, "in_transit", "delayed",
                      "Delayed in transit: missed connection", where)  # fmt: skip
        if self.extra > 0 or self.false_delay:
            # A `delayed` scan on a parcel that then catches up moves the estimate as a real
            # delay would: the carrier cannot tell which of its delays will be recovered.
            edd.delay(known_at)
        elif self.storm_scan and life.rng.random() < STORM_REVISION:
            # The carrier revises a whole region's estimates; this parcel makes it anyway.
            edd.delay(known_at, always=True)


class EddTrack:
    """The carrier's estimated delivery date: a forecast, never the realised date by design.

    Nominal transit for the service from the label (then the acceptance) day; revised later
    only when the carrier learns of a delay (EDD_UPDATE of the time, up to 30 h late, by the
    carrier's forecast of the delay: EDD_REVISION, not this parcel's actual delay); a few
    on-time parcels get a pessimistic revision; some
    trackers never carry an estimate.
    """

    def __init__(self, life: ShipmentLife, nominal_days: int, label: int) -> None:
        self.life = life
        rng = life.rng
        self.absent = rng.random() < EDD_ABSENT.get(life.carrier, 0.05)
        self.pessimistic = rng.random() < NOISE["pessimistic_edd"]
        self.revise = rng.random() < EDD_UPDATE
        self.current: date | None = None
        start = local_date(label, life.site.tz)
        if label > epoch(start, PICKUP_CUTOFF, life.site.tz):
            start += timedelta(days=1)
        start = life._work_day(start)
        first = carrier_add_days(life.carrier, start, nominal_days, life.holidays)
        self._set(life.shipment.scans[0].arrival, first)

    def _set(self, known_at: int, day: date) -> None:
        if self.absent or day == self.current:
            return
        self.current = day
        self.life.shipment.edd.append(EddEvent(known_at, day))

    def accepted(self, nominal: date, known_at: int) -> None:
        self._set(known_at, nominal)

    def delay(self, known_at: int, always: bool = False) -> None:
        """Revise by the carrier's own forecast of a delay (a typical day, sometimes two or
        three), drawn independently of how late this parcel will really be."""
        if not (self.revise or always) or self.current is None:
            return
        days = pick(self.life.rng, (1, 2, 3), EDD_REVISION)
        later = known_at + self.life.lag(0, 30 * HOUR)
        self._set(
            later, carrier_add_days(self.life.carrier, self.current, days, self.life.holidays)
        )

    def close(self) -> None:
        """Pessimistic revisions on parcels that then arrive as first estimated; no revision
        after the tracker's last event."""
        shipment = self.life.shipment
        revisable = self.current is not None and len(shipment.edd) <= 2
        if self.pessimistic and revisable and len(shipment.scans) >= 4 and self.current:
            mid = shipment.scans[len(shipment.scans) // 2]
            later = ri(self.life.rng, 1, 2)
            day = carrier_add_days(self.life.carrier, self.current, later, self.life.holidays)
            self._set(mid.arrival + self.life.lag(0, 6 * HOUR), day)
        last = max(scan.arrival for scan in shipment.scans)
        shipment.edd[:] = sorted(
            (e for e in shipment.edd if e.known_at <= last), key=lambda e: e.known_at
        )
