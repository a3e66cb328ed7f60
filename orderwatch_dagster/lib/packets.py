"""Order packets: everything an agent needs about one order in one place (JSON for machines,
HTML for people), and the facts a customer message may state.

`load_context` reads, for a set of orders and in a few bulk queries, the order state, lines,
contact (from the storefront's raw order: staging keeps no names or addresses), milestone
timeline, latest risk score, tickets and returns. `build_packet` assembles one order's packet
from that context, its exceptions, what was already done and the policy decisions.
"""

from __future__ import annotations

import json
import os
import re
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from orderwatch_dagster.lib.tables import select_dicts, table_exists
from orderwatch_dagster.lib.templating import render_page
from orderwatch_dagster.lib.warehouse_session import WarehouseSession

ORDER_COLUMNS = (
    "order_id",
    "order_name",
    "placed_at",
    "current_milestone",
    "last_event",
    "last_event_at",
    "last_scan_at",
    "promised_ship_by",
    "promised_deliver_by",
    "promised_delivery_date",
    "destination_time_zone",
    "shipped_at",
    "delivered_at",
    "ship_slack_hours",
    "deliver_slack_hours",
    "customer_tier",
    "order_value",
    "currency",
    "carrier",
    "service_code",
    "warehouse_name",
    "lane",
    "is_open",
    "is_cancelled",
    "wismo_ticket_count",
    "carrier_est_delivery_at",
    "as_of",
)
# a link a customer may be sent: https only, a plain host, and a path / query / fragment of URL
# characters that need no quoting anywhere (no quote, bracket, angle bracket or space), so a
# carrier's `?a=1&b=2` passes; plain-text parts are not escaped (lib/templating.py), HTML ones are
SAFE_LINK = re.compile(
    r"^https://[A-Za-z0-9.-]+(?::[0-9]+)?(?:[/?#][A-Za-z0-9._~%/+=?:@!$,;*&#-]*)?$"
)
TIMELINE_COLUMNS = ("order_id", "milestone", "actual_at", "source_system", "evidence", "detail")
STATUS_TEXT = {
    "order_placed": "order received",
    "payment_captured": "payment received",
    "released_to_warehouse": "being prepared at our warehouse",
    "picked": "being packed at our warehouse",
    "packed": "packed, waiting for its label",
    "label_created": "packed, waiting for the carrier to collect it",
    "carrier_accepted": "with the carrier",
    "in_transit": "on its way with the carrier",
    "out_for_delivery": "out for delivery",
    "delivered": "delivered",
}
WHAT_HAPPENED = {
    "ship_late": "it has not left our warehouse as early as planned.",
    "no_first_scan": "the carrier has not yet scanned the parcel after collecting the label.",
    "scan_gap": "the parcel has not been scanned by the carrier for longer than usual.",
    "carrier_exception": "the carrier reported a delay in transit.",
    "inventory_hold": "an item in your order is waiting for stock at our warehouse.",
    "address_issue": "the warehouse could not confirm the delivery address.",
    "other_hold": "the warehouse put the order on hold for a check.",
    "lost": "the carrier has stopped reporting where the parcel is.",
    "predicted_late": "the parcel is moving more slowly than usual on its route.",
    "promise_missed": "the promised delivery date has passed.",
}
WHAT_WE_DO = {
    "ship_late": "our warehouse team is prioritising it.",
    "no_first_scan": "we have asked the carrier to confirm collection.",
    "scan_gap": "we are watching the carrier's updates and will chase them if needed.",
    "carrier_exception": "we are following up with the carrier.",
    "inventory_hold": "we are checking our other warehouses for the item.",
    "address_issue": "we are holding the parcel until the address is confirmed.",
    "other_hold": "our warehouse team is reviewing the hold.",
    "lost": "we have asked the carrier to trace it.",
    "predicted_late": "we are watching it closely and will update you.",
    "promise_missed": "we are following up with the carrier.",
}


def mask_email(value: str | None) -> str:
    if not value or "@" not in value:
        return ""
    local, domain = value.split("@", 1)
    return f"{local[:1]}***@{domain}"


def mask_phone(value: str | None) -> str:
    digits = [c for c in value or "" if c.isdigit()]
    return f"***{''.join(digits[-2:])}" if digits else ""


def _iso(value: Any) -> Any:
    return value.isoformat() if isinstance(value, datetime) else value


