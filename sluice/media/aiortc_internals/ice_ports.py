"""ICE host ports in a range.


ICE ports: aioice binds each host candidate's socket to a port the OS picks, with no
option to choose. `pin_ice_ports` has aiortc build its ICE agents from a subclass that
binds them inside a range instead (`SLUICE_ICE_UDP_PORTS`), so a firewall can open one
range rather than every ephemeral port.
"""

from __future__ import annotations

import asyncio
import errno
import inspect
import ipaddress
import itertools
import random
import socket
from typing import ClassVar

import aioice
import aioice.ice
import aioice.turn
import aiortc.rtcicetransport
import structlog
from aioice.candidate import candidate_foundation, candidate_priority

from sluice.media.aiortc_internals.guard import SeamBroken

log = structlog.get_logger("sluice.sfu")


class _PinnedPortsConnection(aioice.Connection):
    """aioice's ICE agent, its host candidates bound to a port of `ports`."""

    ports: ClassVar[range] = range(0)

    async def get_component_candidates(
        self,
        component: int,
        addresses: list[str],
        timeout: int = 5,  # noqa: ASYNC109 (aioice's signature, overridden as it is)
    ) -> list[aioice.Candidate]:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        hosts = [p for a in addresses if (p := await _bind_host(self, component, a, self.ports))]
        self._protocols += hosts  # the agent pairs remote candidates with these
        stun = self.stun_server
        queries = [
            asyncio.create_task(aioice.ice.server_reflexive_candidate(host, stun))
            for host in hosts
            if stun and ipaddress.ip_address(host.local_candidate.host).version == 4
        ]
        try:
            # Given no addresses, aioice binds nothing itself and gathers a TURN relay only.
            relayed = await super().get_component_candidates(component, [], timeout)
            if queries:
                await asyncio.wait(queries, timeout=max(0.0, deadline - loop.time()))
        finally:
            for query in queries:
                query.cancel()
            await asyncio.gather(*queries, return_exceptions=True)
        reflexive = [q.result()[0] for q in queries if not q.cancelled() and not q.exception()]
        return [host.local_candidate for host in hosts] + reflexive + relayed


async def _bind_host(
    connection: aioice.Connection, component: int, address: str, ports: range
) -> aioice.ice.StunProtocol | None:
    """A host candidate's socket on `address`, at the first free port of `ports`.

    The search starts at a random port, so processes do not all crowd the bottom of the
    range. No free port, or an address that cannot be bound: no candidate there, as
    aioice does when its own bind fails.
    """
    family = socket.AF_INET6 if ":" in address else socket.AF_INET
    start = random.randrange(len(ports))
    for port in itertools.chain(ports[start:], ports[:start]):
        sock = socket.socket(family, socket.SOCK_DGRAM)
        try:
            sock.bind((address, port))
            break
        except OSError as exc:
            sock.close()
            if exc.errno != errno.EADDRINUSE:
                log.warning("ice_bind_failed", address=address, port=port, error=str(exc))
                return None
    else:
        log.warning("ice_ports_exhausted", address=address, ports=f"{ports[0]}-{ports[-1]}")
        return None
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, aioice.turn.UDP_SOCKET_BUFFER_SIZE)
    _, protocol = await asyncio.get_running_loop().create_datagram_endpoint(
        lambda: aioice.ice.StunProtocol(connection), sock=sock
    )
    host, bound = sock.getsockname()[:2]
    protocol.local_candidate = aioice.Candidate(
        foundation=candidate_foundation("host", "udp", host),
        component=component,
        transport="udp",
        priority=candidate_priority(component, "host"),
        host=host,
        port=bound,
        type="host",
    )
    return protocol


def pin_ice_ports(ports: range | None) -> None:
    """Binds the ICE host sockets of every peer connection made from now on to `ports`.

    aiortc looks its agent class up in `aiortc.rtcicetransport` each time it gathers, so
    swapping that module global reaches every later peer of the process. None gives the
    choice back to the OS (aioice's own agent).

    Raises:
        ValueError: `ports` is empty.
        SeamBroken: aioice or aiortc no longer has the shape the subclass relies on.
    """
    if ports is None:
        aiortc.rtcicetransport.Connection = aioice.Connection  # type: ignore[attr-defined]
        return
    if not ports:
        raise ValueError("the ICE port range is empty")
    gather = inspect.signature(aioice.Connection.get_component_candidates).parameters
    if (
        not isinstance(getattr(aiortc.rtcicetransport, "Connection", None), type)
        or list(gather) != ["self", "component", "addresses", "timeout"]
        or not callable(getattr(aioice.ice, "server_reflexive_candidate", None))
        or not isinstance(getattr(aioice.turn, "UDP_SOCKET_BUFFER_SIZE", None), int)
        or not isinstance(getattr(aioice.Connection(False), "_protocols", None), list)
    ):
        raise SeamBroken("aioice's host candidate gathering is no longer where this relies on")
    _PinnedPortsConnection.ports = ports
    aiortc.rtcicetransport.Connection = _PinnedPortsConnection  # type: ignore[attr-defined]
