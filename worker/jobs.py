"""The RQ job: one call runs one adapter for its whole life, in a forked process."""

from __future__ import annotations

import faulthandler
import signal

from sluice import event_loop
from sluice.config import get_settings
from sluice.log import configure_logging
from sluice.state.connection import async_client
from worker.lineage import die_with_parent
from worker.runner import AdapterRunner


def run_adapter(adapter_id: str) -> str | None:
    """RQ entry point. Returns the close reason (None if the create was withdrawn)."""
    # A killed worker must not leave an orphan pipeline streaming on, invisible to the
    # pool: dying with it stops the heartbeat, and the adapter is reaped `worker_lost`.
    die_with_parent(signal.SIGKILL)
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

    return event_loop.run(main(), settings.event_loop)
