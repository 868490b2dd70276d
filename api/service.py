"""Create, close and look up adapters: the control plane's logic, free of HTTP."""

from __future__ import annotations

import asyncio
import secrets
import time
from typing import Any

import structlog
from redis import Redis as SyncRedis
from rq import Queue

from api.headers import header_settings
from api.metrics import ApiMetrics
from api.models import CloseTrackResult, CreateTrackResult, EgressTrack, IngestTrack
from api.views import AdapterView
from sluice.config import Settings
from sluice.errors import (
    AdapterNotFound,
    ErrorCode,
    InvalidParams,
    QuotaExceeded,
    RateLimited,
    SessionNotFound,
    TrackNotFound,
)
from sluice.state import keys
from sluice.state.events import Claimed, Closed, Failed, StateChanged, subscribe
from sluice.state.jobs import drop_queued_job, enqueue_adapter
from sluice.state.records import (
    AdapterRecord,
    AdapterState,
    CloseReason,
    Direction,
    MediaKind,
    redact_endpoint,
)
from sluice.state.sealed_headers import header_seal
from sluice.state.store import AdapterStore
from sluice.state.track_registry import lookup_track
from sluice.state.view import adapter_json

log = structlog.get_logger("sluice.api")

# The connect timeout is the worker's; this slack covers its hand-off back to us.
OUTCOME_SLACK_S = 1.0


def new_id() -> str:
    return secrets.token_hex(16)


