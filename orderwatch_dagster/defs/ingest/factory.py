"""The raw asset and the quarantine check of one feed: thin Dagster shells over lib/ingest.py.

`build_ingest_asset(feed)` is the `["raw", feed]` asset. It takes its resources as typed
parameters: `warehouse: Warehouse` and the feed's connector `<feed>_source: FeedConnector`
(bound by the feed's source folder, defs/ingest/<source>/definitions.py).
"""

import inspect
from collections.abc import Callable
from typing import Any

import dagster as dg
from pydantic import Field

from orderwatch_dagster.defs.ingest.connector import FeedConnector, connector_key
from orderwatch_dagster.defs.resources import ENGINE, Warehouse
from orderwatch_dagster.lib.feeds import FeedSpec, feed_spec
from orderwatch_dagster.lib.ingest import (
    IngestResult,
    SourceInterrupted,
    ingest_feed,
    replay_quarantine,
)
from orderwatch_dagster.lib.records import QuarantineReason
from orderwatch_dagster.lib.settings import AS_OF, clock_path, now
from orderwatch_dagster.lib.warehouse import ReplayStats


class IngestConfig(dg.Config):
    """Per-run options of a raw asset (launchpad, or `orderwatch replay-quarantine`)."""

    replay_quarantine: bool = False  # first re-parse the feed's quarantined records
    # only these quarantine reasons (empty: all); each one of lib/records.py QuarantineReason
    replay_reasons: list[str] = Field(default_factory=list)


def unknown_reasons(reasons: list[str]) -> list[str]:
    """The reasons that are no `QuarantineReason`: a typo would replay nothing, silently."""
    return sorted(set(reasons) - {reason.value for reason in QuarantineReason})


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


def _metadata(result: IngestResult, replayed: ReplayStats | None) -> dict[str, Any]:
    total = result.stats
    metadata: dict[str, Any] = {
        "rows_read": total.rows_read,
        "rows_loaded": total.rows_loaded,
        "rows_duplicate": total.rows_duplicate,
        "rows_quarantined": total.rows_quarantined,
        "pages_read": total.pages,
        "pages_skipped": result.pages_skipped,
        "pages_unreadable": result.unreadable_pages,
        "cursor": result.cursor.isoformat() if result.cursor else "",
        "cursor_held": result.cursor_held,
        "cursor_check": result.cursor_check,
        "updated_since": result.updated_since.isoformat() if result.updated_since else "",
        "unknown_enum_values": sum(total.unknown_enums.values()),
        "unknown_enums": _md_table(
            ("field", "value", "count"),
            [(f, v, n) for (f, v), n in sorted(total.unknown_enums.items())],
        ),
        "timestamps_without_offset": sum(total.naive_times.values()),
        "quarantine_reasons": _md_table(("reason", "count"), sorted(total.reasons.items())),
        "dagster/row_count": result.row_count,
    }
    if replayed is not None:
        metadata["replay"] = _md_table(
            ("replayed", "released", "loaded", "duplicate", "still quarantined", "superseded"),
            [
                (
                    replayed.replayed,
                    replayed.released,
                    replayed.loaded,
                    replayed.duplicate,
                    replayed.still_quarantined,
                    replayed.superseded,
                )
            ],
        )
    return metadata


def _warn(context: dg.AssetExecutionContext, feed: str, result: IngestResult) -> None:
    total = result.stats
    if total.unknown_enums:
        context.log.warning(
            f"{feed}: {sum(total.unknown_enums.values())} unknown enum value(s) kept "
            "(they map to `unknown` downstream)"
        )
    if total.naive_times:
        context.log.warning(
            f"{feed}: {sum(total.naive_times.values())} timestamp(s) without a UTC offset, "
            f"read as UTC: {dict(total.naive_times)}"
        )
    if total.rows_quarantined:
        context.log.warning(
            f"{feed}: {total.rows_quarantined} record(s) quarantined: {dict(total.reasons)}"
        )
    if result.cursor_held:
        context.log.warning(f"{feed}: cursor not advanced: {result.cursor_held}")
    if result.cursor_check:
        context.log.warning(f"{feed}: {result.cursor_check}")


