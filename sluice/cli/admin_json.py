"""What `--json` prints: the API's camelCase names, and its shapes where the two overlap.

An adapter is `GET .../adapters/websocket/{id}`'s answer (`api.service.adapter_view`)
plus what only an operator sees (app, worker, deadlines, the loop-lag histogram); a
session's tracks carry the sessions API's names (`trackName`, `mid`, `status`, `kind`).
Endpoints arrive here redacted (`sluice.cli.admin`).
"""

from __future__ import annotations

import json
from typing import Any

from sluice.cli.admin import AdapterInfo, CloseOutcome, CloseResult
from sluice.cli.admin_fleet import SessionInfo, WorkerInfo, WorkersReport
from sluice.errors import ErrorCode
from sluice.state.sfu_nodes import NodeInfo


def print_json(value: Any) -> None:
    """Indented JSON on stdout."""
    print(json.dumps(value, indent=2))


def adapter_json(info: AdapterInfo) -> dict[str, Any]:
    samples = sum(count for _, count in info.loop_lag)
    return {
        **info.view.model_dump(mode="json", exclude_none=True),
        "appId": info.app_id,
        "worker": info.worker,
        "ageS": info.age_s,
        "heartbeatInS": info.heartbeat_in_s,
        "claimInS": info.claim_in_s,
        "closeRequested": info.close_requested,
        "resumes": info.resumes,
        "loopLag": {
            "samples": samples,
            "meanMs": round(info.loop_lag_sum_ms / samples, 3) if samples else None,
            "buckets": [{"leMs": bound, "count": count} for bound, count in info.loop_lag],
        },
        "otherFields": info.other_fields,
    }


def close_json(result: CloseResult, adapter_id: str) -> dict[str, Any]:
    """The close answer's item for the adapter (`POST .../adapters/websocket/close`), with
    the close reason and how long the close took."""
    info = result.adapter
    if result.outcome is CloseOutcome.NOT_FOUND:
        return {
            "adapterId": adapter_id,
            "errorCode": ErrorCode.ADAPTER_NOT_FOUND.value,
            "errorDescription": f"adapter {adapter_id!r} does not exist",
        }
    return {
        "adapterId": adapter_id,
        "status": "closed",
        "bytesProcessed": info.counters["bytes"] if info else 0,
        "closeReason": info.close_reason if info else None,
        "alreadyClosed": result.outcome is CloseOutcome.ALREADY_CLOSED,
        "waitedS": round(result.waited_s, 3),
    }


def session_json(session: SessionInfo) -> dict[str, Any]:
    return {
        "sessionId": session.session_id,
        "appId": session.app_id,
        "createdAtMs": session.created_at_ms,
        "ageS": session.age_s,
        "nodeId": session.node_id or None,
        "tracks": [
            {
                "trackName": track.track_name,
                "mid": track.mid,
                "status": track.status,
                "kind": track.kind,
                "codec": track.codec,
            }
            for track in session.tracks
        ],
    }


def worker_json(worker: WorkerInfo) -> dict[str, Any]:
    return {
        "name": worker.name,
        "hostname": worker.hostname,
        "pid": worker.pid,
        "state": worker.state,
        "jobId": worker.job_id,
        "adapterId": worker.adapter_id,
        "birthDate": worker.birth_date,
        "heartbeatAgeS": worker.heartbeat_age_s,
        "successfulJobs": worker.successful_jobs,
        "failedJobs": worker.failed_jobs,
    }


def workers_json(report: WorkersReport) -> dict[str, Any]:
    return {
        "queueName": report.queue_name,
        "queueLength": report.queue_length,
        "busy": report.busy,
        "workers": [worker_json(worker) for worker in report.workers],
    }


def sfu_node_json(node: NodeInfo) -> dict[str, Any]:
    load = node.load
    return {
        "nodeId": node.node_id,
        "url": node.url,
        "host": node.host,
        "pid": node.pid,
        "startedAtMs": node.started_at_ms,
        "heartbeatAtMs": node.beat_at_ms,
        "load": {
            "sessions": load.sessions,
            "published": load.published,
            "forwarded": load.forwarded,
            "upstreams": load.upstreams,
            "cpuPct": load.cpu_pct,
        },
    }
