"""`worker.jobs.PipelineProcess`: what a pipeline process sets up before its adapter."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

PROBE = """
import os, threading
from worker.jobs import PipelineProcess
before = os.nice(0)
PipelineProcess()
seen = []
thread = threading.Thread(target=lambda: seen.append(os.nice(0)))
thread.start(); thread.join()
print(before, os.nice(0), seen[0])
"""


@pytest.mark.parametrize("nice", [0, 7])
def test_the_process_and_its_later_threads_yield_by_the_setting(nice: int) -> None:
    env = {**os.environ, "SLUICE_APPS": "app1:secret1", "SLUICE_PIPELINE_NICE": str(nice)}
    env.pop("SLUICE_REDIS_URL", None)  # nothing connects: the client is made, not used
    result = subprocess.run(
        [sys.executable, "-c", PROBE], env=env, capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr
    before, after, thread = map(int, result.stdout.split())
    assert after == thread == min(19, before + nice)
