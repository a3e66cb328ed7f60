"""`simulate()`: plan each order, emit what changed in (previous clock, until], page by page.

Streaming: the world is cut into one block per simulated day; a block plans its orders one
at a time, flushes per-feed page buffers every PAGE_SIZE records and returns its ground
truth rows, so memory is bounded by one day (any number of days). Blocks are pure
functions of (world, day, window): `workers` > 1 runs them in parallel with identical
bytes. Continuation calls replay the same deterministic plans and emit only the changes
inside their window (the 3PL feed: every version inside it).
"""

from __future__ import annotations

import csv
import gc
import io
import json
import multiprocessing
import os
import sys
import time as _time
import zlib
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from pathlib import Path
from typing import Any

from orderwatch_dagster.lib.feeds import LANDING_FOLDERS
from orderwatch_dagster.lib.settings import write_clock
from orderwatch_dagster.sim.config import load_config
from orderwatch_dagster.sim.render import PAGES, easypost, loop, shipbob, shopify, zendesk
from orderwatch_dagster.sim.render.common import utc
from orderwatch_dagster.sim.truth import CAUSES, SIGNALS, cause_columns, onset_columns, ship_by
from orderwatch_dagster.sim.world import FAILURE_MODES, HOUR, OrderPlan, World

try:  # orjson ships with the stack (dagster-dbt); output is byte-identical to the fallback
    import orjson

    def _dumps(value: Any) -> bytes:
        return orjson.dumps(value)

except ImportError:  # pragma: no cover

    def _dumps(value: Any) -> bytes:
        return json.dumps(value, separators=(",", ":"), ensure_ascii=False).encode()


PAGE_SIZE = 250
STATE_FILE = "simulation.json"
GROUND_TRUTH = "ground_truth.csv"
# Beside it: one row per support ticket created by the clock (render/zendesk.py ticket_truth).
TICKET_TRUTH = "ground_truth_tickets.csv"
OUT_OF_ORDER_EVERY = 200  # ~0.5% of tracker versions: an older one re-delivered after it
DUPLICATE_PER_MILLE = 10  # ~1% of tracker versions delivered twice (duplicated webhooks)
# Shares of tracker versions as written (sim/shipment.py NOISE_RANGES explains the ranges):
# a version written twice; a version written after a newer one of its tracker (the older
# re-deliveries above plus duplicates that land after the next version).
WEBHOOK_NOISE_RANGES = {
    "duplicate_webhook": (0.008, 0.02),
    "stale_redelivery": (0.008, 0.02),
}
GROUND_TRUTH_COLUMNS = (
    "order_id",
    "order_name",
    "placed_at",
    "promised_delivery_date",
    "promised_deliver_by",
    "promised_ship_by",  # the end of the promised ship day at the warehouse (sim/truth.py)
    "actual_delivery_at",
    "missed_promise",
    "failure_mode",
    "failure_onset_at",
    "root_cause_type",
    "root_cause_entity",
    "warehouse",
    "carrier",
    "service_level",
    "tier",
    "destination_region",
    *onset_columns(),  # when each kind of signal was first observable (sim/truth.py)
    "scan_gaps",  # every gap of a day or more between a parcel's scans (sim/truth.py)
    *cause_columns(),  # when each kind of cause began in the world (sim/truth.py)
)


class SimulationError(Exception):
    """A call that cannot continue the world in `out` (different parameters, clock going back)."""


