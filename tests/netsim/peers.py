"""Putting a `UdpRelay` between a test's own WebRTC peer and the SFU.

The peer makes its offer as usual (client-offer flow) but without its candidates; the
SFU's answer names its 127.0.0.1 host candidate, which is rewritten to the relay's port
before the peer applies it. The peer then only ever talks to the relay, and the SFU
learns the relay's address as a peer-reflexive candidate from the peer's checks. (With
the peer's own candidate in the offer, the SFU's checks would reach the peer directly,
and ICE might choose that path instead.) `direct_via_relay` does the same between two
bare aiortc peers, the baseline an impaired Sluice path is compared with.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence

from aiortc import MediaStreamTrack, RTCConfiguration, RTCPeerConnection, RTCSessionDescription

from sluice.media.aiortc_internals import tap_receiver
from sluice.media.calls_client import Peer, SessionsClient
from sluice.media.types import FrameSink
from tests.netsim.relay import Address, UdpRelay
from tests.netsim.schedule import CLEAR, Impairment

_HOST_CANDIDATE = re.compile(
    r"^(a=candidate:\S+ \d+ udp \d+ )127\.0\.0\.1 (\d+)( typ host.*)$", re.MULTILINE | re.IGNORECASE
)
_MEDIA_LINE = re.compile(r"^(m=\w+ )(\d+)( .*)$", re.MULTILINE)


def without_candidates(sdp: str) -> str:
    """`sdp` with no candidate lines: the other side can only learn us from our checks."""
    return "".join(
        line
        for line in sdp.splitlines(keepends=True)
        if not line.startswith(("a=candidate:", "a=end-of-candidates"))
    )


def server_address(sdp: str) -> Address:
    """The 127.0.0.1 UDP host candidate an SDP offers (the SFU's, in its answer).

    Raises:
        ValueError: there is none.
    """
    match = _HOST_CANDIDATE.search(sdp)
    if match is None:
        raise ValueError(f"the description has no 127.0.0.1 UDP host candidate: {sdp}")
    return "127.0.0.1", int(match.group(2))


def via_relay(sdp: str, relay_port: int) -> str:
    """`sdp` with every 127.0.0.1 host candidate (and media port) moved to the relay."""
    sdp = _HOST_CANDIDATE.sub(lambda m: f"{m.group(1)}127.0.0.1 {relay_port}{m.group(3)}", sdp)
    return _MEDIA_LINE.sub(
        lambda m: m.group(0) if m.group(2) == "0" else f"{m.group(1)}{relay_port}{m.group(3)}",
        sdp,
    )


async def _offer_through_relay(
    peer: Peer,
    tracks: Callable[[], list[dict[str, str]]],
    upstream: Impairment,
    downstream: Impairment,
    seed: int,
) -> UdpRelay:
    """Sends the peer's offer with `tracks()` (read once mids exist); applies the answer."""
    await peer.pc.setLocalDescription(await peer.pc.createOffer())
    local = peer.pc.localDescription
    offer = {"type": local.type, "sdp": without_candidates(local.sdp)}
    body = {"sessionDescription": offer, "tracks": tracks()}
    answer = await peer.client.call("POST", f"/{peer.session_id}/tracks/new", body)
    for result in answer["tracks"]:
        if "errorCode" in result:
            raise RuntimeError(f"the SFU refused a track: {result}")
    sdp = answer["sessionDescription"]["sdp"]
    relay = await UdpRelay.start(
        server_address(sdp), upstream=upstream, downstream=downstream, seed=seed
    )
    await peer.pc.setRemoteDescription(
        RTCSessionDescription(sdp=via_relay(sdp, relay.port), type="answer")
    )
    return relay


async def publish_via_relay(
    client: SessionsClient,
    tracks: Sequence[MediaStreamTrack],
    names: Sequence[str],
    *,
    upstream: Impairment = CLEAR,
    downstream: Impairment = CLEAR,
    seed: int = 1,
) -> tuple[Peer, UdpRelay]:
    """Publishes `tracks` as `names` in a new session whose media crosses a relay.

    `upstream` is what the publisher sends (its media), `downstream` what the SFU sends
    it (RTCP: receiver reports, NACKs, keyframe requests). Close the relay after the peer.
    """
    peer = await client.new_peer()
    transceivers = [peer.pc.addTransceiver(t, direction="sendonly") for t in tracks]

    def local() -> list[dict[str, str]]:
        return [
            {"location": "local", "mid": str(t.mid), "trackName": name}
            for t, name in zip(transceivers, names, strict=True)
        ]

    relay = await _offer_through_relay(peer, local, upstream, downstream, seed)
    return peer, relay


async def pull_via_relay(
    client: SessionsClient,
    session_id: str,
    track_name: str,
    kind: str,
    *,
    upstream: Impairment = CLEAR,
    downstream: Impairment = CLEAR,
    seed: int = 1,
    on_frame: FrameSink | None = None,
) -> tuple[MediaStreamTrack, UdpRelay]:
    """Pulls a track in a new session whose media crosses a relay (`downstream`: media).

    With `on_frame`, every encoded frame goes there as it arrives, undecoded and in
    arrival order (no jitter buffer: what the network delivered); the returned track then
    only reports the end.
    """
    peer = await client.new_peer()
    transceiver = peer.pc.addTransceiver(kind, direction="recvonly")
    if on_frame is not None:
        tap_receiver(transceiver.receiver, kind, on_frame)
    item = {"location": "remote", "sessionId": session_id, "trackName": track_name}
    relay = await _offer_through_relay(peer, lambda: [item], upstream, downstream, seed)
    return transceiver.receiver.track, relay


async def direct_via_relay(
    track: MediaStreamTrack,
    *,
    upstream: Impairment = CLEAR,
    downstream: Impairment = CLEAR,
    seed: int = 1,
) -> tuple[RTCPeerConnection, RTCPeerConnection, MediaStreamTrack, UdpRelay]:
    """Two bare aiortc peers, `track` sent from one to the other across a relay.

    The sender stands where a publisher would and the receiver where the SFU would:
    `upstream` is the media, `downstream` the receiver's RTCP. Loopback-only ICE must be
    on (`sluice.media.ice.set_loopback`). Returns (sender, receiver, received track,
    relay); close both peers, then the relay.
    """
    config = RTCConfiguration(iceServers=[])
    sender, receiver = RTCPeerConnection(config), RTCPeerConnection(config)
    sender.addTransceiver(track, direction="sendonly")
    await sender.setLocalDescription(await sender.createOffer())
    offer = without_candidates(sender.localDescription.sdp)
    await receiver.setRemoteDescription(RTCSessionDescription(sdp=offer, type="offer"))
    received = receiver.getTransceivers()[0].receiver.track
    await receiver.setLocalDescription(await receiver.createAnswer())
    sdp = receiver.localDescription.sdp
    relay = await UdpRelay.start(
        server_address(sdp), upstream=upstream, downstream=downstream, seed=seed
    )
    await sender.setRemoteDescription(
        RTCSessionDescription(sdp=via_relay(sdp, relay.port), type="answer")
    )
    return sender, receiver, received, relay
