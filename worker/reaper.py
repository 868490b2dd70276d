"""Finds adapters whose pipeline died and withdraws creates nobody claimed.

Any number of reapers may run (one per worker host): each pass is one atomic script.
"""

from __future__ import annotations

import redis
import structlog

from sluice import keys
from sluice.config import Settings
from sluice.state import utc_now_iso
from sluice.store import REAP_LUA

log = structlog.get_logger("sluice.reaper")
BATCH = 500


class Reaper:
    def __init__(self, client: redis.Redis, settings: Settings) -> None:
        self._script = client.register_script(REAP_LUA)
        self._settings = settings

    def reap_once(self) -> tuple[list[str], list[str]]:
        """One pass: (adapters marked lost, unclaimed creates withdrawn).

        Raises:
            RedisError: Redis is unreachable (the caller tries again next interval).
        """
        settings = self._settings
        # A create whose API replica died is withdrawn once its claim deadline is well past;
        # the slack keeps us from racing the replica's own withdrawal.
        grace_ms = int((settings.pickup_timeout_s + 5) * 1000)
        lost, withdrawn = self._script(
            keys=[keys.HEARTBEATS, keys.PENDING, keys.REAPER],
            args=[
                utc_now_iso(),
                settings.closed_retention_s,
                BATCH,
                grace_ms,
                int(settings.reap_interval_s * 1000),
                int(settings.heartbeat_ttl_s * 1000),
            ],
        )
        lost = [_text(x) for x in lost]
        withdrawn = [_text(x) for x in withdrawn]
        for adapter_id in lost:
            log.warning("adapter_worker_lost", adapter_id=adapter_id)
        for adapter_id in withdrawn:
            log.warning("adapter_create_withdrawn", adapter_id=adapter_id)
        return lost, withdrawn


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value