@dataclass
class SimSummary:
    out: Path
    clock: datetime
    previous_clock: datetime | None
    orders: int  # orders placed up to the clock (rows in ground truth)
    new_orders: int  # orders placed inside this call's window
    records: dict[str, int] = field(default_factory=dict)  # records written per feed
    pages: dict[str, int] = field(default_factory=dict)  # files written per feed
    missed: int = 0
    delivered_or_final: int = 0  # orders whose eventual outcome is known (not cancelled)
    failure_modes: dict[str, int] = field(default_factory=dict)
    cancelled: int = 0
    bad_records: int = 0
    seconds: float = 0.0

    @property
    def missed_rate(self) -> float:
        return self.missed / self.delivered_or_final if self.delivered_or_final else 0.0

    def as_dict(self) -> dict[str, Any]:
        return {
            "out": str(self.out),
            "clock": _iso(self.clock),
            "previous_clock": _iso(self.previous_clock) if self.previous_clock else None,
            "orders": self.orders,
            "new_orders": self.new_orders,
            "records": self.records,
            "pages": self.pages,
            "missed": self.missed,
            "missed_rate": round(self.missed_rate, 4),
            "failure_modes": self.failure_modes,
            "cancelled": self.cancelled,
            "bad_records": self.bad_records,
            "seconds": round(self.seconds, 2),
        }


