"""The feed registry: every feed, the vendor shape it carries and what the raw loader lifts out.

`FEEDS` is the only list of feeds. A feed name is its landing folder, its raw table
(`raw.<feed>`), its raw asset (`["raw", <feed>]`, generated in defs/ingest/assets.py) and
its connector resource key (`<feed>_source`, bound by `defs/ingest/<source>/definitions.py`).
docs/feeds.md is the human half of this contract. Adding a feed: docs/architecture.md
"How to add a feed". tests/test_feed_registry.py fails when dbt's raw sources or the staging
`accepted_values` tests disagree with this module.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from orderwatch_dagster.lib import feed_hooks
from orderwatch_dagster.lib.records import KeyColumn


@dataclass(frozen=True)
class EnumField:
    """A field with a published vocabulary; `path` uses `[]` for "every element of this list"."""

    path: str  # e.g. "status", "tracking_details[].status_detail", "shipments[].status"
    values: frozenset[str]
    format: str  # the record format the vocabulary belongs to (easypost vs aftership trackers)
    # The staging column whose `accepted_values` test lists this vocabulary (several fields of
    # a feed may share one column: their union); None = only counted at ingest.
    staged_column: str | None = None


@dataclass(frozen=True)
class FeedSpec:
    name: str  # feed = landing folder = raw table, e.g. "storefront_orders"
    source: str  # storefront | oms | wms | carrier | returns | support (= defs/ingest/<source>/)
    vendor: str  # shopify | shipbob | easypost | loop | zendesk
    key_columns: tuple[KeyColumn, ...]  # typed columns of raw.<feed>; always id + updated_at
    format: str  # default Record.format for this feed
    list_key: str | None  # list envelope key ("orders"); None = the page is a bare JSON array
    single_key: str | None = None  # single-object envelope ("order" -> {"order": {...}})
    bare_list_ok: bool = False  # also accept a bare JSON array (Loop without `paginate=true`)
    key_field: str = "id"
    updated_field: str = "updated_at"
    enums: tuple[EnumField, ...] = field(default=())
    # -- hooks for what the keys above cannot express (lib/feed_hooks.py) -------------------
    # other page envelopes: document -> its elements, or None when not recognised
    envelope: Callable[[dict[str, Any]], list[Any] | None] | None = None
    # unwrap one list element / NDJSON line (e.g. a webhook delivery around the record)
    element: Callable[[Any], Any] | None = None
    # Record.format of one payload, when a feed carries several formats
    record_format: Callable[[dict[str, Any]], str] | None = None
    # the version time's text, when it is not `payload[updated_field]`
    update_time: Callable[[dict[str, Any]], Any] | None = None
    # (format, key column) -> the payload field holding it in that format
    field_aliases: tuple[tuple[str, str, str], ...] = ()
    # A sideload: records the vendor sends beside another feed's on that feed's pages (Zendesk
    # `include=users`). It reads the pages of `pages_of` (its landing folder, HTTP archive
    # included: defs/ingest/connector.py) and makes no API call of its own.
    pages_of: str | None = None

    @property
    def landing_folder(self) -> str:
        """The folder under ORDERWATCH_HOME/landing/ this feed's pages are read from."""
        return self.pages_of or self.name

    def source_field(self, record_format: str, column: str) -> str:
        """The payload field a key column is read from, for one record format."""
        for fmt, name, source in self.field_aliases:
            if (fmt, name) == (record_format, column):
                return source
        return column


def _vocab(*values: str) -> frozenset[str]:
    return frozenset(values)


