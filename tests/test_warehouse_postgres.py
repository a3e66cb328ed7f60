"""The same ingest into PostgreSQL gives the same raw layer as DuckDB (real server, fresh database).

Needs the PostgreSQL server at 127.0.0.1:5432 (trust auth, user postgres); conftest's
`scratch_database` makes a fresh database per test and drops it, and skips with the reason when
the server is unreachable, except under CI=true, where that is a failure.
"""

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import dagster as dg
import pytest
from test_ingest import (
    ALL_ASSETS,
    BAD_PAGES,
    default_connectors,
    easypost_tracker,
    materialize,
    metadata_by_feed,
    shopify_order,
    simulate_world,
    table_counts,
    write_page,
)

from orderwatch_dagster.defs.resources import DuckDBWarehouse, PostgresWarehouse
from orderwatch_dagster.lib import ledger
from orderwatch_dagster.lib.action_run import ACTIONS_LOCK, Controls, run_actions
from orderwatch_dagster.lib.feeds import FEED_FOLDERS, FEEDS
from orderwatch_dagster.lib.parsers import parse_page
from orderwatch_dagster.lib.policy import DEFAULT_POLICY, parse_policy
from orderwatch_dagster.lib.records import KeyColumn

pytestmark = pytest.mark.postgres

PG = {"host": "127.0.0.1", "port": 5432, "user": "postgres"}


def _hand_pages(landing: Path) -> None:
    """Versions, a renamed copy, every quarantine reason, an unknown enum and a NUL character."""
    write_page(
        landing,
        "storefront_orders",
        "h1.json",
        {"orders": [shopify_order(501, "2026-10-05T10:00:00-04:00", note="a\u0000b")]},
    )
    write_page(
        landing,
        "storefront_orders",
        "h2.json",
        {"orders": [shopify_order(501, "2026-10-06T10:00:00-04:00", financial_status="refunded")]},
    )
    write_page(
        landing,
        "storefront_orders",
        "h2-copy.json",
        {"orders": [shopify_order(501, "2026-10-06T10:00:00-04:00", financial_status="refunded")]},
    )
    for reason, (body, _) in BAD_PAGES.items():
        write_page(landing, "storefront_orders", f"bad-{reason}.json", body)
    write_page(
        landing,
        "storefront_orders",
        "nan.json",
        '{"orders": [{"id": 88, "updated_at": "2026-10-05T10:00:00Z", "total_price": NaN}]}',
    )
    write_page(
        landing,
        "carrier_trackers",
        "h-trackers.json",
        {
            "trackers": [easypost_tracker("trk_zzz999", "2026-10-05T10:00Z", "teleported")],
            "has_more": False,
        },
    )


def _versions(warehouse: Any) -> dict[str, set[tuple[str, str]]]:
    with warehouse.connect() as session:
        return {
            feed: set(session.query(f"SELECT _key, _record_hash FROM raw.{feed}"))
            for feed in FEED_FOLDERS
        }


def _cursors(warehouse: Any) -> dict[str, Any]:
    with warehouse.connect() as session:
        return dict(session.query("SELECT feed, cursor FROM raw._cursors"))