def _iso(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat().replace("+00:00", "Z")


class PageWriter:
    """Per-feed buffers flushed as vendor-shaped pages `<until-stamp>-d<day>-<seq>.json`."""

    def __init__(self, out: Path, prefix: str) -> None:
        self.out = out
        self.prefix = prefix
        self.buffers: dict[str, list[dict]] = {feed: [] for feed in LANDING_FOLDERS}
        self.side: dict[str, dict[object, dict]] = {}
        self.seq: Counter[str] = Counter()
        self.records: Counter[str] = Counter()
        for feed in LANDING_FOLDERS:
            (out / feed).mkdir(parents=True, exist_ok=True)

    def add(self, feed: str, record: dict, side: dict | None = None) -> None:
        """Buffer a record (and an object the vendor sideloads beside it on the page)."""
        buffer = self.buffers[feed]
        buffer.append(record)
        if side is not None:
            self.side.setdefault(feed, {})[side["id"]] = side
        if len(buffer) >= PAGE_SIZE:
            self.flush(feed, more=True)

    def flush(self, feed: str, *, more: bool) -> None:
        buffer = self.buffers[feed]
        if not buffer:
            return
        side = list(self.side.pop(feed, {}).values())
        self.write_raw(feed, _dumps(_envelope(feed, buffer, more, side)))
        self.records[feed] += len(buffer)
        self.buffers[feed] = []

    def write_raw(self, feed: str, body: bytes, suffix: str = "json") -> Path:
        self.seq[feed] += 1
        path = self.out / feed / f"{self.prefix}-{self.seq[feed]:06d}.{suffix}"
        if path.exists():
            raise SimulationError(f"refusing to overwrite {path}")
        tmp = path.with_name(path.name + ".tmp")
        tmp.write_bytes(body)
        os.replace(tmp, path)  # readers never see half a page
        return path

    def close(self) -> None:
        for feed in LANDING_FOLDERS:
            self.flush(feed, more=False)


def _envelope(feed: str, records: list[dict], more: bool, side: list[dict] | None = None) -> Any:
    return PAGES[feed](records, more, side or [])


def _stamp(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y%m%dT%H%M%SZ")


def _load_state(out: Path) -> dict[str, Any] | None:
    path = out / STATE_FILE
    if not path.is_file():
        return None
    return json.loads(path.read_text())


def _world_params(seed: int, start: date, days: int, orders_per_day: int) -> dict[str, Any]:
    return {
        "seed": seed,
        "start": start.isoformat(),
        "days": days,
        "orders_per_day": orders_per_day,
    }


def default_until(start: date, days: int) -> datetime:
    return datetime.combine(start + timedelta(days=days), time(0), tzinfo=UTC)


def simulate(
    out: Path,
    *,
    seed: int = 7,
    start: date = date(2026, 10, 1),
    days: int = 14,
    orders_per_day: int = 200,
    until: datetime | None = None,
    progress: bool = False,
    inject_bad_records: bool = False,
    clock_file: Path | None = None,
    workers: int = 1,
    snapshot: bool = False,
) -> SimSummary:
    """Write (or continue) the world in `out` up to `until`; see the module docstring."""
    began = _time.perf_counter()
    if days < 1 or orders_per_day < 1:
        raise SimulationError("--days and --orders-per-day must be at least 1")
    out = Path(out)
    until = until or default_until(start, days)
    if until.tzinfo is None:
        until = until.replace(tzinfo=UTC)
    until = until.astimezone(UTC).replace(microsecond=0)
    params = _world_params(seed, start, days, orders_per_day)
    state = _load_state(out)
    previous: datetime | None = None
    if state is not None and snapshot:
        raise SimulationError(
            f"{out} already holds a world: a snapshot is a first backfill, use a new --out"
        )
    if state is not None:
        differing = [k for k, v in params.items() if state.get("world", {}).get(k) != v]
        if differing:
            raise SimulationError(
                f"{out} holds a different world ({', '.join(differing)} differ: "
                f"{ {k: state['world'].get(k) for k in differing} } vs "
                f"{ {k: params[k] for k in differing} }); use a new --out or the same parameters"
            )
        previous = datetime.fromisoformat(state["clock"].replace("Z", "+00:00"))
        if until < previous:
            raise SimulationError(
                f"--until {_iso(until)} is before the world's clock {_iso(previous)}: "
                "the simulator only moves forward"
            )
    out.mkdir(parents=True, exist_ok=True)

    lo = int(previous.timestamp()) if previous else -(2**62)
    hi = int(until.timestamp())
    summary = SimSummary(out=out, clock=until, previous_clock=previous, orders=0, new_orders=0)
    modes: Counter[str] = Counter({mode: 0 for mode in FAILURE_MODES})
    records: Counter[str] = Counter({feed: 0 for feed in LANDING_FOLDERS})
    pages: Counter[str] = Counter({feed: 0 for feed in LANDING_FOLDERS})
    stamp = _stamp(until)
    # One block per simulated day: pages are named by block, so the bytes do not depend on
    # how many processes ran the blocks, and names sort in emission order.
    visible_days = min(days, max(0, (hi - _epoch(start)) // 86400 + 1))
    jobs = [
        _Job(out, stamp, seed, start, days, orders_per_day, day, lo, hi, snapshot)
        for day in range(visible_days)
    ]
    gt_path = out / GROUND_TRUTH
    gt_tmp = out / (GROUND_TRUTH + ".tmp")
    tickets_tmp = out / (TICKET_TRUTH + ".tmp")
    with gt_tmp.open("w", newline="") as handle, tickets_tmp.open("w", newline="") as tickets:
        csv.writer(handle, lineterminator="\n").writerow(GROUND_TRUTH_COLUMNS)
        csv.writer(tickets, lineterminator="\n").writerow(zendesk.TICKET_TRUTH_COLUMNS)
        for block in _run_blocks(jobs, workers):
            handle.write(block.truth)
            tickets.write(block.ticket_truth)
            summary.orders += block.orders
            summary.new_orders += block.new_orders
            summary.cancelled += block.cancelled
            summary.missed += block.missed
            summary.delivered_or_final += block.final
            modes.update(block.modes)
            records.update(block.records)
            pages.update(block.pages)
            if progress and block.orders:
                elapsed = _time.perf_counter() - began
                print(
                    f"simulate: day {block.day + 1}/{days}"
                    f" ({(start + timedelta(days=block.day)).isoformat()})"
                    f" {summary.orders:,} orders in {elapsed:.1f}s",
                    file=sys.stderr,
                    flush=True,
                )
    _replace_if_changed(gt_tmp, gt_path)
    _replace_if_changed(tickets_tmp, out / TICKET_TRUTH)
    if inject_bad_records and hi > lo:
        bad_writer = PageWriter(out, f"{stamp}-x")
        summary.bad_records = _inject_bad_records(bad_writer, until)
        pages.update(bad_writer.seq)
    summary.records = {feed: records[feed] for feed in LANDING_FOLDERS}
    summary.pages = {feed: pages[feed] for feed in LANDING_FOLDERS}
    summary.failure_modes = dict(modes)

    state_doc = {"world": params, "clock": _iso(until), "format": 2}
    if snapshot:
        state_doc["snapshot"] = True
    state_tmp = out / (STATE_FILE + ".tmp")
    state_tmp.write_text(json.dumps(state_doc, indent=2) + "\n")
    _replace_if_changed(state_tmp, out / STATE_FILE)
    write_clock(until, clock_file or out.resolve().parent / "clock")
    summary.seconds = _time.perf_counter() - began
    if progress:
        rate = summary.orders / summary.seconds if summary.seconds else 0.0
        print(
            f"simulate: {summary.orders:,} orders up to {_iso(until)} in {summary.seconds:.1f}s"
            f" ({rate:,.0f} orders/s), {sum(summary.records.values()):,} records written",
            file=sys.stderr,
            flush=True,
        )
    return summary


def _epoch(day: date) -> int:
    return int(datetime.combine(day, time(0), tzinfo=UTC).timestamp())


@dataclass(frozen=True)
class _Job:
    out: Path
    stamp: str
    seed: int
    start: date
    days: int
    orders_per_day: int
    day: int
    lo: int
    hi: int
    snapshot: bool = False


@dataclass
class _Block:
    day: int
    truth: str = ""
    ticket_truth: str = ""
    orders: int = 0
    new_orders: int = 0
    cancelled: int = 0
    missed: int = 0
    final: int = 0
    modes: Counter[str] = field(default_factory=Counter)
    records: Counter[str] = field(default_factory=Counter)
    pages: Counter[str] = field(default_factory=Counter)


_WORLDS: dict[tuple[int, date, int, int], World] = {}


def _world(seed: int, start: date, days: int, orders_per_day: int) -> World:
    key = (seed, start, days, orders_per_day)
    if key not in _WORLDS:
        _WORLDS.clear()  # one world per process at a time
        _WORLDS[key] = World(
            load_config(), seed=seed, start=start, days=days, orders_per_day=orders_per_day
        )
    return _WORLDS[key]


def _run_blocks(jobs: list[_Job], workers: int) -> Iterator[_Block]:
    if workers <= 1 or len(jobs) <= 1:
        yield from map(_run_block, jobs)
        return
    methods = multiprocessing.get_all_start_methods()
    context = multiprocessing.get_context("fork" if "fork" in methods else "spawn")
    with context.Pool(min(workers, len(jobs))) as pool:
        yield from pool.imap(_run_block, jobs)  # in day order, whoever finishes first


def _run_block(job: _Job) -> _Block:
    """Plan and emit one simulated day of orders (pure function of the job: any process)."""
    # Millions of short-lived acyclic dicts: the cyclic GC only burns time here.
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        return _simulate_day(job)
    finally:
        if was_enabled:
            gc.enable()


def _simulate_day(job: _Job) -> _Block:
    world = _world(job.seed, job.start, job.days, job.orders_per_day)
    block = _Block(day=job.day)
    writer = PageWriter(job.out, f"{job.stamp}-d{job.day:04d}") if job.hi > job.lo else None
    late: list[dict] = []
    buffer = io.StringIO()
    rows = csv.writer(buffer, lineterminator="\n")
    ticket_buffer = io.StringIO()
    ticket_rows = csv.writer(ticket_buffer, lineterminator="\n")
    first, end = world.day_bounds(job.day)
    for index in range(first, end):
        placed = world.placed_at(index)
        if placed > job.hi:
            break  # placements are sorted: nothing later is visible yet
        plan = world.plan(index)
        block.orders += 1
        block.new_orders += placed > job.lo
        if writer is not None:
            _emit(plan, job.lo, job.hi, writer, late, job.snapshot)
        rows.writerow(_truth_row(plan))
        ticket_rows.writerows(
            zendesk.ticket_truth(plan, t) for t in plan.tickets if t.created_at <= job.hi
        )
        if plan.cancelled_at is not None:
            block.cancelled += 1
        else:
            block.final += 1
            block.missed += plan.missed
        block.modes[plan.failure_mode] += 1
    if writer is not None:
        writer.close()
        # Stale tracker versions go out after the pages that carried the newer ones.
        for at in range(0, len(late), PAGE_SIZE):
            chunk = late[at : at + PAGE_SIZE]
            writer.write_raw(
                "carrier_trackers", _dumps(_envelope("carrier_trackers", chunk, False, []))
            )
            writer.records["carrier_trackers"] += len(chunk)
        block.records = writer.records
        block.pages = writer.seq
    block.truth = buffer.getvalue()
    block.ticket_truth = ticket_buffer.getvalue()
    return block


def _replace_if_changed(tmp: Path, target: Path) -> None:
    """Keep the old file (and its mtime) when a rerun produced the same bytes."""
    if target.is_file() and target.read_bytes() == tmp.read_bytes():
        tmp.unlink()
    else:
        os.replace(tmp, target)


def _changed(times: list[int], lo: int, hi: int) -> bool:
    return any(lo < t <= hi for t in times)


@dataclass(frozen=True, slots=True)
class _Window:
    """What one call emits: changes in (lo, hi], into the writer; re-deliveries to late.

    History: every version an hourly poll of the vendor's list endpoint would have seen
    (a record changed during an hour shows once, as it stood at the end of that hour, or
    at `hi`); ShipBob's webhook stream has every version. A snapshot shows each record's
    latest version at `hi` only, as a first backfill from the list endpoints does.
    """

    lo: int
    hi: int
    writer: PageWriter
    late: list[dict]
    snapshot: bool = False

    def changed(self, times: list[int]) -> bool:
        return _changed(times, self.lo, self.hi)

    def moments(self, times: list[int]) -> list[int]:
        """The poll moments at which a record with these change times shows a new version."""
        if self.snapshot:
            return [self.hi] if any(t <= self.hi for t in times) else []
        polls = {min(-(-t // HOUR) * HOUR, self.hi) for t in times if self.lo < t <= self.hi}
        return sorted(polls)


def _emit(
    plan: OrderPlan,
    lo: int,
    hi: int,
    writer: PageWriter,
    late: list[dict],
    snapshot: bool = False,
) -> None:
    """Every record version of `plan` that changed inside the window, feed by feed."""
    window = _Window(lo, hi, writer, late, snapshot)
    _emit_storefront(plan, window)
    _emit_fulfillment_orders(plan, window)
    _emit_wms(plan, window)
    _emit_trackers(plan, window)
    _emit_returns(plan, window)
    _emit_tickets(plan, window)


def _emit_storefront(plan: OrderPlan, window: _Window) -> None:
    if plan.customer == plan.index:  # a repeat customer's record came with their first order
        for _ in window.moments([plan.placed_at]):
            window.writer.add("storefront_customers", shopify.shopify_customer(plan))
    for moment in window.moments(shopify.order_change_times(plan)):
        window.writer.add("storefront_orders", shopify.shopify_order(plan, moment))


def _emit_fulfillment_orders(plan: OrderPlan, window: _Window) -> None:
    for j, (location, events) in enumerate(plan.fo_events.items()):
        for moment in window.moments([e.at for e in events]):
            record = shopify.fulfillment_order(plan, location, j, moment)
            window.writer.add("oms_fulfillment_orders", record)


def _emit_wms(plan: OrderPlan, window: _Window) -> None:
    # Polled hourly like the other feeds: changes within one poll hour show as its last state.
    for moment in window.moments(shipbob.shipbob_versions(plan)):
        window.writer.add("wms_shipments", shipbob.shipbob_order(plan, moment))


def _emit_trackers(plan: OrderPlan, window: _Window) -> None:
    for shipment in plan.shipments:
        moments = window.moments(easypost.tracker_arrivals(shipment))
        previous: dict | None = None
        for moment in moments:
            tracker = easypost.easypost_tracker(plan, shipment, moment)
            if tracker is None:
                continue
            window.writer.add("carrier_trackers", tracker)
            if not window.snapshot:
                _redeliver(shipment.tracker_id, moment, tracker, previous, window)
            previous = tracker


def _redeliver(
    tracker_id: str, moment: int, tracker: dict, previous: dict | None, window: _Window
) -> None:
    """Webhook noise: a version delivered twice, or an older one delivered after a newer."""
    draw = zlib.crc32(f"{tracker_id}{moment}".encode()) % 1000
    if draw < DUPLICATE_PER_MILLE:
        window.late.append(tracker)
    elif previous is not None and draw >= 1000 - 1000 // OUT_OF_ORDER_EVERY:
        window.late.append(previous)  # written after the newer version, in a later page


def _emit_returns(plan: OrderPlan, window: _Window) -> None:
    for ret in plan.returns:
        for moment in window.moments([e.at for e in ret.events]):
            window.writer.add("returns", loop.loop_return(plan, ret, moment))


def _emit_tickets(plan: OrderPlan, window: _Window) -> None:
    for ticket in plan.tickets:
        for moment in window.moments([e.at for e in ticket.events]):
            record = zendesk.zendesk_ticket(plan, ticket, moment)
            window.writer.add("support_tickets", record, zendesk.zendesk_user(plan))


def _truth_row(plan: OrderPlan) -> list[str]:
    primary = plan.shipments[0]
    return [
        str(plan.order_id),
        plan.name,
        utc(plan.placed_at),
        plan.promised.isoformat(),
        utc(plan.deadline),
        utc(ship_by(plan)),
        utc(plan.delivered_at) if plan.delivered_at is not None else "",
        "true" if plan.missed else "false",
        plan.failure_mode,
        utc(plan.failure_onset) if plan.failure_onset is not None else "",
        plan.root_cause_type,
        plan.root_cause_entity,
        primary.warehouse.name,
        primary.carrier,
        plan.service,
        "vip" if plan.vip else "standard",
        plan.destination.region,
        *(utc(plan.onsets[s]) if s in plan.onsets else "" for s in SIGNALS),
        " ".join(
            f"{utc(a)}/{'' if b is None else utc(b)}"
            for a, b in sorted(plan.scan_gaps, key=lambda g: g[0])
        ),
        *(utc(plan.cause_onsets[k]) if k in plan.cause_onsets else "" for k in CAUSES),
    ]


def _inject_bad_records(writer: PageWriter, until: datetime) -> int:
    """Deliberately broken input that ingest must quarantine (never silently drop)."""
    stamp = utc(int(until.timestamp()))
    writer.write_raw("storefront_orders", b'{"orders": [{"id": 1, "updated_at": ')  # not JSON
    writer.write_raw(
        "oms_fulfillment_orders",
        _dumps({"fulfillment_orders": [{"order_id": 1, "status": "open", "updated_at": stamp}]}),
    )  # record without `id`
    writer.write_raw(
        "support_tickets",
        _dumps(
            {
                "tickets": [
                    {
                        "id": "abc",
                        "status": "new",
                        "created_at": stamp,
                        "updated_at": stamp,
                        "tags": ["wismo"],
                    }
                ],
                "meta": {"has_more": False},
                "links": {"next": None},
            }
        ),
    )  # `id` of the wrong type
    writer.write_raw(
        "carrier_trackers",
        _dumps(
            {
                "trackers": [
                    {
                        "id": "trk_" + "0" * 32,
                        "object": "Tracker",
                        "tracking_code": "BAD0001",
                        "status": "in_transit",
                        "updated_at": "yesterday-ish",
                    }
                ],
                "has_more": False,
            }
        ),
    )  # unparseable update time
    return 4
