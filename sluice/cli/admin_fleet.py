"""What the operator's fleet commands (`sluice sessions|workers|sfu nodes`) read.

Data gathering only, like `sluice.cli.admin` for adapters; rendering lives in
`sluice.cli.admin_render`.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from typing import Any, cast

from redis import Redis as SyncRedis
from redis.asyncio import Redis
from rq import Queue, Worker
from rq.exceptions import NoSuchJobError
from rq.job import Job
from rq.worker import BaseWorker

from sluice.cli.admin import as_text, redis_time_ms
from sluice.state import sfu_nodes
from sluice.state.jobs import JOB_FUNCTION
from sluice.state.records import MediaKind
from sluice.state.sfu_nodes import NodeInfo
from sluice.state.track_registry import TrackInfo, session_key, tracks_key

_SESSIONS = session_key("*")


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
        as_text(key)[len(prefix) :]
        async for key in redis.scan_iter(match=_SESSIONS, count=500)
        if not as_text(key).endswith(":tracks")  # `tracks_key`: the same prefix
    ]
    async with redis.pipeline(transaction=False) as pipe:
        pipe.time()
        for session_id in session_ids:
            pipe.hgetall(session_key(session_id))
            pipe.hgetall(tracks_key(session_id))
        replies = await pipe.execute()
    now_ms = redis_time_ms(replies[0])
    sessions: list[SessionInfo] = []
    for i, session_id in enumerate(session_ids):
        raw, raw_tracks = replies[1 + 2 * i : 3 + 2 * i]
        fields = {as_text(k): as_text(v) for k, v in raw.items()}
        owner = fields.get("app_id")
        if owner is None or (app_id is not None and owner != app_id):
            continue  # expired between SCAN and read, or another app's
        created_ms = int(fields.get("created_at") or 0)
        tracks = [
            _track_info(owner, session_id, as_text(name), as_text(value))
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
    now_s = redis_time_ms(rq_redis.time()) / 1000
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
