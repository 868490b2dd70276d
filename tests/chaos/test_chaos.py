"""The whole-host chaos run in its short form (6 adapters, every step, about 2 minutes).

The full form is `make chaos` (`python -m tests.chaos`); both run `tests.chaos.run`. It
runs as a process of its own: it makes itself the subreaper of the hosts it kills.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from sluice.cli.devserver import redis_server_binary
from tests.chaos.run import steps
from tests.conftest import NO_REDIS

pytestmark = [
    pytest.mark.integration,
    pytest.mark.timeout(330),
    pytest.mark.skipif(redis_server_binary() is None, reason=NO_REDIS),
]


def test_chaos_short(tmp_path: Path, repo_root: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "tests.chaos", "--short", "--logs", str(tmp_path)],
        cwd=repo_root,
        capture_output=True,
        text=True,
        timeout=320,
    )
    print(done.stdout[-20_000:])  # what every step measured; pytest shows it on failure
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    for name in steps():
        assert f"== {name}" in done.stdout, f"step {name} did not run"