def test_postgres_raw_layer_matches_duckdb(
    scratch_database: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ORDERWATCH_HOME", str(tmp_path))
    # "now" after the hand pages (dated past the simulated clock, they would be future_time)
    monkeypatch.setenv("ORDERWATCH_AS_OF", "2026-10-07T00:00:00Z")
    landing = tmp_path / "landing"
    simulate_world(landing, "--inject-bad-records")
    _hand_pages(landing)

    duck = DuckDBWarehouse(path=str(tmp_path / "warehouse.duckdb"))
    pg = PostgresWarehouse(database=scratch_database, **PG)
    runs: dict[str, dict[str, dict[str, Any]]] = {}
    with dg.DagsterInstance.ephemeral() as instance:
        for label, warehouse in (("duckdb", duck), ("postgres", pg)):
            resources = {"warehouse": warehouse, **default_connectors()}
            runs[label] = metadata_by_feed(materialize(ALL_ASSETS, resources, instance))
        counts_before = table_counts(pg)
        again = metadata_by_feed(
            materialize(ALL_ASSETS, {"warehouse": pg, **default_connectors()}, instance)
        )

    for feed in FEED_FOLDERS:
        for key in ("rows_read", "rows_loaded", "rows_duplicate", "rows_quarantined", "cursor"):
            assert runs["postgres"][feed][key] == runs["duckdb"][feed][key], (feed, key)
        assert again[feed]["rows_loaded"] == 0
    assert table_counts(pg) == table_counts(duck) == counts_before
    assert _versions(pg) == _versions(duck)
    assert _cursors(pg) == _cursors(duck)

    with pg.connect() as session:
        # payload is JSONB; the NUL is replaced in the stored copy only (hash = original's)
        (note, kind) = session.query(
            "SELECT payload->>'note', pg_typeof(payload)::text FROM raw.storefront_orders "
            "WHERE _key = '501' AND payload->>'financial_status' = 'paid'"
        )[0]
        assert (note, kind) == ("a\ufffdb", "jsonb")
        reasons = dict(
            session.query(
                "SELECT reason, count(*) FROM raw._quarantine WHERE source LIKE %s GROUP BY 1",
                ["%/bad-%"],
            )
        )
        assert reasons == {str(reason): 1 for reason in BAD_PAGES}
        originals = [text for (text,) in session.query("SELECT original_text FROM raw._quarantine")]
        assert any("last tuesday" in text for text in originals)
    with duck.connect() as session:
        (note,) = session.query(
            "SELECT payload->>'note' FROM raw.storefront_orders "
            "WHERE _key = '501' AND payload->>'financial_status' = 'paid'"
        )[0]
        assert note == "a\u0000b"
    assert runs["postgres"]["carrier_trackers"]["unknown_enum_values"] >= 1


@pytest.mark.parametrize("engine", ["duckdb", "postgres"])
def test_session_api_behaves_the_same_on_both_engines(
    engine: str, scratch_database: str, tmp_path: Path
) -> None:
    warehouse: Any = (
        DuckDBWarehouse(path=str(tmp_path / "w.duckdb"))
        if engine == "duckdb"
        else PostgresWarehouse(database=scratch_database, **PG)
    )

    class Page:
        def __init__(self, name: str, content_hash: str) -> None:
            self.name, self.source, self.content_hash = name, f"test://{name}", content_hash

    columns = FEEDS["returns"].key_columns
    body = '{"returns": [{"id": 1, "order_id": 5, "updated_at": "2026-10-05T10:00:00Z"}]}'
    moment = datetime(2026, 10, 5, 10, tzinfo=UTC)
    with warehouse.connect() as session:
        session.ensure_feed("returns", columns)
        # a key column added to the feed contract later: added to the existing table
        session.ensure_feed("returns", (*columns, KeyColumn("state", "VARCHAR")))
        stats = session.load_pages(
            "returns", columns, [(Page("r1", "h1"), parse_page("returns", body))],
            advance_cursor_to=moment,
        )  # fmt: skip
        assert (stats.rows_loaded, stats.rows_duplicate) == (1, 0)
        assert session.seen_pages("returns") == {("r1", "h1")}
        assert session.query("SELECT id, order_id, state FROM raw.returns") == [(1, 5, None)]
        assert session.get_cursor("returns") == moment
        # advancing never moves the cursor back
        session.load_pages(
            "returns", columns, [], advance_cursor_to=datetime(2026, 1, 1, tzinfo=UTC)
        )
        assert session.get_cursor("returns") == moment
        # a page quarantined as a whole is "unreadable" until it leaves the quarantine
        whole = parse_page("returns", '{"returns": [')
        session.load_pages("returns", columns, [(Page("r2", "h2"), whole)])
        assert session.unreadable_pages("returns") == {"h2"}
        assert [row.record_index for row in session.quarantined("returns")] == [-1]


@pytest.mark.parametrize("engine", ["duckdb", "postgres"])
def test_the_ops_ledger_is_created_upgraded_and_written_on_both_engines(
    engine: str, scratch_database: str, tmp_path: Path
) -> None:
    """ensure_ops on a ledger from before resend_key adds the column (twice: a no-op), and a
    message row with its JSON history and resend_key round-trips and is upserted in place."""
    warehouse: Any = (
        DuckDBWarehouse(path=str(tmp_path / "w.duckdb"))
        if engine == "duckdb"
        else PostgresWarehouse(database=scratch_database, **PG)
    )
    old_messages = [
        s.replace(" resend_key varchar,", "")
        for s in ledger._ddl("json")
        if "table if not exists ops.customer_messages" in s
    ]
    assert old_messages and "resend_key" not in old_messages[0]
    moment = datetime(2026, 10, 5, 10, tzinfo=UTC)
    row = {c: None for c in ledger.MESSAGE_COLUMNS} | {
        "idempotency_key": "k1",
        "order_id": 5000000000001,
        "state_key": "delayed#0",
        "channel": "ticket_create",
        "template": "task",
        "status": "not_accepted",
        "attempts": 1,
        "history": [{"at": moment.isoformat(), "outcome": "not_accepted"}],
        "resend_key": "k1:resend",
        "created_at": moment,
        "updated_at": moment,
    }
    with warehouse.connect() as session:
        session.execute("create schema if not exists ops")
        session.execute(old_messages[0].replace(" json,", f" {session.json_type},"))
        ledger.ensure_ops(session)
        ledger.ensure_ops(session)
        columns = {
            c
            for (c,) in session.query(
                "select column_name from information_schema.columns"
                " where table_schema = 'ops' and table_name = 'customer_messages'"
            )
        }
        assert columns == set(ledger.MESSAGE_COLUMNS)
        ledger.write_message(session, row)
        ledger.write_message(session, row | {"status": "accepted", "attempts": 2})
        (stored,) = ledger.read_messages(session).values()
        # a provider's Retry-After, upserted in place (lib/action_run.py reads it each run)
        later = moment + timedelta(minutes=15)
        ledger.write_throttle(session, "zendesk", moment, "ticket_create: HTTP 429", moment)
        ledger.write_throttle(session, "zendesk", later, "ticket_note: HTTP 429", moment)
        ledger.write_throttle(session, "slack", moment + timedelta(days=1), "HTTP 429", moment)
        throttles = ledger.read_throttles(session, timedelta(minutes=15))
    assert throttles == {"zendesk": later, "slack": later}  # a day's hold cut to the cap
    assert (stored["status"], stored["attempts"], stored["resend_key"]) == (
        "accepted",
        2,
        "k1:resend",
    )
    assert stored["history"] == row["history"]


def test_one_action_run_at_a_time_on_postgres(scratch_database: str, tmp_path: Path) -> None:
    """Two action runs on one PostgreSQL ledger: while one holds it, the other does nothing
    (no send, no ledger read: each would otherwise read the ledger before the other's intent
    and both send); once it is released, the next run takes it."""
    warehouse = PostgresWarehouse(database=scratch_database, **PG)
    sent: list[Any] = []
    policy = parse_policy(DEFAULT_POLICY.read_text())
    moment = datetime(2026, 10, 5, 10, tzinfo=UTC)

    def attempt(session: Any) -> Any:
        return run_actions(
            session, sent.append, Controls(), policy, moment, "r", tmp_path, lambda _: None
        )

    with warehouse.connect() as first, warehouse.connect() as second:
        with first.exclusive(ACTIONS_LOCK) as held:
            assert held
            with second.exclusive(ACTIONS_LOCK) as also:
                assert not also
            report = attempt(second)
            assert report.mode == "busy" and report.failure and sent == []
        with second.exclusive(ACTIONS_LOCK) as held_now:
            assert held_now  # released with the block
        with pytest.raises(RuntimeError), first.exclusive(ACTIONS_LOCK) as held:
            assert held
            raise RuntimeError("a run that failed half-way")
        with second.exclusive(ACTIONS_LOCK) as held_after_error:
            assert held_after_error  # released with the failed block too