# EasyPost Tracker statuses (10) and status_details (28) (docs/feeds.md "carrier_trackers").
EASYPOST_STATUS = _vocab(
    "unknown",
    "pre_transit",
    "in_transit",
    "out_for_delivery",
    "delivered",
    "available_for_pickup",
    "return_to_sender",
    "failure",
    "cancelled",
    "error",
)
EASYPOST_STATUS_DETAIL = _vocab(
    "address_correction",
    "arrived_at_destination",
    "arrived_at_facility",
    "arrived_at_pickup_location",
    "awaiting_information",
    "cancelled",
    "damaged",
    "delayed",
    "delivery_exception",
    "departed_facility",
    "departed_origin_facility",
    "expired",
    "failure",
    "held",
    "in_transit",
    "label_created",
    "lost",
    "missorted",
    "out_for_delivery",
    "received_at_destination_facility",
    "received_at_origin_facility",
    "refused",
    "return",
    "status_update",
    "transferred_to_destination_carrier",
    "transit_exception",
    "unknown",
    "weather_delay",
)
AFTERSHIP_TAG = _vocab(
    "Pending",
    "InfoReceived",
    "InTransit",
    "OutForDelivery",
    "AttemptFail",
    "Delivered",
    "AvailableForPickup",
    "Exception",
    "Expired",
)
SHOPIFY_FINANCIAL_STATUS = _vocab(
    "pending",
    "authorized",
    "partially_paid",
    "paid",
    "partially_refunded",
    "refunded",
    "voided",
)
# null is part of Shopify's vocabulary ("unfulfilled"); nulls are never counted as unknown.
SHOPIFY_FULFILLMENT_STATUS = _vocab("partial", "fulfilled", "restocked")
SHOPIFY_SHIPMENT_STATUS = _vocab(
    "label_printed",
    "label_purchased",
    "attempted_delivery",
    "ready_for_pickup",
    "confirmed",
    "in_transit",
    "out_for_delivery",
    "delivered",
    "failure",
)
FULFILLMENT_ORDER_STATUS = _vocab(
    "open", "in_progress", "on_hold", "scheduled", "incomplete", "closed", "cancelled"
)
FULFILLMENT_ORDER_REQUEST_STATUS = _vocab(
    "unsubmitted",
    "submitted",
    "accepted",
    "rejected",
    "cancellation_requested",
    "cancellation_accepted",
    "cancellation_rejected",
    "closed",
)
FULFILLMENT_HOLD_REASON = _vocab(
    "inventory_out_of_stock", "incorrect_address", "high_risk_of_fraud", "awaiting_payment", "other"
)
SHIPBOB_SHIPMENT_STATUS = _vocab(
    "None",
    "Processing",
    "Completed",
    "Exception",
    "OnHold",
    "Cancelled",
    "CleanSweeped",
    "LabeledCreated",
    "ImportReview",
)
SHIPBOB_EFD_STATUS = _vocab(
    "AwaitingInventoryAllocation",
    "PendingOnTime",
    "PendingLate",
    "FulfilledOnTime",
    "FulfilledLate",
    "Unavailable",
)
SHIPBOB_ORDER_STATUS = _vocab(
    "Processing",
    "Exception",
    "PartiallyFulfilled",
    "Fulfilled",
    "Cancelled",
    "OnHold",
    "ImportReview",
)
ZENDESK_STATUS = _vocab("new", "open", "pending", "hold", "solved", "closed")
LOOP_STATE = _vocab("open", "closed", "cancelled", "expired", "review")
LOOP_OUTCOME = _vocab("refund", "exchange", "credit", "return_to_sender")

_ID_INT = KeyColumn("id", "BIGINT")
_UPDATED = KeyColumn("updated_at", "TIMESTAMPTZ")

