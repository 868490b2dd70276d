"""A deployed SFU's networking: the announced public address and the pinned UDP ports.

A real SFU process on 127.0.0.1 with `SLUICE_SFU_ANNOUNCED_IP=127.0.0.1` and
`SLUICE_ICE_UDP_PORTS` set. The publisher keeps only the announced candidates of the
SFU's answer, so its media reaches the SFU at the announced address, and a subscriber
hears it; every UDP socket the SFU process holds is inside the range.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from aiortc import RTCPeerConnection, RTCSessionDescription

from sluice.media.calls_client import SessionsClient
from sluice.media.ice import rtc_configuration
from tests.sfu.conftest import LOOPBACK, Server, start_server, stop_server
from tests.sfu.media import ToneTrack, collect_audio, dominant_frequency
from tests.udp import candidates, some_ports, udp_ports

pytestmark = pytest.mark.timeout(60)

PORTS = some_ports(width=60)
ANNOUNCED = "127.0.0.1"  # on loopback, as every test address; the SDP text is the proof


@pytest.fixture(scope="module")
def nat_sfu(redis_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    env = {"SLUICE_SFU_ANNOUNCED_IP": ANNOUNCED, "SLUICE_ICE_UDP_PORTS": f"{PORTS[0]}-{PORTS[-1]}"}
    server = start_server("sfu", redis_url, tmp_path_factory.mktemp("nat-sfu"), env)
    yield server
    stop_server(server)


def announced_only(answer_sdp: str) -> str:
    """The answer with every candidate but the announced ones taken out."""
    lines = answer_sdp.split("\r\n")
    return "\r\n".join(
        line for line in lines if not line.startswith("a=candidate:") or " typ srflx " in line
    )


async def test_media_reaches_the_announced_address_on_pinned_ports(
    nat_sfu: Server, tmp_path: Path
) -> None:
    publisher = RTCPeerConnection(rtc_configuration(LOOPBACK))
    client = SessionsClient(nat_sfu.app_url(), "secret1", configuration=rtc_configuration(LOOPBACK))
    try:
        publisher.addTransceiver(ToneTrack(523.0), direction="sendonly")
        await publisher.setLocalDescription(await publisher.createOffer())
        session_id = (await client.call("POST", "/new"))["sessionId"]
        mid = publisher.getTransceivers()[0].mid
        answer = await client.call(
            "POST",
            f"/{session_id}/tracks/new",
            {
                "sessionDescription": {"type": "offer", "sdp": publisher.localDescription.sdp},
                "tracks": [{"location": "local", "mid": mid, "trackName": "tone"}],
            },
        )
        text = answer["sessionDescription"]["sdp"]
        found = candidates(text)
        hosts = [f for f in found if f[7] == "host"]
        reflexive = [f for f in found if f[7] == "srflx"]
        assert hosts and all(int(f[5]) in PORTS for f in hosts), found
        # One announced twin per host candidate: same port, the announced address.
        assert sorted((f[4], f[5], f[9], f[11]) for f in reflexive) == sorted(
            (ANNOUNCED, f[5], f[4], f[5]) for f in hosts
        )

        described = announced_only(text)
        assert " typ host" not in described
        await publisher.setRemoteDescription(RTCSessionDescription(described, "answer"))
        heard = await client.pull(session_id, "tone", kind="audio")
        samples = await asyncio.wait_for(collect_audio(heard, 1.0), 15)
        assert abs(dominant_frequency(samples) - 523.0) < 5

        held = udp_ports(nat_sfu.proc.pid)
        assert len(held) >= 2, held  # the publisher's session and the subscriber's
        assert all(port in PORTS for port in held), (held, PORTS)
    finally:
        await publisher.close()
        await client.close()


def test_the_sfu_logs_its_ice_setup(nat_sfu: Server) -> None:
    lines = [
        json.loads(line) for line in nat_sfu.log.read_text().splitlines() if "ice_setup" in line
    ]
    assert len(lines) == 1
    assert lines[0]["udp_ports"] == f"{PORTS[0]}-{PORTS[-1]}"
    assert lines[0]["announced_ip"] == ANNOUNCED
