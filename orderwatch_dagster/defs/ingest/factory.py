"""One raw ingest asset (and one quarantine check) per feed: connector pages -> raw.<feed>.

Per run: read the cursor -> for each page from the `<feed>_source` connector, skip it if the
ledger already has (name, content_hash), parse it, load it -> advance the cursor to the max
update time seen. HTTP connectors are asked for `updated_since = cursor - 1h`: the overlap is
harmless because loads are idempotent, and it catches records the source committed late.
"""

from datetime import datetime, timedelta
from typing import Any

import dagster as dg

from orderwatch_dagster.lib.feeds import FeedSpec, feed_spec
from orderwatch_dagster.lib.parsers import parse_page
from orderwatch_dagster.lib.records import ParsedPage
from orderwatch_dagster.lib.warehouse import LoadStats, PageLike

CURSOR_OVERLAP = timedelta(hours=1)
# Pages are loaded in batches (one transaction each): few round trips, and the DuckDB file is
# held only while a batch is written, so dbt or another ingest process can get the lock between.
BATCH_RECORDS = 20_000
BATCH_PAGES = 500


def _description(spec: FeedSpec) -> str:
    return (
        f"Raw {spec.vendor} records of the {spec.source} feed `{spec.name}` as received "
        f"(payload + key columns {', '.join(c.name for c in spec.key_columns)}); one row per "
        f"record version (_key, _record_hash). Bad records go to raw._quarantine."
    )


def _md_table(header: tuple[str, ...], rows: list[tuple[Any, ...]]) -> dg.MetadataValue:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for row in rows:
        cells = [str(cell).replace("|", "\\|").replace("\n", " ") for cell in row]
        lines.append("| " + " | ".join(cells) + " |")
    if not rows:
        lines.append("| " + " | ".join(["—"] * len(header)) + " |")
    return dg.MetadataValue.md("\n".join(lines))


def _ndjson_hint(page: PageLike) -> bool | None:
    return True if page.name.lower().endswith(".ndjson") else None


def build_ingest_asset(feed: str) -> dg.AssetsDefinition:
    """The `["raw", feed]` asset: needs resources `warehouse` and `<feed>_source`."""
    spec = feed_spec(feed)
    source_key = f"{feed}_source"

    @dg.asset(
        key=["raw", feed],
        group_name="ingest",
        kinds={"duckdb"},
        description=_description(spec),
        required_resource_keys={"warehouse", source_key},
        metadata={"feed": feed, "vendor": spec.vendor, "source_system": spec.source},
    )
    def _ingest(context: dg.AssetExecutionContext) -> dg.MaterializeResult:
        warehouse = context.resources.warehouse
        connector = getattr(context.resources, source_key)
        columns = spec.key_columns

        with warehouse.connect() as session:
            session.ensure_feed(feed, columns)
            cursor = session.get_cursor(feed)
            seen = session.seen_pages(feed)
        updated_since = cursor - CURSOR_OVERLAP if cursor is not None else None

        total = LoadStats()
        pending: list[tuple[PageLike, ParsedPage]] = []
        pending_records = 0
        skipped = 0

        run_max: datetime | None = None  # max update time of every record read this run

        def flush() -> None:
            nonlocal pending, pending_records
            with warehouse.connect() as session:
                total.add(session.load_pages(feed, columns, pending))
            pending, pending_records = [], 0

        # A ConnectorAuthError / ConnectorError propagates: the run fails with the
        # connector's message and the cursor stays where it was.
        for page in connector.pages(feed, updated_since):
            identity = (page.name, page.content_hash)
            if identity in seen:
                skipped += 1
                continue
            seen.add(identity)
            parsed = parse_page(feed, page.body, ndjson=_ndjson_hint(page))
            for record in parsed.records:
                if run_max is None or record.updated_at > run_max:
                    run_max = record.updated_at
            pending.append((page, parsed))
            pending_records += parsed.read
            if pending_records >= BATCH_RECORDS or len(pending) >= BATCH_PAGES:
                flush()
        with warehouse.connect() as session:
            # The last batch and the cursor commit together: the cursor never gets ahead of
            # what is stored.
            total.add(session.load_pages(feed, columns, pending, advance_cursor_to=run_max))
            new_cursor = session.get_cursor(feed)
            row_count = session.row_count(feed)
        total.check()

        if total.unknown_enums:
            context.log.warning(
                f"{feed}: {sum(total.unknown_enums.values())} unknown enum value(s) kept "
                "(they map to `unknown` downstream)"
            )
        if total.rows_quarantined:
            context.log.warning(
                f"{feed}: {total.rows_quarantined} record(s) quarantined: {dict(total.reasons)}"
            )
        return dg.MaterializeResult(
            metadata={
                "rows_read": total.rows_read,
                "rows_loaded": total.rows_loaded,
                "rows_duplicate": total.rows_duplicate,
                "rows_quarantined": total.rows_quarantined,
                "pages_read": total.pages,
                "pages_skipped": skipped,
                "cursor": new_cursor.isoformat() if new_cursor else "",
                "updated_since": updated_since.isoformat() if updated_since else "",
                "unknown_enum_values": sum(total.unknown_enums.values()),
                "unknown_enums": _md_table(
                    ("field", "value", "count"),
                    [(f, v, n) for (f, v), n in sorted(total.unknown_enums.items())],
                ),
                "quarantine_reasons": _md_table(("reason", "count"), sorted(total.reasons.items())),
                "dagster/row_count": row_count,
            }
        )

    return _ingest


def build_quarantine_check(feed: str) -> dg.AssetChecksDefinition:
    """WARN when the feed has quarantined records; reports counts by reason (all time)."""
    feed_spec(feed)

    @dg.asset_check(
        asset=dg.AssetKey(["raw", feed]),
        name=f"raw_{feed}_quarantine_check",
        description=f"Records of {feed} that could not be loaded (raw._quarantine), by reason.",
        required_resource_keys={"warehouse"},
        blocking=False,
    )
    def _check(context: dg.AssetCheckExecutionContext) -> dg.AssetCheckResult:
        with context.resources.warehouse.connect() as session:
            session.ensure_schema()
            counts = session.quarantine_counts(feed)
            pages = session.query(
                "SELECT count(*), coalesce(sum(rows_read), 0) FROM raw._ingest_files "
                f"WHERE feed = {session.p}",
                [feed],
            )[0]
        quarantined = sum(counts.values())
        return dg.AssetCheckResult(
            passed=quarantined == 0,
            severity=dg.AssetCheckSeverity.WARN,
            metadata={
                "quarantined": quarantined,
                "pages_ingested": int(pages[0]),
                "rows_read": int(pages[1]),
                "reasons": _md_table(("reason", "count"), sorted(counts.items())),
            },
        )

    return _check
