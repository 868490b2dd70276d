"""Processes standing in for machines: started in a session of their own, killed whole.

A "host" is one command (an API replica, a worker supervisor, an SFU node, Redis, the
proxy) and every process it forks. Killing a host kills the whole tree at once, as a
machine losing power would: every process is stopped first (SIGSTOP, repeated until
no new child appears), then all are SIGKILLed, so none of them sees another die and
reacts (a worker draining its adapters when its supervisor vanishes, say).

The chaos runner makes itself a child subreaper (`adopt_orphans`), so the processes of
a killed host are reparented to it rather than to init, and reaped here: what is left
of a host after its kill can then be counted, and nothing leaks past the run.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import signal
import subprocess
import time
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path

_PR_SET_CHILD_SUBREAPER = 36
REPO = Path(__file__).resolve().parents[2]


def adopt_orphans() -> None:
    """Makes this process the parent of its descendants' orphans (Linux only)."""
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(_PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) != 0:
        raise OSError(ctypes.get_errno(), "prctl(PR_SET_CHILD_SUBREAPER) failed")


def children_by_parent() -> dict[int, list[int]]:
    """Every process's children, read from /proc."""
    children: dict[int, list[int]] = defaultdict(list)
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
        except OSError:
            continue  # exited meanwhile
        # The command may hold spaces and parentheses: the fields follow the last ')'.
        fields = stat.rsplit(")", 1)[1].split()
        if fields[0] != "Z":
            children[int(fields[1])].append(int(entry))
    return children


def descendants(root: int) -> set[int]:
    """`root`'s living descendants (zombies left out), not `root` itself."""
    tree = children_by_parent()
    found: set[int] = set()
    todo = list(tree.get(root, []))
    while todo:
        pid = todo.pop()
        if pid not in found:
            found.add(pid)
            todo.extend(tree.get(pid, []))
    return found


def living(pids: set[int]) -> set[int]:
    """Those of `pids` that still run (neither gone nor a zombie)."""
    alive = set()
    for pid in pids:
        try:
            state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        except OSError:
            continue
        if state != "Z":
            alive.add(pid)
    return alive


def _signal(pid: int, sig: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, sig)


def kill_tree(root: int) -> set[int]:
    """Stops `root` and all its descendants, then SIGKILLs them together.

    Returns:
        Every process killed, `root` included.
    """
    stopped: set[int] = set()
    while True:
        tree = {root} | descendants(root)
        fresh = tree - stopped
        if not fresh:
            break
        for pid in fresh:
            _signal(pid, signal.SIGSTOP)
        stopped |= fresh
    for pid in stopped:
        _signal(pid, signal.SIGKILL)
    return stopped


def reap_orphans(keep: set[int]) -> int:
    """Reaps exited processes adopted by this one (not `keep`: `Popen` reaps those).

    Returns:
        How many were reaped.
    """
    reaped = 0
    while True:
        try:
            info = os.waitid(os.P_ALL, 0, os.WEXITED | os.WNOHANG | os.WNOWAIT)
        except ChildProcessError:
            return reaped
        if info is None or info.si_pid in keep:
            return reaped
        with contextlib.suppress(ChildProcessError):
            os.waitpid(info.si_pid, 0)
            reaped += 1


@dataclass
class Host:
    """One command run as a host of the deployment.

    Attributes:
        name: what the runner calls it (`api-1`, `worker-b`, ...).
        argv: the command.
        env: its environment.
        log: its stderr (appended across restarts).
        url: where its `/healthz` answers, if it has one.
    """

    name: str
    argv: list[str]
    env: dict[str, str]
    log: Path
    url: str = ""
    proc: subprocess.Popen[bytes] | None = field(default=None, init=False)
    killed: set[int] = field(default_factory=set, init=False)

    def start(self) -> None:
        with self.log.open("ab") as log:
            self.proc = subprocess.Popen(
                self.argv,
                env=self.env,
                stdout=subprocess.DEVNULL,
                stderr=log,
                start_new_session=True,  # its own process group and session, like a machine
                cwd=REPO,
            )

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def processes(self) -> set[int]:
        """The host's living processes: the command and all it forked."""
        return {self.pid} | descendants(self.pid) if self.alive() else set()

    def kill(self) -> int:
        """SIGKILLs the whole host at once; returns how many processes died."""
        assert self.proc is not None
        self.killed = kill_tree(self.proc.pid)
        self.proc.wait()
        return len(self.killed)

    def stop(self, timeout_s: float = 20.0) -> None:
        """SIGTERM (a clean shutdown), then SIGKILL of whatever is left of the host."""
        if not self.alive():
            return
        assert self.proc is not None
        tree = self.processes()
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            self.kill()
        deadline = time.monotonic() + 5
        while (left := living(tree)) and time.monotonic() < deadline:
            time.sleep(0.1)  # pipelines of a drained pool exit after it
        for pid in left:
            _signal(pid, signal.SIGKILL)

    def tail(self, chars: int = 3000) -> str:
        text = self.log.read_text(errors="replace") if self.log.exists() else ""
        return text[-chars:]
