from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.integration.helpers import Stack, start_stack


@pytest.fixture
def stack(clean_redis: str, tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[Stack]:
    """API + a worker pool; `@pytest.mark.workers(n)` sets the pool size (default 3)."""
    marker = request.node.get_closest_marker("workers")
    processes = marker.args[0] if marker else 3
    overrides = marker.kwargs if marker else {}
    running = start_stack(clean_redis, processes, tmp_path, **overrides)
    yield running
    running.stop()
    # Shown by pytest only when the test failed.
    for name in ("api.log", "worker.log", "sfu.log"):
        log = tmp_path / name
        if log.exists():
            print(f"--- {name}\n{log.read_text()[-6000:]}")
