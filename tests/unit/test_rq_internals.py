"""Pins the RQ internals `worker.pool` builds on.

An rq upgrade fails here first. `AdapterWorker` and `AdapterWorkerPool` override methods
RQ does not document (`heartbeat`, `handle_warm_shutdown_request`,
`setup_work_horse_signals`, `start_worker`, `get_worker_process`, `check_workers`,
`reap_workers`, `request_stop`) and read its attributes; a renamed parameter or a loop
that stops calling one of them would not raise, the override would just go unused.

No redis-server and no processes: fakeredis stands in for Redis, objects with
`start()`/`pid` for the pool's forked workers.
"""

from __future__ import annotations

import ast
import inspect
import itertools
import os
import signal
import textwrap
from collections.abc import Callable, Iterator
from typing import Any

import fakeredis
import pytest
import rq.suspension
import rq.worker.base
import rq.worker.worker_classes
from rq import Queue, Worker, worker_registration
from rq.exceptions import StopRequested
from rq.executions import Execution
from rq.worker_pool import WorkerPool

import worker.pool
from sluice.config import Settings
from worker.pool import WORKER_HEARTBEAT_S, AdapterWorker, AdapterWorkerPool, adapter_worker

pytestmark = pytest.mark.timeout(30)

QUEUE = "sluice-test"
EMPTY = inspect.Parameter.empty
ANY = object()  # a default we never rely on


@pytest.fixture(autouse=True)
def restore_signals() -> Iterator[None]:
    """RQ's loops install SIGINT/SIGTERM handlers in this process: put pytest's back."""
    saved = {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM)}
    yield
    for sig, handler in saved.items():
        signal.signal(sig, handler)


@pytest.fixture
def fake() -> fakeredis.FakeRedis:
    return fakeredis.FakeRedis(server=fakeredis.FakeServer())


def make_worker(
    connection: fakeredis.FakeRedis, cls: type[Worker] = AdapterWorker, name: str = "w1"
) -> Any:
    return cls([Queue(QUEUE, connection=connection)], name=name, connection=connection)


# --- signatures -------------------------------------------------------------------------

