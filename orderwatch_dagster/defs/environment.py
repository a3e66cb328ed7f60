"""dbt and the executor of the code location (the warehouse is bound in resources.py, each
connector by its source folder, defs/ingest/<source>/definitions.py)."""

import shutil
import sys
from functools import cached_property
from importlib.metadata import version as installed_version
from pathlib import Path

import dagster as dg
from dagster_dbt import DbtCliResource
from packaging import version

from orderwatch_dagster.defs.transform.project import orderwatch_dbt_project

# dbt beside this interpreter: the venv's own, whose version is the installed dbt-core package's
VENV_DBT = Path(sys.executable).with_name("dbt")


def dbt_executable() -> str:
    """The venv's dbt beside this interpreter, so a PATH without .venv/bin still works."""
    return str(VENV_DBT) if VENV_DBT.exists() else (shutil.which("dbt") or "dbt")


class OrderwatchDbtCliResource(DbtCliResource):
    """dagster-dbt's resource, told the version of the venv's own dbt instead of asking it.

    Before every invocation dagster-dbt runs `dbt --version` once per process (to tell dbt Core
    from the Fusion engine): a second dbt process, which also asks pypi.org for the latest
    release, in every hourly run. The venv's dbt is the installed dbt-core package.
    """

    @cached_property
    def _cli_version(self) -> version.Version:
        if Path(self.dbt_executable) == VENV_DBT:
            return version.parse(installed_version("dbt-core"))
        return super()._cli_version


@dg.definitions
def environment() -> dg.Definitions:
    dbt = OrderwatchDbtCliResource(
        project_dir=orderwatch_dbt_project(), dbt_executable=dbt_executable()
    )
    return dg.Definitions(
        resources={"dbt": dbt},
        # The embedded DuckDB file takes one writer process at a time, and step start-up in
        # separate processes costs seconds each: run steps in-process. A PostgreSQL deployment
        # can swap in the multiprocess (or a Celery/Kubernetes) executor here.
        executor=dg.in_process_executor,
    )
