"""Vendor parsers on real vendor fixtures and on crafted bad input (every quarantine reason)."""

from __future__ import annotations

import hashlib
import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from orderwatch_dagster.lib.feeds import FEED_FOLDERS, FEEDS
from orderwatch_dagster.lib.parsers import canonical_json, parse_element, parse_page
from orderwatch_dagster.lib.records import ParsedPage, QuarantineReason

VENDOR = Path(__file__).parent / "fixtures" / "vendor"


def _files(vendor: str, pattern: str = "*.json") -> list[Path]:
    return sorted((VENDOR / vendor).glob(pattern))


# (file, feed) pairs: every public fixture that is a page of one of our feeds.
FIXTURE_PAGES: list[tuple[Path, str]] = [
    *[(p, "carrier_trackers") for p in _files("easypost", "tracker_*.json")],
    *[(p, "carrier_trackers") for p in _files("easypost", "event_1.json")],
    *[(p, "carrier_trackers") for p in _files("aftership")],
    *[(p, "support_tickets") for p in _files("zendesk")],
    (VENDOR / "shopify" / "orders.json", "storefront_orders"),
    (VENDOR / "shopify" / "order.json", "storefront_orders"),
    (VENDOR / "shopify" / "customer.json", "storefront_customers"),
    (VENDOR / "shopify" / "customers_search.json", "storefront_customers"),
    (VENDOR / "shopify" / "customer_saved_search_customers.json", "storefront_customers"),
]


def _check_consistent(page: ParsedPage) -> None:
    assert page.read == len(page.records) + len(page.rejected)
    for record in page.records:
        assert record.payload_text == canonical_json(record.payload)
        assert record.record_hash == hashlib.sha256(record.payload_text.encode()).hexdigest()
        assert record.updated_at.tzinfo is not None
        assert record.updated_at.utcoffset() == UTC.utcoffset(None)
        assert str(record.keys["id"]) == record.key
        assert set(record.keys) == {c.name for c in FEEDS[record.feed].key_columns}


def test_fixture_sets_are_present() -> None:
    # Guards the parametrization below against an empty glob (e.g. fixtures not copied).
    assert len(_files("easypost", "tracker_*.json")) == 17
    assert len(_files("aftership")) == 4
    assert len(_files("zendesk")) == 4


@pytest.mark.parametrize(
    ("path", "feed"), FIXTURE_PAGES, ids=[f"{p.parent.name}/{p.name}" for p, _ in FIXTURE_PAGES]
)
def test_vendor_fixture_parses_cleanly(path: Path, feed: str) -> None:
    body = path.read_bytes()
    page = parse_page(feed, body)
    assert page.rejected == []
    assert len(page.records) >= 1
    _check_consistent(page)
    document = json.loads(body)
    # Every record is one of the page's objects, untouched.
    for record in page.records:
        assert record.payload["id"] == record.keys["id"] or str(record.payload["id"]) == record.key
        assert json.dumps(record.payload, sort_keys=True) in json.dumps(document, sort_keys=True)


def test_fixture_values_lifted_into_typed_keys() -> None:
    orders = parse_page("storefront_orders", (VENDOR / "shopify" / "orders.json").read_bytes())
    order = orders.records[0]
    assert order.keys["id"] == 450789469
    assert order.keys["name"] == "#1001"
    # "2008-01-10T11:00:00-05:00" kept its offset on input and is stored in UTC.
    assert order.updated_at == datetime(2008, 1, 10, 16, 0, tzinfo=UTC)
    assert order.format == "shopify"

    tracker = parse_page(
        "carrier_trackers", (VENDOR / "easypost" / "tracker_nested_1.json").read_bytes()
    ).records[0]
    assert tracker.key == "trk_8f86b00bbc1140f6b0cbaee6701b9f57"
    assert tracker.keys["tracking_code"] == "9400100208271116404754"
    assert tracker.payload["status"] == "delivered"

    event = parse_page("carrier_trackers", (VENDOR / "easypost" / "event_1.json").read_bytes())
    assert event.records[0].key == "trk_1"  # the Event's result (a Tracker) is the record
    assert event.records[0].payload["object"] == "Tracker"

    aftership = parse_page(
        "carrier_trackers", (VENDOR / "aftership" / "tracking_1.json").read_bytes()
    ).records[0]
    assert aftership.format == "aftership"
    assert aftership.key == "r8rjzwkxdymrrkmpr7xb002d"
    assert aftership.keys["tracking_code"] == "3SKAAG5995399"  # from tracking_number

    ticket = parse_page("support_tickets", (VENDOR / "zendesk" / "ticket_4.json").read_bytes())
    assert ticket.records[0].keys == {
        "id": 1,
        "external_id": None,
        "updated_at": datetime(2023, 9, 9, 23, 52, 5, tzinfo=UTC),
    }