# rq callable → its parameters as worker/pool.py overrides or calls them: (name, default),
# ANY where we never depend on the default. Order matters: rq calls some positionally.
SIGNATURES: dict[str, tuple[Callable[..., Any], list[tuple[str, object]], str]] = {
    "Worker.heartbeat": (
        Worker.heartbeat,
        [("self", EMPTY), ("timeout", None), ("pipeline", None)],
        "AdapterWorker.heartbeat(timeout, pipeline) overrides it and calls super() positionally",
    ),
    "Worker.handle_warm_shutdown_request": (
        Worker.handle_warm_shutdown_request,
        [("self", EMPTY)],
        "AdapterWorker.handle_warm_shutdown_request overrides it",
    ),
    "Worker.setup_work_horse_signals": (
        Worker.setup_work_horse_signals,
        [("self", EMPTY)],
        "AdapterWorker.setup_work_horse_signals overrides it",
    ),
    "Worker.kill_horse": (
        Worker.kill_horse,
        [("self", EMPTY), ("sig", ANY)],
        "AdapterWorker.handle_warm_shutdown_request calls kill_horse(sig=SIGTERM)",
    ),
    "WorkerPool.start": (
        WorkerPool.start,
        [("self", EMPTY), ("burst", False), ("logging_level", "INFO")],
        "AdapterWorkerPool.start overrides it and calls super().start(burst=, logging_level=)",
    ),
    "WorkerPool.start_worker": (
        WorkerPool.start_worker,
        [
            ("self", EMPTY),
            ("count", None),
            ("burst", True),
            ("_sleep", 0),
            ("logging_level", "INFO"),
        ],
        "AdapterWorkerPool.start_worker overrides it and calls super() with these keywords",
    ),
    "WorkerPool.get_worker_process": (
        WorkerPool.get_worker_process,
        [
            ("self", EMPTY),
            ("name", EMPTY),
            ("burst", EMPTY),
            ("_sleep", 0),
            ("logging_level", "INFO"),
        ],
        "AdapterWorkerPool.get_worker_process overrides it to fork our own worker entry point",
    ),
    "WorkerPool.check_workers": (
        WorkerPool.check_workers,
        [("self", EMPTY), ("respawn", True)],
        "AdapterWorkerPool.check_workers overrides it and calls super(respawn=)",
    ),
    "WorkerPool.reap_workers": (
        WorkerPool.reap_workers,
        [("self", EMPTY)],
        "AdapterWorkerPool.reap_workers overrides it",
    ),
    "WorkerPool.handle_dead_worker": (
        WorkerPool.handle_dead_worker,
        [("self", EMPTY), ("worker_data", EMPTY)],
        "AdapterWorkerPool.reap_workers hands each dead worker's data to it",
    ),
    "WorkerPool.request_stop": (
        WorkerPool.request_stop,
        [("self", EMPTY), ("signum", None), ("frame", None)],
        "AdapterWorkerPool.request_stop overrides it and calls super(signum, frame)",
    ),
    "Worker.dequeue_job_and_maintain_ttl": (
        Worker.dequeue_job_and_maintain_ttl,
        [("self", EMPTY), ("timeout", EMPTY), ("max_idle_time", None)],
        "AdapterWorker.dequeue_job_and_maintain_ttl forks the standby, then calls super()",
    ),
    "Worker.fork_work_horse": (
        Worker.fork_work_horse,
        [("self", EMPTY), ("job", EMPTY), ("queue", EMPTY)],
        "AdapterWorker.fork_work_horse hands the job to the standby, else calls super()",
    ),
    "Worker.main_work_horse": (
        Worker.main_work_horse,
        [("self", EMPTY), ("job", EMPTY), ("queue", EMPTY)],
        "AdapterWorker._take_over runs it in the standby, as RQ's forked horse does",
    ),
    "Worker.teardown": (
        Worker.teardown,
        [("self", EMPTY)],
        "AdapterWorker.teardown discards the standby and calls super()",
    ),
    "Execution.__init__": (
        Execution.__init__,
        [
            ("self", EMPTY),
            ("id", EMPTY),
            ("job_id", EMPTY),
            ("connection", EMPTY),
            ("worker_name", ANY),
        ],
        "AdapterWorker._take_over rebuilds the execution the worker registered",
    ),
    "worker_registration.register": (
        worker_registration.register,
        [("worker", EMPTY), ("pipeline", None)],
        "AdapterWorker.heartbeat calls register(self, pipe) to re-register after a flush",
    ),
}


def parameters(function: Callable[..., Any]) -> list[tuple[str, object]]:
    return [(p.name, p.default) for p in inspect.signature(function).parameters.values()]


@pytest.mark.parametrize("name", SIGNATURES)
def test_rq_signature_is_the_one_pool_py_was_built_on(name: str) -> None:
    function, expected, dependant = SIGNATURES[name]
    actual = parameters(function)
    assert [n for n, _ in actual] == [n for n, _ in expected], (
        f"rq's {name} parameters changed: {dependant}"
    )
    for (param, default), (_, wanted) in zip(actual, expected, strict=True):
        if wanted is not ANY:
            assert default == wanted, f"rq's {name}({param}=) default changed: {dependant}"


OVERRIDES = [
    (Worker.heartbeat, AdapterWorker.heartbeat),
    (Worker.dequeue_job_and_maintain_ttl, AdapterWorker.dequeue_job_and_maintain_ttl),
    (Worker.fork_work_horse, AdapterWorker.fork_work_horse),
    (Worker.teardown, AdapterWorker.teardown),
    (Worker.handle_warm_shutdown_request, AdapterWorker.handle_warm_shutdown_request),
    (Worker.setup_work_horse_signals, AdapterWorker.setup_work_horse_signals),
    (WorkerPool.start, AdapterWorkerPool.start),
    (WorkerPool.start_worker, AdapterWorkerPool.start_worker),
    (WorkerPool.get_worker_process, AdapterWorkerPool.get_worker_process),
    (WorkerPool.check_workers, AdapterWorkerPool.check_workers),
    (WorkerPool.reap_workers, AdapterWorkerPool.reap_workers),
    (WorkerPool.request_stop, AdapterWorkerPool.request_stop),
]