def _plain(row: Mapping[str, Any]) -> dict[str, Any]:
    out = {}
    for key, value in row.items():
        if isinstance(value, datetime):
            out[key] = value.isoformat()
        elif hasattr(value, "is_finite"):  # Decimal
            out[key] = float(value)
        elif isinstance(value, float):
            out[key] = round(value, 2)
        else:
            out[key] = value
    return out


@dataclass
class Contact:
    first_name: str = ""
    last_name: str = ""
    email: str = ""
    phone: str = ""
    address: str = ""
    province_code: str = ""

    def masked(self) -> dict[str, str]:
        return {
            "name": f"{self.first_name} {self.last_name[:1]}.".strip(),
            "email": mask_email(self.email),
            "phone": mask_phone(self.phone),
            "address": self.address,
        }


@dataclass
class OrderContext:
    orders: dict[Any, dict[str, Any]] = field(default_factory=dict)
    lines: dict[Any, list[dict[str, Any]]] = field(default_factory=lambda: defaultdict(list))
    contacts: dict[Any, Contact] = field(default_factory=dict)
    timeline: dict[Any, list[dict[str, Any]]] = field(default_factory=lambda: defaultdict(list))
    risk: dict[Any, dict[str, Any]] = field(default_factory=dict)
    tickets: dict[Any, list[dict[str, Any]]] = field(default_factory=lambda: defaultdict(list))
    returns: dict[Any, list[dict[str, Any]]] = field(default_factory=lambda: defaultdict(list))


def _in_list(session: WarehouseSession, values: Sequence[Any]) -> str:
    return ", ".join([session.p] * len(values))


def _contact(payload: Any) -> Contact:
    data = json.loads(payload) if isinstance(payload, str) else (payload or {})
    customer = data.get("customer") or {}
    ship = data.get("shipping_address") or {}
    parts = [ship.get("address1"), ship.get("city"), ship.get("province_code"), ship.get("zip")]
    return Contact(
        first_name=str(ship.get("first_name") or customer.get("first_name") or ""),
        last_name=str(ship.get("last_name") or customer.get("last_name") or ""),
        email=str(data.get("email") or customer.get("email") or ""),
        phone=str(ship.get("phone") or data.get("phone") or customer.get("phone") or ""),
        address=", ".join(str(p) for p in parts if p),
        province_code=str(ship.get("province_code") or ""),
    )


def load_context(session: WarehouseSession, order_ids: Iterable[Any]) -> OrderContext:
    ids = sorted(set(order_ids))
    ctx = OrderContext()
    if not ids:
        return ctx
    for start in range(0, len(ids), 500):
        _load_chunk(session, ids[start : start + 500], ctx)
    return ctx


def _load_chunk(session: WarehouseSession, ids: list[Any], ctx: OrderContext) -> None:
    marks = _in_list(session, ids)
    sql = f"select {', '.join(ORDER_COLUMNS)} from marts.order_state where order_id in ({marks})"
    for row in select_dicts(session, sql, ORDER_COLUMNS, ids):
        ctx.orders[row["order_id"]] = row
    sql = (
        f"select {', '.join(TIMELINE_COLUMNS)} from marts.fct_order_milestones"
        f" where order_id in ({marks}) and is_reached and actual_at is not null"
        " order by order_id, actual_at, milestone_rank"
    )
    for row in select_dicts(session, sql, TIMELINE_COLUMNS, ids):
        ctx.timeline[row["order_id"]].append(row)
    line_cols = ("order_id", "sku", "title", "quantity", "price")
    sql = (
        f"select {', '.join(line_cols)} from staging.stg_storefront__order_lines"
        f" where order_id in ({marks}) order by order_id, order_line_id"
    )
    for row in select_dicts(session, sql, line_cols, ids):
        ctx.lines[row["order_id"]].append(row)
    keys = [str(i) for i in ids]
    rows = session.query(
        "select _key, payload from raw.storefront_orders"
        f" where _key in ({_in_list(session, keys)}) order by _key, _updated_at",
        keys,
    )
    for key, payload in rows:  # the newest version wins
        ctx.contacts[int(key)] = _contact(payload)
    _load_tracking_links(session, ids, marks, ctx)
    _load_support(session, ids, marks, ctx)


