"""ICE setup: loopback candidates, servers and credentials, host ports pinned to a range."""

from __future__ import annotations

import asyncio
import os
import socket
from collections.abc import Iterator

import aioice.ice
import pytest
from aioice import stun
from aiortc import RTCPeerConnection
from aiortc.rtcicetransport import connection_kwargs

from sluice.config import Settings
from sluice.media.aiortc_internals import pin_ice_ports
from sluice.media.ice import _aioice_default, rtc_configuration, set_loopback
from tests.conftest import free_port
from tests.sfu.media import ToneTrack
from tests.sfu.peers import negotiate
from tests.udp import candidates, socket_inodes, some_ports, udp_ports_by_inode

pytestmark = pytest.mark.timeout(60)


@pytest.fixture
def unpinned() -> Iterator[None]:
    yield
    pin_ice_ports(None)


async def test_loopback_candidates_only() -> None:
    config = rtc_configuration(Settings(dev=True, ice_loopback=True))
    assert config.iceServers == []  # never aiortc's public STUN default
    pc = RTCPeerConnection(config)
    try:
        pc.addTransceiver("audio")
        await pc.setLocalDescription(await pc.createOffer())
        found = candidates(pc.localDescription.sdp)
        assert found
        assert all(fields[4] == "127.0.0.1" for fields in found), found
    finally:
        await pc.close()


def test_ice_servers_and_switching_back() -> None:
    config = rtc_configuration(
        Settings(
            dev=True,
            ice_loopback=False,
            ice_servers="stun:stun.example:3478, turn:t:3478?transport=tcp",
            ice_username="sluice",
            ice_credential="s3cret",
        )
    )
    assert [s.urls for s in config.iceServers] == [
        "stun:stun.example:3478",
        "turn:t:3478?transport=tcp",
    ]
    # What aiortc hands its ICE agent: the TURN server gets the credentials, STUN none.
    assert connection_kwargs(config.iceServers) == {
        "stun_server": ("stun.example", 3478),
        "turn_server": ("t", 3478),
        "turn_ssl": False,
        "turn_transport": "tcp",
        "turn_username": "sluice",
        "turn_password": "s3cret",
    }
    assert aioice.ice.get_host_addresses is _aioice_default
    set_loopback(True)
    assert aioice.ice.get_host_addresses(True, True) == ["127.0.0.1"]


async def test_pinned_ports_carry_media(unpinned: None) -> None:
    ports = some_ports()
    config = rtc_configuration(
        Settings(dev=True, ice_loopback=True, ice_udp_ports=f"{ports[0]}-{ports[-1]}")
    )
    before = socket_inodes(os.getpid())
    sender, receiver = RTCPeerConnection(config), RTCPeerConnection(config)
    arrived: asyncio.Future[object] = asyncio.get_running_loop().create_future()
    receiver.on("track", arrived.set_result)
    try:
        sender.addTrack(ToneTrack(440))
        await negotiate(sender, receiver)
        track = await asyncio.wait_for(arrived, 10)
        await asyncio.wait_for(track.recv(), 10)  # type: ignore[attr-defined]
        for pc in (sender, receiver):
            found = candidates(pc.localDescription.sdp)
            assert found and all(int(fields[5]) in ports for fields in found), found
        table = udp_ports_by_inode()
        opened = [table[i][1] for i in socket_inodes(os.getpid()) - before if i in table]
        assert len(opened) >= 2  # one host socket per peer at least
        assert all(port in ports for port in opened), (opened, ports)
    finally:
        await sender.close()
        await receiver.close()


class StunServer(asyncio.DatagramProtocol):
    """Answers Binding requests with the address they came from, as a STUN server does."""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        request = stun.parse_message(data)
        response = stun.Message(
            stun.Method.BINDING, stun.Class.RESPONSE, transaction_id=request.transaction_id
        )
        response.attributes["XOR-MAPPED-ADDRESS"] = addr
        self.transport.sendto(bytes(response), addr)  # type: ignore[attr-defined]


async def test_stun_asks_from_the_pinned_socket(unpinned: None) -> None:
    ports = some_ports()
    stun_port = free_port()
    transport, _ = await asyncio.get_running_loop().create_datagram_endpoint(
        StunServer, local_addr=("127.0.0.1", stun_port)
    )
    config = rtc_configuration(
        Settings(
            dev=True,
            ice_loopback=True,
            ice_servers=f"stun:127.0.0.1:{stun_port}",
            ice_udp_ports=f"{ports[0]}-{ports[-1]}",
        )
    )
    pc = RTCPeerConnection(config)
    try:
        pc.addTransceiver("audio")
        await pc.setLocalDescription(await pc.createOffer())
        found = candidates(pc.localDescription.sdp)
        kinds = {fields[7] for fields in found}
        assert kinds == {"host", "srflx"}, found
        (reflexive,) = [fields for fields in found if fields[7] == "srflx"]
        # The server saw the query come from the host socket, inside the range.
        assert int(reflexive[5]) in ports and reflexive[9] == "127.0.0.1"
        assert int(reflexive[11]) == int(reflexive[5])
    finally:
        await pc.close()
        transport.close()


async def test_no_free_port_in_the_range_means_no_candidate(unpinned: None) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as taken:
        taken.bind(("127.0.0.1", 0))
        port = taken.getsockname()[1]
        config = rtc_configuration(
            Settings(dev=True, ice_loopback=True, ice_udp_ports=f"{port}-{port}")
        )
        pc = RTCPeerConnection(config)
        try:
            pc.addTransceiver("audio")
            await pc.setLocalDescription(await pc.createOffer())
            assert candidates(pc.localDescription.sdp) == []
        finally:
            await pc.close()


def test_unpinned_is_aiortc_as_shipped() -> None:
    import aioice
    import aiortc.rtcicetransport

    pin_ice_ports(range(20_000, 20_010))
    pin_ice_ports(None)
    assert aiortc.rtcicetransport.Connection is aioice.Connection  # type: ignore[attr-defined]
    with pytest.raises(ValueError, match="empty"):
        pin_ice_ports(range(0))
