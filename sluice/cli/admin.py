"""What the operator's commands (`sluice adapters|workers|sessions`) read from Redis.

Data gathering: every function returns dataclasses, rendering lives in
`sluice.cli.admin_render`; the one write, `close_adapter`, is the API's own close. Ages and
deadlines are measured against Redis's clock (`TIME`), the clock the store's scripts
use, so they do not depend on the operator's host. Endpoints are redacted here, before
anything can print them: their query strings carry tokens.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import Any, TypeVar, cast

from redis import Redis as SyncRedis
from redis.asyncio import Redis
from rq import Queue, Worker
from rq.exceptions import NoSuchJobError
from rq.job import Job
from rq.worker import BaseWorker

from api.models import AdapterView
from api.service import AdapterService, adapter_view
from sluice.config import Settings
from sluice.state import keys, sfu_nodes
from sluice.state.connection import async_client
from sluice.state.jobs import JOB_FUNCTION
from sluice.state.lag_histogram import BUCKET_FIELDS, COUNT_FIELD, SUM_FIELD, bucket_counts_ms
from sluice.state.records import (
    COUNTER_NAMES,
    AdapterRecord,
    AdapterState,
    Direction,
    MediaKind,
    redact_endpoint,
)
from sluice.state.sfu_nodes import NodeInfo
from sluice.state.store import AdapterStore
from sluice.state.track_registry import TrackInfo, session_key, tracks_key

# Stands in for SLUICE_APPS: no admin command uses an app secret (see `admin_settings`).
_NO_APPS = "sluice-admin:unused"
_APP_INDEX = keys.app_adapters("*")
_APP_PREFIX, _APP_SUFFIX = _APP_INDEX.split("*")
_SESSIONS = session_key("*")
_CLAIM_DEADLINE, _CLOSE_REQUESTED = "claim_deadline_ms", "close_requested"
# Record fields `AdapterInfo` has a field for; any other goes to `other_fields`, so a
# field added to the record later (an egress stream's position, say) is shown too.
_SHOWN_FIELDS = frozenset(
    (
        *("adapter_id", "app_id", "direction", "state", "session_id", "track_name"),
        *("endpoint", "codec", "worker", "created_at", "closed_at", "close_reason", "options"),
        *(_CLAIM_DEADLINE, _CLOSE_REQUESTED, *(f"c_{name}" for name in COUNTER_NAMES)),
        *("options", "resumes", *BUCKET_FIELDS, SUM_FIELD, COUNT_FIELD),
    )
)

T = TypeVar("T")


def admin_settings() -> Settings:
    """The settings of an admin command: every `SLUICE_*` variable, apps or none.

    `Settings` refuses an empty `SLUICE_APPS` outside development mode, which protects
    the services; the admin commands never use an app secret, so they replace the apps
    with a placeholder instead of turning on development mode (which would also relax
    the endpoint policy). Everything else (Redis URL, queue name, timeouts) is read
    from the environment exactly as the services read it.

    Raises:
        ValueError: another variable does not validate (pydantic's ValidationError).
    """
    return Settings(apps=_NO_APPS)


def run_async(settings: Settings, gather: Callable[[Redis], Awaitable[T]]) -> T:
    """Runs `gather` on a new event loop with its own client, closed afterwards."""

    async def run() -> T:
        redis = async_client(settings)
        try:
            return await gather(redis)
        finally:
            await redis.aclose()

    return asyncio.run(run())


# --- adapters -----------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class AdapterInfo:
    """One adapter as the operator sees it; `endpoint` is already redacted."""

    adapter_id: str
    app_id: str
    direction: Direction
    state: AdapterState
    session_id: str
    track_name: str
    endpoint: str
    codec: str
    worker: str | None
    created_at: str
    age_s: float | None
    closed_at: str | None
    close_reason: str | None
    counters: dict[str, int]
    heartbeat_in_s: float | None  # until the heartbeat deadline; negative when overdue
    claim_in_s: float | None  # queued, unclaimed: until the create is withdrawn
    close_requested: bool
    view: AdapterView  # what `GET .../adapters/websocket/{id}` answers for it
    settings: dict[str, Any] = field(default_factory=dict)  # the extension settings in effect
    resumes: int = 0
    # The pipeline's event-loop lag: (bucket's upper bound in ms, None for the last;
    # samples in it), and the sum of every sample in ms.
    loop_lag: list[tuple[float | None, int]] = field(default_factory=list)
    loop_lag_sum_ms: float = 0.0
    other_fields: dict[str, str] = field(default_factory=dict)  # e.g. `p_*` stream position


async def list_apps(redis: Redis) -> list[str]:
    """Every app that ever created an adapter (it has an index), sorted."""
    apps = {
        _text(key)[len(_APP_PREFIX) : -len(_APP_SUFFIX)]
        async for key in redis.scan_iter(match=_APP_INDEX, count=500)
    }
    return sorted(apps)


async def list_adapters(
    redis: Redis,
    *,
    app_id: str | None = None,
    state: AdapterState | None = None,
    include_closed: bool = False,
) -> list[AdapterInfo]:
    """Adapters newest first: live ones, or also the closed ones still retained.

    Live ids come from each app's live set plus the heartbeat and pending zsets (which
    also find a restored record whose index entry is missing); closed ones need the
    apps' creation indexes, whose ids outlive expired records (those are skipped).

    Args:
        app_id: only this app's adapters.
        state: only adapters in this state; `closed` implies `include_closed`.
        include_closed: also closed adapters whose records are still retained.
    """
    with_closed = include_closed or state is AdapterState.CLOSED
    apps = [app_id] if app_id is not None else await list_apps(redis)
    async with redis.pipeline(transaction=False) as pipe:
        for app in apps:
            if with_closed:
                pipe.zrange(keys.app_adapters(app), 0, -1)
            else:
                pipe.smembers(keys.app_live(app))
        pipe.zrange(keys.HEARTBEATS, 0, -1)
        pipe.zrange(keys.PENDING, 0, -1)
        found = await pipe.execute()
    ids = {_text(adapter_id) for members in found for adapter_id in members}
    adapters = [
        info
        for info in await load_adapters(redis, sorted(ids))
        if (app_id is None or info.app_id == app_id)
        and (state is None or info.state is state)
        and (with_closed or info.state is not AdapterState.CLOSED)
    ]
    adapters.sort(key=lambda info: info.age_s if info.age_s is not None else float("inf"))
    return adapters


async def show_adapter(redis: Redis, adapter_id: str) -> AdapterInfo | None:
    """One adapter with every field of its record, or None if there is no such record."""
    return next(iter(await load_adapters(redis, [adapter_id])), None)


async def load_adapters(redis: Redis, adapter_ids: list[str]) -> list[AdapterInfo]:
    """The records of `adapter_ids` that exist, in that order, read in one round trip."""
    async with redis.pipeline(transaction=False) as pipe:
        pipe.time()
        for adapter_id in adapter_ids:
            pipe.hgetall(keys.adapter(adapter_id))
            pipe.zscore(keys.HEARTBEATS, adapter_id)
            pipe.zscore(keys.PENDING, adapter_id)
        replies = await pipe.execute()
    now_ms = _time_ms(replies[0])
    infos: list[AdapterInfo] = []
    for i in range(len(adapter_ids)):
        raw, heartbeat_ms, pending_ms = replies[1 + 3 * i : 4 + 3 * i]
        fields = {_text(k): _text(v) for k, v in raw.items()}
        if fields.get("adapter_id"):
            infos.append(_adapter_info(fields, heartbeat_ms, pending_ms, now_ms))
    return infos


def _adapter_info(
    fields: dict[str, str], heartbeat_ms: float | None, pending_ms: float | None, now_ms: int
) -> AdapterInfo:
    record = AdapterRecord.from_hash(fields)
    return AdapterInfo(
        adapter_id=record.adapter_id,
        app_id=record.app_id,
        direction=record.direction,
        state=record.state,
        session_id=record.session_id,
        track_name=record.track_name,
        endpoint=redact_endpoint(record.endpoint),
        codec=record.codec,
        worker=record.worker,
        created_at=record.created_at,
        age_s=_age_s(record.created_at, now_ms),
        closed_at=record.closed_at,
        close_reason=record.close_reason,
        counters=record.counters,
        heartbeat_in_s=None if heartbeat_ms is None else (heartbeat_ms - now_ms) / 1000,
        # A create closed before any worker claimed it stays in PENDING until reaped.
        claim_in_s=(
            (pending_ms - now_ms) / 1000
            if pending_ms is not None and record.state is AdapterState.CONNECTING
            else None
        ),
        close_requested=fields.get(_CLOSE_REQUESTED) == "1",
        view=adapter_view(record),
        settings=record.options,
        resumes=record.resumes,
        loop_lag=bucket_counts_ms(record.extra),
        loop_lag_sum_ms=record.extra.get(SUM_FIELD, 0) / 1000,
        other_fields={
            name: redact_endpoint(value) if "://" in value else value  # tokens, again
            for name, value in sorted(fields.items())
            if name not in _SHOWN_FIELDS
        },
    )


def _age_s(created_at: str, now_ms: int) -> float | None:
    try:
        created = datetime.fromisoformat(created_at)
    except ValueError:
        return None
    return round(now_ms / 1000 - created.timestamp(), 3)


class CloseOutcome(StrEnum):
    CLOSED = "closed"
    ALREADY_CLOSED = "already_closed"
    NOT_FOUND = "not_found"


@dataclass(frozen=True, slots=True)
class CloseResult:
    outcome: CloseOutcome
    adapter: AdapterInfo | None  # the record after the close (None: unknown id)
    waited_s: float  # how long the close took, pipeline confirmation included


async def close_adapter(
    settings: Settings, redis: Redis, rq_redis: SyncRedis, adapter_id: str
) -> CloseResult:
    """Closes one adapter the way the API does, through the API's own `AdapterService`.

    The running pipeline is asked to close (control channel and record flag) and
    `close_timeout_s` is given to confirm; a pipeline that does not answer has its record
    closed here with reason `api_close`. A closed adapter is left as it is.
    """
    store = AdapterStore(
        redis,
        retention_s=settings.closed_retention_s,
        usage_retention_s=settings.usage_retention_days * 86_400,
    )
    before = await show_adapter(redis, adapter_id)
    if before is None:
        return CloseResult(CloseOutcome.NOT_FOUND, None, 0.0)
    if before.state is AdapterState.CLOSED:
        return CloseResult(CloseOutcome.ALREADY_CLOSED, before, 0.0)
    loop = asyncio.get_running_loop()
    started = loop.time()
    # The service scopes ids to an app, as the API's routes do; the record tells which.
    await AdapterService(settings, store, rq_redis).close(before.app_id, adapter_id)
    waited_s = loop.time() - started
    return CloseResult(CloseOutcome.CLOSED, await show_adapter(redis, adapter_id), waited_s)


# --- sessions -----------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class SessionInfo:
    """One SFU session as its SFU last recorded it (`sluice.state.track_registry`)."""

    session_id: str
    app_id: str
    created_at_ms: int
    age_s: float
    tracks: list[TrackInfo]
    node_id: str = ""  # the SFU node holding it ("" if its SFU names none)


async def list_sessions(redis: Redis, *, app_id: str | None = None) -> list[SessionInfo]:
    """The sessions the SFUs' registry holds, newest first."""
    prefix = _SESSIONS[:-1]
    session_ids = [
        _text(key)[len(prefix) :]
        async for key in redis.scan_iter(match=_SESSIONS, count=500)
        if not _text(key).endswith(":tracks")  # `tracks_key`: the same prefix
    ]
    async with redis.pipeline(transaction=False) as pipe:
        pipe.time()
        for session_id in session_ids:
            pipe.hgetall(session_key(session_id))
            pipe.hgetall(tracks_key(session_id))
        replies = await pipe.execute()
    now_ms = _time_ms(replies[0])
    sessions: list[SessionInfo] = []
    for i, session_id in enumerate(session_ids):
        raw, raw_tracks = replies[1 + 2 * i : 3 + 2 * i]
        fields = {_text(k): _text(v) for k, v in raw.items()}
        owner = fields.get("app_id")
        if owner is None or (app_id is not None and owner != app_id):
            continue  # expired between SCAN and read, or another app's
        created_ms = int(fields.get("created_at") or 0)
        tracks = [
            _track_info(owner, session_id, _text(name), _text(value))
            for name, value in raw_tracks.items()
        ]
        tracks.sort(key=lambda track: track.track_name)
        age_s = (now_ms - created_ms) / 1000
        node_id = fields.get("node", "")
        sessions.append(SessionInfo(session_id, owner, created_ms, age_s, tracks, node_id))
    sessions.sort(key=lambda session: session.created_at_ms, reverse=True)
    return sessions


