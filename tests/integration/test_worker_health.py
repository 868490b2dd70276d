"""The worker host's health server: real `sluice worker`, real signals, real Redis."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis
from prometheus_client.parser import text_string_to_metric_families
from rq import Queue, Worker

from tests.integration.helpers import Stack, endpoint, ingest_item, start_stack, wait_until

pytestmark = pytest.mark.integration


def probe(stack: Stack, path: str) -> tuple[int, Any]:
    answer = httpx.get(f"{stack.worker_health_url}{path}", timeout=5)
    return answer.status_code, answer.json()


def scrape(stack: Stack) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """`/metrics` parsed: (sample name, sorted labels) → value."""
    text = httpx.get(f"{stack.worker_health_url}/metrics", timeout=5).text
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def idle_processes(stack: Stack) -> float:
    return scrape(stack)[("sluice_worker_processes", (("state", "idle"),))]


def answers(stack: Stack) -> bool:
    try:
        httpx.get(f"{stack.worker_health_url}/healthz", timeout=1)
    except httpx.TransportError:
        return False
    return True


def running(pid: int) -> bool:
    """Alive and not a zombie (a zombie's pid still takes `os.kill(pid, 0)`)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def children(pid: int) -> set[int]:
    """Running processes whose parent is `pid`."""
    found = set()
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except (FileNotFoundError, ProcessLookupError):
            continue
        if int(fields[1]) == pid and fields[0] != "Z":
            found.add(int(entry.name))
    return found


def worker_pids(stack: Stack) -> set[int]:
    """Pids of the pool's processes registered in RQ that still run."""
    conn = redis.Redis.from_url(stack.redis_url)
    queue = Queue(stack.env.get("SLUICE_QUEUE_NAME", "sluice-adapters"), connection=conn)
    return {w.pid for w in Worker.all(queue=queue) if w.pid and running(w.pid)}


def health_pids(stack: Stack) -> set[int]:
    """The supervisor's children that are not RQ workers."""
    return children(stack.worker.pid) - worker_pids(stack)


def health_pid(stack: Stack) -> int:
    (pid,) = health_pids(stack)
    return pid


def ready_with(stack: Stack, idle: int, busy: int) -> bool:
    status, body = probe(stack, "/readyz")
    checks = body["checks"]
    return status == 200 and (checks["idle"], checks["busy"]) == (idle, busy)


@pytest.mark.workers(2)
def test_probes_and_metrics_of_an_idle_pool(stack: Stack) -> None:
    assert probe(stack, "/healthz") == (200, {"status": "ok"})
    wait_until(lambda: ready_with(stack, idle=2, busy=0), 10, "both processes idle")
    status, body = probe(stack, "/readyz")
    assert status == 200
    assert body["status"] == "ready"
    assert body["checks"] == {
        "supervisor": "ok",
        "redis": "ok",
        "workers": "ok",
        "idle": 2,
        "busy": 0,
        "configured": 2,
    }
    samples = scrape(stack)
    assert samples[("sluice_worker_processes", (("state", "idle"),))] == 2
    assert samples[("sluice_worker_processes", (("state", "busy"),))] == 0
    assert samples[("sluice_worker_processes_configured", ())] == 2
    assert samples[("sluice_worker_respawns_total", ())] == 0
    assert samples[("sluice_reaper_lost_total", ())] == 0
    assert samples[("sluice_reaper_withdrawn_total", ())] == 0
    assert ("process_start_time_seconds", ()) in samples  # the supervisor's


@pytest.mark.workers(1)
async def test_a_fully_busy_host_is_still_ready(stack: Stack) -> None:
    async with endpoint() as ep, stack.client() as client:
        resp = await client.post("/adapters/websocket/new", json={"tracks": [ingest_item(ep.url)]})
        assert resp.status_code == 200, resp.text
        await ep.wait_connections(1)
        # Polled from a thread: the endpoint lives on this event loop.
        busy = (lambda: ready_with(stack, idle=0, busy=1), 10, "the one process busy")
        await asyncio.to_thread(wait_until, *busy)
        assert await asyncio.to_thread(idle_processes, stack) == 0


@pytest.mark.workers(2)
def test_killed_worker_is_respawned_and_counted(stack: Stack) -> None:
    wait_until(lambda: ready_with(stack, idle=2, busy=0), 10, "both processes idle")
    victim = min(worker_pids(stack))
    # A pool process (its own process group), never the supervisor or this test runner.
    assert victim in children(stack.worker.pid)
    assert victim not in (os.getpid(), stack.worker.pid)
    os.kill(victim, signal.SIGKILL)

    def respawns() -> float:
        return scrape(stack)[("sluice_worker_respawns_total", ())]

    wait_until(lambda: respawns() == 1, 10, "the respawn to be counted")
    # The killed process's RQ registration outlives it; only live processes count.
    wait_until(lambda: ready_with(stack, idle=2, busy=0), 10, "readiness with 2 idle again")
    assert idle_processes(stack) == 2
    assert respawns() == 1


@pytest.mark.workers(2)
async def test_reaped_pipeline_is_counted(stack: Stack) -> None:
    async with endpoint() as ep, stack.client() as client:
        resp = await client.post("/adapters/websocket/new", json={"tracks": [ingest_item(ep.url)]})
        adapter_id = resp.json()["tracks"][0]["adapterId"]
        pid = stack.pipeline_pid(adapter_id)
        os.kill(pid, signal.SIGKILL)  # the pipeline (a work horse), not its worker process

        def lost() -> float:
            return scrape(stack)[("sluice_reaper_lost_total", ())]

        await asyncio.to_thread(wait_until, lambda: lost() == 1, 10, "the reaper to count it")
        samples = await asyncio.to_thread(scrape, stack)
        assert samples[("sluice_worker_respawns_total", ())] == 0


def standbys(stack: Stack) -> set[int]:
    """The pool's waiting pipeline processes (worker.standby): children of its workers."""
    return {child for worker in worker_pids(stack) for child in children(worker)}


@pytest.mark.workers(1)
async def test_the_adapter_runs_in_the_process_forked_before_its_create(stack: Stack) -> None:
    def one_standby() -> bool:
        return len(standbys(stack)) == 1

    await asyncio.to_thread(wait_until, one_standby, 10, "the idle worker's standby")
    (waiting,) = await asyncio.to_thread(standbys, stack)
    async with endpoint() as ep, stack.client() as client:
        resp = await client.post("/adapters/websocket/new", json={"tracks": [ingest_item(ep.url)]})
        adapter_id = resp.json()["tracks"][0]["adapterId"]
        assert stack.pipeline_pid(adapter_id) == waiting
        await client.post("/adapters/websocket/close", json={"tracks": [{"adapterId": adapter_id}]})

    def next_standby() -> bool:
        found = standbys(stack)
        return len(found) == 1 and waiting not in found

    await asyncio.to_thread(wait_until, next_standby, 10, "the worker's next standby")


@pytest.mark.workers(1)
async def test_a_create_finds_its_way_when_the_standby_was_killed(stack: Stack) -> None:
    # E.g. the OOM killer took the idle process: the worker forks as RQ does.
    await asyncio.to_thread(wait_until, lambda: len(standbys(stack)) == 1, 10, "the standby")
    (waiting,) = await asyncio.to_thread(standbys, stack)
    os.kill(waiting, signal.SIGKILL)
    async with endpoint() as ep, stack.client() as client:
        resp = await client.post("/adapters/websocket/new", json={"tracks": [ingest_item(ep.url)]})
        assert resp.status_code == 200, resp.text
        track = resp.json()["tracks"][0]
        assert "errorCode" not in track, track
        assert stack.pipeline_pid(track["adapterId"]) not in (waiting, 0)
        await client.post(
            "/adapters/websocket/close", json={"tracks": [{"adapterId": track["adapterId"]}]}
        )


@pytest.mark.workers(1, worker_standby=0)
async def test_without_standby_the_worker_forks_when_the_create_comes(stack: Stack) -> None:
    await asyncio.to_thread(wait_until, lambda: ready_with(stack, idle=1, busy=0), 10, "idle")
    assert await asyncio.to_thread(standbys, stack) == set()
    async with endpoint() as ep, stack.client() as client:
        resp = await client.post("/adapters/websocket/new", json={"tracks": [ingest_item(ep.url)]})
        adapter_id = resp.json()["tracks"][0]["adapterId"]
        assert await asyncio.to_thread(standbys, stack) == {stack.pipeline_pid(adapter_id)}
        await client.post("/adapters/websocket/close", json={"tracks": [{"adapterId": adapter_id}]})


@pytest.mark.workers(1)
def test_health_server_dies_with_a_killed_supervisor(stack: Stack) -> None:
    child, pool = health_pid(stack), worker_pids(stack)
    assert answers(stack)
    stack.worker.send_signal(signal.SIGKILL)
    stack.worker.wait(timeout=5)
    wait_until(lambda: not answers(stack), 3, "the health port to stop answering")
    wait_until(lambda: not running(child), 3, "the health process to be gone")
    # Orphaned workers drain and exit on their own (they die with the supervisor too).
    wait_until(lambda: not any(running(pid) for pid in pool), 15, "the orphaned workers")


@pytest.mark.workers(1)
def test_a_killed_health_server_is_restarted(stack: Stack) -> None:
    child = health_pid(stack)
    os.kill(child, signal.SIGKILL)

    def restarted() -> bool:
        pids = health_pids(stack)
        return bool(pids) and child not in pids and answers(stack)

    wait_until(restarted, 10, "a new health server")
    assert probe(stack, "/healthz") == (200, {"status": "ok"})
    assert stack.worker.poll() is None


@pytest.mark.workers(2)
@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_stopped_pool_takes_its_health_server_along(stack: Stack, sig: signal.Signals) -> None:
    child, pool = health_pid(stack), worker_pids(stack)
    stack.worker.send_signal(sig)
    assert stack.worker.wait(timeout=10) == 0
    assert not running(child)
    assert not any(running(pid) for pid in pool)
    assert not answers(stack)


@pytest.mark.parametrize("taken", [True, False], ids=["port-taken", "port-0"])
def test_pool_runs_without_a_health_server(clean_redis: str, tmp_path: Path, taken: bool) -> None:
    with socket.create_server(("127.0.0.1", 0)) as holder:
        port = holder.getsockname()[1] if taken else 0
        stack = start_stack(clean_redis, 1, tmp_path, worker_health_port=port)
        try:
            log = tmp_path / "worker.log"
            if taken:
                wait_until(lambda: "worker_health_bind_failed" in log.read_text(), 10, "the error")
            # Only the pool's process is left under the supervisor, which runs on.
            wait_until(
                lambda: children(stack.worker.pid) == worker_pids(stack), 5, "no health child"
            )
            assert stack.worker.poll() is None
        finally:
            stack.stop()
    assert stack.worker.returncode == 0
