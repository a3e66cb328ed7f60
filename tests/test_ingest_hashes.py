"""Record versions keep their content hash across the orjson upgrade.

Versions are identified by (_key, _record_hash) (lib/records.py), and `_record_hash` was the
sha256 of the standard library's canonical text (`json.dumps(payload, sort_keys=True,
separators=(",", ":"), ensure_ascii=False)`) before lib/parsers.py read and wrote pages with
orjson. A record version already in a warehouse must hash the same when it arrives again in a
new page (the next poll overlaps the last), else it is stored a second time as a new version.
"""

from __future__ import annotations

import hashlib
import json
import random
import struct

import pytest

from orderwatch_dagster.lib.parsers import canonical_json, parse_page

FEED = "returns"
FIELDS = '"updated_at": "2026-10-05T10:00:00Z", "created_at": "2026-10-05T09:00:00Z"'


def previous_hash(element_text: str) -> str:
    """The serializer versions were hashed with before orjson (lib/parsers.py at eb59eac^)."""
    payload = json.loads(element_text)
    text = json.dumps(payload, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def element(key: int, value: str) -> str:
    return f'{{"id": {key}, {FIELDS}, "state": "open", "provider_order_id": "5", "x": {value}}}'


def hashes_by_key(body: str, *, ndjson: bool = False) -> dict[str, str]:
    page = parse_page(FEED, body.encode("utf-8"), ndjson=ndjson)
    assert not page.rejected
    return {record.key: record.record_hash for record in page.records}


def assert_previous_hashes(values: list[str]) -> None:
    """Every value, as a JSON page and as NDJSON lines, hashes as it did before orjson."""
    elements = [element(1000 + i, value) for i, value in enumerate(values)]
    expected = {str(1000 + i): previous_hash(text) for i, text in enumerate(elements)}
    as_page = hashes_by_key('{"returns": [' + ", ".join(elements) + "]}")
    as_lines = hashes_by_key("\n".join(elements), ndjson=True)
    differing = [values[int(k) - 1000] for k in expected if as_page.get(k) != expected[k]]
    assert differing == []
    differing = [values[int(k) - 1000] for k in expected if as_lines.get(k) != expected[k]]
    assert differing == []


EDGE_VALUES = [
    # floats that orjson writes unlike `repr` (1e-05 / 0.00001, 1e-07 / 1e-7)
    "1e-05",
    "0.00001",
    "2.5e-05",
    "9.99e-05",
    "1e-06",
    "1e-7",
    "-3e-08",
    "1.0571915e-09",
    "5e-324",
    "2.2250738585072014e-308",
    # floats both write alike
    "0.0001",
    "1e-10",
    "0.1",
    "4.35",
    "12.50",
    "100.0",
    "-0.0",
    "0.30000000000000004",
    "1e15",
    "123456789012345.6",
    # exponent notation, big integers (orjson reads beyond 64 bits as a float)
    "1e16",
    "1E22",
    "1.7976931348623157e308",
    "9007199254740993",
    "18446744073709551615",
    "18446744073709551616",
    "-9223372036854775809",
    "123456789012345678901234567890",
    # strings, nesting, key order, duplicate keys
    '"caf\\u00e9 \\u00fcber"',
    '"\\u2028 \\u001f \\u007f \\u0000"',
    '"\\ud83d\\ude00 😀"',
    '"a/b \\/ tab\\t"',
    '"0.00001 and 1e-05 in a string"',
    '{"b": 1, "a": 2, "B": 3, "é": 4, "z": [1, 2.0, -3e-8]}',
    '{"a": 1, "a": 2}',
]


@pytest.mark.parametrize("value", EDGE_VALUES)
def test_an_edge_value_hashes_as_before_orjson(value: str) -> None:
    assert_previous_hashes([value])


def _random_floats(rng: random.Random, n: int) -> list[str]:
    """Floats below 1e16 (where orjson's fast path writes the page): any bit pattern, rounded
    amounts, and every decade from 1e-30 to 1e15 in `%g` forms of 1 to 17 digits."""
    values: list[str] = []
    while len(values) < n:
        kind = rng.random()
        if kind < 0.3:
            f = struct.unpack("<d", struct.pack("<Q", rng.getrandbits(64)))[0]
            if f != f or abs(f) >= 1e16:  # NaN, infinities and exponent notation: elsewhere
                continue
            values.append(repr(f))
        elif kind < 0.5:
            values.append(repr(round(rng.uniform(0, 1000), rng.randint(0, 6))))
        else:
            exponent = rng.randint(-30, 15)
            values.append(f"{rng.uniform(-1, 1) * 10**exponent:.{rng.randint(1, 17)}g}")
    return values


def test_random_floats_hash_as_before_orjson() -> None:
    assert_previous_hashes(_random_floats(random.Random(7), 2000))


def test_canonical_json_is_the_standard_librarys_text() -> None:
    payload = {"b": [1e-05, 2.5e-05, 0.1, 1e16], "a": "é", "c": {"y": -3e-08, "x": None}}
    assert canonical_json(payload) == json.dumps(
        payload, sort_keys=True, separators=(",", ":"), ensure_ascii=False
    )


def test_a_known_version_keeps_its_digest() -> None:
    """A digest written down from the previous serializer: catches both sides drifting."""
    text = element(7, '{"amount": 1e-05, "rate": 0.125, "name": "caf\\u00e9"}')
    assert hashes_by_key('{"returns": [' + text + "]}") == {
        "7": "f9af4f4a55431786c6159bbed7522405ee8b20414bfb6890991edfe1c5dd5143"
    }