def _track_info(app_id: str, session_id: str, name: str, value: str) -> TrackInfo:
    try:
        data: Any = json.loads(value)
    except ValueError:
        data = None
    data = data if isinstance(data, dict) else {}  # tolerate what an older SFU wrote
    return TrackInfo(
        app_id=app_id,
        session_id=session_id,
        track_name=name,
        # Shown as written: an unknown kind from another version reads as it is.
        kind=cast(MediaKind, str(data.get("kind", "?"))),
        codec=data.get("codec"),
        status=str(data.get("status", "?")),
        mid=str(data.get("mid", "")),
    )


async def list_sfu_nodes(redis: Redis) -> list[NodeInfo]:
    """The SFU nodes alive now (`sluice.state.sfu_nodes`), oldest first."""
    return await sfu_nodes.live_nodes(redis)


# --- workers ------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class WorkerInfo:
    """One RQ worker process of the adapters queue, as RQ registered it."""

    name: str
    hostname: str | None
    pid: int | None
    state: str  # RQ's: starting, idle, busy, suspended, ...
    job_id: str | None
    adapter_id: str | None  # the running job's argument
    birth_date: str | None
    heartbeat_age_s: float | None
    successful_jobs: int
    failed_jobs: int


@dataclass(frozen=True, slots=True)
class WorkersReport:
    queue_name: str
    queue_length: int  # jobs waiting for a worker
    workers: list[WorkerInfo]

    @property
    def busy(self) -> int:
        return sum(1 for worker in self.workers if worker.state == "busy")


