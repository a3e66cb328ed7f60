"""Shared fixtures: one simulated world per test session, and the local PostgreSQL server."""

from __future__ import annotations

import os
import shutil
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import date
from pathlib import Path

import dagster as dg
import duckdb
import psycopg2
import pytest
from _pytest.nodeid import coerce_node_id

from orderwatch_dagster.sim import simulate

IN_CI = os.environ.get("CI", "").lower() == "true"
PG = {"host": "127.0.0.1", "port": 5432, "user": "postgres", "dbname": "test"}


@dataclass(frozen=True)
class World:
    home: Path
    landing: Path
    warehouse: Path
    run: dg.ExecuteInProcessResult


# `make test` runs on two pytest-xdist workers (--dist loadgroup, Makefile). A session world is
# built once per worker that asks for it, and two PostgreSQL tests must not create databases
# at the same moment (both copy template1): so each test module runs whole on one worker, and
# every module that uses one of these fixtures joins that fixture's group.
SHARED_GROUPS = (
    ("reference_world", "reference_world"),
    ("demo_world", "demo_world"),
    ("postgres_server", "postgres"),
)


@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    used: dict[str, set[str]] = {}
    for item in items:
        module = item.nodeid.split("::")[0]
        used.setdefault(module, set()).update(getattr(item, "fixturenames", ()))
    # a module using two shared fixtures merges their groups: it is never split from either
    merged = {group: {group} for _, group in SHARED_GROUPS}
    for fixtures in used.values():
        joined = set().union(*(merged[g] for f, g in SHARED_GROUPS if f in fixtures))
        for group in joined:
            merged[group] = joined
    for item in items:
        module = item.nodeid.split("::")[0]
        groups = [g for f, g in SHARED_GROUPS if f in used[module]]
        name = "+".join(sorted(merged[groups[0]])) if groups else module
        item.add_marker(pytest.mark.xdist_group(name))
        if getattr(config.option, "loadgroup", False):
            # pytest-xdist 3.8 puts the group into `item._nodeid`, which pytest 9 no longer
            # reads (its node id is `item._id`): without this every test is its own group
            item._id = coerce_node_id(f"{item.nodeid}@{name}")