def refuse_simulated_clock(feed: str, source: FeedConnector) -> None:
    """A vendor API is read against the real "now": the simulator's clock file
    (ORDERWATCH_HOME/clock) would quarantine every real record past it as `future_time`. An
    explicit ORDERWATCH_AS_OF is a deliberate choice and is honoured."""
    if source.transport == "http" and clock_path().is_file() and not AS_OF.read():
        raise dg.Failure(
            f"{feed}: transport 'http' while the simulator's clock file {clock_path()} fixes "
            "'now'; remove the file (or set ORDERWATCH_AS_OF) before reading a vendor API"
        )


def _named_resource(fn: Callable[..., Any], name: str, annotation: type) -> Callable[..., Any]:
    """Declare `fn`'s `**resources` as one keyword parameter `name: annotation`.

    Dagster binds a typed resource parameter by its name; a generated asset gets the per-feed
    name through the function's signature (inspect.signature honours `__signature__`).
    """
    signature = inspect.signature(fn)
    parameters = [p for p in signature.parameters.values() if p.kind is not p.VAR_KEYWORD]
    parameters.append(
        inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY, annotation=annotation)
    )
    fn.__signature__ = signature.replace(parameters=parameters)  # type: ignore[attr-defined]
    return fn


def build_ingest_asset(feed: str) -> dg.AssetsDefinition:
    """The `["raw", feed]` asset: resources `warehouse` and `<feed>_source`."""
    spec = feed_spec(feed)
    source_key = connector_key(feed)

    def ingest(
        context: dg.AssetExecutionContext,
        config: IngestConfig,
        warehouse: Warehouse,
        **sources: FeedConnector,
    ) -> dg.MaterializeResult:
        replayed = None
        unknown = unknown_reasons(config.replay_reasons)
        if unknown:
            known = ", ".join(reason.value for reason in QuarantineReason)
            raise dg.Failure(f"{feed}: unknown quarantine reason(s) {', '.join(unknown)}; {known}")
        source = sources[source_key]
        refuse_simulated_clock(feed, source)
        if config.replay_quarantine:
            replayed = replay_quarantine(
                spec, warehouse.connect, now=now(), reasons=config.replay_reasons
            )
            context.log.info(f"{feed}: replayed quarantine: {replayed}")
        try:
            result = ingest_feed(spec, source, warehouse.connect, now=now())
        except SourceInterrupted as stop:
            _warn(context, feed, stop.result)
            raise dg.Failure(
                description=f"{feed}: {stop.result.cursor_held}; the pages read are stored",
                metadata=_metadata(stop.result, replayed),
            ) from stop.__cause__
        _warn(context, feed, result)
        return dg.MaterializeResult(metadata=_metadata(result, replayed))

    return dg.asset(
        key=["raw", feed],
        group_name="ingest",
        kinds={str(ENGINE.value())},  # the warehouse engine bound when the definitions load
        description=_description(spec),
        metadata={"feed": feed, "vendor": spec.vendor, "source_system": spec.source},
        # a sideload reads its parent feed's pages (over HTTP: the archive the parent writes)
        deps=[dg.AssetKey(["raw", spec.pages_of])] if spec.pages_of else None,
    )(_named_resource(ingest, source_key, FeedConnector))


def build_quarantine_check(feed: str) -> dg.AssetChecksDefinition:
    """WARN when the feed has quarantined records; reports counts by reason (all time)."""
    feed_spec(feed)

    @dg.asset_check(
        asset=dg.AssetKey(["raw", feed]),
        name=f"raw_{feed}_quarantine_check",
        description=f"Records of {feed} that could not be loaded (raw._quarantine), by reason.",
        blocking=False,
    )
    def _check(warehouse: Warehouse) -> dg.AssetCheckResult:
        with warehouse.connect() as session:
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
