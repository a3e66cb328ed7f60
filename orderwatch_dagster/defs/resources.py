"""Warehouse resources: one interface, two engines (DESIGN.md "Storage contract").

`DuckDBWarehouse` is the embedded default; `PostgresWarehouse` writes the same raw layer to a
server (the dbt `postgres` target reads it). Both hand out a `WarehouseSession`
(lib/warehouse.py) from `connect()`; keep sessions short, because dbt opens the same DuckDB
file right after ingest and DuckDB allows one writer process.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager
from datetime import datetime
from pathlib import Path
from typing import Any, ClassVar

import dagster as dg
from pydantic import Field

from orderwatch_dagster.lib.feeds import feed_spec
from orderwatch_dagster.lib.records import ParsedPage
from orderwatch_dagster.lib.settings import warehouse_path
from orderwatch_dagster.lib.warehouse import (
    LoadStats,
    PageLike,
    WarehouseSession,
    open_duckdb,
    open_postgres,
)


class _WarehouseMethods:
    """Convenience calls that open a short session each (for checks, tests and the CLI)."""

    def connect(self) -> AbstractContextManager[WarehouseSession]:
        raise NotImplementedError

    def ensure_feed(self, feed: str) -> None:
        with self.connect() as session:
            session.ensure_feed(feed, feed_spec(feed).key_columns)

    def page_seen(self, feed: str, page: PageLike) -> bool:
        with self.connect() as session:
            session.ensure_schema()
            return session.page_seen(feed, page.name, page.content_hash)

    def load_page(self, feed: str, page: PageLike, parsed: ParsedPage) -> LoadStats:
        spec = feed_spec(feed)
        with self.connect() as session:
            session.ensure_feed(feed, spec.key_columns)
            return session.load_page(feed, spec.key_columns, page, parsed)

    def get_cursor(self, feed: str) -> datetime | None:
        with self.connect() as session:
            session.ensure_schema()
            return session.get_cursor(feed)

    def set_cursor(self, feed: str, cursor: datetime) -> None:
        with self.connect() as session:
            session.ensure_schema()
            session.set_cursor(feed, cursor)

    def query(self, sql: str, params: list[Any] | None = None) -> list[tuple[Any, ...]]:
        with self.connect() as session:
            return session.query(sql, params)


class DuckDBWarehouse(dg.ConfigurableResource, _WarehouseMethods):
    """The DuckDB warehouse file (default ORDERWATCH_HOME/warehouse.duckdb, read at call time)."""

    path: str | None = Field(
        default=None, description="DuckDB file; default ORDERWATCH_HOME/warehouse.duckdb"
    )
    lock_timeout_s: float = Field(
        default=120.0, description="How long to wait for another process's write lock"
    )

    engine: ClassVar[str] = "duckdb"

    def database_path(self) -> Path:
        return Path(self.path) if self.path else warehouse_path()

    @contextmanager
    def connect(self) -> Iterator[WarehouseSession]:  # type: ignore[override]
        with open_duckdb(self.database_path(), lock_timeout_s=self.lock_timeout_s) as session:
            yield session


class PostgresWarehouse(dg.ConfigurableResource, _WarehouseMethods):
    """A PostgreSQL warehouse (payload as JSONB); pass the password as dg.EnvVar."""

    host: str = "127.0.0.1"
    port: int = 5432
    user: str = "postgres"
    password: str = ""
    database: str = "orderwatch"
    connect_timeout_s: int = 10

    engine: ClassVar[str] = "postgres"

    @contextmanager
    def connect(self) -> Iterator[WarehouseSession]:  # type: ignore[override]
        with open_postgres(
            host=self.host,
            port=self.port,
            user=self.user,
            password=self.password,
            database=self.database,
            connect_timeout_s=self.connect_timeout_s,
        ) as session:
            yield session


@dg.definitions
def warehouse_resources() -> dg.Definitions:
    """Bind `warehouse` for the code location: DuckDB unless ORDERWATCH_WAREHOUSE_ENGINE=postgres.

    Read when the code location loads (not at import), like the dbt profile's target switch.
    """
    import os

    if os.environ.get("ORDERWATCH_WAREHOUSE_ENGINE", "duckdb").strip().lower() == "postgres":
        warehouse: dg.ConfigurableResource = PostgresWarehouse(
            host=os.environ.get("ORDERWATCH_PG_HOST", "127.0.0.1"),
            port=int(os.environ.get("ORDERWATCH_PG_PORT", "5432")),
            user=os.environ.get("ORDERWATCH_PG_USER", "postgres"),
            # resolved at launch and hidden in the UI; trust auth needs none
            password=dg.EnvVar("ORDERWATCH_PG_PASSWORD")
            if os.environ.get("ORDERWATCH_PG_PASSWORD")
            else "",
            database=os.environ.get("ORDERWATCH_PG_DATABASE", "orderwatch"),
        )
    else:
        warehouse = DuckDBWarehouse()
    return dg.Definitions(resources={"warehouse": warehouse})