@pytest.fixture(autouse=True)
def _own_home(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> None:
    """Every test starts in a home of its own with no ORDERWATCH_AS_OF: none reads a clock a
    `make demo` left in the Makefile's default home, and the two workers never write the same
    one. Tests and fixtures that need a particular home set theirs."""
    home = tmp_path_factory.mktemp("home")
    (home / "dagster").mkdir()
    monkeypatch.setenv("ORDERWATCH_HOME", str(home))
    monkeypatch.setenv("DAGSTER_HOME", str(home / "dagster"))
    monkeypatch.delenv("ORDERWATCH_AS_OF", raising=False)


def run_pipeline(home: Path) -> dg.ExecuteInProcessResult:
    """The code location's own pipeline job, in-process, on ORDERWATCH_HOME=home."""
    from orderwatch_dagster.definitions import defs

    names = ("ORDERWATCH_HOME", "ORDERWATCH_AS_OF")
    saved = {name: os.environ.get(name) for name in names}
    os.environ["ORDERWATCH_HOME"] = str(home)
    os.environ.pop("ORDERWATCH_AS_OF", None)
    try:
        job = defs().resolve_job_def("orderwatch_pipeline_job")
        with dg.instance_for_test() as instance:
            return job.execute_in_process(instance=instance, raise_on_error=True)
    finally:  # a session fixture's home and clock must not become every later test's "now"
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


def build_world(home: Path, *, days: int, orders_per_day: int, seed: int) -> World:
    landing = home / "landing"
    simulate(
        landing,
        seed=seed,
        start=date(2026, 10, 1),
        days=days,
        orders_per_day=orders_per_day,
        clock_file=home / "clock",
    )
    result = run_pipeline(home)
    return World(home=home, landing=landing, warehouse=home / "warehouse.duckdb", run=result)


# The reference world of the slow tests (rates and modes of the simulator, ingest counts, rule
# grading against the ground truth): 14 days x 400 orders/day, seed 7 (5,600 orders, every failure
# mode present). The 30 x 1000 world is `make bench` (bench/results/rules.md); at this
# size the session builds it in about a fifth of the time and memory.
REFERENCE_DAYS, REFERENCE_PER_DAY, REFERENCE_SEED = 14, 400, 7


@pytest.fixture(scope="session")
def reference_world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    """The reference world, simulated, ingested and built once per session."""
    saved = os.environ.get("ORDERWATCH_HOME")
    world = build_world(
        tmp_path_factory.mktemp("reference_world"),
        days=REFERENCE_DAYS,
        orders_per_day=REFERENCE_PER_DAY,
        seed=REFERENCE_SEED,
    )
    yield world
    if saved is None:
        os.environ.pop("ORDERWATCH_HOME", None)
    else:
        os.environ["ORDERWATCH_HOME"] = saved


def _postgres_reachable() -> str | None:
    try:
        psycopg2.connect(connect_timeout=3, **PG).close()
    except psycopg2.OperationalError as error:
        return str(error).strip()
    return None


@pytest.fixture(scope="session")
def postgres_server() -> dict[str, object]:
    """Connection settings of the local server; skip without one, except under CI=true."""
    problem = _postgres_reachable()
    if problem:
        message = f"PostgreSQL at 127.0.0.1:5432 is not reachable: {problem}"
        if IN_CI:
            pytest.fail(message + " (CI=true: PostgreSQL tests must run)")
        pytest.skip(message)
    return dict(PG)


@pytest.fixture
def scratch_database(postgres_server: dict[str, object]) -> Iterator[str]:
    """A fresh database on the local server, dropped afterwards."""
    name = f"orderwatch_test_{uuid.uuid4().hex[:10]}"
    admin = psycopg2.connect(**postgres_server)
    admin.autocommit = True
    with admin.cursor() as cur:
        cur.execute(f'create database "{name}"')
    try:
        yield name
    finally:
        with admin.cursor() as cur:
            cur.execute(f'drop database if exists "{name}" with (force)')
        admin.close()


# The `make demo` world at test size, built once through the CLI (simulate + demo, which runs
# the pipeline and the action job): tests/test_demo.py runs the demo a second time on it, the
# action tests copy its warehouse and work on the copy.
DEMO_SIM_ARGS = ["simulate", "--days", "10", "--orders-per-day", "40", "--seed", "5", "--quiet"]


@dataclass(frozen=True)
class DemoWorld:
    home: Path
    warehouse: Path
    output: str  # what the first `orderwatch demo` printed


@pytest.fixture(scope="session")
def demo_world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DemoWorld]:
    import contextlib
    import io

    from orderwatch_dagster.cli import main

    home = tmp_path_factory.mktemp("demo_world")
    (home / "dagster").mkdir()
    names = ("ORDERWATCH_HOME", "DAGSTER_HOME", "ORDERWATCH_AS_OF")
    saved = {name: os.environ.get(name) for name in names}
    os.environ.update(ORDERWATCH_HOME=str(home), DAGSTER_HOME=str(home / "dagster"))
    os.environ.pop("ORDERWATCH_AS_OF", None)
    out = io.StringIO()
    try:
        with contextlib.redirect_stdout(out):
            assert main(DEMO_SIM_ARGS) == 0
            assert main(["demo"]) == 0
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
    yield DemoWorld(home=home, warehouse=home / "warehouse.duckdb", output=out.getvalue())


@pytest.fixture
def demo_copy(demo_world: DemoWorld, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A private copy of the demo world's warehouse and clock, with no ops history yet: the
    home the action and sender tests run the action job on."""
    shutil.copy(demo_world.warehouse, tmp_path / "warehouse.duckdb")
    shutil.copy(demo_world.home / "clock", tmp_path / "clock")
    with duckdb.connect(str(tmp_path / "warehouse.duckdb")) as con:
        con.execute("drop schema if exists ops cascade")
    monkeypatch.setenv("ORDERWATCH_HOME", str(tmp_path))
    monkeypatch.delenv("ORDERWATCH_AS_OF", raising=False)
    return tmp_path