class AdapterService:
    """Everything the adapters routes do, written against Redis and the RQ queue."""

    def __init__(
        self,
        settings: Settings,
        store: AdapterStore,
        rq_redis: SyncRedis,
        metrics: ApiMetrics | None = None,
    ) -> None:
        self.settings = settings
        self.store = store
        self.queue = Queue(settings.queue_name, connection=rq_redis)
        self.metrics = metrics or ApiMetrics()
        self.seal = header_seal(settings.header_keys)
        self.webhook_apps = frozenset(settings.app_webhooks)

    # --- create -----------------------------------------------------------------

    @property
    def answer_within_s(self) -> float:
        """The longest a create waits for its outcome before answering."""
        settings = self.settings
        return settings.pickup_timeout_s + settings.connect_timeout_s + OUTCOME_SLACK_S

    async def create(self, app_id: str, item: IngestTrack | EgressTrack) -> CreateTrackResult:
        """Creates one adapter and waits until its pipeline is connected or has failed."""
        started = time.perf_counter()
        adapter_id = new_id()
        result = await self._create(app_id, item, adapter_id)
        # Only now may the reapers leave this create be. A replica dying before this line
        # (or an error above) leaves a record nobody has the id of: they close it.
        await self.store.answered(adapter_id)
        direction = _direction(item)
        self.metrics.creates.labels(direction, result.errorCode or "active").inc()
        if result.errorCode is None:
            self.metrics.create_seconds.labels(direction).observe(time.perf_counter() - started)
        return result

    def refuse_unkept_headers(self, items: list[IngestTrack | EgressTrack]) -> None:
        """Refuses header values this deployment could only store in clear text.

        Raises:
            InvalidParams: an item has header values and SLUICE_SECRETS_KEY is unset.
        """
        if self.seal is not None:
            return
        for index, item in enumerate(items):
            if item.headers:
                raise InvalidParams(
                    f"tracks[{index}].headers: this deployment has no key to keep header "
                    "values encrypted (SLUICE_SECRETS_KEY): it accepts no header values"
                )

    def count_refused(self, items: list[IngestTrack | EgressTrack], error_code: str) -> None:
        """Counts create items refused as a whole request (e.g. over the rate limit)."""
        for item in items:
            self.metrics.creates.labels(_direction(item), error_code).inc()

    async def _create(
        self, app_id: str, item: IngestTrack | EgressTrack, adapter_id: str
    ) -> CreateTrackResult:
        if isinstance(item, EgressTrack) and (refusal := await self._check_source(app_id, item)):
            return refusal
        codec: str
        if isinstance(item, IngestTrack):
            # The pipeline makes the SFU session and records its id before it is active.
            direction, session_id, codec = Direction.INGEST, "", item.inputCodec
            options = item.settings_in_effect()
        else:
            direction, session_id, codec = Direction.EGRESS, item.sessionId, item.outputCodec
            options = item.settings_in_effect(
                reconnect_window_s=self.settings.reconnect_window_s,
                jpeg_quality=self.settings.jpeg_quality,
            )
        record = AdapterRecord(
            adapter_id=adapter_id,
            app_id=app_id,
            direction=direction,
            session_id=session_id,
            track_name=item.trackName,
            endpoint=item.endpoint,
            codec=codec,
            options={**options, **header_settings(item.headers)},
            webhooks=app_id in self.webhook_apps,
        )
        sealed = ""
        if item.headers and self.seal is not None:  # refused earlier without a seal
            sealed = self.seal.seal(adapter_id, item.headers)
        bound = log.bind(
            adapter_id=adapter_id, session_id=session_id, track_name=item.trackName, app=app_id
        )
        ok = CreateTrackResult(
            trackName=item.trackName,
            adapterId=adapter_id,
            sessionId=session_id,
            endpoint=item.endpoint,
        )
        async with subscribe(self.store.redis, adapter_id) as events:
            try:
                await self.store.create(
                    record,
                    pickup_timeout_s=self.settings.pickup_timeout_s,
                    max_live=self.settings.app_max_adapters,
                    sealed_headers=sealed,
                    answer_within_s=self.answer_within_s,
                )
            except QuotaExceeded as exc:
                bound.info("adapter_create_over_quota")
                return _failed(item.trackName, exc.error_code, exc.description)
            await asyncio.to_thread(enqueue_adapter, self.queue, adapter_id)
            bound.info(
                "adapter_create_requested",
                direction=direction.value,
                codec=codec,
                endpoint=redact_endpoint(item.endpoint),
            )
            outcome_kinds = (StateChanged, Failed, Closed)
            event = await events.wait_for((Claimed, *outcome_kinds), self.settings.pickup_timeout_s)
            # No claim in time: withdraw the create, unless a worker claimed it meanwhile.
            if event is None and await self.store.abandon(adapter_id, app_id):
                await asyncio.to_thread(drop_queued_job, self.queue, adapter_id)
                bound.warning("adapter_create_no_capacity")
                return _failed(
                    item.trackName,
                    ErrorCode.NO_CAPACITY,
                    "no worker process is free to run this adapter",
                )
            if event is None or isinstance(event, Claimed):
                event = await events.wait_for(
                    outcome_kinds, self.settings.connect_timeout_s + OUTCOME_SLACK_S
                )
        if event is None:
            description = "the worker did not report the connection in time"
            if not await self.store.fail(
                adapter_id, app_id, ErrorCode.WEBSOCKET_CONNECTION_TIMEOUT, description
            ):
                await self.store.close(adapter_id, CloseReason.INTERNAL_ERROR)
            bound.warning("adapter_create_timed_out")
            return _failed(item.trackName, ErrorCode.WEBSOCKET_CONNECTION_TIMEOUT, description)
        if isinstance(event, Failed):
            bound.info("adapter_create_failed", error_code=event.error_code)
            return _failed(item.trackName, event.error_code, event.error_description)
        # `state` (active) — or `closed` when a close raced the create: the adapter existed,
        # so its id is returned and GET tells how it ended.
        if direction is Direction.INGEST:
            created = await self.store.load(adapter_id)
            ok.sessionId = created.session_id if created else None
        return ok

    async def _check_source(self, app_id: str, item: EgressTrack) -> CreateTrackResult | None:
        """Why the egress source cannot be used (from the SFU's track registry), or None."""
        try:
            info = await lookup_track(self.store.redis, app_id, item.sessionId, item.trackName)
        except (SessionNotFound, TrackNotFound) as exc:
            return _failed(item.trackName, exc.error_code, exc.description)
        wanted = MediaKind.VIDEO if item.outputCodec == "jpeg" else MediaKind.AUDIO
        if info.kind != wanted:
            return _failed(
                item.trackName,
                ErrorCode.INVALID_PARAMS,
                f"outputCodec {item.outputCodec!r} needs a {wanted} track; "
                f"{item.trackName!r} is {info.kind}",
            )
        return None

    async def check_create_rate(self, app_id: str) -> None:
        """Counts one create request against the app's per-second limit.

        Raises:
            RateLimited: over `app_creates_per_s` in this wall-clock second.
        """
        limit = self.settings.app_creates_per_s
        if limit <= 0:
            return
        key = keys.app_create_rate(app_id, int(time.time()))
        async with self.store.redis.pipeline(transaction=True) as pipe:
            pipe.incr(key)
            pipe.expire(key, 2)
            count, _ = await pipe.execute()
        if int(count) > limit:
            raise RateLimited(f"app {app_id!r} may create at most {limit} times a second")

    # --- close ------------------------------------------------------------------

    async def close(self, app_id: str, adapter_id: str) -> CloseTrackResult:
        """Closes one adapter and waits (briefly) for its pipeline to confirm."""
        result = await self._close(app_id, adapter_id)
        self.metrics.closes.labels(result.errorCode or "closed").inc()
        return result

    async def _close(self, app_id: str, adapter_id: str) -> CloseTrackResult:
        record = await self.store.load(adapter_id)
        if record is None or record.app_id != app_id:
            return CloseTrackResult(
                adapterId=adapter_id,
                errorCode=ErrorCode.ADAPTER_NOT_FOUND,
                errorDescription=f"adapter {adapter_id!r} does not exist",
            )
        if record.state != AdapterState.CLOSED:
            async with subscribe(self.store.redis, adapter_id) as events:
                # Re-read after subscribing: a close that landed in between is not missed.
                record = await self.store.load(adapter_id)
                if record is not None and record.state != AdapterState.CLOSED:
                    await self._close_live(adapter_id, record, events)
            record = await self.store.load(adapter_id)
        return CloseTrackResult(
            adapterId=adapter_id,
            status="closed",
            bytesProcessed=record.counters["bytes"] if record else 0,
        )

    async def _close_live(self, adapter_id: str, record: AdapterRecord, events: Any) -> None:
        if record.worker is None:
            # Queued (new, or resuming after its process was lost): closing the record
            # makes the worker's claim fail.
            await self.store.close(adapter_id, CloseReason.API_CLOSE)
            return
        await self.store.request_close(adapter_id)
        if await events.wait_for((Closed,), self.settings.close_timeout_s) is None:
            # The pipeline is hung or gone: the record is closed here, and a live pipeline
            # stops at its next heartbeat when it reads that.
            await self.store.close(adapter_id, CloseReason.API_CLOSE)
            log.warning("adapter_close_forced", adapter_id=adapter_id)

    # --- read -------------------------------------------------------------------

    async def view(self, app_id: str, adapter_id: str) -> AdapterView:
        """The adapter's record as the API shows it.

        Raises:
            AdapterNotFound: unknown id, or another app's adapter.
        """
        record = await self.store.load(adapter_id)
        if record is None or record.app_id != app_id:
            raise AdapterNotFound(f"adapter {adapter_id!r} does not exist")
        return adapter_view(record)


def adapter_view(record: AdapterRecord) -> AdapterView:
    """An adapter record as the API shows it: the rendering lifecycle webhooks carry too
    (`sluice.state.view`), which `sluice adapters` prints as well."""
    return AdapterView.model_validate(adapter_json(record))


def _direction(item: IngestTrack | EgressTrack) -> str:
    return Direction.INGEST.value if isinstance(item, IngestTrack) else Direction.EGRESS.value


def _failed(track_name: str, code: str, description: str) -> CreateTrackResult:
    return CreateTrackResult(trackName=track_name, errorCode=code, errorDescription=description)
