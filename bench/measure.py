"""Run a command in a child process and report its wall time and peak RSS (the child's own)."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from dataclasses import dataclass


@dataclass(frozen=True)
class Measurement:
    seconds: float
    peak_rss_mb: float
    output: str


def run_measured(args: list[str], env: dict[str, str] | None = None) -> Measurement:
    """wait4() gives this child's rusage alone, so each stage gets its own peak RSS."""
    start = time.perf_counter()
    proc = subprocess.Popen(
        args,
        env={**os.environ, **(env or {})},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    assert proc.stdout is not None
    output = proc.stdout.read()
    _, status, usage = os.wait4(proc.pid, 0)
    seconds = time.perf_counter() - start
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode != 0:
        sys.stderr.write(output[-4000:])
        raise RuntimeError(f"{' '.join(args)} exited {proc.returncode}")
    return Measurement(seconds=seconds, peak_rss_mb=usage.ru_maxrss / 1024, output=output)