@pytest.mark.parametrize(
    ("theirs", "ours"), OVERRIDES, ids=[ours.__qualname__ for _, ours in OVERRIDES]
)
def test_overrides_in_pool_py_match_rq(
    theirs: Callable[..., Any], ours: Callable[..., Any]
) -> None:
    assert parameters(ours) == parameters(theirs), (
        f"worker/pool.py's {ours.__qualname__} no longer takes what rq's "
        f"{theirs.__qualname__} is called with"
    )


@pytest.mark.parametrize(
    ("function", "keywords", "caller"),
    [
        (
            Worker.__init__,
            ["queues", "name", "connection", "worker_ttl", "job_monitoring_interval"],
            "adapter_worker builds AdapterWorker",
        ),
        (Worker.work, ["with_scheduler", "logging_level"], "_run_worker runs worker.work(...)"),
        (
            WorkerPool.__init__,
            ["queues", "connection", "num_workers", "worker_class"],
            "AdapterWorkerPool.__init__ calls super().__init__(...)",
        ),
    ],
    ids=["Worker.__init__", "Worker.work", "WorkerPool.__init__"],
)
def test_keywords_pool_py_passes_exist(
    function: Callable[..., Any], keywords: list[str], caller: str
) -> None:
    accepted = inspect.signature(function).parameters
    for keyword in keywords:
        assert keyword in accepted, f"rq's {function.__qualname__} lost {keyword}=: {caller}"


def test_worker_attributes_pool_py_reads(fake: fakeredis.FakeRedis) -> None:
    worker = make_worker(fake)
    assert isinstance(inspect.getattr_static(Worker, "horse_pid"), property), (
        "AdapterWorker.handle_warm_shutdown_request reads horse_pid"
    )
    assert worker.horse_pid == 0, "handle_warm_shutdown_request: 0 (falsy) means no horse"
    assert worker.birth_date is None, "AdapterWorker.heartbeat: no birth date before birth"
    assert worker.connection is fake, "AdapterWorker.heartbeat uses self.connection"
    assert isinstance(worker.key, str), "AdapterWorker.heartbeat re-writes the hash at self.key"
    assert isinstance(worker.worker_ttl, int), "AdapterWorker.heartbeat expires the key by it"
    worker.register_birth()
    assert worker.birth_date is not None, "AdapterWorker.heartbeat: birth_date set on birth"
    serialized = worker.serialize()
    assert "birth" in serialized, "AdapterWorker.heartbeat re-writes the hash from serialize()"
    assert fake.hexists(worker.key, "birth"), "AdapterWorker.heartbeat tests field `birth`"


def test_worker_state_the_standby_hand_over_uses(fake: fakeredis.FakeRedis) -> None:
    worker = make_worker(fake)
    worker._horse_pid = 4242
    assert worker.horse_pid == 4242, "AdapterWorker.fork_work_horse sets _horse_pid"
    assert worker.execution is None, "fork_work_horse: no execution, no hand-over"
    execution = Execution("e1", "j1", connection=fake, worker_name=worker.name)
    worker.executions[execution.id] = execution
    assert worker.execution is execution, "_take_over registers it as prepare_execution does"
    assert [q.name for q in worker.queues] == [QUEUE], "_take_over finds the job's queue"


def test_rq_registers_the_execution_before_it_forks() -> None:
    # AdapterWorker.fork_work_horse hands `self.execution` to the standby.
    source = inspect.getsource(rq.worker.worker_classes.Worker.execute_job)
    assert 0 < source.index("prepare_execution(") < source.index("fork_work_horse(")


# --- the worker: what calls our overrides, and what the rq pieces we call do -----------


def heartbeat_calls_in(module: Any) -> list[ast.Call]:
    """Calls `self.heartbeat(...)` / `worker.heartbeat(...)` in a module's source."""
    tree = ast.parse(textwrap.dedent(inspect.getsource(module)))
    return [
        node
        for node in ast.walk(tree)
        if isinstance(node, ast.Call)
        and isinstance(node.func, ast.Attribute)
        and node.func.attr == "heartbeat"
        and isinstance(node.func.value, ast.Name)
        and node.func.value.id in ("self", "worker")
    ]


