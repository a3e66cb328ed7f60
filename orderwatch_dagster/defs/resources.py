"""The warehouse resource: one abstract `Warehouse`, two engines (docs/architecture.md
"Storage contract").

`DuckDBWarehouse` is the embedded default; `PostgresWarehouse` writes the same raw layer to a
server (the dbt `postgres` target reads it). Assets take `warehouse: Warehouse` as a typed
parameter and use `with warehouse.connect() as session:` (lib/warehouse.py `WarehouseSession`);
the dbt asset asks it for its dbt target and environment. Keep sessions short: dbt opens the
same DuckDB file right after ingest and DuckDB allows one writer process.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager
from pathlib import Path
from typing import ClassVar

import dagster as dg
from pydantic import Field

from orderwatch_dagster.defs.configuration import resource_fields
from orderwatch_dagster.lib.settings import EnvSetting, warehouse_path
from orderwatch_dagster.lib.warehouse import WarehouseSession, open_duckdb, open_postgres

# DuckDB's own defaults are 80% of RAM and one thread per core. Set deliberately instead: an
# ingest process (parsed batches and the code location beside DuckDB's buffers) stays under 1 GB
# at 100k orders with 384MB (bench/results/ingest.md); dbt's builds (joins and window functions
# over every version, two models at a time) get more, and spill to disk beyond it: with 2GB, a
# 100k-order world ran out of memory in staging.stg_wms__shipments while another model built.
# dbt_project/profiles.yml repeats the dbt pair.
DUCKDB_MEMORY_LIMIT = "384MB"
DUCKDB_THREADS = 2
DBT_DUCKDB_MEMORY_LIMIT = "4GB"
DBT_DUCKDB_THREADS = 2


class Warehouse(dg.ConfigurableResource, ABC):
    """Where the raw layer and the dbt models live."""

    dbt_target: ClassVar[str]  # the output of dbt_project/profiles.yml this engine uses

    @abstractmethod
    def connect(self) -> AbstractContextManager[WarehouseSession]:
        """A short session on the warehouse (closed when the `with` block ends)."""

    @abstractmethod
    def dbt_connection(self) -> dict[str, str]:
        """The environment variables profiles.yml reads to reach this warehouse."""

    def dbt_environment(self) -> dict[str, str]:
        """Everything dbt needs to build on this warehouse: its target and connection."""
        return {"ORDERWATCH_DBT_TARGET": self.dbt_target, **self.dbt_connection()}


class DuckDBWarehouse(Warehouse):
    """The DuckDB warehouse file (default ORDERWATCH_HOME/warehouse.duckdb, read at call time)."""

    path: str | None = Field(
        default=None, description="DuckDB file; default ORDERWATCH_HOME/warehouse.duckdb"
    )
    lock_timeout_s: float = Field(
        default=120.0, description="How long to wait for another process's write lock"
    )
    memory_limit: str = Field(
        default=DUCKDB_MEMORY_LIMIT, description="DuckDB memory_limit of these sessions"
    )
    threads: int = Field(default=DUCKDB_THREADS, description="DuckDB threads of these sessions")
    dbt_memory_limit: str = Field(
        default=DBT_DUCKDB_MEMORY_LIMIT, description="DuckDB memory_limit of dbt's builds"
    )
    dbt_threads: int = Field(default=DBT_DUCKDB_THREADS, description="DuckDB threads of dbt")

    dbt_target: ClassVar[str] = "duckdb"

    def database_path(self) -> Path:
        return Path(self.path) if self.path else warehouse_path()

    @contextmanager
    def connect(self) -> Iterator[WarehouseSession]:
        with open_duckdb(
            self.database_path(),
            lock_timeout_s=self.lock_timeout_s,
            memory_limit=self.memory_limit,
            threads=self.threads,
        ) as session:
            yield session

    def dbt_connection(self) -> dict[str, str]:
        # dbt_project/profiles.yml reads these (its own defaults repeat DBT_DUCKDB_*).
        return {
            "ORDERWATCH_WAREHOUSE": str(self.database_path()),
            "ORDERWATCH_DBT_DUCKDB_MEMORY_LIMIT": self.dbt_memory_limit,
            "ORDERWATCH_DBT_DUCKDB_THREADS": str(self.dbt_threads),
        }


class PostgresWarehouse(Warehouse):
    """A PostgreSQL warehouse (payload as JSONB); the password is bound as dg.EnvVar."""

    host: str = "127.0.0.1"
    port: int = 5432
    user: str = "postgres"
    password: str = ""
    database: str = "orderwatch"
    connect_timeout_s: int = 10

    dbt_target: ClassVar[str] = "postgres"

    @contextmanager
    def connect(self) -> Iterator[WarehouseSession]:
        with open_postgres(
            host=self.host,
            port=self.port,
            user=self.user,
            password=self.password,
            database=self.database,
            connect_timeout_s=self.connect_timeout_s,
        ) as session:
            yield session

    def dbt_connection(self) -> dict[str, str]:
        # dbt runs as a subprocess; the password reaches it only through its environment.
        return {
            "ORDERWATCH_PG_HOST": self.host,
            "ORDERWATCH_PG_PORT": str(self.port),
            "ORDERWATCH_PG_USER": self.user,
            "ORDERWATCH_PG_PASSWORD": self.password,
            "ORDERWATCH_PG_DATABASE": self.database,
        }


ENGINE = EnvSetting(
    "ORDERWATCH_WAREHOUSE_ENGINE",
    "engine",
    "duckdb",
    "`duckdb` (the file ORDERWATCH_HOME/warehouse.duckdb) or `postgres` (a server)",
    choices=("duckdb", "postgres"),
)
DUCKDB_SETTINGS: tuple[EnvSetting, ...] = (
    EnvSetting(
        "ORDERWATCH_WAREHOUSE",
        "path",
        None,
        "DuckDB file; unset: ORDERWATCH_HOME/warehouse.duckdb (dbt's profile reads it too)",
    ),
    EnvSetting(
        "ORDERWATCH_DUCKDB_MEMORY_LIMIT",
        "memory_limit",
        DUCKDB_MEMORY_LIMIT,
        "DuckDB `memory_limit` of the code location's sessions (ingest, checks, exceptions, ML "
        "reads and scores, actions; DuckDB spills to disk beyond it)",
    ),
    EnvSetting(
        "ORDERWATCH_DUCKDB_THREADS",
        "threads",
        str(DUCKDB_THREADS),
        "DuckDB `threads` of the code location's sessions",
        integer=True,
    ),
    EnvSetting(
        "ORDERWATCH_DBT_DUCKDB_MEMORY_LIMIT",
        "dbt_memory_limit",
        DBT_DUCKDB_MEMORY_LIMIT,
        "DuckDB `memory_limit` of dbt's builds (dbt_project/profiles.yml)",
    ),
    EnvSetting(
        "ORDERWATCH_DBT_DUCKDB_THREADS",
        "dbt_threads",
        str(DBT_DUCKDB_THREADS),
        "DuckDB `threads` of dbt's builds (dbt_project/profiles.yml)",
        integer=True,
    ),
)
POSTGRES_SETTINGS: tuple[EnvSetting, ...] = (
    EnvSetting("ORDERWATCH_PG_HOST", "host", "127.0.0.1", "PostgreSQL host"),
    EnvSetting("ORDERWATCH_PG_PORT", "port", "5432", "PostgreSQL port", integer=True, minimum=1),
    EnvSetting("ORDERWATCH_PG_USER", "user", "postgres", "PostgreSQL user"),
    EnvSetting("ORDERWATCH_PG_DATABASE", "database", "orderwatch", "PostgreSQL database"),
    EnvSetting(
        "ORDERWATCH_PG_PASSWORD",
        "password",
        None,
        "PostgreSQL password (sent when ORDERWATCH_PG_AUTH is `password`)",
        secret=True,
    ),
)
PG_AUTH = EnvSetting(
    "ORDERWATCH_PG_AUTH",
    "auth",
    "password",
    "`password`: send ORDERWATCH_PG_PASSWORD (resolved at launch); `trust`: send none",
    choices=("password", "trust"),
)
DBT_TARGET = EnvSetting(
    "ORDERWATCH_DBT_TARGET",
    "dbt_target",
    "duckdb",
    "dbt's output in dbt_project/profiles.yml; the dbt asset sets it from the engine",
    choices=("duckdb", "postgres"),
)
WAREHOUSE_SETTINGS: tuple[EnvSetting, ...] = (
    ENGINE,
    *DUCKDB_SETTINGS,
    *POSTGRES_SETTINGS,
    PG_AUTH,
    DBT_TARGET,
)


def warehouse_from_environment() -> Warehouse:
    """The warehouse the variables above describe (README "Configuration")."""
    if ENGINE.value() == "postgres":
        fields = resource_fields(POSTGRES_SETTINGS, bind_secrets=PG_AUTH.value() == "password")
        return PostgresWarehouse(**fields)
    return DuckDBWarehouse(**resource_fields(DUCKDB_SETTINGS, bind_secrets=False))


@dg.definitions
def warehouse_resources() -> dg.Definitions:
    """Bind `warehouse` for the code location, read when it loads (not at import)."""
    return dg.Definitions(resources={"warehouse": warehouse_from_environment()})
