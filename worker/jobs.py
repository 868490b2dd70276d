"""The RQ job: one call runs one adapter for its whole life, in a forked process."""

from __future__ import annotations

import asyncio
import faulthandler
import os
import signal

import structlog
from redis.asyncio import Redis
from redis.exceptions import RedisError

from sluice import event_loop
from sluice.config import Settings, get_settings
from sluice.log import configure_logging
from sluice.state.connection import async_client
from worker.lineage import die_with_parent
from worker.runner import AdapterRunner

log = structlog.get_logger("sluice.worker")


class PipelineProcess:
    """What a pipeline process sets up before it knows its adapter.

    A standby (worker.standby) makes it while it waits, so a create finds the event loop
    made and the connection to Redis open; otherwise the job makes it first thing.
    """

    def __init__(self) -> None:
        # A killed worker must not leave an orphan pipeline streaming on, invisible to the
        # pool: dying with it stops the heartbeat, and the adapter is reaped `worker_lost`.
        die_with_parent(signal.SIGKILL)
        # `kill -USR1 <pid>` prints every thread's stack: how to see where a pipeline is stuck.
        faulthandler.register(signal.SIGUSR1, all_threads=True)
        self.settings: Settings = get_settings()
        configure_logging(self.settings.log_format, self.settings.log_level, process="pipeline")
        # Before any thread starts: Linux sets a nice value per thread, and new threads
        # (the JPEG decoder's, the loop's executor) inherit the creator's.
        os.nice(self.settings.pipeline_nice)
        self.runner = asyncio.Runner(loop_factory=event_loop.loop_factory(self.settings.event_loop))
        self.redis: Redis = async_client(self.settings)

    def connect(self) -> None:
        """Opens the Redis connection ahead; if Redis is away, the job's first call will."""

        async def ping() -> None:
            await self.redis.ping()

        try:
            self.runner.run(ping())
        except (RedisError, OSError) as exc:
            log.warning("standby_redis_unreachable", error=str(exc))


_process: PipelineProcess | None = None


def prepare_standby() -> None:
    """Called in a standby while it waits for its adapter."""
    global _process
    _process = PipelineProcess()
    _process.connect()


def run_adapter(adapter_id: str) -> str | None:
    """RQ entry point. Returns the close reason (None if the create was withdrawn)."""
    process = _process or PipelineProcess()
    redis = process.redis

    async def main() -> str | None:
        try:
            reason = await AdapterRunner(adapter_id, process.settings, redis).run()
        finally:
            await redis.aclose()
        return reason.value if reason else None

    with process.runner:
        return process.runner.run(main())