def test_every_worker_heartbeat_rq_makes_fits_our_override() -> None:
    signature = inspect.signature(AdapterWorker.heartbeat)
    calls = [
        call
        for module in (rq.worker.base, rq.worker.worker_classes, rq.suspension)
        for call in heartbeat_calls_in(module)
    ]
    assert len(calls) >= 5, "rq's worker no longer heartbeats where it did: re-read AdapterWorker"
    for call in calls:
        args = [None] * len(call.args)
        kwargs = {k.arg: None for k in call.keywords if k.arg is not None}
        try:
            signature.bind(None, *args, **kwargs)
        except TypeError as exc:
            raise AssertionError(
                f"rq calls heartbeat({ast.unparse(call)}) (line {call.lineno}), which "
                f"AdapterWorker.heartbeat(timeout, pipeline) cannot take: {exc}"
            ) from exc


def test_work_loop_heartbeats_through_our_override_without_a_pipeline(
    fake: fakeredis.FakeRedis,
) -> None:
    calls: list[tuple[tuple[Any, ...], dict[str, Any]]] = []

    class Recording(AdapterWorker):
        def heartbeat(self, *args: Any, **kwargs: Any) -> None:
            calls.append((args, kwargs))
            super().heartbeat(*args, **kwargs)

    worker = make_worker(fake, Recording)
    worker.work(burst=True, with_scheduler=False, logging_level="WARNING")
    signature = inspect.signature(AdapterWorker.heartbeat)
    bound = [signature.bind(worker, *args, **kwargs) for args, kwargs in calls]
    assert any(b.arguments.get("pipeline") is None for b in bound), (
        "rq's work loop no longer calls heartbeat() without a pipeline: AdapterWorker.heartbeat "
        "re-registers a worker Redis forgot only on those calls"
    )


def test_pool_workers_beat_every_few_seconds_idle_or_busy(
    fake: fakeredis.FakeRedis, monkeypatch: pytest.MonkeyPatch
) -> None:
    """rq's idle worker beats once per wait for a job, and waits `worker_ttl - 15` s."""
    waits: list[int | None] = []

    def dequeue(self: AdapterWorker, timeout: int | None, max_idle_time: Any = None) -> None:
        waits.append(timeout)
        raise StopRequested

    monkeypatch.setattr(AdapterWorker, "dequeue_job_and_maintain_ttl", dequeue)
    monkeypatch.setattr(worker.pool, "sync_client", lambda settings: fake)
    pool_worker = adapter_worker("w1", Settings(apps="app1:secret1"))
    pool_worker.work(with_scheduler=False, logging_level="WARNING")
    assert waits == [WORKER_HEARTBEAT_S], "an idle worker's beats are further apart"
    assert pool_worker.job_monitoring_interval == WORKER_HEARTBEAT_S, "a busy worker's too"


def test_heartbeat_re_registers_a_worker_redis_forgot(fake: fakeredis.FakeRedis) -> None:
    worker = make_worker(fake)
    worker.register_birth()
    queue = Queue(QUEUE, connection=fake)
    fake.flushall()  # Redis restarted empty
    worker.heartbeat()
    assert [w.name for w in Worker.all(queue=queue)] == [worker.name], (
        "AdapterWorker.heartbeat's hset(serialize()) + register() must make the worker "
        "visible again to Worker.all(queue=), which /readyz and `sluice workers` read"
    )
    assert 0 < fake.ttl(worker.key) <= worker.worker_ttl + 60, "the re-written hash expires"


def test_a_busy_worker_redis_forgot_registers_again_on_rq_s_job_time_beat(
    fake: fakeredis.FakeRedis,
) -> None:
    # While a job (an adapter) runs, rq beats through `maintain_heartbeats`, with a
    # pipeline; an adapter lives for hours, so a busy worker must come back on those too.
    worker = make_worker(fake)
    worker.register_birth()
    queue = Queue(QUEUE, connection=fake)
    fake.flushall()  # Redis restarted empty
    with fake.pipeline() as pipe:
        worker.heartbeat(90, pipeline=pipe)
        pipe.execute()
    assert [w.name for w in Worker.all(queue=queue)] == [worker.name], (
        "AdapterWorker.heartbeat must re-register on a beat that comes with a pipeline"
    )


