"""The soak in its short form: 60 s of 3 egress + 2 ingest adapters under endpoint chaos.

The 30-minute form is `make soak` (`python -m tests.soak.soak`); both run `tests.soak.soak`.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.integration.helpers import start_stack
from tests.soak.plan import Plan
from tests.soak.soak import soak

pytestmark = pytest.mark.integration

SHORT = Plan(
    seconds=60,
    egress=3,
    ingest=2,
    seed=20_240,
    sample_every_s=5,
    chaos_gap_s=(4.0, 12.0),
    ingest_life_s=(5.0, 15.0),
)


@pytest.mark.timeout(150)
async def test_soak_short(clean_redis: str, tmp_path: Path) -> None:
    stack = start_stack(clean_redis, SHORT.workers, tmp_path, egress_backlog_s=SHORT.backlog_s)
    try:
        _, checks = await soak(stack, SHORT)
    finally:
        stack.stop()  # idempotent: `soak` stopped it already unless it failed early
    failed = [f"{c.name}: {c.detail}" for c in checks if not c.ok]
    if failed:
        for name in ("api.log", "worker.log", "sfu.log"):
            if (tmp_path / name).exists():
                print(f"--- {name}\n{(tmp_path / name).read_text()[-6000:]}")
    assert not failed, "\n".join(failed)
