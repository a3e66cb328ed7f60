"""dbt and the executor of the code location (the warehouse is bound in resources.py, each
connector by its source folder, defs/ingest/<source>/definitions.py)."""

import shutil
import sys
from pathlib import Path

import dagster as dg
from dagster_dbt import DbtCliResource

from orderwatch_dagster.defs.transform.project import orderwatch_dbt_project


def dbt_executable() -> str:
    """The venv's dbt beside this interpreter, so a PATH without .venv/bin still works."""
    beside = Path(sys.executable).with_name("dbt")
    return str(beside) if beside.exists() else (shutil.which("dbt") or "dbt")


@dg.definitions
def environment() -> dg.Definitions:
    dbt = DbtCliResource(project_dir=orderwatch_dbt_project(), dbt_executable=dbt_executable())
    return dg.Definitions(
        resources={"dbt": dbt},
        # The embedded DuckDB file takes one writer process at a time, and step start-up in
        # separate processes costs seconds each: run steps in-process. A PostgreSQL deployment
        # can swap in the multiprocess (or a Celery/Kubernetes) executor here.
        executor=dg.in_process_executor,
    )