def test_register_adds_the_key_to_the_registry_sets_through_the_pipeline(
    fake: fakeredis.FakeRedis,
) -> None:
    worker = make_worker(fake)
    queue = Queue(QUEUE, connection=fake)
    with fake.pipeline() as pipe:
        worker_registration.register(worker, pipe)
        assert not worker_registration.get_keys(connection=fake), (
            "register(worker, pipeline) must queue on the pipeline: AdapterWorker.heartbeat "
            "writes the hash and the registration in one transaction"
        )
        pipe.execute()
    assert worker.key in worker_registration.get_keys(connection=fake), (
        "register() must add the worker key to rq:workers (AdapterWorker.heartbeat)"
    )
    assert worker.key in worker_registration.get_keys(queue=queue), (
        "register() must add the worker key to the queue's worker set (AdapterWorker.heartbeat)"
    )


def test_warm_shutdown_goes_through_handle_warm_shutdown_request(
    fake: fakeredis.FakeRedis,
) -> None:
    asked: list[bool] = []

    class Recording(AdapterWorker):
        def handle_warm_shutdown_request(self) -> None:
            asked.append(True)

    worker = make_worker(fake, Recording)
    with pytest.raises(StopRequested):  # idle: it stops at once
        worker.request_stop(signal.SIGINT, None)
    assert asked == [True], (
        "rq's Worker.request_stop no longer calls handle_warm_shutdown_request: "
        "AdapterWorker's override is how a drain tells the running pipeline to close"
    )


def test_kill_horse_signals_the_horse_process_group(
    fake: fakeredis.FakeRedis, monkeypatch: pytest.MonkeyPatch
) -> None:
    sent: list[tuple[int, int]] = []
    monkeypatch.setattr(os, "getpgid", lambda pid: pid + 1)
    monkeypatch.setattr(os, "killpg", lambda pgid, sig: sent.append((pgid, sig)))
    monkeypatch.setattr(AdapterWorker, "horse_pid", 4242)
    make_worker(fake).handle_warm_shutdown_request()
    assert sent == [(4243, signal.SIGTERM)], (
        "Worker.kill_horse(sig=) must send that signal to the horse's process group: "
        "AdapterWorker.handle_warm_shutdown_request SIGTERMs the pipeline this way"
    )


def test_the_horse_is_its_own_process_group() -> None:
    source = inspect.getsource(Worker.fork_work_horse)
    assert "os.setpgrp()" in source and "self.main_work_horse(" in source, (
        "rq's horse must call setpgrp() before main_work_horse: kill_horse signals the horse's "
        "group, which would otherwise be the worker's own (_run_worker calls os.setpgrp())"
    )


def test_the_horse_sets_its_signals_through_our_hook_before_the_job(
    fake: fakeredis.FakeRedis, monkeypatch: pytest.MonkeyPatch
) -> None:
    order: list[str] = []

    class Exited(Exception):
        pass

    class Recording(AdapterWorker):
        def setup_work_horse_signals(self) -> None:
            order.append("signals")

        def perform_job(self, job: Any, queue: Any, execution: Any = None) -> bool:
            order.append("job")
            return True

    def exit_(code: int) -> None:
        raise Exited(code)

    monkeypatch.setattr(os, "_exit", exit_)
    with pytest.raises(Exited):
        make_worker(fake, Recording).main_work_horse(None, None)
    assert order == ["signals", "job"], (
        "rq's horse no longer calls setup_work_horse_signals() before the job: "
        "AdapterWorker's override keeps Ctrl+C away from pipelines and SIGTERM to the runner"
    )


# --- the pool ---------------------------------------------------------------------------

_pids = itertools.count(10**9)  # above any pid_max: never a real process


class FakeProcess:
    """What `WorkerPool` uses of the process `get_worker_process` returns."""

    def __init__(self) -> None:
        self.pid: int | None = None
        self.alive = False

    def start(self) -> None:
        self.pid = next(_pids)
        self.alive = True

    def join(self, timeout: float | None = None) -> None:
        pass

    def is_alive(self) -> bool:
        return self.alive


