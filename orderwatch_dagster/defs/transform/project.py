"""The one dbt project of the code location (cached: parsing the manifest is not free)."""

from functools import cache
from pathlib import Path

from dagster_dbt import DbtProject

DBT_PROJECT_DIR = Path(__file__).resolve().parents[3] / "dbt_project"


@cache
def orderwatch_dbt_project() -> DbtProject:
    project = DbtProject(project_dir=DBT_PROJECT_DIR, profiles_dir=DBT_PROJECT_DIR)
    # Under `dagster dev` the manifest is re-parsed on load; elsewhere `make` runs `dbt parse`.
    project.prepare_if_dev()
    return project
