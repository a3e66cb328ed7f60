"""Merchant configuration (the dbt seeds) and the static catalogue the simulator draws from."""

from __future__ import annotations

import csv
from dataclasses import dataclass
from datetime import date, time
from functools import cache
from pathlib import Path
from zoneinfo import ZoneInfo

SEEDS_DIR = Path(__file__).resolve().parents[2] / "dbt_project" / "seeds"


@dataclass(frozen=True)
class ServiceLevel:
    code: str
    title: str
    transit_days: int
    cutoff: time


@dataclass(frozen=True)
class Warehouse:
    name: str
    location_id: int
    state: str
    handling_days: int
    tz: ZoneInfo
    city: str
    zip: str


@dataclass(frozen=True)
class Destination:
    code: str
    region: str
    tz: ZoneInfo
    city: str
    zip3: str
    weight: int  # relative order volume


@dataclass(frozen=True)
class MerchantConfig:
    holidays: frozenset[date]
    services: dict[str, ServiceLevel]
    warehouses: tuple[Warehouse, ...]
    destinations: tuple[Destination, ...]


# City, zip prefix and a rough population weight per state (volume of orders shipped there).
_STATE_INFO: dict[str, tuple[str, str, int]] = {
    "AL": ("Birmingham", "352", 5), "AK": ("Anchorage", "995", 1), "AZ": ("Phoenix", "850", 7),
    "AR": ("Little Rock", "722", 3), "CA": ("Los Angeles", "900", 39), "CO": ("Denver", "802", 6),
    "CT": ("Hartford", "061", 4), "DE": ("Wilmington", "198", 1), "DC": ("Washington", "200", 1),
    "FL": ("Orlando", "328", 22), "GA": ("Atlanta", "303", 11), "HI": ("Honolulu", "968", 1),
    "ID": ("Boise", "837", 2), "IL": ("Chicago", "606", 13), "IN": ("Indianapolis", "462", 7),
    "IA": ("Des Moines", "503", 3), "KS": ("Wichita", "672", 3), "KY": ("Louisville", "402", 4),
    "LA": ("New Orleans", "701", 5), "ME": ("Portland", "041", 1), "MD": ("Baltimore", "212", 6),
    "MA": ("Boston", "021", 7), "MI": ("Detroit", "482", 10), "MN": ("Minneapolis", "554", 6),
    "MS": ("Jackson", "392", 3), "MO": ("St. Louis", "631", 6), "MT": ("Billings", "591", 1),
    "NE": ("Omaha", "681", 2), "NV": ("Las Vegas", "891", 3), "NH": ("Manchester", "031", 1),
    "NJ": ("Newark", "071", 9), "NM": ("Albuquerque", "871", 2), "NY": ("New York", "100", 20),
    "NC": ("Charlotte", "282", 10), "ND": ("Fargo", "581", 1), "OH": ("Columbus", "432", 12),
    "OK": ("Oklahoma City", "731", 4), "OR": ("Portland", "972", 4),
    "PA": ("Philadelphia", "191", 13),
    "RI": ("Providence", "029", 1), "SC": ("Columbia", "292", 5), "SD": ("Sioux Falls", "571", 1),
    "TN": ("Nashville", "372", 7), "TX": ("Houston", "770", 29), "UT": ("Salt Lake City", "841", 3),
    "VT": ("Burlington", "054", 1), "VA": ("Richmond", "232", 9), "WA": ("Seattle", "981", 8),
    "WV": ("Charleston", "253", 2), "WI": ("Milwaukee", "532", 6), "WY": ("Cheyenne", "820", 1),
}  # fmt: skip

_WAREHOUSE_CITY: dict[str, tuple[str, str]] = {
    "IL": ("Cicero", "60804"),
    "CA": ("Moreno Valley", "92551"),
    "PA": ("Bethlehem", "18015"),
    "TX": ("Dallas", "75212"),
}


def _rows(name: str, seeds_dir: Path) -> list[dict[str, str]]:
    with (seeds_dir / name).open(newline="") as handle:
        return list(csv.DictReader(handle))


@cache
def load_config(seeds_dir: Path = SEEDS_DIR) -> MerchantConfig:
    holidays = frozenset(
        date.fromisoformat(r["holiday_date"]) for r in _rows("merchant_holidays.csv", seeds_dir)
    )
    services = {
        r["service_code"]: ServiceLevel(
            code=r["service_code"],
            title=r["service_title"],
            transit_days=int(r["transit_business_days"]),
            cutoff=time.fromisoformat(r["cutoff_local_time"]),
        )
        for r in _rows("service_levels.csv", seeds_dir)
    }
    regions = {r["province_code"]: r for r in _rows("destination_regions.csv", seeds_dir)}
    destinations = tuple(
        Destination(
            code=code,
            region=row["region"],
            tz=ZoneInfo(row["time_zone"]),
            city=_STATE_INFO.get(code, (code.title(), "000", 1))[0],
            zip3=_STATE_INFO.get(code, (code.title(), "000", 1))[1],
            weight=_STATE_INFO.get(code, (code.title(), "000", 1))[2],
        )
        for code, row in regions.items()
    )
    warehouses = tuple(
        Warehouse(
            name=r["location_name"],
            location_id=int(r["location_id"]),
            state=r["origin_state"],
            handling_days=int(r["handling_business_days"]),
            tz=ZoneInfo(regions[r["origin_state"]]["time_zone"])
            if r["origin_state"] in regions
            else ZoneInfo("America/New_York"),
            city=_WAREHOUSE_CITY.get(r["origin_state"], (r["location_name"], "00000"))[0],
            zip=_WAREHOUSE_CITY.get(r["origin_state"], (r["location_name"], "00000"))[1],
        )
        for r in _rows("warehouses.csv", seeds_dir)
    )
    return MerchantConfig(holidays, services, warehouses, destinations)
