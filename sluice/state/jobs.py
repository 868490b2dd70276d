"""The RQ job that runs one adapter, as every producer enqueues it."""

from __future__ import annotations

from rq import Queue

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
