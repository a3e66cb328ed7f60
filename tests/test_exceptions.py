"""Exception episodes (lib/exceptions.py): stable ids across runs, closing, hysteresis for
predicted_late, thresholds by tier and slack, severity, and the policy file's validation."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from orderwatch_dagster.lib import exceptions as ex
from orderwatch_dagster.lib.policy import DEFAULT_POLICY, PolicyError, load_policy, parse_policy

T0 = datetime(2026, 10, 5, 12, tzinfo=UTC)
POLICY = load_policy()


def state(order_id: int = 1, **overrides: Any) -> dict[str, Any]:
    row: dict[str, Any] = dict.fromkeys(ex.STATE_COLUMNS)
    row.update(
        order_id=order_id,
        order_name=f"#{1000 + order_id}",
        is_open=True,
        current_milestone="in_transit",
        customer_tier="standard",
        order_value=80.0,
        deliver_slack_hours=100.0,
        promised_deliver_by=T0 + timedelta(hours=100),
    )
    for rule in ex.RULES:
        row[f"{rule}_occurred"] = False
        row[f"{rule}_active"] = False
    row.update(overrides)
    return row


def gap(detected: datetime, active: bool = True, **kw: Any) -> dict[str, Any]:
    """A scan gap on an order with 30 h of slack left: material (policy `detection`)."""
    kw.setdefault("deliver_slack_hours", 30.0)
    return state(
        scan_gap_occurred=True, scan_gap_active=active, scan_gap_detected_at=detected, **kw
    )


def test_a_flag_opens_an_exception_only_once_material_and_then_stays_open() -> None:
    late = {"ship_late_occurred": True, "ship_late_active": True, "ship_late_detected_at": T0}
    roomy = state(**late)  # 100 h of slack, 2 h late: routine
    assert ex.advance([], [roomy], {}, POLICY, T0 + timedelta(hours=2)) == []
    spec = POLICY.raw["detection"]["open_when"]["ship_late"]
    tight = state(**late, deliver_slack_hours=spec["max_slack_hours"] - 1)
    opened = ex.advance([], [tight], {}, POLICY, T0 + timedelta(hours=2))
    assert [r["exception_type"] for r in opened] == ["ship_late"]
    assert "slack left" in json.loads(opened[0]["evidence"])["opened_because"]
    # shipped (the flag clears) but still late: open until the order is delivered
    shipped = {**tight, "ship_late_active": False}
    moving = ex.advance(opened, [shipped], {}, POLICY, T0 + timedelta(hours=3))
    assert [r["ended_at"] for r in moving] == [None]
    closed = {**shipped, "is_open": False}
    done = ex.advance(moving, [closed], {}, POLICY, T0 + timedelta(hours=4))
    assert [r["ended_at"] for r in done] == [T0 + timedelta(hours=4)]
    # min_hours: a flag that has held long enough is material whatever the slack
    custom = parse_policy(
        DEFAULT_POLICY.read_text().replace(
            "ship_late: {max_slack_hours: 72,", "ship_late: {min_hours: 24, max_slack_hours: 72,"
        )
    )
    held = ex.advance([], [roomy], {}, custom, T0 + timedelta(hours=24))
    assert "flagged for 24 h" in json.loads(held[0]["evidence"])["opened_because"]
    # the model confirms a routine flag; the episode stays open when the risk dips again
    threshold = POLICY.risk_threshold("standard", 100.0) - POLICY.raw["detection"]["confirm_margin"]
    at = T0 + timedelta(hours=2)
    risky = {1: scores((1, threshold + 0.01))}
    confirmed = ex.advance([], [roomy], risky, POLICY, at)
    types = {r["exception_type"] for r in confirmed}
    assert "ship_late" in types, types
    calm = {1: scores((1, threshold + 0.01), (2, 0.01))}
    later = ex.advance(confirmed, [roomy], calm, POLICY, at + timedelta(hours=1))
    (ship_late,) = [r for r in later if r["exception_type"] == "ship_late"]
    assert ship_late["ended_at"] is None
    assert ship_late["exception_id"] == next(
        r["exception_id"] for r in confirmed if r["exception_type"] == "ship_late"
    )
    # a hold opens at once
    hold_now = state(
        fulfillment_hold_occurred=True,
        fulfillment_hold_active=True,
        fulfillment_hold_detected_at=T0,
        fulfillment_hold_category="inventory",
    )
    assert len(ex.advance([], [hold_now], {}, POLICY, T0)) == 1


def test_episode_id_is_stable_and_closes_when_the_order_recovers() -> None:
    first = ex.advance([], [hold(1, T0)], {}, POLICY, T0 + timedelta(hours=1))
    second = ex.advance(first, [hold(1, T0)], {}, POLICY, T0 + timedelta(hours=2))
    assert len(first) == len(second) == 1
    assert first[0]["exception_id"] == second[0]["exception_id"]
    assert second[0]["ended_at"] is None and second[0]["order_name"] == "#1001"
    released = hold(1, T0, active=False)
    recovered = ex.advance(second, [released], {}, POLICY, T0 + timedelta(hours=3))
    assert recovered[0]["ended_at"] == T0 + timedelta(hours=3)
    # a closed episode is frozen; a new hold later is a new episode with a new id
    again = ex.advance(
        recovered, [hold(1, T0 + timedelta(hours=5))], {}, POLICY, T0 + timedelta(hours=6)
    )
    assert len(again) == 2
    assert {r["ended_at"] for r in again} == {T0 + timedelta(hours=3), None}
    assert len({r["exception_id"] for r in again}) == 2
    # a scan gap outlives its flag (policy until_closed): it ends once the order is delivered
    gapped = ex.advance([], [gap(T0)], {}, POLICY, T0 + timedelta(hours=1))
    moving = ex.advance(gapped, [gap(T0, active=False)], {}, POLICY, T0 + timedelta(hours=2))
    assert moving[0]["ended_at"] is None
    delivered = gap(T0, active=False, is_open=False)
    assert ex.advance(moving, [delivered], {}, POLICY, T0 + timedelta(hours=3))[0]["ended_at"]


def test_hold_categories_map_to_types_and_evidence_is_json() -> None:
    rows = ex.advance(
        [],
        [
            state(
                1,
                fulfillment_hold_occurred=True,
                fulfillment_hold_active=True,
                fulfillment_hold_detected_at=T0,
                fulfillment_hold_category="inventory",
            ),
            state(
                2,
                fulfillment_hold_occurred=True,
                fulfillment_hold_active=True,
                fulfillment_hold_detected_at=T0,
                fulfillment_hold_category="address",
            ),
            state(
                3,
                fulfillment_hold_occurred=True,
                fulfillment_hold_active=True,
                fulfillment_hold_detected_at=T0,
                fulfillment_hold_category="other",
            ),
        ],
        {},
        POLICY,
        T0,
    )
    assert [r["exception_type"] for r in rows] == ["inventory_hold", "address_issue", "other_hold"]
    assert json.loads(rows[0]["evidence"])["hold_category"] == "inventory"
    assert all(r["policy_rule"].startswith("policy.yaml v") for r in rows)


def scores(*points: tuple[int, float]) -> list[ex.Score]:
    return [
        ex.Score(T0 + timedelta(hours=h), p, "m1", [{"feature": "f", "text": "t"}])
        for h, p in points
    ]


def test_predicted_late_has_hysteresis() -> None:
    # threshold standard, 100 h slack: 0.55 + 0.10 = 0.65; exit below 0.50
    history = {1: scores((0, 0.7), (1, 0.6), (2, 0.52), (3, 0.66))}
    rows = ex.advance([], [state()], history, POLICY, T0 + timedelta(hours=3))
    assert len(rows) == 1 and rows[0]["ended_at"] is None
    assert rows[0]["started_at"] == T0  # dipping to 0.52 did not close it
    history = {1: scores((0, 0.7), (1, 0.45), (2, 0.66))}
    rows = ex.advance([], [state()], history, POLICY, T0 + timedelta(hours=2))
    assert rows[0]["started_at"] == T0 + timedelta(hours=2)  # closed at 0.45, reopened


def test_risk_threshold_is_lower_for_vip_with_little_slack() -> None:
    vip_tight = POLICY.risk_threshold("vip", 20)
    standard_loose = POLICY.risk_threshold("standard", 96)
    assert vip_tight < standard_loose
    history = {1: scores((0, 0.35))}
    tight = state(
        customer_tier="vip", promised_deliver_by=T0 + timedelta(hours=20), deliver_slack_hours=20
    )
    assert ex.advance([], [tight], history, POLICY, T0)[0]["exception_type"] == "predicted_late"
    assert ex.advance([], [state()], history, POLICY, T0) == []


def test_severity_rises_with_tier_value_and_lost_slack() -> None:
    assert POLICY.severity("scan_gap", "standard", 200, 50) == "low"
    assert POLICY.severity("scan_gap", "vip", 200, 50) == "medium"
    assert POLICY.severity("scan_gap", "vip", 200, 500) == "high"
    assert POLICY.severity("scan_gap", "standard", -3, 50) == "critical"
    assert POLICY.severity("lost", "standard", 200, 50) == "high"


def test_policy_errors_name_line_and_field() -> None:
    text = DEFAULT_POLICY.read_text()
    bad = text.replace(
        "channel: email, template: lost_parcel}", "channel: fax, template: lost_parcel}", 1
    )
    line = next(i for i, t in enumerate(bad.splitlines(), 1) if "channel: fax" in t)
    with pytest.raises(PolicyError) as error:
        parse_policy(bad)
    assert f"line {line}" in str(error.value)
    assert "notify_customer.channel" in str(error.value) and "'fax'" in str(error.value)
    with pytest.raises(PolicyError, match=r"line \d+, risk.exit_margin"):
        parse_policy(text.replace("exit_margin: 0.15", "exit_margin: high"))
    with pytest.raises(PolicyError, match="not valid YAML"):
        parse_policy(text + "\n  - : [\n")


def test_detection_grade_counts_observable_misses_and_precision() -> None:
    from bench.detection import ANY, Counts, Truth, grade_moment

    states = [
        state(1, promised_deliver_by=T0 + timedelta(hours=48)),  # observable miss, caught
        state(2, promised_deliver_by=T0 + timedelta(hours=48)),  # observable miss, missed
        state(3, promised_deliver_by=T0 + timedelta(hours=48)),  # failure-free, flagged
        state(4, promised_deliver_by=T0 + timedelta(hours=10)),  # too close: not eligible
        state(5, promised_deliver_by=T0 + timedelta(hours=48)),  # misses later, onset not yet
    ]
    seen, later = T0 - timedelta(hours=1), T0 + timedelta(hours=5)
    truth = {
        1: Truth(missed=True, clean=False, observable_at=seen),
        2: Truth(missed=True, clean=False, observable_at=seen),
        3: Truth(missed=False, clean=True, observable_at=None),
        4: Truth(missed=True, clean=False, observable_at=seen),
        5: Truth(missed=True, clean=False, observable_at=later),
    }
    counts = {name: Counts() for name in ("scan_gap", ANY)}
    flagged = {1: {"scan_gap"}, 3: {"scan_gap"}, 4: {"scan_gap"}}
    first = {1: T0 - timedelta(hours=12), 3: T0, 4: T0}
    eligible = grade_moment(T0, states, flagged, first, truth, counts, ["scan_gap"])
    g = counts[ANY]
    assert eligible == {1, 2, 3, 5}
    assert (g.flagged, g.missed, g.observable, g.caught_observable) == (2, 3, 2, 1)
    assert g.observable_recall == 0.5 and g.precision == 0.5 and g.false_alarms == 1.0
    assert g.leads == {1: 60.0}  # first open 12 h before T0, breach 48 h after


def test_observable_at_is_the_earliest_rule_cause_past_its_threshold() -> None:
    from bench.detection import observable_at
    from bench.rules_grading import dbt_vars
    from orderwatch_dagster.sim.truth import cause_columns, onset_columns

    row = dict.fromkeys((*onset_columns(), *cause_columns()), "")
    row.update(
        failure_mode="scan_gap",
        failure_onset_at="2026-10-05T00:00:00Z",
        onset_silence_48h_at="2026-10-05T00:00:00Z",  # what the feed showed: not graded on
        cause_scan_gap_at="2026-10-06T00:00:00Z",
        cause_stock_out_at="2026-10-08T00:00:00Z",  # fulfillment_hold: 0 h, but later
    )
    # scan_gap: the 36 h floor after the hub silenced the parcel
    assert observable_at(row) == datetime(2026, 10, 7, 12, tzinfo=UTC)
    assert observable_at({**row, "cause_scan_gap_at": ""}) == datetime(2026, 10, 8, tzinfo=UTC)
    # ship-late counts from the truth's ship-by + the grace of dbt_project.yml, whether or not
    # the order shipped by then: a site cause alone (no ship-by in the row) is not observable
    grace = timedelta(hours=float(dbt_vars()["ship_late_grace_hours"]))
    backlog = {**row, "cause_scan_gap_at": "", "cause_stock_out_at": ""}
    backlog["cause_warehouse_backlog_at"] = "2026-10-06T21:00:00Z"
    assert observable_at(backlog) is None
    backlog["promised_ship_by"] = "2026-10-07T03:59:59Z"
    assert observable_at(backlog) == datetime(2026, 10, 7, 3, 59, 59, tzinfo=UTC) + grace
    # a cause begun after the ship-by counts from itself
    backlog["cause_warehouse_backlog_at"] = "2026-10-07T05:00:00Z"
    assert observable_at(backlog) == datetime(2026, 10, 7, 5, tzinfo=UTC) + grace


# -- the asset on a real warehouse: replays --------------------------------------------------
def _sql_type(column: str) -> str:
    if column == "order_id":
        return "bigint"
    if column == "is_open" or column.endswith(("_occurred", "_active")):
        return "boolean"
    if column.endswith("_at") or column.startswith("promised_") or column == "as_of":
        return "timestamptz"
    if column.endswith("_hours") or column == "order_value":
        return "double"
    return "varchar"


def snapshot_warehouse(path: Any, slices: dict[datetime, list[dict[str, Any]]]) -> None:
    """marts.order_state_snapshots holding `slices` (the as-of layer's layout, typed)."""
    import duckdb

    columns = ("as_of", *ex.STATE_COLUMNS)
    with duckdb.connect(str(path)) as con:
        con.execute("SET TimeZone = 'UTC'")
        con.execute("create schema if not exists marts")
        typed = ", ".join(f"{c} {_sql_type(c)}" for c in columns)
        con.execute(f"create or replace table marts.order_state_snapshots ({typed})")
        con.executemany(
            f"insert into marts.order_state_snapshots values ({', '.join('?' * len(columns))})",
            [[moment, *(s[c] for c in ex.STATE_COLUMNS)] for moment, rows in slices.items()
             for s in rows],
        )  # fmt: skip


def hold(order_id: int, detected: datetime, active: bool = True) -> dict[str, Any]:
    return state(
        order_id,
        fulfillment_hold_occurred=True,
        fulfillment_hold_active=active,
        fulfillment_hold_detected_at=detected,
        fulfillment_hold_category="inventory",
    )


def test_a_replay_never_rewrites_the_live_episodes(tmp_path: Any, monkeypatch: Any) -> None:
    import dagster as dg

    from orderwatch_dagster.defs.exceptions.assets import order_exceptions
    from orderwatch_dagster.defs.resources import DuckDBWarehouse
    from orderwatch_dagster.lib import settings
    from orderwatch_dagster.lib.tables import select_dicts

    now = T0 + timedelta(hours=48)
    warehouse = tmp_path / "warehouse.duckdb"
    snapshot_warehouse(
        warehouse,
        {
            T0 + timedelta(hours=1): [hold(1, T0)],
            T0 + timedelta(hours=24): [hold(1, T0), hold(2, T0 + timedelta(hours=20))],
            now: [hold(1, T0, active=False), hold(2, T0 + timedelta(hours=20)), hold(3, now)],
        },
    )
    monkeypatch.setenv("ORDERWATCH_HOME", str(tmp_path))
    monkeypatch.delenv("ORDERWATCH_AS_OF", raising=False)
    settings.write_clock(now, tmp_path / "clock")
    resources = {"warehouse": DuckDBWarehouse(path=str(warehouse))}

    def materialize() -> dict[str, Any]:
        result = dg.materialize([order_exceptions], resources=resources)
        assert result.success
        (event,) = result.get_asset_materialization_events()
        return {k: v.value for k, v in event.materialization.metadata.items()}

    def table(name: str) -> list[dict[str, Any]]:
        with DuckDBWarehouse(path=str(warehouse)).connect() as session:
            sql = f"select exception_id, order_id, ended_at, as_of from {name} order by 1"
            return select_dicts(session, sql, ("exception_id", "order_id", "ended_at", "as_of"))

    assert materialize()["replay"] is False
    live = table("marts.order_exceptions")
    assert {r["order_id"] for r in live if r["ended_at"] is None} == {2, 3}

    monkeypatch.setenv("ORDERWATCH_AS_OF", (T0 + timedelta(hours=24)).isoformat())
    meta = materialize()
    assert meta["replay"] is True and meta["table"] == "marts.order_exceptions_replay"
    assert table("marts.order_exceptions") == live  # ids, ends and as_of untouched
    replayed = table("marts.order_exceptions_replay")
    assert {r["order_id"] for r in replayed} == {1, 2}  # what was known then, from the grid
    assert all(r["ended_at"] is None for r in replayed)
    # the episode both saw (order 2, same start) has the same id in both tables
    assert {r["exception_id"] for r in replayed if r["order_id"] == 2} == {
        r["exception_id"] for r in live if r["order_id"] == 2
    }

    monkeypatch.delenv("ORDERWATCH_AS_OF")
    assert materialize()["replay"] is False
    assert table("marts.order_exceptions") == live  # the next live run continues the episodes