_REGISTRY: tuple[FeedSpec, ...] = (
    FeedSpec(
        name="storefront_orders",
        source="storefront",
        vendor="shopify",
        key_columns=(_ID_INT, KeyColumn("name", "VARCHAR"), _UPDATED),
        format="shopify",
        list_key="orders",
        single_key="order",
        enums=(
            EnumField("financial_status", SHOPIFY_FINANCIAL_STATUS, "shopify", "financial_status"),
            EnumField(
                "fulfillment_status", SHOPIFY_FULFILLMENT_STATUS, "shopify", "fulfillment_status"
            ),
            EnumField(
                "fulfillments[].shipment_status",
                SHOPIFY_SHIPMENT_STATUS,
                "shopify",
                "shipment_status",
            ),
        ),
    ),
    FeedSpec(
        name="storefront_customers",
        source="storefront",
        vendor="shopify",
        key_columns=(_ID_INT, _UPDATED),
        format="shopify",
        list_key="customers",
        single_key="customer",
    ),
    FeedSpec(
        name="oms_fulfillment_orders",
        source="oms",
        vendor="shopify",
        key_columns=(_ID_INT, KeyColumn("order_id", "BIGINT"), _UPDATED),
        format="shopify",
        list_key="fulfillment_orders",
        single_key="fulfillment_order",
        enums=(
            EnumField("status", FULFILLMENT_ORDER_STATUS, "shopify", "status"),
            EnumField(
                "request_status", FULFILLMENT_ORDER_REQUEST_STATUS, "shopify", "request_status"
            ),
            EnumField(
                "fulfillment_holds[].reason", FULFILLMENT_HOLD_REASON, "shopify", "hold_reason"
            ),
        ),
    ),
    FeedSpec(
        name="wms_shipments",
        source="wms",
        vendor="shipbob",
        key_columns=(_ID_INT, KeyColumn("reference_id", "VARCHAR"), _UPDATED),
        format="shipbob",
        list_key=None,  # ShipBob's GET /order answers a bare JSON array
        updated_field="created_date",
        update_time=feed_hooks.shipbob_update_time,
        enums=(
            EnumField("status", SHIPBOB_ORDER_STATUS, "shipbob", "wms_order_status"),
            EnumField("shipments[].status", SHIPBOB_SHIPMENT_STATUS, "shipbob", "status"),
            EnumField(
                "shipments[].estimated_fulfillment_date_status",
                SHIPBOB_EFD_STATUS,
                "shipbob",
                "estimated_fulfillment_date_status",
            ),
        ),
    ),
    FeedSpec(
        name="carrier_trackers",
        source="carrier",
        vendor="easypost",
        key_columns=(
            KeyColumn("id", "VARCHAR"),
            KeyColumn("tracking_code", "VARCHAR"),
            _UPDATED,
        ),
        format="easypost",
        list_key="trackers",
        envelope=feed_hooks.carrier_envelope,
        element=feed_hooks.carrier_element,
        record_format=feed_hooks.carrier_format,
        field_aliases=(("aftership", "tracking_code", "tracking_number"),),
        enums=(
            EnumField("status", EASYPOST_STATUS, "easypost", "status"),
            EnumField("status_detail", EASYPOST_STATUS_DETAIL, "easypost"),
            EnumField("tracking_details[].status", EASYPOST_STATUS, "easypost"),
            EnumField("tracking_details[].status_detail", EASYPOST_STATUS_DETAIL, "easypost"),
            EnumField("tag", AFTERSHIP_TAG, "aftership", "status"),
            EnumField("checkpoints[].tag", AFTERSHIP_TAG, "aftership"),
        ),
    ),
    FeedSpec(
        name="returns",
        source="returns",
        vendor="loop",
        key_columns=(_ID_INT, KeyColumn("order_id", "BIGINT"), _UPDATED),
        format="loop",
        list_key="returns",
        single_key="return",
        bare_list_ok=True,
        enums=(
            EnumField("state", LOOP_STATE, "loop", "state"),
            EnumField("outcome", LOOP_OUTCOME, "loop", "outcome"),
        ),
    ),
    FeedSpec(
        name="support_tickets",
        source="support",
        vendor="zendesk",
        key_columns=(_ID_INT, KeyColumn("external_id", "VARCHAR"), _UPDATED),
        format="zendesk",
        list_key="tickets",
        single_key="ticket",
        enums=(EnumField("status", ZENDESK_STATUS, "zendesk", "status"),),
    ),
    FeedSpec(
        name="support_users",
        source="support",
        vendor="zendesk",
        key_columns=(_ID_INT, _UPDATED),
        format="zendesk",
        list_key="users",
        single_key="user",
        envelope=feed_hooks.zendesk_users_envelope,
        pages_of="support_tickets",
    ),
)

FEEDS: dict[str, FeedSpec] = {spec.name: spec for spec in _REGISTRY}
# Feed names in registry order (= raw tables = raw assets).
FEED_FOLDERS: tuple[str, ...] = tuple(FEEDS)
# The landing folders pages are written to (a sideload has none of its own).
LANDING_FOLDERS: tuple[str, ...] = tuple(s.name for s in _REGISTRY if s.pages_of is None)
if len(FEEDS) != len(_REGISTRY):
    raise ValueError("lib/feeds.py: two registry entries share a feed name")
if any(s.pages_of is not None and s.pages_of not in LANDING_FOLDERS for s in _REGISTRY):
    raise ValueError("lib/feeds.py: a sideload's pages_of names no feed with its own folder")


def feed_spec(feed: str) -> FeedSpec:
    try:
        return FEEDS[feed]
    except KeyError:
        raise KeyError(f"unknown feed {feed!r}; expected one of {', '.join(FEEDS)}") from None


def feeds_of(source: str) -> tuple[FeedSpec, ...]:
    """The feeds one source system (one `defs/ingest/<source>/` folder) serves."""
    return tuple(spec for spec in FEEDS.values() if spec.source == source)


def sources() -> tuple[str, ...]:
    """The source systems, in registry order."""
    return tuple(dict.fromkeys(spec.source for spec in FEEDS.values()))
