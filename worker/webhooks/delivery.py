"""One lifecycle event POSTed to its app's webhook: an RQ job, retried by RQ (E7).

A delivery succeeds on a 2xx answer within 5 s. Anything else (another status, a
redirect, which is never followed, no answer, an address the endpoint policy refuses)
raises, and RQ's `Retry` schedules the next attempt 1, 2, 4, ... s later, up to
`SLUICE_WEBHOOK_ATTEMPTS` in all; then the job stays in the queue's failed registry,
where `sluice webhooks ls` shows it and `rq requeue` can send it again.

RQ's scheduler stores due times in whole seconds, so a retry could come up to a second
early; each attempt records when the next may start and an early one waits that out.
"""

from __future__ import annotations

import asyncio
import functools
import time
from typing import Any

import httpx
import structlog
from rq import Queue, Retry, get_current_job
from rq.job import Job

from sluice.config import Settings, get_settings
from sluice.signing import Headers, signed_webhook_headers
from sluice.state import keys
from sluice.state.outbox import DeliveryOutcome, LifecycleEvent, metric_field
from sluice.state.records import redact_endpoint
from worker.dial import DialError, checked_address, tls_context

log = structlog.get_logger("sluice.webhooks")

ANSWER_TIMEOUT_S = 5.0  # resolve, connect, send and read the status line, in all
JOB_TIMEOUT_S = 30  # RQ's hard stop for one attempt (the answer timeout plus a backoff wait)
FAILED_KEPT_S = 7 * 86_400  # deliveries that used every attempt stay visible this long


class DeliveryFailed(Exception):
    """One attempt failed; RQ retries the job (the message never holds a secret)."""


def backoff_s(attempts: int) -> list[int]:
    """Waits between `attempts` tries: 1, 2, 4, ... s."""
    return [2**n for n in range(attempts - 1)]


def job_id(event_id: str) -> str:
    return f"webhook-{event_id}"


def enqueue_delivery(queue: Queue, event: LifecycleEvent, attempts: int) -> None:
    """Queues the delivery of `event`; enqueued again, the same event keeps its job id."""
    queue.enqueue(
        deliver,
        event.app_id,
        event.event_id,
        event.body().decode(),
        job_id=job_id(event.event_id),
        retry=Retry(max=attempts - 1, interval=backoff_s(attempts)),
        job_timeout=JOB_TIMEOUT_S,
        result_ttl=0,
        failure_ttl=FAILED_KEPT_S,
        description=f"webhook {event.type.value} #{event.sequence} of adapter "
        f"{event.record.adapter_id}",
        meta={
            "type": event.type.value,
            "adapterId": event.record.adapter_id,
            "appId": event.app_id,
            "sequence": event.sequence,
            "createdAtMs": event.at_ms,
            "attempts": 0,
        },
    )


def deliver(app_id: str, event_id: str, body: str) -> None:
    """RQ entry point: one attempt to deliver one event.

    Raises:
        DeliveryFailed: no 2xx answer in time (RQ schedules the next attempt).
    """
    job = get_current_job()
    assert job is not None, "deliver runs as an RQ job"
    settings = get_settings()
    _wait_for_backoff(job)
    url = settings.app_webhooks.get(app_id)
    bound = log.bind(event_id=event_id, app=app_id, adapter_id=job.meta.get("adapterId"))
    if url is None:  # the app's webhook was removed from the configuration meanwhile
        bound.warning("webhook_dropped", reason="no SLUICE_WEBHOOKS entry for the app")
        return
    payload = body.encode()
    secret = settings.app_signing_secrets.get(app_id)
    headers = signed_webhook_headers(secret, payload, time.time()) if secret else []
    attempt = int(job.meta.get("attempts", 0)) + 1
    try:
        status = _runner().run(post(url, payload, headers, settings))
        error = None if 200 <= status < 300 else f"answered HTTP {status}"
    except DeliveryFailed as exc:
        error = str(exc)
    _record(job, attempt, error, bound)
    if error is not None:
        raise DeliveryFailed(f"{redact_endpoint(url)} {error}")


async def post(url: str, body: bytes, signed: Headers, settings: Settings) -> int:
    """POSTs `body` to the checked address of `url`'s host; returns the answer's status.

    The endpoint policy judges every address the host resolves to, at each attempt, and
    the request goes to the address judged (no DNS rebinding), with the URL's host name
    in `Host` and, for https, in SNI and certificate verification. Environment proxies
    are ignored: they would reach addresses the policy never saw.

    Raises:
        DeliveryFailed: no answer within ANSWER_TIMEOUT_S, a refused address, an error.
    """
    target = httpx.URL(url)
    headers = {
        "Host": target.netloc.decode("ascii"),
        "Content-Type": "application/json",
        "User-Agent": "Sluice",
        **dict(signed),
    }
    try:
        async with asyncio.timeout(ANSWER_TIMEOUT_S):
            port = target.port or (443 if target.scheme == "https" else 80)
            address = await checked_address(target.host, port, settings.endpoint_policy)
            extensions: dict[str, Any] = {}
            verify: Any = False
            if target.scheme == "https":
                extensions["sni_hostname"] = target.host
                verify = tls_context(settings.endpoint_ca_bundle)
            async with (
                httpx.AsyncClient(verify=verify, trust_env=False, follow_redirects=False) as client,
                client.stream(
                    "POST",
                    target.copy_with(host=address),
                    content=body,
                    headers=headers,
                    extensions=extensions,
                ) as answer,
            ):
                return answer.status_code  # the body is not read: only the status counts
    except TimeoutError:
        raise DeliveryFailed(f"did not answer within {ANSWER_TIMEOUT_S:.0f} s") from None
    except DialError as exc:
        raise DeliveryFailed(exc.description) from None
    except (httpx.HTTPError, OSError) as exc:
        raise DeliveryFailed(f"could not be reached: {type(exc).__name__}") from None


@functools.cache
def _runner() -> asyncio.Runner:
    """One event loop per delivery process, kept from one attempt to the next: a new
    loop (and resolver thread) per attempt cost about as much as the POST itself."""
    return asyncio.Runner()


def _wait_for_backoff(job: Job) -> None:
    """Holds an attempt RQ's whole-second scheduler started before its backoff was over."""
    early_s = float(job.meta.get("notBefore", 0)) - time.time()
    if early_s > 0:
        time.sleep(min(early_s, 2.0))


def _record(job: Job, attempt: int, error: str | None, bound: Any) -> None:
    """Saves the attempt's outcome in the job's meta and the cluster's counters, and logs
    it. RQ decides about the retry itself; this only mirrors its decision."""
    retries_left = job.retries_left or 0
    job.meta["attempts"] = attempt
    if error is None:
        outcome = DeliveryOutcome.DELIVERED
        lag_ms = round(time.time() * 1000) - int(job.meta.get("createdAtMs", 0))
        bound.info("webhook_delivered", attempt=attempt, after_ms=lag_ms)
    elif retries_left > 0:
        outcome = DeliveryOutcome.RETRIED
        intervals = job.retry_intervals or [0]
        wait_s = intervals[max(len(intervals) - retries_left, 0)]
        job.meta["notBefore"] = time.time() + wait_s
        job.meta["lastError"] = error
        bound.warning("webhook_attempt_failed", attempt=attempt, error=error, retry_in_s=wait_s)
    else:
        outcome = DeliveryOutcome.FAILED
        job.meta["lastError"] = error
        bound.error("webhook_failed", attempts=attempt, error=error)
    job.save_meta()  # type: ignore[no-untyped-call]
    job.connection.hincrby(keys.METRICS, metric_field(outcome), 1)
