"""Vendor page parsers: one page (file drop or HTTP body) -> loadable Records + quarantined Rejects.

`parse_page` never raises on bad input: anything it cannot load becomes a `Rejected` with a
`QuarantineReason` and the original text, so nothing is silently dropped (docs/architecture.md
"Storage contract"). Unknown enum values are not rejects: the record loads and the value is
counted. The parser is generic: what differs per feed is data and hooks on its `FeedSpec`
(lib/feeds.py, lib/feed_hooks.py).
"""

from __future__ import annotations

import hashlib
import json
from collections import Counter
from collections.abc import Iterator
from datetime import datetime
from functools import cache
from typing import Any

import orjson

from orderwatch_dagster.lib.feeds import FeedSpec, feed_spec
from orderwatch_dagster.lib.records import (
    ParsedPage,
    QuarantineReason,
    Record,
    Reject,
    Rejected,
    read_time,
)

__all__ = ["canonical_json", "parse_element", "parse_page"]


_SORTED = orjson.OPT_SORT_KEYS
_BOM = b"\xef\xbb\xbf"


class _Inexact(Exception):
    """orjson reads an integer beyond 64 bits as a float (it would alter the record): such a
    float is written with an exponent `e+`, so a payload whose canonical text holds `e+` is read
    again by the standard library (a string holding `e+` only costs that re-read)."""