def test_error_and_unknown_trackers_load_without_unknown_enum_counts() -> None:
    # EasyPost's own `error` and `unknown` statuses are in its vocabulary: loaded, not counted.
    for name in ("tracker_nested_2.json", "tracker_nested_3.json"):
        page = parse_page("carrier_trackers", (VENDOR / "easypost" / name).read_bytes())
        assert len(page.records) == 1
        assert page.records[0].payload["status"] in {"error", "unknown"}
        assert page.unknown_enums == {}


@pytest.mark.parametrize("path", _files("easypost", "event_[2-5].json"), ids=lambda p: p.name)
def test_event_summaries_without_tracker_are_quarantined_not_dropped(path: Path) -> None:
    # GET /v2/events summaries carry no `result`: there is no tracker to load.
    page = parse_page("carrier_trackers", path.read_bytes())
    assert page.records == []
    assert [r.reason for r in page.rejected] == [QuarantineReason.UNEXPECTED_SHAPE]
    assert page.rejected[0].original_text == path.read_text()
    assert page.rejected[0].index is None


def test_feeds_registry_keys_and_types() -> None:
    assert tuple(FEEDS) == FEED_FOLDERS
    for spec in FEEDS.values():
        names = [c.name for c in spec.key_columns]
        assert names[0] == "id" and "updated_at" in names
    types = {feed: {c.name: c.sql_type for c in spec.key_columns} for feed, spec in FEEDS.items()}
    assert types["wms_shipments"]["reference_id"] == "VARCHAR"
    assert types["carrier_trackers"]["id"] == "VARCHAR"
    assert types["returns"]["order_id"] == "BIGINT"


# -- crafted input: every quarantine reason ------------------------------------------------

ORDER = {"id": 1001, "name": "#1001", "updated_at": "2026-10-05T14:03:11-04:00"}
NOT_AFTER = datetime(2030, 1, 1, tzinfo=UTC)  # "now" + tolerance for the crafted pages


def _orders(*items: Any) -> str:
    return json.dumps({"orders": list(items)})


