"""Finds adapters whose pipeline died, withdraws creates nobody claimed, and closes
creates whose API replica died before answering (nobody has their id).

Any number of reapers may run (one per worker host): each pass is one atomic script.
A lost egress adapter is resumed rather than closed: the script hands it back, and the
reaper enqueues it for the next free worker process.
"""

from __future__ import annotations

from typing import NamedTuple

import redis
import structlog
from redis.exceptions import RedisError
from rq import Queue

from sluice.config import Settings
from sluice.state import keys
from sluice.state.jobs import enqueue_adapter
from sluice.state.records import utc_now_iso
from sluice.state.scripts import lua

log = structlog.get_logger("sluice.reaper")
BATCH = 500


class ReapOutcome(NamedTuple):
    lost: list[str]  # closed `worker_lost`
    withdrawn: list[str]  # creates nobody claimed, removed
    resumed: list[str]  # egress adapters handed to another worker
    abandoned: list[str]  # closed `api_lost`: the create's API replica never answered


class Reaper:
    def __init__(self, client: redis.Redis, settings: Settings) -> None:
        self._script = client.register_script(lua("reap"))
        self._settings = settings
        self._queue = Queue(settings.queue_name, connection=client)

    def reap_once(self) -> ReapOutcome:
        """One pass.

        Raises:
            RedisError: Redis is unreachable (the caller tries again next interval).
        """
        settings = self._settings
        # A create whose API replica died is withdrawn once its claim deadline is well past;
        # the slack keeps us from racing the replica's own withdrawal.
        grace_ms = int((settings.pickup_timeout_s + 5) * 1000)
        lost, withdrawn, resumed, abandoned = self._script(
            keys=[keys.HEARTBEATS, keys.PENDING, keys.REAPER, keys.RESUMING, keys.UNANSWERED],
            args=[
                utc_now_iso(),
                settings.closed_retention_s,
                BATCH,
                grace_ms,
                int(settings.reap_interval_s * 1000),
                int(settings.heartbeat_ttl_s * 1000),
                settings.egress_resumes,
                # An endpoint waits this long for an egress adapter to come back anyway.
                int(settings.reconnect_window_s * 1000),
            ],
        )
        outcome = ReapOutcome(
            [_text(x) for x in lost],
            [_text(x) for x in withdrawn],
            [],
            [_text(x) for x in abandoned],
        )
        for adapter_id in outcome.lost:
            log.warning("adapter_worker_lost", adapter_id=adapter_id)
        for adapter_id in outcome.withdrawn:
            log.warning("adapter_create_withdrawn", adapter_id=adapter_id)
        for adapter_id in outcome.abandoned:
            log.warning("adapter_create_unanswered", adapter_id=adapter_id)
        for adapter_id in (_text(x) for x in resumed):
            try:
                enqueue_adapter(self._queue, adapter_id, resumed=True)
            except RedisError as exc:
                # Unclaimed by its deadline, it is closed `worker_lost` by a later pass.
                log.warning("adapter_resume_enqueue_failed", adapter_id=adapter_id, error=str(exc))
                continue
            log.warning("adapter_worker_lost_resuming", adapter_id=adapter_id)
            outcome.resumed.append(adapter_id)
        return outcome


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value
