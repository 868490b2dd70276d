"""The dependency check behind every HTTP process's `/readyz`."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable
from typing import Any

CHECK_TIMEOUT_S = 1.0  # a dependency slower than this to answer counts as down


async def run_check(work: Awaitable[Any], timeout_s: float = CHECK_TIMEOUT_S) -> Any:
    """The check's result, or a one-line reason (a `str`) it failed or took too long."""
    try:
        return await asyncio.wait_for(work, timeout_s)
    except TimeoutError:
        return f"no answer within {timeout_s:g} s"
    except Exception as exc:  # any failure means "not ready", with its reason
        return f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
