"""`sluice webhooks ls`: lifecycle-event deliveries (E7) that are pending or have failed.

Read through RQ's own API from the delivery queue (`SLUICE_WEBHOOK_QUEUE_NAME`): queued,
waiting out a backoff (`retrying`), in progress (`running`), and failed for good (every
attempt used; `rq requeue --queue <name> <job id>` sends one again). Events no dispatcher
has taken from the outbox yet are counted. Delivered events are not kept.
"""

from __future__ import annotations

import argparse
import dataclasses
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from sluice.state import keys

if TYPE_CHECKING:  # `sluice --help` imports this module: RQ only when a command runs
    from redis import Redis as SyncRedis

    from sluice.config import Settings

AdminRunner = Callable[[Callable[["Settings"], int]], int]

_STATE_STYLES = {"queued": "", "retrying": "yellow", "running": "green", "failed": "red"}


@dataclass(frozen=True, slots=True)
class DeliveryInfo:
    event_id: str
    job_id: str
    type: str
    app_id: str
    adapter_id: str
    sequence: int
    state: str  # queued, retrying, running, failed
    attempts: int  # made so far
    max_attempts: int
    next_attempt_in_s: float | None  # retrying: when its backoff ends (Redis's clock)
    last_error: str | None


@dataclass(frozen=True, slots=True)
class WebhooksReport:
    queue_name: str
    undispatched: int  # events still in the outbox
    deliveries: list[DeliveryInfo]

    def count(self, state: str) -> int:
        return sum(1 for delivery in self.deliveries if delivery.state == state)


def list_deliveries(
    rq_redis: SyncRedis, queue_name: str, *, app_id: str | None = None
) -> WebhooksReport:
    """Pending and failed deliveries, oldest event first.

    Args:
        rq_redis: a bytes-returning client (`sluice.state.connection.sync_client`), as RQ needs.
    """
    from rq import Queue
    from rq.job import Job

    queue = Queue(queue_name, connection=rq_redis)
    scheduled = queue.scheduled_job_registry
    states = {
        **dict.fromkeys(queue.get_job_ids(), "queued"),
        **dict.fromkeys(scheduled.get_job_ids(), "retrying"),
        **dict.fromkeys(queue.started_job_registry.get_job_ids(), "running"),
        **dict.fromkeys(queue.failed_job_registry.get_job_ids(), "failed"),
    }
    seconds, _micros = rq_redis.time()
    now_s = float(seconds)
    deliveries = []
    for job in Job.fetch_many(list(states), connection=rq_redis):
        if job is None:  # finished or expired between the two reads
            continue
        meta: dict[str, Any] = job.meta
        if app_id is not None and meta.get("appId") != app_id:
            continue
        state = states[job.id]
        due_in = None
        if state == "retrying":
            due_in = scheduled.get_scheduled_time(job.id).timestamp() - now_s
        retries = job.retry_intervals or []
        deliveries.append(
            DeliveryInfo(
                event_id=job.id.removeprefix("webhook-"),
                job_id=job.id,
                type=str(meta.get("type", "?")),
                app_id=str(meta.get("appId", "?")),
                adapter_id=str(meta.get("adapterId", "?")),
                sequence=int(meta.get("sequence", 0)),
                state=state,
                attempts=int(meta.get("attempts", 0)),
                max_attempts=len(retries) + 1,
                next_attempt_in_s=None if due_in is None else round(due_in, 1),
                last_error=meta.get("lastError"),
            )
        )
    deliveries.sort(key=lambda d: (d.adapter_id, d.sequence))
    undispatched = int(rq_redis.xlen(keys.WEBHOOK_OUTBOX))
    return WebhooksReport(queue_name, undispatched, deliveries)


def print_report(report: WebhooksReport) -> None:
    from sluice.cli.admin_render import _lines, _table, emit, human_deadline

    shown: list[Any] = []
    if report.deliveries:
        table = _table("EVENT / TYPE", "STATE / ATTEMPTS", "APP / LAST ERROR")
        table.columns[0].width = 36
        for delivery in report.deliveries:
            state: str = delivery.state
            if delivery.next_attempt_in_s is not None:
                state += f" {human_deadline(delivery.next_attempt_in_s)}"
            table.add_row(
                _lines(delivery.event_id, (delivery.type, "dim")),
                _lines(
                    (state, _STATE_STYLES.get(delivery.state, "")),
                    (f"{delivery.attempts} of {delivery.max_attempts} attempts", "dim"),
                ),
                _lines(delivery.app_id, (delivery.last_error or "", "dim")),
            )
        shown.append(table)
    pending = len(report.deliveries) - report.count("failed")
    emit(
        *shown,
        f"{pending} pending ({report.count('queued')} queued, {report.count('retrying')} "
        f"retrying, {report.count('running')} running), {report.count('failed')} failed on "
        f"{report.queue_name}; {report.undispatched} not dispatched yet",
    )


def _ls(args: argparse.Namespace, run_admin: AdminRunner) -> int:
    from sluice.cli.admin_json import print_json
    from sluice.state.connection import sync_client

    def command(settings: Settings) -> int:
        rq_redis = sync_client(settings)
        try:
            report = list_deliveries(rq_redis, settings.webhook_queue_name, app_id=args.app)
        finally:
            rq_redis.close()
        if args.json:
            print_json(_camel_keys(dataclasses.asdict(report)))
        else:
            print_report(report)
        return 0

    return run_admin(command)


def add_webhooks_command(sub: Any, run_admin: AdminRunner, show_help: Callable[..., Any]) -> None:
    """Adds `sluice webhooks ls` to the command's subparsers `sub`."""
    webhooks = sub.add_parser("webhooks", help="webhook deliveries pending or failed")
    webhooks_sub = webhooks.add_subparsers(dest="webhooks_command")
    webhooks.set_defaults(func=show_help(webhooks))
    ls = webhooks_sub.add_parser("ls", help="deliveries queued, retrying, running or failed")
    ls.add_argument("--app", help="only this app's deliveries")
    ls.add_argument("--json", action="store_true", help="JSON instead of a table")
    ls.set_defaults(func=lambda args: _ls(args, run_admin))


def _camel_keys(value: Any) -> Any:
    """The report as the CLI's other JSON: the API's camelCase names."""
    from sluice.state.view import camel

    if isinstance(value, dict):
        return {camel(str(k)): _camel_keys(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_camel_keys(v) for v in value]
    return value
