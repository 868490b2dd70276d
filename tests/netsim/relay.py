"""A UDP relay on 127.0.0.1 that impairs what passes, as `Schedule` decides.

It stands between one WebRTC peer (the client) and the server it talks to (the SFU):
the client is told the relay's port as the server's address (`sdp.via_relay`), the
relay sends what it gets on to the server from the same socket, so the server learns the
relay as a peer-reflexive candidate and answers there, and the relay passes that back.

Only RTP and RTCP are impaired by default: ICE (STUN) and the DTLS handshake pass at
once, so a test's setup stays quick and what is measured is the media's fate.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import cast

from tests.netsim.schedule import CLEAR, Impairment, Schedule

Address = tuple[str, int]
RTP_FIRST_BYTES = range(128, 192)  # RFC 7983: RTP and RTCP; STUN is 0-3, DTLS 20-63


def is_media(datagram: bytes) -> bool:
    """Whether a datagram is RTP or RTCP (SRTP or not), as RFC 7983 demultiplexes."""
    return bool(datagram) and datagram[0] in RTP_FIRST_BYTES


@dataclass(frozen=True, slots=True)
class Seeds:
    """The seed of each direction, derived from one run seed."""

    upstream: int
    downstream: int

    @classmethod
    def of(cls, seed: int) -> Seeds:
        return cls(upstream=2 * seed, downstream=2 * seed + 1)


class UdpRelay(asyncio.DatagramProtocol):
    """Relays datagrams between a client and `server`, each direction impaired.

    Use `await UdpRelay.start(...)`, then `close()`. `upstream` is client → server,
    `downstream` server → client; either may be replaced while running (`set`).
    """

    def __init__(
        self,
        server: Address,
        upstream: Impairment,
        downstream: Impairment,
        seed: int,
        impair_all: bool,
    ) -> None:
        loop = asyncio.get_running_loop()
        seeds = Seeds.of(seed)
        self.server = server
        self.upstream = Schedule(upstream, seeds.upstream, loop.time())
        self.downstream = Schedule(downstream, seeds.downstream, loop.time())
        self.client: Address | None = None  # the last address that was not the server
        self._impair_all = impair_all
        self._loop = loop
        self._transport: asyncio.DatagramTransport | None = None
        self._pending: set[asyncio.TimerHandle] = set()

    @classmethod
    async def start(
        cls,
        server: Address,
        *,
        upstream: Impairment = CLEAR,
        downstream: Impairment = CLEAR,
        seed: int = 1,
        impair_all: bool = False,
    ) -> UdpRelay:
        """A relay to `server` listening on a free 127.0.0.1 port (`port`)."""
        loop = asyncio.get_running_loop()
        _, relay = await loop.create_datagram_endpoint(
            lambda: cls(server, upstream, downstream, seed, impair_all),
            local_addr=("127.0.0.1", 0),
        )
        return relay

    @property
    def port(self) -> int:
        assert self._transport is not None
        port: int = self._transport.get_extra_info("sockname")[1]
        return port

    def set(
        self, *, upstream: Impairment | None = None, downstream: Impairment | None = None
    ) -> None:
        """Changes the impairment from now on (the random draws carry on)."""
        if upstream is not None:
            self.upstream.impairment = upstream
        if downstream is not None:
            self.downstream.impairment = downstream

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = cast(asyncio.DatagramTransport, transport)

    def datagram_received(self, data: bytes, addr: Address) -> None:
        if addr == self.server:
            if self.client is None:
                return  # nobody to pass it to yet
            schedule, target = self.downstream, self.client
        else:
            self.client = addr
            schedule, target = self.upstream, self.server
        if not (self._impair_all or is_media(data)):
            self._send(data, target)
            return
        verdict = schedule.decide(self._loop.time())
        if verdict.drop:
            return
        if verdict.release_at <= self._loop.time():
            self._send(data, target)
            return
        handle: asyncio.TimerHandle | None = None

        def release() -> None:
            assert handle is not None
            self._pending.discard(handle)
            self._send(data, target)

        handle = self._loop.call_at(verdict.release_at, release)
        self._pending.add(handle)

    def _send(self, data: bytes, target: Address) -> None:
        if self._transport is not None and not self._transport.is_closing():
            self._transport.sendto(data, target)

    def close(self) -> None:
        """Stops relaying; datagrams still delayed are dropped."""
        for handle in self._pending:
            handle.cancel()
        self._pending.clear()
        if self._transport is not None:
            self._transport.close()