CRAFTED: list[tuple[str, str, str | bytes, QuarantineReason]] = [
    ("not json", "storefront_orders", '{"orders": [', QuarantineReason.BAD_JSON),
    ("not utf-8", "storefront_orders", b'{"orders": ["\xff"]}', QuarantineReason.BAD_JSON),
    ("no envelope", "storefront_orders", '{"customers": []}', QuarantineReason.UNEXPECTED_SHAPE),
    ("bare list", "storefront_orders", json.dumps([ORDER]), QuarantineReason.UNEXPECTED_SHAPE),
    ("scalar page", "support_tickets", "42", QuarantineReason.UNEXPECTED_SHAPE),
    ("wms object", "wms_shipments", '{"id": 1}', QuarantineReason.UNEXPECTED_SHAPE),
    ("list is dict", "returns", '{"returns": {"id": 1}}', QuarantineReason.UNEXPECTED_SHAPE),
    ("element int", "storefront_orders", _orders(7), QuarantineReason.NOT_AN_OBJECT),
    ("element list", "wms_shipments", "[[1, 2]]", QuarantineReason.NOT_AN_OBJECT),
    (
        "no id",
        "storefront_orders",
        _orders({"name": "#1", "updated_at": "2026-10-05T14:03:11Z"}),
        QuarantineReason.MISSING_KEY,
    ),
    (
        "null updated_at",
        "storefront_orders",
        _orders({**ORDER, "updated_at": None}),
        QuarantineReason.MISSING_KEY,
    ),
    (
        "wms no times",
        "wms_shipments",
        json.dumps([{"id": 5, "reference_id": "1", "shipments": []}]),
        QuarantineReason.MISSING_KEY,
    ),
    ("id text", "storefront_orders", _orders({**ORDER, "id": "abc"}), QuarantineReason.WRONG_TYPE),
    ("id bool", "storefront_orders", _orders({**ORDER, "id": True}), QuarantineReason.WRONG_TYPE),
    (
        "name list",
        "storefront_orders",
        _orders({**ORDER, "name": ["#1"]}),
        QuarantineReason.WRONG_TYPE,
    ),
    (
        "tracker int id",
        "carrier_trackers",
        json.dumps({"trackers": [{"id": 9, "tracking_code": "X", "updated_at": "2026-01-01Z"}]}),
        QuarantineReason.WRONG_TYPE,
    ),
    (
        "fo order_id text",
        "oms_fulfillment_orders",
        json.dumps(
            {"fulfillment_orders": [{"id": 1, "order_id": "x1", "updated_at": "2026-01-01T00:00Z"}]}
        ),
        QuarantineReason.WRONG_TYPE,
    ),
    (
        "updated_at words",
        "storefront_orders",
        _orders({**ORDER, "updated_at": "yesterday"}),
        QuarantineReason.UNPARSEABLE_TIME,
    ),
    (
        "updated_at epoch",
        "storefront_orders",
        _orders({**ORDER, "updated_at": 1759687391}),
        QuarantineReason.UNPARSEABLE_TIME,
    ),
    (
        "wms shipment time",
        "wms_shipments",
        json.dumps(
            [
                {
                    "id": 5,
                    "created_date": "2026-01-01T00:00:00Z",
                    "shipments": [{"id": 1, "last_update_at": "soon"}],
                }
            ]
        ),
        QuarantineReason.UNPARSEABLE_TIME,
    ),
    (
        "fulfillment order from 2031",
        "oms_fulfillment_orders",
        json.dumps(
            {"fulfillment_orders": [{"id": 1, "order_id": 5, "updated_at": "2031-01-01T00:00:00Z"}]}
        ),
        QuarantineReason.FUTURE_TIME,
    ),
]


@pytest.mark.parametrize(
    ("feed", "body", "reason"), [c[1:] for c in CRAFTED], ids=[c[0] for c in CRAFTED]
)
def test_crafted_input_is_quarantined_with_reason(
    feed: str, body: str | bytes, reason: QuarantineReason
) -> None:
    page = parse_page(feed, body, not_after=NOT_AFTER)
    assert page.records == []
    assert [r.reason for r in page.rejected] == [reason]
    rejected = page.rejected[0]
    assert rejected.feed == feed
    assert rejected.detail
    if reason in (QuarantineReason.BAD_JSON, QuarantineReason.UNEXPECTED_SHAPE):
        assert rejected.index is None  # the whole page
        assert rejected.original_text.startswith(
            str(body[:5], "utf-8", "replace") if isinstance(body, bytes) else body[:5]
        )
    else:
        assert rejected.index == 0
        # The original element survives for the quarantine table.
        element = json.loads(body)
        element = element if isinstance(element, list) else next(iter(element.values()))
        assert json.loads(rejected.original_text) == element[0]


def test_every_quarantine_reason_is_exercised() -> None:
    assert {c[3] for c in CRAFTED} == set(QuarantineReason)


def test_good_and_bad_elements_are_split_and_counted() -> None:
    body = _orders(ORDER, 3, {**ORDER, "id": 1002, "name": "#1002"}, {"name": "#9"})
    page = parse_page("storefront_orders", body)
    assert [r.key for r in page.records] == ["1001", "1002"]
    assert [(r.index, r.reason) for r in page.rejected] == [
        (1, QuarantineReason.NOT_AN_OBJECT),
        (3, QuarantineReason.MISSING_KEY),
    ]
    assert page.read == 4