def bind_to_ours(
    method: Callable[..., Any], args: tuple[Any, ...], kwargs: dict[str, Any]
) -> inspect.BoundArguments:
    """The arguments rq passed, bound to worker/pool.py's override of that method."""
    try:
        return inspect.signature(method).bind(None, *args, **kwargs)
    except TypeError as exc:
        raise AssertionError(
            f"rq calls {method.__name__}(*{args}, **{kwargs}), which worker/pool.py's "
            f"{method.__qualname__} cannot take: {exc}"
        ) from exc


class FakePool(WorkerPool):
    """rq's pool with our override points recorded and fake processes for workers."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.events: list[tuple[str, tuple[Any, ...], dict[str, Any]]] = []
        self.processes: dict[str, FakeProcess] = {}

    def get_worker_process(self, *args: Any, **kwargs: Any) -> Any:
        bound = bind_to_ours(AdapterWorkerPool.get_worker_process, args, kwargs)
        self.events.append(("get_worker_process", args, kwargs))
        process = FakeProcess()
        self.processes[bound.arguments["name"]] = process
        return process

    def start_worker(self, *args: Any, **kwargs: Any) -> None:
        bind_to_ours(AdapterWorkerPool.start_worker, args, kwargs)
        self.events.append(("start_worker", args, kwargs))
        super().start_worker(*args, **kwargs)

    def reap_workers(self) -> None:
        self.events.append(("reap_workers", (), {}))
        super().reap_workers()

    def check_workers(self, *args: Any, **kwargs: Any) -> None:
        bind_to_ours(AdapterWorkerPool.check_workers, args, kwargs)
        self.events.append(("check_workers", args, kwargs))
        super().check_workers(*args, **kwargs)

    def names(self, event: str) -> list[str]:
        return [e for e, _, _ in self.events if e == event]


@pytest.fixture
def pool(fake: fakeredis.FakeRedis) -> FakePool:
    return FakePool([QUEUE], connection=fake, num_workers=2, worker_class=AdapterWorker)


def test_start_worker_takes_its_process_from_get_worker_process(pool: FakePool) -> None:
    assert pool.worker_dict == {}, "AdapterWorkerPool reads worker_dict (a dict by name)"
    pool.start_worker(1, burst=False, _sleep=0, logging_level="WARNING")
    ((name, process),) = pool.processes.items()
    assert process.alive, "rq's start_worker must start() the process get_worker_process made"
    assert list(pool.worker_dict) == [name], (
        "start_worker must key worker_dict by the name it gave get_worker_process: "
        "AdapterWorkerPool publishes worker_dict's keys to the health server"
    )
    data = pool.worker_dict[name]
    assert (data.name, data.pid, data.process) == (name, process.pid, process), (
        "worker_dict's values carry the process AdapterWorkerPool.get_worker_process returned"
    )


def test_check_workers_reaps_then_respawns_with_fresh_names(pool: FakePool) -> None:
    pool.start_workers(burst=False)
    first = set(pool.worker_dict)
    assert len(first) == 2, "start_workers spawns num_workers (AdapterWorkerPool's pool size)"
    dead = next(iter(first))
    pool.processes[dead].alive = False
    pool.events.clear()

    pool.check_workers(respawn=True)
    order = [e for e, _, _ in pool.events if e != "check_workers"]
    assert order == ["reap_workers", "start_worker", "get_worker_process"], (
        "rq's check_workers must reap through reap_workers() and respawn through "
        f"start_worker() (AdapterWorkerPool overrides both to publish worker_dict), got {order}"
    )
    assert dead not in pool.worker_dict and len(pool.worker_dict) == 2, (
        "check_workers must drop the dead worker and refill to num_workers"
    )
    assert len(pool.worker_dict.keys() - first) == 1, (
        "a respawned worker must get a new name: AdapterWorkerPool.check_workers counts "
        "respawns as names new to worker_dict"
    )

    pool.processes[next(iter(pool.worker_dict))].alive = False
    pool.events.clear()
    pool.check_workers(respawn=False)
    assert not pool.names("start_worker"), "check_workers(respawn=False) must not respawn"
    assert len(pool.worker_dict) == 1, "respawn=False only reaps"


def test_request_stop_signals_every_worker_and_ends_respawning(
    pool: FakePool, monkeypatch: pytest.MonkeyPatch
) -> None:
    sent: list[tuple[int, int]] = []
    monkeypatch.setattr(os, "kill", lambda pid, sig: sent.append((pid, sig)))
    pool.start_workers(burst=False)
    pool.request_stop(signal.SIGTERM, None)
    assert sorted(sent) == sorted((d.pid, signal.SIGINT) for d in pool.worker_dict.values()), (
        "rq's request_stop must SIGINT each worker: AdapterWorkerPool.request_stop drains "
        "through it, and only the supervisor signals workers (_run_worker's setpgrp)"
    )
    for process in pool.processes.values():
        process.alive = False
    pool.events.clear()
    pool.check_workers(respawn=True)
    assert not pool.names("start_worker"), "a stopping pool must not respawn (a drain)"
    assert pool.worker_dict == {}


def test_start_runs_the_pool_loop_through_our_overrides(
    fake: fakeredis.FakeRedis, monkeypatch: pytest.MonkeyPatch
) -> None:
    class Stopping(FakePool):
        def check_workers(self, *args: Any, **kwargs: Any) -> None:
            super().check_workers(*args, **kwargs)
            self.request_stop(signal.SIGTERM, None)  # as if the supervisor got SIGTERM

    pool = Stopping([QUEUE], connection=fake, num_workers=2, worker_class=AdapterWorker)

    def kill(pid: int, sig: int) -> None:  # a worker exits on its SIGINT
        for data in pool.worker_dict.values():
            if data.pid == pid and sig == signal.SIGINT:
                pool.processes[data.name].alive = False

    monkeypatch.setattr(os, "kill", kill)
    pool.start(burst=False, logging_level="WARNING")  # returns once every worker is gone

    starts = [(a, k) for e, a, k in pool.events if e == "get_worker_process"]
    assert len(starts) == 2, "rq's start() spawns num_workers through start_worker"
    for args, kwargs in starts:
        bound = bind_to_ours(AdapterWorkerPool.get_worker_process, args, kwargs)
        assert (
            bound.arguments.get("burst") is False
            and bound.arguments.get("logging_level") == "WARNING"
        ), "start(burst=, logging_level=) reaches get_worker_process"
    checks = [(a, k) for e, a, k in pool.events if e == "check_workers"]
    assert checks, (
        "rq's start() loop no longer calls check_workers(): AdapterWorkerPool.check_workers "
        "runs the health child check and the reaper from it"
    )
    for args, kwargs in checks:
        bound = bind_to_ours(AdapterWorkerPool.check_workers, args, kwargs)
        assert bound.arguments.get("respawn", True) is True, "burst=False respawns"
    assert pool.names("reap_workers"), "the stopping loop waits through reap_workers()"
    assert pool.worker_dict == {}


class SlowJoin(FakeProcess):
    """A live worker whose join(timeout) takes the whole timeout, as a real process's does."""

    def __init__(self, alive: bool) -> None:
        super().__init__()
        self.pid, self.alive, self.joined = next(_pids), alive, 0.0

    def join(self, timeout: float | None = None) -> None:
        self.joined += timeout or 0.0


def test_reap_workers_drops_the_dead_without_waiting_on_the_living(
    pool: FakePool, monkeypatch: pytest.MonkeyPatch
) -> None:
    """rq's reap_workers joins every live worker for 0.1 s: the supervisor's loop, which
    runs the reaper, then took 1 s + 0.1 s per process a turn (2.6 s with 16)."""
    pool.start_workers(burst=False)
    dead, alive = list(pool.worker_dict)
    processes = {dead: SlowJoin(alive=False), alive: SlowJoin(alive=True)}
    for name, process in processes.items():
        pool.worker_dict[name] = pool.worker_dict[name]._replace(process=process)
    published: list[list[str]] = []
    monkeypatch.setattr(pool, "facts", type("Facts", (), {"set_workers": published.append}), False)

    AdapterWorkerPool.reap_workers(pool)  # type: ignore[arg-type]

    assert list(pool.worker_dict) == [alive], "the dead worker is handed to handle_dead_worker"
    assert processes[alive].joined == 0.0, "no time spent waiting on a live worker"
    assert published, "the health server learns the pool's workers"