def _stdlib_bytes(payload: Any) -> bytes:
    """The canonical text as the standard library writes it (the serializer versions were
    hashed with before orjson: the same record must keep its `record_hash`)."""
    text = json.dumps(payload, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return text.encode("utf-8", "surrogatepass")


# orjson writes a float below 1e-4 unlike `repr`: `0.00001` and `2.5e-5`, not `1e-05` and
# `2.5e-05` (tests/test_ingest_hashes.py); every other float it writes as `repr` does.
_DIGITS = range(0x30, 0x3A)


def _unlike_repr(canonical: bytes) -> bool:
    """Whether the text may hold such a float: a digit before `e-`, or `0.0000` not after a
    digit. A string holding the same characters only costs a re-write by the standard library;
    a bare `e-` would send every text with a hyphenated word ("Pre-Shipment") that way. (Two
    `find` loops: a regular expression for the same test is ~20x slower on these payloads.)"""
    at = canonical.find(b"e-")
    while at > 0:
        if canonical[at - 1] in _DIGITS:
            return True
        at = canonical.find(b"e-", at + 2)
    at = canonical.find(b"0.0000")
    while at >= 0:
        if at == 0 or canonical[at - 1] not in _DIGITS:
            return True
        at = canonical.find(b"0.0000", at + 1)
    return False


def _canonical_bytes(payload: Any, *, exact: bool = False) -> bytes:
    """Sorted keys, compact separators, UTF-8 kept: the bytes `record_hash` is computed over,
    byte for byte what the standard library writes (`_stdlib_bytes`).

    orjson writes the same except for small floats (`_unlike_repr`), integers beyond 64 bits
    (it refuses them) and NaN/Infinity (`null`). `exact` marks payloads the standard library
    read (it admits NaN): their NaN stays in the text, so the loader quarantines the record
    (lib/warehouse_batch.py `strict_records`).
    """
    if exact:
        text = json.dumps(payload, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
        if "NaN" in text or "Infinity" in text:
            return text.encode("utf-8", "surrogatepass")
    try:
        canonical = orjson.dumps(payload, option=_SORTED)
    except TypeError:  # an integer beyond 64 bits
        return _stdlib_bytes(payload)
    if _unlike_repr(canonical):
        return _stdlib_bytes(payload)
    return canonical


def canonical_json(payload: Any) -> str:
    """The text `record_hash` is computed over (see `_canonical_bytes`)."""
    return _canonical_bytes(payload).decode("utf-8")


def _as_received(element: Any) -> str:
    # Elements of a JSON page have no byte range of their own; re-serialise in received order.
    try:
        return orjson.dumps(element).decode("utf-8")
    except TypeError:
        return json.dumps(element, ensure_ascii=False)


def _fast_load(body: bytes | str) -> tuple[bool, Any]:
    """(True, document) when orjson reads the page exactly, else (False, None): the page then
    takes the standard-library path, which gives the same verdicts with its own messages."""
    raw = body.encode("utf-8", "surrogatepass") if isinstance(body, str) else body
    if raw.startswith(_BOM):
        raw = raw[len(_BOM) :]
    try:
        return True, orjson.loads(raw)
    except (orjson.JSONDecodeError, UnicodeEncodeError):
        return False, None


def _decode(body: bytes | str) -> tuple[str, bool]:
    """Text of the page and whether it was valid UTF-8 (a BOM is tolerated)."""
    if isinstance(body, str):
        return body, True
    try:
        return body.decode("utf-8-sig"), True
    except UnicodeDecodeError:
        return body.decode("utf-8", errors="replace"), False


class _Parse:
    """One page's parse: the spec, the upper bound on update times, and the page being filled."""

    def __init__(self, spec: FeedSpec, not_after: datetime | None, keep: bool = True) -> None:
        self.spec = spec
        self.not_after = not_after
        self.keep = keep  # keep each record's payload object (else only its canonical text)
        self.page = ParsedPage()
        self.enum_paths = _enum_paths(spec)

    def reject_page(self, reason: QuarantineReason, detail: str, text: str) -> ParsedPage:
        self.page.rejected.append(Rejected(self.spec.name, reason, detail, text))
        return self.page

    def add(
        self, index: int | None, element: Any, original: str | None, exact: bool = False
    ) -> None:
        try:
            try:
                record = self.record(element, exact)
            except _Inexact:
                if original is None:
                    raise  # a whole page: parse_page reads it again
                record = self.record(self.unwrap(json.loads(original)), True)
            self.page.records.append(record)
        except Reject as reject:
            text = original if original is not None else _as_received(element)
            self.page.rejected.append(
                Rejected(self.spec.name, reject.reason, reject.detail, text, index)
            )

    def record(self, element: Any, exact: bool) -> Record:
        spec = self.spec
        if not isinstance(element, dict):
            raise Reject(
                QuarantineReason.NOT_AN_OBJECT, f"element is a JSON {type(element).__name__}"
            )
        payload = element
        fmt = spec.record_format(payload) if spec.record_format else spec.format
        key_value = payload.get(spec.key_field)
        if key_value is None or key_value == "":
            raise Reject(QuarantineReason.MISSING_KEY, f"{spec.key_field!r} is absent or null")
        updated_text = (
            spec.update_time(payload) if spec.update_time else payload.get(spec.updated_field)
        )
        if updated_text is None:
            raise Reject(QuarantineReason.MISSING_KEY, "update time is absent or null")

        keys: dict[str, Any] = {}
        for column in spec.key_columns:
            if column.sql_type == "TIMESTAMPTZ":
                raw = updated_text if column.name == "updated_at" else payload.get(column.name)
                keys[column.name] = None if raw is None else self.time(column.name, raw)
            else:
                value = payload.get(spec.source_field(fmt, column.name))
                strict = column.name == spec.key_field
                keys[column.name] = _typed(column.name, column.sql_type, value, strict=strict)
        updated_at: datetime = keys["updated_at"]
        if self.not_after is not None and updated_at > self.not_after:
            raise Reject(
                QuarantineReason.FUTURE_TIME,
                f"update time {updated_at.isoformat()} is after {self.not_after.isoformat()}"
                " (now + tolerance)",
            )

        if self.enum_paths:
            _count_enums(self.enum_paths, fmt, payload, self.page.unknown_enums)
        canonical = _canonical_bytes(payload, exact=exact)
        if not exact and b"e+" in canonical:
            raise _Inexact
        return Record(
            feed=spec.name,
            key=str(keys[spec.key_field]),
            updated_at=updated_at,
            keys=keys,
            payload=payload if self.keep else {},
            payload_text=canonical.decode("utf-8", "surrogatepass"),
            record_hash=hashlib.sha256(canonical).hexdigest(),
            format=fmt,
        )

    def time(self, name: str, value: Any) -> datetime:
        moment, has_offset = read_time(name, value)
        if not has_offset:
            self.page.naive_times[name] += 1
        return moment

    def unwrap(self, element: Any) -> Any:
        return self.spec.element(element) if self.spec.element else element

    def elements(self, document: Any) -> list[Any]:
        """The elements inside the vendor's envelope, or Reject(UNEXPECTED_SHAPE)."""
        spec = self.spec
        if isinstance(document, list):
            if spec.list_key is None or spec.bare_list_ok:
                return [self.unwrap(e) for e in document]
            raise Reject(
                QuarantineReason.UNEXPECTED_SHAPE,
                f"a bare JSON array; {spec.vendor} pages are {{{spec.list_key!r}: [...]}}",
            )
        if not isinstance(document, dict):
            raise Reject(
                QuarantineReason.UNEXPECTED_SHAPE, f"page is a JSON {type(document).__name__}"
            )
        if spec.list_key is not None and spec.list_key in document:
            items = document[spec.list_key]
            if not isinstance(items, list):
                raise Reject(
                    QuarantineReason.UNEXPECTED_SHAPE,
                    f"{spec.list_key!r} is a {type(items).__name__}, not a list",
                )
            return [self.unwrap(e) for e in items]
        if spec.single_key is not None and isinstance(document.get(spec.single_key), dict):
            return [document[spec.single_key]]  # single-object response: {"order": {...}}
        found = spec.envelope(document) if spec.envelope else None
        if found is not None:
            return [self.unwrap(e) for e in found]
        expected = f"{{{spec.list_key!r}: [...]}}" if spec.list_key else "a JSON array"
        raise Reject(
            QuarantineReason.UNEXPECTED_SHAPE,
            f"no {spec.vendor} envelope: expected {expected}; "
            f"top-level keys {sorted(document)[:10]}",
        )

    def ndjson(self, text: str) -> Iterator[tuple[int, Any, str, bool]]:
        """(index, element, line, read by the standard library) per non-blank line."""
        for index, line in enumerate(text.splitlines()):
            if not line.strip():
                continue
            fast, element = _fast_load(line)
            try:
                element = element if fast else json.loads(line)
            except json.JSONDecodeError as exc:
                reason, detail = QuarantineReason.BAD_JSON, f"line {index + 1}: {exc}"
                self.page.rejected.append(Rejected(self.spec.name, reason, detail, line, index))
                continue
            yield index, self.unwrap(element), line, not fast


def parse_page(
    feed: str,
    body: bytes | str,
    *,
    ndjson: bool | None = None,
    not_after: datetime | None = None,
    payloads: bool = True,
) -> ParsedPage:
    """Split one page of `feed` into records using the vendor's envelope.

    `ndjson=None` detects NDJSON (one JSON object per line) when the page is not one JSON
    document; `True` forces line mode (a `.ndjson` file of a single line). A record whose
    update time is after `not_after` is quarantined as FUTURE_TIME. `payloads=False` leaves
    `Record.payload` empty (the loader stores `payload_text`): a batch then holds text, not
    Python objects several times its size.
    """
    spec = feed_spec(feed)  # an unknown feed is a programming error
    if not ndjson:
        fast, document = _fast_load(body)
        if fast:
            try:
                return _split(_Parse(spec, not_after, payloads), document, body)
            except _Inexact:
                pass  # read again below, exactly
    run = _Parse(spec, not_after, payloads)
    text, utf8_ok = _decode(body)
    if not utf8_ok:
        return run.reject_page(QuarantineReason.BAD_JSON, "page is not valid UTF-8", text)
    if ndjson:
        elements = list(run.ndjson(text))
    else:
        try:
            document = json.loads(text)
        except json.JSONDecodeError as exc:
            if ndjson is not None or not _looks_like_ndjson(text):
                return run.reject_page(QuarantineReason.BAD_JSON, f"not JSON: {exc}", text)
            elements = list(run.ndjson(text))
        else:
            return _split(run, document, text, exact=True)
    for index, element, line, exact in elements:
        run.add(index, element, line, exact)
    return run.page


def _split(run: _Parse, document: Any, body: bytes | str, *, exact: bool = False) -> ParsedPage:
    """The records of one JSON document (a page read whole)."""
    try:
        elements = run.elements(document)
    except Reject as reject:
        text = body if isinstance(body, str) else _decode(body)[0]
        return run.reject_page(reject.reason, reject.detail, text)
    for index, element in enumerate(elements):
        run.add(index, element, None, exact)
    return run.page


def parse_element(
    feed: str, text: str, *, index: int, not_after: datetime | None = None
) -> ParsedPage:
    """One element as quarantined (its JSON text): for replaying a record on its own."""
    run = _Parse(feed_spec(feed), not_after)
    fast, element = _fast_load(text)
    try:
        element = element if fast else json.loads(text)
    except json.JSONDecodeError as exc:
        run.page.rejected.append(
            Rejected(feed, QuarantineReason.BAD_JSON, f"not JSON: {exc}", text, index)
        )
        return run.page
    run.add(index, run.unwrap(element), text, not fast)
    return run.page


def _looks_like_ndjson(text: str) -> bool:
    lines = [line for line in text.splitlines() if line.strip()]
    if len(lines) < 2:
        return False
    try:
        json.loads(lines[0])
    except json.JSONDecodeError:
        return False
    return True


def _typed(name: str, sql_type: str, value: Any, *, strict: bool = False) -> Any:
    """Coerce a key column to its SQL type; `strict` (the natural key) admits no number-as-text."""
    if sql_type == "BIGINT":
        if value is None:
            return None
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        if isinstance(value, str) and value.isascii() and value.isdigit():
            return int(value)
        raise Reject(QuarantineReason.WRONG_TYPE, f"{name!r} should be an integer, got {value!r}")
    if value is None or isinstance(value, str):
        return value
    if not strict and isinstance(value, int) and not isinstance(value, bool):
        return str(value)  # e.g. ShipBob reference_id sent as a number
    raise Reject(QuarantineReason.WRONG_TYPE, f"{name!r} should be a string, got {value!r}")


EnumPath = tuple[str, tuple[tuple[str, bool], ...], frozenset[str], str]


@cache
def _enum_paths(spec: FeedSpec) -> tuple[EnumPath, ...]:
    """(format, path steps, vocabulary, path text) per enum field; a step is (key, is_list)."""
    paths = []
    for enum in spec.enums:
        steps = tuple(
            (part[:-2], True) if part.endswith("[]") else (part, False)
            for part in enum.path.split(".")
        )
        paths.append((enum.format, steps, enum.values, enum.path))
    return tuple(paths)


def _values_at(payload: Any, steps: tuple[tuple[str, bool], ...]) -> list[Any]:
    """The values at a path; `[]` steps fan out over a list's elements."""
    level = [payload]
    for key, is_list in steps:
        found: list[Any] = []
        for node in level:
            if not isinstance(node, dict) or key not in node:
                continue
            value = node[key]
            if is_list:
                if isinstance(value, list):
                    found.extend(value)
            else:
                found.append(value)
        level = found
    return level


def _count_enums(
    paths: tuple[EnumPath, ...],
    fmt: str,
    payload: dict[str, Any],
    unknown: Counter[tuple[str, str]],
) -> None:
    for enum_format, steps, values, path in paths:
        if enum_format != fmt:
            continue
        # The two shapes of every registry path (`status`, `shipments[].status`) read directly:
        # this runs for every record, and _values_at's generic walk costs several times more.
        if len(steps) == 1 and not steps[0][1]:
            found = [payload.get(steps[0][0])]
        elif len(steps) == 2 and steps[0][1] and not steps[1][1]:
            items = payload.get(steps[0][0])
            inner = steps[1][0]
            found = (
                [item[inner] for item in items if isinstance(item, dict) and inner in item]
                if isinstance(items, list)
                else []
            )
        else:
            found = _values_at(payload, steps)
        for value in found:
            if value is not None and value not in values:
                unknown[(path, str(value))] += 1