def list_workers(rq_redis: SyncRedis, queue_name: str) -> WorkersReport:
    """The RQ workers registered on `queue_name`, through RQ's own API, sorted by name.

    Args:
        rq_redis: a bytes-returning client (`sluice.state.connection.sync_client`), as RQ needs.
    """
    queue = Queue(queue_name, connection=rq_redis)
    now_s = _time_ms(rq_redis.time()) / 1000
    workers = [
        WorkerInfo(
            name=worker.name,
            hostname=worker.hostname,
            pid=worker.pid,
            state=str(worker.get_state()),
            job_id=(job_id := _current_job_id(worker)),
            adapter_id=_adapter_of_job(rq_redis, job_id),
            birth_date=worker.birth_date.isoformat() if worker.birth_date else None,
            heartbeat_age_s=(
                round(now_s - worker.last_heartbeat.timestamp(), 3)
                if worker.last_heartbeat
                else None
            ),
            successful_jobs=worker.successful_job_count,
            failed_jobs=worker.failed_job_count,
        )
        for worker in Worker.all(queue=queue)
    ]
    workers.sort(key=lambda worker: worker.name)
    return WorkersReport(queue_name, queue.count, workers)


def _current_job_id(worker: BaseWorker, tries: int = 3) -> str | None:
    """The job `worker` runs, or None when RQ cannot tell.

    A heartbeat of the worker that races its job's end writes the job's execution back
    without `created_at` for a moment, and RQ's reader raises KeyError on it: asked again,
    it has settled. One that stays half (the job deleted under its worker) reads as no job,
    rather than failing the whole listing.
    """
    for attempt in range(tries):
        try:
            return worker.get_current_job_id()
        except KeyError:
            if attempt + 1 < tries:
                time.sleep(0.05)
    return None


def _adapter_of_job(rq_redis: SyncRedis, job_id: str | None) -> str | None:
    """The adapter a job runs: its one argument (`AdapterService` enqueues it so)."""
    if job_id is None:
        return None
    try:
        job = Job.fetch(job_id, connection=rq_redis)
    except NoSuchJobError:
        return None
    if job.func_name != JOB_FUNCTION or not job.args:
        return None
    return str(job.args[0])


def _time_ms(reply: tuple[int, int]) -> int:
    """A `TIME` reply in ms: Redis's clock, the one every deadline the store writes uses."""
    seconds, micros = reply
    return int(seconds) * 1000 + int(micros) // 1000


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)
