"""The raw layer on two engines (docs/architecture.md "Storage contract"): DuckDB and PostgreSQL.

Pure Python (no Dagster): defs/resources.py wraps these sessions in the `Warehouse` resources.
Split by concern: batch assembly (lib/warehouse_batch.py), the operations written once for both
engines (lib/warehouse_session.py), DuckDB (lib/warehouse_duckdb.py), PostgreSQL
(lib/warehouse_postgres.py). This module is the one other code imports.

Tables (per feed, plus three bookkeeping tables):
  raw.<feed>(_key, _updated_at, <key columns>, payload, _record_hash, _format, _source,
             _ingested_at, UNIQUE(_key, _record_hash))
  raw._quarantine(feed, source, record_index, reason, detail, original_text, content_hash,
                  quarantined_at, UNIQUE(feed, content_hash, record_index))
  raw._ingest_files(feed, name, content_hash, source, rows_read, rows_loaded,
                    rows_quarantined, ingested_at, PRIMARY KEY(feed, name, content_hash))
  raw._cursors(feed PRIMARY KEY, cursor, updated_at)
"""

from orderwatch_dagster.lib.warehouse_batch import LoadStats, PageLike
from orderwatch_dagster.lib.warehouse_duckdb import open_duckdb
from orderwatch_dagster.lib.warehouse_postgres import open_postgres
from orderwatch_dagster.lib.warehouse_session import (
    QuarantinedRecord,
    ReplayStats,
    WarehouseSession,
)

__all__ = [
    "LoadStats",
    "PageLike",
    "QuarantinedRecord",
    "ReplayStats",
    "WarehouseSession",
    "open_duckdb",
    "open_postgres",
]
