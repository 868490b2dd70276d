from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.integration.helpers import Stack
from tests.integration.stacks import StackPool, needs_own_stack, stack_settings


@pytest.fixture
def stack(stack_pool: StackPool, tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[Stack]:
    """API + SFU + a worker pool (`tests/integration/stacks.py` says whose).

    `@pytest.mark.workers(n, **settings)` sets the pool size (default 3) and SLUICE_*
    overrides; `@pytest.mark.own_stack` asks for a fresh stack without either.
    """
    if needs_own_stack(request.node):
        processes, overrides = stack_settings(request.node)
        running = stack_pool.own(processes, overrides, tmp_path)
        yield running
        stack_pool.release()
        stack_pool.print_logs(tmp_path)  # shown by pytest only when the test failed
        return
    log_dir: Path = request.getfixturevalue("module_log_dir")
    running = stack_pool.shared(request.module, log_dir)
    yield running
    stack_pool.print_logs(log_dir)
    stack_pool.after_shared_test()
