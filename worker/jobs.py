"""The RQ job: one call runs one adapter for its whole life, in a forked process."""

from __future__ import annotations

import asyncio
import ctypes
import faulthandler
import os
import signal

from sluice.config import get_settings
from sluice.log import configure_logging
from sluice.redisconn import async_client
from worker.runner import AdapterRunner

_PR_SET_PDEATHSIG = 1


def _die_with_parent() -> None:
    """If the worker process that forked us dies, so do we (SIGKILL).

    Otherwise a killed worker would leave an orphan pipeline streaming on, invisible to
    the pool; this way its heartbeat stops and the adapter is reaped as `worker_lost`.
    """
    parent = os.getppid()
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    except (OSError, AttributeError):
        return  # not Linux: the heartbeat still exposes the loss, just not the orphan
    if os.getppid() != parent:  # the parent died before prctl took effect
        os._exit(1)


def run_adapter(adapter_id: str) -> str | None:
    """RQ entry point. Returns the close reason (None if the create was withdrawn)."""
    _die_with_parent()
    # `kill -USR1 <pid>` prints every thread's stack: how to see where a pipeline is stuck.
    faulthandler.register(signal.SIGUSR1, all_threads=True)
    settings = get_settings()
    configure_logging(settings.log_format, settings.log_level, process="pipeline")

    async def main() -> str | None:
        redis = async_client(settings)
        try:
            reason = await AdapterRunner(adapter_id, settings, redis).run()
        finally:
            await redis.aclose()
        return reason.value if reason else None

    return asyncio.run(main())