def test_ndjson_lines_are_records_and_a_bad_line_is_quarantined_alone() -> None:
    lines = [
        json.dumps({"id": 1, "state": "open", "order_id": "1001", "updated_at": "2026-10-05Z"}),
        '{"id": 2, "state": ',
        "",
        json.dumps({"id": "3", "state": "closed", "order_id": 1002, "updated_at": "2026-10-06Z"}),
    ]
    page = parse_page("returns", "\n".join(lines) + "\n")
    assert [(r.key, r.keys["order_id"]) for r in page.records] == [("1", 1001), ("3", 1002)]
    assert len(page.rejected) == 1
    bad = page.rejected[0]
    assert (bad.reason, bad.index, bad.original_text) == (
        QuarantineReason.BAD_JSON,
        1,
        lines[1],
    )
    # A one-line .ndjson file is forced into line mode by the caller.
    single = parse_page("returns", lines[0], ndjson=True)
    assert [r.key for r in single.records] == ["1"]


def test_carrier_ndjson_of_webhook_events_unwraps_trackers() -> None:
    event = json.loads((VENDOR / "easypost" / "event_1.json").read_text())
    aftership = json.loads((VENDOR / "aftership" / "tracking_2.json").read_text())
    body = json.dumps(event) + "\n" + json.dumps(aftership) + "\n"
    page = parse_page("carrier_trackers", body)
    assert [(r.key, r.format) for r in page.records] == [
        ("trk_1", "easypost"),
        ("wuuxyb7ohjx55kmpt5r7y017", "aftership"),
    ]


def test_wms_update_time_is_latest_shipment_change_else_created_date() -> None:
    orders = [
        {
            "id": 77,
            "reference_id": 450789469,  # a number: stored as text, it links to a Shopify id
            "created_date": "2026-10-01T10:00:00Z",
            "shipments": [
                {"id": 1, "status": "Processing", "last_update_at": "2026-10-02T09:00:00-04:00"},
                {"id": 2, "status": "Teleported", "last_update_at": "2026-10-02T12:00:00Z"},
                {"id": 3, "status": "Completed", "last_update_at": None},
            ],
        },
        {"id": 78, "reference_id": "1002", "created_date": "2026-10-01T11:00:00Z", "shipments": []},
    ]
    page = parse_page("wms_shipments", json.dumps(orders))
    assert page.rejected == []
    first, second = page.records
    assert first.updated_at == datetime(2026, 10, 2, 13, 0, tzinfo=UTC)  # 09:00-04:00
    assert first.keys["reference_id"] == "450789469"
    assert second.updated_at == datetime(2026, 10, 1, 11, 0, tzinfo=UTC)
    assert page.unknown_enums == {("shipments[].status", "Teleported"): 1}


def test_unknown_enum_values_are_counted_and_still_loaded() -> None:
    tracker = json.loads((VENDOR / "easypost" / "tracker_nested_1.json").read_text())
    odd = {**tracker, "status": "teleported", "status_detail": "beamed_up"}
    odd["tracking_details"] = [*tracker["tracking_details"], {"status": "teleported"}]
    page = parse_page("carrier_trackers", json.dumps({"trackers": [tracker, odd]}))
    assert len(page.records) == 2 and page.rejected == []
    assert page.unknown_enums == {
        ("status", "teleported"): 1,
        ("status_detail", "beamed_up"): 1,
        ("tracking_details[].status", "teleported"): 1,
    }

    orders = _orders(
        {**ORDER, "financial_status": "paid", "fulfillment_status": None},
        {**ORDER, "id": 2, "financial_status": "bartered", "fulfillment_status": "shipped"},
    )
    page = parse_page("storefront_orders", orders)
    assert len(page.records) == 2
    assert page.unknown_enums == {
        ("financial_status", "bartered"): 1,
        ("fulfillment_status", "shipped"): 1,
    }
    tickets = {"tickets": [{"id": 1, "status": "snoozed", "updated_at": "2026-01-01T00:00:00Z"}]}
    assert parse_page("support_tickets", json.dumps(tickets)).unknown_enums == {
        ("status", "snoozed"): 1
    }
    returns = [{"id": 1, "order_id": 5, "state": "lost", "updated_at": "2026-01-01T00:00:00Z"}]
    assert parse_page("returns", json.dumps(returns)).unknown_enums == {("state", "lost"): 1}
    fos = {
        "fulfillment_orders": [
            {"id": 1, "order_id": 5, "status": "paused", "updated_at": "2026-01-01T00:00:00Z"}
        ]
    }
    assert parse_page("oms_fulfillment_orders", json.dumps(fos)).unknown_enums == {
        ("status", "paused"): 1
    }


