"""Moves lifecycle events from the outbox stream to the delivery queue (E7).

The transition scripts append each event to `sluice:webhook_outbox` in the same step as
the transition, so an adapter never waits on a webhook and no event is lost to a crash
in between. Dispatchers (one per worker host) read the stream through one consumer group,
so each event goes to one of them; each enqueues one delivery job per event, then
acknowledges and deletes the entry. A dispatcher that dies between the two leaves its
entries pending in the group, and another claims them once they have been idle for
CLAIM_IDLE_MS and enqueues them again under the same job id: at least once.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import redis
import structlog
from redis.exceptions import RedisError, ResponseError
from rq import Queue

from sluice.config import Settings
from sluice.state import keys
from sluice.state.outbox import parse_entry
from worker.webhooks.delivery import enqueue_delivery

log = structlog.get_logger("sluice.webhooks")

BATCH = 100
BLOCK_MS = 1_000  # how long one read waits for events (and so how soon a stop is seen)
CLAIM_IDLE_MS = 30_000  # entries read but not acknowledged this long are another's to take
HOUSEKEEPING_S = 10.0
CONSUMER_IDLE_MS = 3_600_000  # gone dispatchers with nothing pending leave the group


class Dispatcher:
    """One consumer of the outbox.

    Args:
        client: a bytes-returning client (RQ's kind) without a read timeout.
        consumer: this dispatcher's name in the group (unique per process).
    """

    def __init__(self, client: redis.Redis, settings: Settings, consumer: str) -> None:
        self._client = client
        self._queue = Queue(settings.webhook_queue_name, connection=client)
        self._webhooks = settings.app_webhooks
        self._attempts = settings.webhook_attempts
        self._consumer = consumer
        self._next_housekeeping = 0.0

    def run(self, stopping: Callable[[], bool]) -> None:
        """Dispatches until `stopping()`; Redis errors are logged and retried."""
        while not stopping():
            try:
                self.pass_once(BLOCK_MS)
            except RedisError as exc:
                log.warning("webhook_dispatch_failed", error=str(exc))
                time.sleep(1.0)

    def pass_once(self, block_ms: int | None) -> int:
        """Dispatches what there is (waiting up to `block_ms` for it); returns how many.

        Raises:
            RedisError: Redis is unreachable.
        """
        entries = self._housekeeping()
        try:
            answer = self._read(block_ms)
        except ResponseError as exc:
            if "NOGROUP" not in str(exc):
                raise
            self._create_group()  # first start, or Redis restarted empty
            answer = self._read(block_ms)
        for _stream, read in answer or []:
            entries += read
        for entry_id, fields in entries:
            self._dispatch(entry_id, fields)
        return len(entries)

    def _read(self, block_ms: int | None) -> Any:
        return self._client.xreadgroup(
            keys.WEBHOOK_DISPATCHERS,
            self._consumer,
            {keys.WEBHOOK_OUTBOX: ">"},
            count=BATCH,
            block=block_ms,
        )

    def _create_group(self) -> None:
        try:
            # From the start: events written before any dispatcher ran are delivered too.
            self._client.xgroup_create(
                keys.WEBHOOK_OUTBOX, keys.WEBHOOK_DISPATCHERS, id="0", mkstream=True
            )
        except ResponseError as exc:
            if "BUSYGROUP" not in str(exc):
                raise

    def _housekeeping(self) -> list[Any]:
        """Every HOUSEKEEPING_S: takes over entries a dead dispatcher left, and removes
        long-gone dispatchers that hold none from the group."""
        now = time.monotonic()
        if now < self._next_housekeeping:
            return []
        self._next_housekeeping = now + HOUSEKEEPING_S
        try:
            _next, claimed, *_ = self._client.xautoclaim(
                keys.WEBHOOK_OUTBOX,
                keys.WEBHOOK_DISPATCHERS,
                self._consumer,
                min_idle_time=CLAIM_IDLE_MS,
                count=BATCH,
            )
            for consumer in self._client.xinfo_consumers(
                keys.WEBHOOK_OUTBOX, keys.WEBHOOK_DISPATCHERS
            ):
                if consumer["pending"] == 0 and consumer["idle"] > CONSUMER_IDLE_MS:
                    self._client.xgroup_delconsumer(
                        keys.WEBHOOK_OUTBOX, keys.WEBHOOK_DISPATCHERS, consumer["name"]
                    )
        except ResponseError as exc:
            if "NOGROUP" not in str(exc):
                raise
            return []
        if claimed:
            log.warning("webhook_events_taken_over", count=len(claimed))
        return list(claimed)

    def _dispatch(self, entry_id: bytes, fields: dict[bytes, bytes]) -> None:
        decoded = {_text(k): _text(v) for k, v in (fields or {}).items()}
        try:
            event = parse_entry(decoded)
        except ValueError as exc:
            log.error("webhook_event_unreadable", entry=_text(entry_id), error=str(exc))
        else:
            if event.app_id in self._webhooks:
                enqueue_delivery(self._queue, event, self._attempts)
            else:
                log.warning(
                    "webhook_event_dropped",
                    event_id=event.event_id,
                    app=event.app_id,
                    reason="no SLUICE_WEBHOOKS entry for the app on this host",
                )
        with self._client.pipeline(transaction=True) as pipe:
            pipe.xack(keys.WEBHOOK_OUTBOX, keys.WEBHOOK_DISPATCHERS, entry_id)
            pipe.xdel(keys.WEBHOOK_OUTBOX, entry_id)
            pipe.execute()


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)
