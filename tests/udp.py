"""For networking tests: port ranges, the candidates of an SDP, the UDP ports a process holds
(read from /proc, Linux)."""

from __future__ import annotations

import os
import random
from pathlib import Path

PROC = Path("/proc")


def socket_inodes(pid: int) -> set[int]:
    """Inodes of the sockets `pid` has open (gone processes hold none)."""
    inodes = set()
    try:
        fds = list((PROC / str(pid) / "fd").iterdir())
    except (FileNotFoundError, ProcessLookupError):
        return set()
    for fd in fds:
        try:
            target = os.readlink(fd)
        except OSError:
            continue  # closed meanwhile
        if target.startswith("socket:["):
            inodes.add(int(target[len("socket:[") : -1]))
    return inodes


def udp_ports_by_inode() -> dict[int, tuple[str, int]]:
    """Every UDP socket of this network namespace: inode → (local address hex, port)."""
    sockets = {}
    for table in ("udp", "udp6"):
        lines = (PROC / "net" / table).read_text().splitlines()[1:]
        for line in lines:
            fields = line.split()
            address, port = fields[1].split(":")
            sockets[int(fields[9])] = (address, int(port, 16))
    return sockets


def children(pid: int) -> set[int]:
    """Every descendant of `pid`, found by walking /proc's parent links."""
    parents: dict[int, int] = {}
    for entry in PROC.iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        # The command name may hold spaces and parentheses: fields start after the last ')'.
        parents[int(entry.name)] = int(stat[stat.rindex(")") + 2 :].split()[1])
    found: set[int] = set()
    frontier = {pid}
    while frontier:
        frontier = {child for child, parent in parents.items() if parent in frontier}
        found |= frontier
    return found


def udp_ports(*pids: int) -> list[int]:
    """Local ports of every UDP socket the processes hold, one entry per socket."""
    table = udp_ports_by_inode()
    inodes = set().union(*(socket_inodes(pid) for pid in pids))
    return sorted(table[inode][1] for inode in inodes if inode in table)


def candidates(sdp: str) -> list[list[str]]:
    """The fields after `a=candidate:` of each candidate line."""
    return [
        line[len("a=candidate:") :].split() for line in sdp.splitlines() if "candidate:" in line
    ]


def some_ports(width: int = 40) -> range:
    # Below Linux's ephemeral ports (32768-60999), so nothing else of this machine
    # lands in the range by chance; random, so concurrent runs rarely share one.
    low = random.randrange(20_000, 30_000)
    return range(low, low + width)
