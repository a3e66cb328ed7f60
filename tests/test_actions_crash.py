"""Killing the action job between delivery and record (a real process, a real SMTP server):
the message that reached the server is never sent again; it ends `uncertain`, in the human
queue, and the rest go out once on the next run."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import duckdb
from conftest import DemoWorld
from smtp_server import RecordingHandler, SMTPServer

ORDERWATCH = Path(sys.executable).with_name("orderwatch")


def _env(home: Path, port: int) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("ORDERWATCH_")}
    env.update(
        ORDERWATCH_HOME=str(home),
        DAGSTER_HOME=str(home / "dagster"),
        ORDERWATCH_SMTP_ENABLED="true",
        ORDERWATCH_SMTP_HOST="127.0.0.1",
        ORDERWATCH_SMTP_PORT=str(port),
        ORDERWATCH_SMTP_SECURITY="none",
        ORDERWATCH_SMTP_FROM="orders@shop.example",
    )
    return env


def test_killed_between_delivery_and_record(demo_world: DemoWorld, tmp_path: Path) -> None:
    shutil.copy(demo_world.warehouse, tmp_path / "warehouse.duckdb")
    shutil.copy(demo_world.home / "clock", tmp_path / "clock")
    (tmp_path / "dagster").mkdir()
    with duckdb.connect(str(tmp_path / "warehouse.duckdb")) as con:
        con.execute("drop schema if exists ops cascade")
    log = (tmp_path / "run1.log").open("w")
    # the server takes the content, then holds its 250: the job is killed while it waits
    with SMTPServer(RecordingHandler(stall_after_data_s=120)) as server:
        job = subprocess.Popen(
            [str(ORDERWATCH), "actions"], env=_env(tmp_path, server.port), stdout=log, stderr=log
        )
        deadline = time.monotonic() + 120
        while not server.handler.messages and time.monotonic() < deadline and job.poll() is None:
            time.sleep(0.1)
        assert server.handler.messages, (tmp_path / "run1.log").read_text()[-2000:]
        os.kill(job.pid, signal.SIGKILL)
        job.wait(timeout=30)
        first = [m.message["Message-ID"] for m in server.handler.messages]
    assert len(first) == 1
    with SMTPServer(RecordingHandler()) as server:
        done = subprocess.run(
            [str(ORDERWATCH), "actions"],
            env=_env(tmp_path, server.port),
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
        second = [m.message["Message-ID"] for m in server.handler.messages]
    ids = first + second
    assert len(ids) == len(set(ids)), "a message reached the server twice"
    with duckdb.connect(str(tmp_path / "warehouse.duckdb"), read_only=True) as con:
        statuses = dict(
            con.execute(
                "select status, count(*) from ops.customer_messages"
                " where channel = 'email' group by 1"
            ).fetchall()
        )
        uncertain = con.execute(
            "select m.order_id, q.kind, q.target, q.status from ops.customer_messages m"
            " join ops.action_queue q on q.order_id = m.order_id and q.kind = 'human_review'"
            " where m.status = 'uncertain'"
        ).fetchall()
    assert statuses.get("uncertain") == 1 and "sending" not in statuses
    assert statuses.get("accepted", 0) == len(second)
    assert [(kind, target, status) for _, kind, target, status in uncertain] == [
        ("human_review", "uncertain_delivery", "open")
    ]
