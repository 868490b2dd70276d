"""`tests/unit` needs no Redis and no processes: `make unit` runs on a bare machine.

A test here that asks for the suite's Redis (`redis_url`, `clean_redis`, `settings`) fails
at once. Redis-side logic (the Lua state transitions) belongs in `tests/state`, judged by a
real redis-server; code that merely reads or writes Redis can run on fakeredis here.
"""

from __future__ import annotations

import pytest


@pytest.fixture(scope="session")
def redis_url() -> str:
    pytest.fail(
        "tests/unit needs no redis-server: use fakeredis, or move the test to tests/state",
        pytrace=False,
    )