def _load_tracking_links(
    session: WarehouseSession, ids: list[Any], marks: str, ctx: OrderContext
) -> None:
    """The carrier's public tracking page of each order's parcel (EasyPost `public_url`, the
    newest tracker version of the newest shipment version), into the order's row as
    `tracking_url`: only when the order has exactly one, so a reply never picks a parcel."""
    if not table_exists(session, "staging", "stg_wms__shipments"):
        return
    sql = (
        "select distinct s.order_id, t.public_url from staging.stg_wms__shipments s"
        " inner join staging.stg_carrier__trackers t on t.tracking_number = s.tracking_number"
        f" where s.is_latest_version and t.is_latest_version and s.order_id in ({marks})"
        " and t.public_url is not null"
    )
    links: dict[Any, set[str]] = defaultdict(set)
    for order_id, url in session.query(sql, ids):
        links[order_id].add(str(url))
    for order_id in ids:
        found = links.get(order_id, set())
        link = next(iter(found)) if len(found) == 1 else None
        if order_id in ctx.orders:
            ctx.orders[order_id]["tracking_url"] = link if link and SAFE_LINK.match(link) else None


def _load_support(session: WarehouseSession, ids: list[Any], marks: str, ctx: OrderContext) -> None:
    names = {row["order_name"]: oid for oid, row in ctx.orders.items()}
    if names:
        cols = ("order_name", "ticket_id", "subject", "status", "is_wismo", "created_at")
        sql = (
            f"select {', '.join(cols)} from staging.stg_support__tickets"
            f" where order_name in ({_in_list(session, list(names))}) order by created_at"
        )
        for row in select_dicts(session, sql, cols, list(names)):
            ctx.tickets[names[row["order_name"]]].append(row)
    cols = ("order_id", "return_id", "state", "outcome", "created_at")
    sql = (
        f"select {', '.join(cols)} from staging.stg_returns__returns"
        f" where order_id in ({marks}) order by created_at"
    )
    for row in select_dicts(session, sql, cols, ids):
        ctx.returns[row["order_id"]].append(row)
    if table_exists(session, "marts", "order_risk_scores"):
        cols = ("order_id", "model_version", "scored_at", "probability", "reasons")
        sql = (
            f"select {', '.join(cols)} from marts.order_risk_scores"
            f" where order_id in ({marks}) order by scored_at"
        )
        for row in select_dicts(session, sql, cols, ids):
            reasons = row["reasons"]
            row["reasons"] = json.loads(reasons) if isinstance(reasons, str) else reasons
            ctx.risk[row["order_id"]] = row


def local_date(value: Any, zone: str | None) -> date | None:
    """The calendar day of a moment where the customer is (`zone`; UTC when None)."""
    if not isinstance(value, datetime):
        return None
    if zone is None or value.tzinfo is None:
        return value.date()
    return value.astimezone(ZoneInfo(zone)).date()


def estimate_date(value: Any, zone: str | None) -> date | None:
    """The carrier's estimated delivery day. EasyPost sends a carrier's date-only estimate as
    midnight UTC (`2024-08-05T00:00:00Z` beside `est_delivery_date_local: 2024-08-05`,
    tests/fixtures/vendor/easypost): that is the day itself, in no zone; a real moment is
    read in the customer's zone."""
    if not isinstance(value, datetime):
        return None
    utc = value.astimezone(UTC) if value.tzinfo else value
    if utc.time() == time(0, 0):
        return utc.date()
    return local_date(value, zone)


def customer_zone(order: Mapping[str, Any], zone: str | None = None) -> str | None:
    """The zone the order's promise was made in (order_state `destination_time_zone`), else
    `zone` (the caller's guess from the contact)."""
    return order.get("destination_time_zone") or zone


def promised_day(order: Mapping[str, Any], zone: str | None = None) -> date | None:
    """The day the customer was promised: order_state's own, else the promise's end read in
    the customer's zone."""
    day = order.get("promised_delivery_date")
    if isinstance(day, date) and not isinstance(day, datetime):
        return day
    return local_date(order.get("promised_deliver_by"), customer_zone(order, zone))


def message_facts(
    order: Mapping[str, Any],
    contact: Contact,
    exception_type: str,
    shop_name: str,
    zone: str | None = None,
) -> dict[str, Any]:
    """What a customer message may say: facts from the order state only, their days in the
    customer's time zone `zone` (the promise is the end of the promised day there,
    dbt_project/macros/promises.sql, so its UTC date is often the day after)."""
    zone = customer_zone(order, zone)
    promised = promised_day(order, zone)
    # a carrier scan only: the templates say "last carrier update" / "not scanned since", and
    # a warehouse event is neither (tests/test_actions_wismo.py compares with order_state)
    last_scan = local_date(order.get("last_scan_at"), zone)
    return {
        **delivery_facts(order, zone),
        "first_name": contact.first_name or "there",
        "order_name": order["order_name"],
        "status_text": STATUS_TEXT.get(str(order.get("current_milestone")), "in progress"),
        "carrier": order.get("carrier"),
        "promised_date": promised.isoformat() if promised else None,
        "what_happened": WHAT_HAPPENED[exception_type],
        "what_we_do": WHAT_WE_DO[exception_type],
        "address_line": contact.address,
        "last_scan_date": last_scan.isoformat() if last_scan else None,
        "shop_name": shop_name,
    }


