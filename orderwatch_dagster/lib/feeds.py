"""The seven feeds: which vendor shape each one carries and what the raw loader lifts out of it.

docs/feeds.md is the contract; this module is its machine-readable half. A feed name is also
its landing folder and its raw table (`raw.<feed>`), in `settings.FEED_FOLDERS` order.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from orderwatch_dagster.lib.records import KeyColumn
from orderwatch_dagster.lib.settings import FEED_FOLDERS


@dataclass(frozen=True)
class EnumField:
    """A field with a published vocabulary; `path` uses `[]` for "every element of this list"."""

    path: str  # e.g. "status", "tracking_details[].status_detail", "shipments[].status"
    values: frozenset[str]
    format: str  # the record format the vocabulary belongs to (easypost vs aftership trackers)


@dataclass(frozen=True)
class FeedSpec:
    name: str  # feed = landing folder = raw table, e.g. "storefront_orders"
    source: str  # storefront | oms | wms | carrier | returns | support
    vendor: str  # shopify | shipbob | easypost | loop | zendesk
    key_columns: tuple[KeyColumn, ...]  # typed columns of raw.<feed>; always id + updated_at
    format: str  # default Record.format for this feed
    list_key: str | None  # list envelope key ("orders"); None = the page is a bare JSON array
    single_key: str | None = None  # single-object envelope ("order" -> {"order": {...}})
    bare_list_ok: bool = False  # also accept a bare JSON array (Loop without `paginate=true`)
    key_field: str = "id"
    updated_field: str = "updated_at"
    enums: tuple[EnumField, ...] = field(default=())

    @property
    def key_type(self) -> str:
        """SQL type of the natural key column (BIGINT or VARCHAR)."""
        return self.column(self.key_field).sql_type

    def column(self, name: str) -> KeyColumn:
        for column in self.key_columns:
            if column.name == name:
                return column
        raise KeyError(f"{self.name} has no key column {name!r}")


def _vocab(*values: str) -> frozenset[str]:
    return frozenset(values)


# EasyPost Tracker statuses (10) and status_details (28), VENDORS.md.
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
ZENDESK_STATUS = _vocab("new", "open", "pending", "hold", "solved", "closed")
LOOP_STATE = _vocab("open", "closed", "cancelled", "expired", "review")

_ID_INT = KeyColumn("id", "BIGINT")
_UPDATED = KeyColumn("updated_at", "TIMESTAMPTZ")

_SPECS: tuple[FeedSpec, ...] = (
    FeedSpec(
        name="storefront_orders",
        source="storefront",
        vendor="shopify",
        key_columns=(_ID_INT, KeyColumn("name", "VARCHAR"), _UPDATED),
        format="shopify",
        list_key="orders",
        single_key="order",
        enums=(
            EnumField("financial_status", SHOPIFY_FINANCIAL_STATUS, "shopify"),
            EnumField("fulfillment_status", SHOPIFY_FULFILLMENT_STATUS, "shopify"),
            EnumField("fulfillments[].shipment_status", SHOPIFY_SHIPMENT_STATUS, "shopify"),
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
            EnumField("status", FULFILLMENT_ORDER_STATUS, "shopify"),
            EnumField("request_status", FULFILLMENT_ORDER_REQUEST_STATUS, "shopify"),
            EnumField("fulfillment_holds[].reason", FULFILLMENT_HOLD_REASON, "shopify"),
        ),
    ),
    FeedSpec(
        name="wms_shipments",
        source="wms",
        vendor="shipbob",
        key_columns=(_ID_INT, KeyColumn("reference_id", "VARCHAR"), _UPDATED),
        format="shipbob",
        list_key=None,  # ShipBob's GET /order answers a bare JSON array
        # update time: max(shipments[].last_update_at), else created_date (see parsers)
        updated_field="created_date",
        enums=(
            EnumField("shipments[].status", SHIPBOB_SHIPMENT_STATUS, "shipbob"),
            EnumField(
                "shipments[].estimated_fulfillment_date_status", SHIPBOB_EFD_STATUS, "shipbob"
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
        enums=(
            EnumField("status", EASYPOST_STATUS, "easypost"),
            EnumField("status_detail", EASYPOST_STATUS_DETAIL, "easypost"),
            EnumField("tracking_details[].status", EASYPOST_STATUS, "easypost"),
            EnumField("tracking_details[].status_detail", EASYPOST_STATUS_DETAIL, "easypost"),
            EnumField("tag", AFTERSHIP_TAG, "aftership"),
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
        enums=(EnumField("state", LOOP_STATE, "loop"),),
    ),
    FeedSpec(
        name="support_tickets",
        source="support",
        vendor="zendesk",
        key_columns=(_ID_INT, KeyColumn("external_id", "VARCHAR"), _UPDATED),
        format="zendesk",
        list_key="tickets",
        single_key="ticket",
        enums=(EnumField("status", ZENDESK_STATUS, "zendesk"),),
    ),
)

_BY_NAME = {spec.name: spec for spec in _SPECS}
# In FEED_FOLDERS order (a KeyError at import means the two lists drifted apart).
FEEDS: dict[str, FeedSpec] = {name: _BY_NAME[name] for name in FEED_FOLDERS}


def feed_spec(feed: str) -> FeedSpec:
    try:
        return FEEDS[feed]
    except KeyError:
        raise KeyError(f"unknown feed {feed!r}; expected one of {', '.join(FEEDS)}") from None
