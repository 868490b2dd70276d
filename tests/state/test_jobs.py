"""The adapter's RQ job, against a real Redis and RQ's own worker bookkeeping."""

from __future__ import annotations

import redis as sync_redis
from rq import Queue, Worker
from rq.job import Job

from sluice.config import Settings
from sluice.state.jobs import drop_queued_job, enqueue_adapter
from worker.pool import adapter_worker


def test_a_withdrawn_create_deletes_its_job_only_while_no_worker_has_it(clean_redis: str) -> None:
    """A create withdrawn for want of capacity races the worker that dequeues its job.
    Deleting the job under that worker deleted its RQ execution; the worker's next beat
    wrote it back half, and `sluice workers` and `rq info` failed on it (KeyError)."""
    settings = Settings(apps="a:b", redis_url=clean_redis)
    conn = sync_redis.Redis.from_url(clean_redis)
    queue = Queue(settings.queue_name, connection=conn)
    enqueue_adapter(queue, "taken")
    enqueue_adapter(queue, "waiting")
    worker = adapter_worker("w1", settings)
    worker.register_birth()
    dequeued = worker.dequeue_job_and_maintain_ttl(timeout=1)
    assert dequeued is not None and dequeued[0].id == "taken"
    execution = worker.prepare_execution(dequeued[0])

    assert not drop_queued_job(queue, "taken")  # a worker has it: left to end as usual
    assert drop_queued_job(queue, "waiting")

    assert queue.count == 0 and not Job.exists("waiting", connection=conn)
    assert conn.hget(execution.key, "created_at") is not None
    (listed,) = Worker.all(queue=queue)
    assert listed.get_current_job_id() == "taken"