def test_payload_hash_ignores_key_order_but_not_values() -> None:
    a = parse_page(
        "storefront_orders",
        '{"orders": [{"id": 1, "name": "#1", "updated_at": "2026-01-01T00:00:00Z"}]}',
    )
    b = parse_page(
        "storefront_orders",
        '{"orders": [{"updated_at": "2026-01-01T00:00:00Z", "name": "#1", "id": 1}]}',
    )
    c = parse_page(
        "storefront_orders",
        '{"orders": [{"updated_at": "2026-01-01T00:00:00Z", "name": "#2", "id": 1}]}',
    )
    assert a.records[0].record_hash == b.records[0].record_hash != c.records[0].record_hash
    assert a.records[0].payload_text == '{"id":1,"name":"#1","updated_at":"2026-01-01T00:00:00Z"}'


def test_digit_string_ids_and_bom_are_accepted() -> None:
    body = "\ufeff" + _orders({**ORDER, "id": "450789469"})
    page = parse_page("storefront_orders", body.encode("utf-8"))
    assert page.rejected == []
    assert page.records[0].keys["id"] == 450789469


@pytest.mark.parametrize("feed", FEED_FOLDERS)
@pytest.mark.parametrize(
    "body",
    ["", "   ", "null", "[]", "{}", "[null]", '{"a": 1}\n{"b": 2}', b"\x00\x01", "[1, [2], {}]"],
)
def test_parse_page_never_raises(feed: str, body: str | bytes) -> None:
    page = parse_page(feed, body)
    _check_consistent(page)
    assert all(r.reason in QuarantineReason for r in page.rejected)


def test_update_time_just_inside_the_bound_loads() -> None:
    body = _orders({**ORDER, "updated_at": "2029-12-31T23:59:59Z"})
    assert len(parse_page("storefront_orders", body, not_after=NOT_AFTER).records) == 1
    future = parse_page(
        "storefront_orders", _orders({**ORDER, "updated_at": "2030-01-01T00:00:01Z"})
    )
    assert len(future.records) == 1  # no bound given: nothing is "future"


def test_timestamps_without_offset_load_as_utc_and_are_counted() -> None:
    body = _orders(
        {**ORDER, "updated_at": "2026-10-05T14:03:11"},
        {**ORDER, "id": 2, "updated_at": "2026-10-05T14:03:11Z"},
        {**ORDER, "id": 3, "updated_at": "2026-10-05T10:03:11-04:00"},
    )
    page = parse_page("storefront_orders", body)
    assert [r.updated_at for r in page.records] == [
        datetime(2026, 10, 5, 14, 3, 11, tzinfo=UTC)
    ] * 3
    assert page.naive_times == {"updated_at": 1}
    shipbob = [
        {"id": 5, "reference_id": "1", "created_date": "2026-10-01T10:00:00", "shipments": []}
    ]
    assert parse_page("wms_shipments", json.dumps(shipbob)).naive_times == {"updated_at": 1}


def test_parse_element_reads_one_quarantined_record_with_its_feed_hooks() -> None:
    event = (VENDOR / "easypost" / "event_1.json").read_text()
    page = parse_element("carrier_trackers", event, index=3)
    assert [(r.key, r.format) for r in page.records] == [("trk_1", "easypost")]
    tracking = json.loads((VENDOR / "aftership" / "tracking_1.json").read_text())["data"][
        "tracking"
    ]
    alone = parse_element("carrier_trackers", json.dumps(tracking), index=0)
    assert [(r.format, r.keys["tracking_code"]) for r in alone.records] == [
        ("aftership", "3SKAAG5995399")
    ]
    bad = parse_element("storefront_orders", '{"id": 1,', index=7)
    assert [(r.reason, r.index) for r in bad.rejected] == [(QuarantineReason.BAD_JSON, 7)]
