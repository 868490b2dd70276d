"""What the soak reads of its processes from /proc: RSS, PSS, fds, the process tree."""

from __future__ import annotations

import asyncio
import contextlib
import os
from collections import defaultdict
from collections.abc import Awaitable, Callable
from pathlib import Path

# --- /proc --------------------------------------------------------------------------


def proc_stat(pid: int) -> tuple[int, int, str] | None:
    """(ppid, start time in ticks, state) of a process; None once it is gone."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    rest = text[text.rindex(")") + 2 :].split()  # fields 3... of proc(5)
    return int(rest[1]), int(rest[19]), rest[0]


def alive(pid: int, start: int | None = None) -> bool:
    """Whether `pid` runs (and is the same process: started at `start`), zombies excluded."""
    found = proc_stat(pid)
    return found is not None and found[2] != "Z" and (start is None or found[1] == start)


def figures(pid: int) -> dict[str, int] | None:
    """RSS and PSS (KiB) from smaps_rollup, and the number of open fds."""
    try:
        rollup = Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines()
        fds = len(os.listdir(f"/proc/{pid}/fd"))
    except OSError:
        return None
    kib = {line.split(":")[0]: int(line.split()[1]) for line in rollup[1:] if ":" in line}
    return {"pid": pid, "rss_kib": kib.get("Rss", 0), "pss_kib": kib.get("Pss", 0), "fds": fds}


def process_tree(root: int) -> dict[int, tuple[int, int, str]]:
    """Every descendant of `root`: pid → (ppid, start, state)."""
    table = {int(e): s for e in os.listdir("/proc") if e.isdigit() and (s := proc_stat(int(e)))}
    children: dict[int, list[int]] = defaultdict(list)
    for pid, (ppid, _, _) in table.items():
        children[ppid].append(pid)
    found, todo = {}, [root]
    while todo:
        for child in children[todo.pop()]:
            found[child] = table[child]
            todo.append(child)
    return found


async def poll_until(check: Callable[[], Awaitable[bool]], timeout_s: float) -> bool:
    """Waits for another process's state (an API view, /proc): there is no event to await.

    Returns False on a timeout: the checks then report what was not reached.
    """
    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout(timeout_s):
            while not await check():  # noqa: ASYNC110
                await asyncio.sleep(0.2)
            return True
    return False
