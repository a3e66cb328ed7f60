"""Vendor page parsers: one page (file drop or HTTP body) -> loadable Records + quarantined Rejects.

`parse_page` never raises on bad input: anything it cannot load becomes a `Rejected` with a
`QuarantineReason` and the original text, so nothing is silently dropped (DESIGN.md storage
contract). Unknown enum values are not rejects: the record loads and the value is counted.
"""

from __future__ import annotations

import hashlib
import json
from collections import Counter
from collections.abc import Iterator
from datetime import datetime
from typing import Any

from orderwatch_dagster.lib.feeds import FeedSpec, feed_spec
from orderwatch_dagster.lib.records import ParsedPage, QuarantineReason, Record, Rejected
from orderwatch_dagster.lib.settings import parse_timestamp

__all__ = ["canonical_json", "parse_page"]


class _Reject(Exception):
    """Internal: one element cannot be loaded (caught per element, never escapes parse_page)."""

    def __init__(self, reason: QuarantineReason, detail: str) -> None:
        super().__init__(detail)
        self.reason = reason
        self.detail = detail


def canonical_json(payload: Any) -> str:
    """Sorted keys, compact separators, UTF-8 kept: the text `record_hash` is computed over."""
    return json.dumps(payload, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def _as_received(element: Any) -> str:
    # Elements of a JSON page have no byte range of their own; re-serialise in received order.
    return json.dumps(element, ensure_ascii=False)


def _decode(body: bytes | str) -> tuple[str, bool]:
    """Text of the page and whether it was valid UTF-8 (a BOM is tolerated)."""
    if isinstance(body, str):
        return body, True
    try:
        return body.decode("utf-8-sig"), True
    except UnicodeDecodeError:
        return body.decode("utf-8", errors="replace"), False


def parse_page(feed: str, body: bytes | str, *, ndjson: bool | None = None) -> ParsedPage:
    """Split one page of `feed` into records using the vendor's envelope.

    `ndjson=None` detects NDJSON (one JSON object per line) when the page is not one JSON
    document; `True` forces line mode (a `.ndjson` file of a single line).
    """
    spec = feed_spec(feed)  # an unknown feed is a programming error, not bad input
    page = ParsedPage()
    text, utf8_ok = _decode(body)
    if not utf8_ok:
        page.rejected.append(
            Rejected(feed, QuarantineReason.BAD_JSON, "page is not valid UTF-8", text)
        )
        return page

    elements: list[tuple[int | None, Any, str | None]]  # (index, element, exact line text)
    if ndjson:
        elements = list(_ndjson_elements(spec, text, page))
    else:
        try:
            document = json.loads(text)
        except json.JSONDecodeError as exc:
            if ndjson is None and _looks_like_ndjson(text):
                elements = list(_ndjson_elements(spec, text, page))
            else:
                page.rejected.append(
                    Rejected(feed, QuarantineReason.BAD_JSON, f"not JSON: {exc}", text)
                )
                return page
        else:
            try:
                elements = [(i, e, None) for i, e in enumerate(_unwrap_page(spec, document))]
            except _Reject as reject:
                page.rejected.append(Rejected(feed, reject.reason, reject.detail, text))
                return page

    for index, element, line in elements:
        try:
            page.records.append(_record(spec, element, page.unknown_enums))
        except _Reject as reject:
            original = line if line is not None else _as_received(element)
            page.rejected.append(Rejected(feed, reject.reason, reject.detail, original, index))
    return page


def _looks_like_ndjson(text: str) -> bool:
    lines = [line for line in text.splitlines() if line.strip()]
    if len(lines) < 2:
        return False
    try:
        json.loads(lines[0])
    except json.JSONDecodeError:
        return False
    return True


def _ndjson_elements(
    spec: FeedSpec, text: str, page: ParsedPage
) -> Iterator[tuple[int | None, Any, str | None]]:
    for index, line in enumerate(text.splitlines()):
        if not line.strip():
            continue
        try:
            element = json.loads(line)
        except json.JSONDecodeError as exc:
            page.rejected.append(
                Rejected(
                    spec.name, QuarantineReason.BAD_JSON, f"line {index + 1}: {exc}", line, index
                )
            )
            continue
        yield index, _unwrap_element(spec, element), line


def _unwrap_page(spec: FeedSpec, document: Any) -> list[Any]:
    """The list of elements inside the vendor's envelope, or _Reject(UNEXPECTED_SHAPE)."""
    if isinstance(document, list):
        if spec.list_key is None or spec.bare_list_ok:
            return [_unwrap_element(spec, e) for e in document]
        raise _Reject(
            QuarantineReason.UNEXPECTED_SHAPE,
            f"a bare JSON array; {spec.vendor} pages are {{{spec.list_key!r}: [...]}}",
        )
    if not isinstance(document, dict):
        raise _Reject(
            QuarantineReason.UNEXPECTED_SHAPE, f"page is a JSON {type(document).__name__}"
        )
    if spec.list_key is not None and spec.list_key in document:
        items = document[spec.list_key]
        if not isinstance(items, list):
            raise _Reject(
                QuarantineReason.UNEXPECTED_SHAPE,
                f"{spec.list_key!r} is a {type(items).__name__}, not a list",
            )
        return [_unwrap_element(spec, e) for e in items]
    if spec.single_key is not None and isinstance(document.get(spec.single_key), dict):
        return [document[spec.single_key]]  # single-object response: {"order": {...}}
    if spec.name == "carrier_trackers":
        data = document.get("data")
        if (
            "meta" in document
            and isinstance(data, dict)
            and isinstance(data.get("trackings"), list)
        ):
            # AfterShip list response: {"meta": ..., "data": {"trackings": [...]}}
            return [_Aftership(t) if isinstance(t, dict) else t for t in data["trackings"]]
        single = _carrier_single(document)
        if single is not None:
            return [single]
    expected = f"{{{spec.list_key!r}: [...]}}" if spec.list_key else "a JSON array"
    raise _Reject(
        QuarantineReason.UNEXPECTED_SHAPE,
        f"no {spec.vendor} envelope: expected {expected}; top-level keys {sorted(document)[:10]}",
    )


def _carrier_single(document: dict[str, Any]) -> Any | None:
    """An EasyPost Event carrying a Tracker, a bare Tracker, or an AfterShip tracking response."""
    if document.get("object") == "Tracker":
        return document
    if document.get("object") == "Event":
        result = document.get("result")
        if isinstance(result, dict) and result.get("object") == "Tracker":
            return result
        raise _Reject(
            QuarantineReason.UNEXPECTED_SHAPE,
            f"EasyPost Event {document.get('description')!r} carries no Tracker result",
        )
    data = document.get("data")
    if "meta" in document and isinstance(data, dict) and isinstance(data.get("tracking"), dict):
        return _Aftership(data["tracking"])
    return None


class _Aftership(dict):  # type: ignore[type-arg]
    """Marks a tracking object that came in an AfterShip envelope (Record.format 'aftership')."""


def _unwrap_element(spec: FeedSpec, element: Any) -> Any:
    # Carrier NDJSON lines / list elements may be webhook deliveries: unwrap them the same way.
    if spec.name == "carrier_trackers" and isinstance(element, dict):
        if element.get("object") == "Event" and isinstance(element.get("result"), dict):
            return element["result"]
        data = element.get("data")
        if "meta" in element and isinstance(data, dict) and isinstance(data.get("tracking"), dict):
            return _Aftership(data["tracking"])
    return element


def _record(spec: FeedSpec, element: Any, unknown: Counter[tuple[str, str]]) -> Record:
    if not isinstance(element, dict):
        raise _Reject(QuarantineReason.NOT_AN_OBJECT, f"element is a JSON {type(element).__name__}")
    fmt = "aftership" if isinstance(element, _Aftership) else spec.format
    payload = dict(element)  # plain dict: the marker class must not leak into payloads

    key_value = payload.get(spec.key_field)
    if key_value is None or key_value == "":
        raise _Reject(QuarantineReason.MISSING_KEY, f"{spec.key_field!r} is absent or null")
    updated_text = _update_time_text(spec, payload)
    if updated_text is None:
        raise _Reject(QuarantineReason.MISSING_KEY, "update time is absent or null")

    keys: dict[str, Any] = {}
    for column in spec.key_columns:
        if column.sql_type == "TIMESTAMPTZ":
            continue
        source_field = column.name
        if fmt == "aftership" and column.name == "tracking_code":
            source_field = "tracking_number"  # AfterShip's name for the carrier's number
        keys[column.name] = _typed(
            column.name,
            column.sql_type,
            payload.get(source_field),
            strict=column.name == spec.key_field,
        )
    key = str(keys[spec.key_field])

    for column in spec.key_columns:
        if column.sql_type != "TIMESTAMPTZ":
            continue
        raw = updated_text if column.name == "updated_at" else payload.get(column.name)
        keys[column.name] = None if raw is None else _timestamp(column.name, raw)
    updated_at: datetime = keys["updated_at"]

    _count_enums(spec, fmt, payload, unknown)
    text = canonical_json(payload)
    return Record(
        feed=spec.name,
        key=key,
        updated_at=updated_at,
        keys=keys,
        payload=payload,
        payload_text=text,
        record_hash=hashlib.sha256(text.encode("utf-8")).hexdigest(),
        format=fmt,
    )


def _update_time_text(spec: FeedSpec, payload: dict[str, Any]) -> Any:
    if spec.name != "wms_shipments":
        return payload.get("updated_at")
    # A ShipBob order has no updated_at: its version time is the latest shipment change.
    shipments = payload.get("shipments")
    stamps: list[tuple[datetime, Any]] = []
    if isinstance(shipments, list):
        for shipment in shipments:
            if isinstance(shipment, dict) and shipment.get("last_update_at") is not None:
                raw = shipment["last_update_at"]
                stamps.append((_timestamp("shipments[].last_update_at", raw), raw))
    if stamps:
        return max(stamps, key=lambda pair: pair[0])[1]
    return payload.get("created_date")


def _typed(name: str, sql_type: str, value: Any, *, strict: bool = False) -> Any:
    """Coerce a key column to its SQL type; `strict` (the natural key) admits no number-as-text."""
    if sql_type == "BIGINT":
        if value is None:
            return None
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        if isinstance(value, str) and value.isascii() and value.isdigit():
            return int(value)
        raise _Reject(QuarantineReason.WRONG_TYPE, f"{name!r} should be an integer, got {value!r}")
    if value is None or isinstance(value, str):
        return value
    if not strict and isinstance(value, int) and not isinstance(value, bool):
        return str(value)  # e.g. ShipBob reference_id sent as a number
    raise _Reject(QuarantineReason.WRONG_TYPE, f"{name!r} should be a string, got {value!r}")


def _timestamp(name: str, value: Any) -> datetime:
    if isinstance(value, str):
        try:
            return parse_timestamp(value)
        except ValueError:
            pass
    raise _Reject(QuarantineReason.UNPARSEABLE_TIME, f"{name!r} is not ISO-8601: {value!r}")


def _values_at(payload: Any, path: str) -> Iterator[Any]:
    head, _, rest = path.partition(".")
    if head.endswith("[]"):
        items = payload.get(head[:-2]) if isinstance(payload, dict) else None
        if isinstance(items, list):
            for item in items:
                yield from _values_at(item, rest) if rest else iter([item])
        return
    if not isinstance(payload, dict) or head not in payload:
        return
    if rest:
        yield from _values_at(payload[head], rest)
    else:
        yield payload[head]


def _count_enums(
    spec: FeedSpec, fmt: str, payload: dict[str, Any], unknown: Counter[tuple[str, str]]
) -> None:
    for enum in spec.enums:
        if enum.format != fmt:
            continue
        for value in _values_at(payload, enum.path):
            if value is not None and value not in enum.values:
                unknown[(enum.path, str(value))] += 1
