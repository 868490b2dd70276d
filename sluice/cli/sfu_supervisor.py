"""`sluice sfu` with several nodes: one process per node, each restarted if it dies.

An SFU node is one Python process (one core at most: the GIL), so a machine runs one
per core. Node *i* listens on `SLUICE_SFU_PORT` + *i* and registers itself in Redis
(`sfu.node`); nothing else ties the nodes together, so they run as plain child processes
of this supervisor: SIGTERM or SIGINT stops them all (each closes its sessions and leaves
the directory), a node that dies is started again after a pause that grows while it
keeps dying, and every node dies with the supervisor (`PR_SET_PDEATHSIG`).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass

from sluice.config import Settings
from worker.lineage import die_with_parent

STOP_TIMEOUT_S = 15.0
RESTART_DELAY_S = 1.0
MAX_RESTART_DELAY_S = 30.0
STABLE_AFTER_S = 30.0  # a node up this long resets its restart delay


def node_count(settings: Settings, requested: int | None) -> int:
    """How many nodes to run: the flag, else `SLUICE_SFU_NODES`; 0 is one per core
    outside development mode (whose single machine-wide demo keeps one)."""
    count = requested if requested is not None else settings.sfu_nodes
    if count > 0:
        return count
    return 1 if settings.dev else max(1, os.cpu_count() or 1)


def node_ports(first: int, count: int, avoid: Sequence[int] = ()) -> list[int]:
    """Consecutive ports from `first`, stepping over `avoid` (this machine's other ports)."""
    ports: list[int] = []
    port = first
    while len(ports) < count:
        if port not in avoid:
            ports.append(port)
        port += 1
    return ports


@dataclass
class _Child:
    port: int
    proc: subprocess.Popen[bytes]
    started_at: float
    delay_s: float = RESTART_DELAY_S
    restart_at: float | None = None  # it exited: started again at this time


def supervise(host: str, ports: Sequence[int]) -> int:
    """Runs one node per port until SIGTERM/SIGINT; returns the exit status."""
    stopping = threading.Event()

    def stop(signum: int, _: object) -> None:
        stopping.set()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    children = [_start(host, port) for port in ports]
    _say(f"{len(children)} SFU nodes on {host}, ports {', '.join(map(str, ports))}")
    while not stopping.wait(0.5):
        now = time.monotonic()
        for child in children:
            if child.proc.poll() is None:
                continue
            if child.restart_at is None:
                if now - child.started_at >= STABLE_AFTER_S:
                    child.delay_s = RESTART_DELAY_S
                child.restart_at = now + child.delay_s
                _say(
                    f"node on port {child.port} exited with {child.proc.returncode}; "
                    f"restarting in {child.delay_s:g} s"
                )
            elif now >= child.restart_at:
                child.proc = _spawn(host, child.port)
                child.started_at, child.restart_at = now, None
                child.delay_s = min(child.delay_s * 2, MAX_RESTART_DELAY_S)
    for child in children:
        if child.proc.poll() is None:
            child.proc.send_signal(signal.SIGTERM)
    deadline = time.monotonic() + STOP_TIMEOUT_S
    for child in children:
        try:
            child.proc.wait(timeout=max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            child.proc.kill()
            child.proc.wait()
    return 0


def _start(host: str, port: int) -> _Child:
    return _Child(port, _spawn(host, port), time.monotonic())


def _spawn(host: str, port: int) -> subprocess.Popen[bytes]:
    command = [sys.executable, "-m", "sluice.cli", "sfu", "--nodes", "1"]
    return subprocess.Popen(
        [*command, "--host", host, "--port", str(port)],
        preexec_fn=lambda: die_with_parent(signal.SIGTERM),
    )


def _say(message: str) -> None:
    print(f"sluice sfu: {message}", file=sys.stderr, flush=True)