def delivery_facts(order: Mapping[str, Any], zone: str | None = None) -> dict[str, Any]:
    """The carrier's estimate and tracking link, when the order state has them: an estimate
    only while the parcel is on its way and not already behind "now" (a past estimate is no
    longer the carrier's word on when it arrives)."""
    zone = customer_zone(order, zone)
    estimate = estimate_date(order.get("carrier_est_delivery_at"), zone)
    today = local_date(order.get("as_of"), zone)
    delivered = order.get("delivered_at") is not None or order.get("current_milestone") in (
        "delivered",
        "return_to_sender",
        "cancelled",
    )
    current = estimate is not None and not delivered and (today is None or estimate >= today)
    return {
        "est_delivery_date": estimate.isoformat() if current and estimate else None,
        "tracking_url": order.get("tracking_url"),
    }


def _evidence_summary(evidence: Any) -> str:
    data = json.loads(evidence) if isinstance(evidence, str) else (evidence or {})
    keep = ("signal", "detected_at", "reason", "hold_category", "threshold_hours", "last_event")
    return ", ".join(f"{k}={data[k]}" for k in keep if data.get(k) is not None)


def build_packet(
    ctx: OrderContext,
    order_id: Any,
    exceptions: Sequence[Mapping[str, Any]],
    decisions: Sequence[Mapping[str, Any]],
    done: Sequence[Mapping[str, Any]],
    as_of: datetime,
    built_at: datetime,
    held: Sequence[tuple[str, str]] = (),
) -> dict[str, Any]:
    order = ctx.orders.get(order_id) or {"order_id": order_id}
    contact = ctx.contacts.get(order_id, Contact())
    return {
        "packet_version": 1,
        "order": _plain(order),
        "contact": contact.masked(),
        "lines": [_plain(line) for line in ctx.lines.get(order_id, [])],
        "timeline": [
            {
                "at": _iso(m["actual_at"]),
                "milestone": m["milestone"],
                "source_system": m["source_system"],
                "evidence": m["evidence"],
                "detail": m["detail"],
            }
            for m in ctx.timeline.get(order_id, [])
        ],
        "exceptions": [
            {
                **_plain({k: e[k] for k in ("exception_id", "exception_type", "severity")}),
                "started_at": _iso(e["started_at"]),
                "ended_at": _iso(e.get("ended_at")),
                "breach_at": _iso(e.get("breach_at")),
                "evidence": json.loads(e["evidence"])
                if isinstance(e.get("evidence"), str)
                else e.get("evidence"),
                "evidence_summary": _evidence_summary(e.get("evidence")),
            }
            for e in exceptions
        ],
        "risk": _plain(ctx.risk[order_id]) if order_id in ctx.risk else None,
        "tickets": [_plain(t) for t in ctx.tickets.get(order_id, [])],
        "returns": [_plain(r) for r in ctx.returns.get(order_id, [])],
        "done": [_plain(d) for d in done],
        "decisions": [dict(d) for d in decisions],
        # what this run held back and why (no message after delivery, cooldown, stale feed, ...)
        "held": [{"subject": subject, "why": why} for subject, why in held],
        "as_of": as_of.isoformat(),
        "built_at": built_at.isoformat(),
    }


def packet_name(order_id: Any) -> str:
    return f"order-{order_id}"


def write_packet(folder: Path, packet: Mapping[str, Any]) -> Path:
    """`<folder>/order-<id>.json` and `.html`, each replaced atomically; returns the JSON path."""
    folder.mkdir(parents=True, exist_ok=True)
    name = packet_name(packet["order"]["order_id"])
    target = folder / f"{name}.json"
    _atomic_write(target, json.dumps(packet, indent=2, sort_keys=True, default=str))
    _atomic_write(folder / f"{name}.html", render_page("packet", p=packet))
    return target


def _atomic_write(path: Path, text: str) -> None:
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(text)
    os.replace(tmp, path)
