"""One adapter's whole life inside its worker process.

Claim the record, dial the endpoint, report the outcome, then run the pipeline until it
ends, a close is requested (pub/sub or heartbeat reply), or the process is told to shut
down — and always leave the record closed with a reason. Media never waits on Redis:
heartbeats and the control channel are their own tasks, and their Redis errors are
logged and retried, never raised into the pipeline.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import socket
import ssl
import time
from collections.abc import Callable
from typing import Any

import structlog
from redis.asyncio import Redis
from redis.exceptions import RedisError

from sluice.config import Settings
from sluice.errors import ErrorCode
from sluice.state import keys
from sluice.state.connection import redis_connection_lost
from sluice.state.lag_histogram import LagHistogram
from sluice.state.records import AdapterRecord, AdapterState, CloseReason, redact_endpoint
from sluice.state.store import AdapterStore
from sluice.tasks import cancel_and_wait, first_completed, log_exception
from worker.dial import DialError, dial, tls_context
from worker.dial_identity import DialIdentity, load_identity
from worker.pipelines import make_pipeline, pipeline_class
from worker.pipelines.base import Pipeline, PipelineContext, SetupError, close_ws
from worker.pipelines.egress import EgressPipeline
from worker.protocol.resume import ResumePoint, resume_point

log = structlog.get_logger("sluice.worker")
REDIS_RETRY_S = 0.5
CLEANUP_TIMEOUT_S = 1.0


LOOP_LAG_PROBE_S = 0.1
# Why a resumed adapter ends when it cannot pick up its stream again.
_RESUME_FAILURES = {
    ErrorCode.NOT_FOUND_SESSION: CloseReason.TRACK_ENDED,
    ErrorCode.NOT_FOUND_TRACK: CloseReason.TRACK_ENDED,
    ErrorCode.WEBSOCKET_HANDSHAKE_FAILED: CloseReason.ENDPOINT_UNAVAILABLE,
    ErrorCode.WEBSOCKET_CONNECTION_TIMEOUT: CloseReason.ENDPOINT_UNAVAILABLE,
}


async def _watch_loop_lag(counters: dict[str, int], histogram: LagHistogram) -> None:
    """Records the worst event-loop lag seen: how late a 100 ms sleep wakes up.

    Anything that blocks the loop (a slow decode, a blocking call) delays every frame of
    the adapter by as much; this makes it visible in the adapter's counters.
    """
    loop = asyncio.get_running_loop()
    while True:
        started = loop.time()
        await asyncio.sleep(LOOP_LAG_PROBE_S)
        lag_s = loop.time() - started - LOOP_LAG_PROBE_S
        histogram.observe(lag_s)
        lag_ms = round(lag_s * 1000)
        if lag_ms > counters["max_loop_lag_ms"]:
            counters["max_loop_lag_ms"] = lag_ms


def _control_reason(data: object) -> CloseReason:
    """Why a message on the control channel stops the adapter: the API's close says
    `close`; the reapers name the reason they closed its record with (`api_lost`)."""
    text = data.decode() if isinstance(data, bytes) else str(data)
    return CloseReason.API_LOST if text == CloseReason.API_LOST else CloseReason.API_CLOSE


def _succeeded(task: asyncio.Task[Any]) -> bool:
    return task.done() and not task.cancelled() and task.exception() is None


class StopRequest:
    """The first reason anyone gave for stopping this adapter."""

    def __init__(self) -> None:
        self.reason: CloseReason | None = None
        self._event = asyncio.Event()

    def set(self, reason: CloseReason) -> None:
        if self.reason is None:
            self.reason = reason
            self._event.set()

    async def wait(self) -> CloseReason:
        await self._event.wait()
        assert self.reason is not None
        return self.reason


def worker_name() -> str:
    import os

    return f"{socket.gethostname()}:{os.getpid()}"


class AdapterRunner:
    def __init__(self, adapter_id: str, settings: Settings, redis: Redis) -> None:
        self.adapter_id = adapter_id
        self.settings = settings
        self.store = AdapterStore(
            redis,
            retention_s=settings.closed_retention_s,
            usage_retention_s=settings.usage_retention_days * 86_400,
        )
        self.lag = LagHistogram()
        self.stop = StopRequest()
        self.log = log.bind(adapter_id=adapter_id)
        self._record: AdapterRecord | None = None  # this process's copy, kept current
        # Between `active` and the final record: only then may a vanished record be
        # written back (before, it was withdrawn or failed on purpose).
        self._live = False
        self._pipeline: Pipeline | None = None
        # Who this adapter's dials say is calling (E6), loaded at the first dial, and the
        # sealed header values it came from (to write back if Redis forgets them).
        self._identity: DialIdentity | None = None
        self._sealed_headers: str | None = None
        self._superseded = False  # the adapter went to another process: leave its record

    async def run(self) -> CloseReason | None:
        """Runs the adapter to its end; None if there was nothing to run."""
        settings = self.settings
        if not await self.store.claim(
            self.adapter_id, worker_name(), heartbeat_ttl_s=settings.heartbeat_ttl_s
        ):
            self.log.info("adapter_claim_skipped")  # withdrawn, closed or taken already
            return None
        record = await self.store.load(self.adapter_id)
        if record is None:
            return None
        self._record = record
        self.log = log.bind(
            adapter_id=record.adapter_id,
            session_id=record.session_id,
            track_name=record.track_name,
            app=record.app_id,
            direction=record.direction.value,
        )
        # A resumed adapter carries on counting where the lost process last saved.
        resuming = record.state == AdapterState.RECONNECTING
        self.lag.fields.update({k: v for k, v in record.extra.items() if k in self.lag.fields})
        ctx = PipelineContext(
            record=record,
            settings=settings,
            log=self.log,
            redial=lambda: self._dial(record, pipeline),
            set_state=self._set_state,
            counters=dict(record.counters),
            resume=await self._resume_point(record) if resuming else None,
            redis=self.store.redis,
            stop_reason=lambda: self.stop.reason,
        )
        pipeline = make_pipeline(ctx)
        self._pipeline = pipeline
        if resuming:
            self.log.info("adapter_resuming", resumes=record.resumes, resume=str(ctx.resume))
        background = [
            asyncio.create_task(self._heartbeat(ctx.counters), name="heartbeat"),
            asyncio.create_task(self._listen_for_close(), name="control"),
            asyncio.create_task(_watch_loop_lag(ctx.counters, self.lag), name="loop-lag"),
        ]
        for task in background:
            task.add_done_callback(self._background_ended)
        loop = asyncio.get_running_loop()
        loop.add_signal_handler(signal.SIGTERM, self.stop.set, CloseReason.SHUTDOWN)
        reason: CloseReason | None = None
        try:
            ws = await self._start(record, pipeline, resuming=resuming)
            if ws is not None:
                reason = await first_completed(pipeline.run(ws), self.stop.wait(), log=self.log)
        except Exception:
            self.log.exception("adapter_crashed")
            reason = CloseReason.INTERNAL_ERROR
        finally:
            # The SIGTERM handler stays until the process exits: a drain that arrives
            # during this cleanup must not kill the process before the record is final.
            try:
                await asyncio.wait_for(pipeline.aclose(), CLEANUP_TIMEOUT_S)
            except Exception:
                self.log.exception("pipeline_cleanup_failed")
            # The record is final before housekeeping stops: a close waiting on it is
            # answered even if tearing down the Redis tasks below were slow.
            self._live = False
            if reason is not None and not self._superseded:  # else the record is not ours
                await self._close_record(reason, ctx.counters)
            stuck = await cancel_and_wait(background, log=self.log, timeout_s=CLEANUP_TIMEOUT_S)
            if stuck:
                self.log.warning("background_tasks_stuck", tasks=[t.get_name() for t in stuck])
        return reason

    def _background_ended(self, task: asyncio.Task[None]) -> None:
        """Ends the adapter when a housekeeping task dies (they only end when cancelled).

        Without heartbeats the reaper would take the adapter for lost and resume it on
        another process while this one still streams; without the control channel a
        close would go unheard. Better to end it, saying why.
        """
        if task.cancelled():
            return
        log_exception(task, self.log, "background_task_failed")
        self.stop.set(CloseReason.INTERNAL_ERROR)

    async def _resume_point(self, record: AdapterRecord) -> ResumePoint | None:
        """Where the lost pipeline's stream would be now (None: it saved no position)."""
        extra = record.extra
        if "p_seq" not in extra or "p_saved_ms" not in extra:
            return None
        seconds, micros = await self.store.redis.time()
        now_ms = int(seconds) * 1000 + int(micros) // 1000
        egress = pipeline_class(record)
        if not issubclass(egress, EgressPipeline):
            return None
        clock_rate, packet_interval_ms = egress.timing(record)
        return resume_point(
            saved_next_sequence=extra["p_seq"],
            saved_timestamp=extra.get("p_ts", 0),
            elapsed_ms=now_ms - extra["p_saved_ms"],
            clock_rate=clock_rate,
            packet_interval_ms=packet_interval_ms,
        )

    async def _start(self, record: AdapterRecord, pipeline: Pipeline, *, resuming: bool) -> Any:
        """Prepares media and dials, at once; reports `active` or the failure.

        The two are independent (an SFU negotiation, a WebSocket handshake that may cross
        the internet), so a create waits for the slower, not for both in turn. Whichever
        fails first cancels the other. Returns the connection, or None if the create failed.
        """
        loop = asyncio.get_running_loop()
        started = loop.time()
        took: dict[str, float] = {}

        def timed(name: str) -> Callable[[asyncio.Task[Any]], None]:
            return lambda _: took.__setitem__(f"{name}_ms", round((loop.time() - started) * 1000))

        prepared = asyncio.create_task(pipeline.prepare(), name="prepare")
        dialled = asyncio.create_task(self._dial(record, pipeline), name="dial")
        prepared.add_done_callback(timed("prepare"))
        dialled.add_done_callback(timed("dial"))
        dialled.add_done_callback(
            lambda task: pipeline.on_connected() if _succeeded(task) else None
        )
        try:
            await asyncio.gather(prepared, dialled)
        except BaseException as exc:
            for task in (prepared, dialled):
                task.cancel()
            await asyncio.gather(prepared, dialled, return_exceptions=True)
            if _succeeded(dialled):
                await close_ws(dialled.result())
            if not isinstance(exc, SetupError | DialError):
                raise
            if resuming:  # no create waits on this: the adapter ends with the reason
                reason = _RESUME_FAILURES.get(exc.code, CloseReason.INTERNAL_ERROR)
                self.log.info("adapter_resume_failed", error_code=str(exc.code))
                await self._close_record(reason, pipeline.ctx.counters)
                return None
            await self.store.fail(record.adapter_id, record.app_id, exc.code, exc.description)
            self.log.info("adapter_create_failed", error_code=str(exc.code), error=exc.description)
            return None
        if pipeline.session_id and pipeline.session_id != record.session_id:
            record.session_id = pipeline.session_id
            await self.store.set_session(record.adapter_id, pipeline.session_id)
            self.log = self.log.bind(session_id=pipeline.session_id)
            pipeline.ctx.log = self.log
        self._live = True
        await self._set_state(AdapterState.ACTIVE)
        event = "adapter_resumed" if resuming else "adapter_active"
        # Where a slow create spent its time: the SFU negotiation or the endpoint's handshake.
        self.log.info(event, endpoint=redact_endpoint(record.endpoint), **took)
        return dialled.result()

    async def _dial(self, record: AdapterRecord, pipeline: Pipeline) -> Any:
        """Dials the endpoint with the adapter's headers: the first dial, every re-dial of
        an egress reconnect (`ctx.redial`) and a resumed adapter's dial all come here."""
        if self._identity is None:
            self._identity, self._sealed_headers = await load_identity(
                self.store, record, self.settings
            )
        return await dial(
            record.endpoint,
            timeout_s=self.settings.connect_timeout_s,
            close_timeout_s=self.settings.ws_close_timeout_s,
            max_message_bytes=pipeline.max_message_bytes,
            max_queue_messages=pipeline.max_queue_messages,
            policy=self.settings.endpoint_policy,
            tls=self._tls_for(record.endpoint),
            headers=self._identity.for_dial(time.time()),
        )

    def _tls_for(self, endpoint: str) -> ssl.SSLContext | None:
        # Only wss:// endpoints need a trust store (loaded once per worker host).
        if endpoint[:4].lower() == "wss:":
            return tls_context(self.settings.endpoint_ca_bundle)
        return None

    async def _set_state(self, state: AdapterState) -> None:
        if self._superseded:
            return
        if self._record is not None:
            self._record.state = state
        try:
            await self.store.set_live_state(self.adapter_id, state)
        except RedisError as exc:
            self.log.warning("state_update_failed", state=state.value, error=str(exc))

    async def _close_record(self, reason: CloseReason, counters: dict[str, int]) -> None:
        for _ in range(10):
            try:
                closed = await self.store.close(
                    self.adapter_id, reason, counters, extra=self._extra()
                )
                break
            except RedisError as exc:
                self.log.warning("close_record_failed", error=str(exc))
                await asyncio.sleep(REDIS_RETRY_S)
        else:
            return
        self.log.info(
            "adapter_closed",
            reason=reason.value,
            closed_here=closed == 1,
            **{f"counter_{k}": v for k, v in counters.items()},
        )

    def _extra(self) -> dict[str, int]:
        position = self._pipeline.position() if self._pipeline is not None else {}
        return {**self.lag.fields, **position}

    async def _heartbeat(self, counters: dict[str, int]) -> None:
        every = self.settings.heartbeat_interval_s
        while True:
            await self._beat(counters)
            await asyncio.sleep(every)

    async def _beat(self, counters: dict[str, int]) -> None:
        if self._superseded:
            return  # not ours: never beat for it again, nor write it back after a flush
        try:
            reply = await self.store.heartbeat(
                self.adapter_id,
                ttl_s=self.settings.heartbeat_ttl_s,
                counters=counters,
                extra=self._extra(),
                worker=worker_name(),
            )
            if reply.superseded:
                # This process stalled past the heartbeat TTL and the adapter went to
                # another: streaming on beside it would send the endpoint two streams.
                self.log.warning("adapter_superseded")
                self._superseded = True
                self.stop.set(CloseReason.WORKER_LOST)
            elif reply.should_stop:
                self.stop.set(CloseReason.API_CLOSE)
            elif reply.record_lost and self._live and self._record is not None:
                self._record.counters = dict(counters)
                await self.store.restore(
                    self._record,
                    heartbeat_ttl_s=self.settings.heartbeat_ttl_s,
                    sealed_headers=self._sealed_headers,
                )
                self.log.warning("adapter_record_restored")
        except Exception as exc:
            if not redis_connection_lost(exc):
                raise
            self.log.warning("heartbeat_failed", error=str(exc))

    async def _listen_for_close(self) -> None:
        while True:
            pubsub = self.store.redis.pubsub()
            try:
                await pubsub.subscribe(keys.adapter_control(self.adapter_id))
                async for message in pubsub.listen():
                    if message.get("type") == "message":
                        self.stop.set(_control_reason(message.get("data")))
            except Exception as exc:
                if not redis_connection_lost(exc):
                    raise
                self.log.warning("control_channel_lost", error=str(exc))
            finally:
                with contextlib.suppress(RedisError):
                    await pubsub.aclose()  # type: ignore[no-untyped-call]
            await asyncio.sleep(REDIS_RETRY_S)
