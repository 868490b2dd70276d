"""The RQ job that runs one adapter, as every producer enqueues it."""

from __future__ import annotations

import contextlib

from rq import Queue
from rq.exceptions import NoSuchJobError
from rq.job import Job

# By name, so the API enqueues without importing the media stack.
JOB_FUNCTION = "worker.jobs.run_adapter"


def enqueue_adapter(queue: Queue, adapter_id: str, *, resumed: bool = False) -> None:
    """Queues the job that runs `adapter_id` for its whole life.

    Args:
        resumed: another worker takes over an adapter whose process was lost: it goes
            ahead of new creates (an endpoint is waiting for its stream to return), under
            a job id of its own (the first job's id is the adapter's).
    """
    queue.enqueue(
        JOB_FUNCTION,
        adapter_id,
        job_id=None if resumed else adapter_id,
        job_timeout=-1,  # an adapter runs as long as its stream does
        result_ttl=0,
        failure_ttl=3600,
        description=f"adapter {adapter_id}" + (" (resumed)" if resumed else ""),
        at_front=resumed,
    )


def drop_queued_job(queue: Queue, job_id: str) -> bool:
    """Deletes a job that no worker has taken yet; returns whether it was still queued.

    A job a worker took already is left alone: its adapter's claim fails at once, and the
    job ends as usual. Deleting it under the worker deleted its RQ execution too, which
    the worker's next heartbeat wrote back without `created_at`, and every reader of
    the worker's state (`sluice workers`, `rq info`) failed on it until the job ended.
    """
    if not queue.connection.lrem(queue.key, 0, job_id):
        return False  # taken (or gone): the worker's claim of the record decides
    with contextlib.suppress(NoSuchJobError):
        Job.fetch(job_id, connection=queue.connection).delete(remove_from_queue=False)
    return True
