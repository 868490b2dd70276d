"""VP9 and H.265 through the SFU process: pre-encoded frames in, the same frames out.

An aiortc publisher sends frames PyAV encoded (its sender only packs them, with the
codecs `sluice.media.aiortc_internals.register_codecs` adds); subscribers on both pull
flows get them byte for byte, decodable by FFmpeg; a late subscriber gets a keyframe through PLI.
"""

from __future__ import annotations

import asyncio
import itertools

import pytest
from aiortc import MediaStreamTrack, RTCRtpTransceiver, RTCSessionDescription

from sluice.media.aiortc_internals import on_keyframe_request
from sluice.media.calls_client import Peer, SessionsClient
from sluice.media.types import EncodedFrame
from tests.sfu.encoded_video import EncoderTrack, decode_all, encode_colour, prefer
from tests.sfu.media import VIDEO_CLOCK, PacketLoopTrack, close_to, mean_rgb
from tests.sfu.peers import wait_for

pytestmark = pytest.mark.timeout(90)

CODECS = ["VP9", "H265"]
GOP = 10


async def publish(
    client: SessionsClient, track: MediaStreamTrack, codec: str, name: str
) -> tuple[Peer, RTCRtpTransceiver]:
    """Publishes `track` offering only `codec` (client-offer flow)."""
    peer = await client.new_peer()
    transceiver = peer.pc.addTransceiver(track, direction="sendonly")
    prefer(transceiver, codec)
    await peer.pc.setLocalDescription(await peer.pc.createOffer())
    local = peer.pc.localDescription
    answer = await client.call(
        "POST",
        f"/{peer.session_id}/tracks/new",
        {
            "sessionDescription": {"type": "offer", "sdp": local.sdp},
            "tracks": [{"location": "local", "mid": transceiver.mid, "trackName": name}],
        },
    )
    assert "errorCode" not in answer["tracks"][0], answer
    assert f"{codec}/90000" in answer["sessionDescription"]["sdp"]
    await peer.pc.setRemoteDescription(RTCSessionDescription(**answer["sessionDescription"]))
    return peer, transceiver


@pytest.mark.parametrize("codec", CODECS)
async def test_frames_reach_both_pull_flows_byte_for_byte(
    client: SessionsClient, codec: str
) -> None:
    rgb = (40, 180, 220)
    published = encode_colour(codec, rgb, 30, gop=GOP)
    source = PacketLoopTrack("video", published, VIDEO_CLOCK // 30, VIDEO_CLOCK)
    peer, _ = await publish(client, source, codec, "cam")

    client_offer: list[EncodedFrame] = []
    sfu_offer: list[EncodedFrame] = []
    await client.pull(peer.session_id, "cam", kind="video", on_frame=client_offer.append)
    await client.pull(peer.session_id, "cam", on_frame=sfu_offer.append)
    # Untapped: aiortc depayloads and decodes it (the registered depayloader and decoder).
    decoded = await client.pull(peer.session_id, "cam", kind="video")
    await wait_for(lambda: min(len(client_offer), len(sfu_offer)) >= 30, within=20)

    for frames in (client_offer, sfu_offer):
        assert {f.codec.name for f in frames} == {codec}
        assert frames[0].keyframe, "a subscriber starts at a keyframe"
        indices = [published.index(f.data) for f in frames]  # byte-identical
        assert all((b - a) % len(published) == 1 for a, b in itertools.pairwise(indices))
        assert [f.keyframe for f in frames] == [i % GOP == 0 for i in indices]
        pictures = decode_all(codec, [f.data for f in frames])
        assert len(pictures) == len(frames)
        assert {(p.width, p.height) for p in pictures} == {(320, 240)}
        assert close_to(mean_rgb(pictures[-1]), rgb), mean_rgb(pictures[-1])

    frame = await asyncio.wait_for(decoded.recv(), timeout=15)
    for _ in range(5):
        frame = await asyncio.wait_for(decoded.recv(), timeout=5)
    assert (frame.width, frame.height) == (320, 240)
    assert close_to(mean_rgb(frame), rgb), mean_rgb(frame)


@pytest.mark.parametrize("codec", CODECS)
async def test_late_subscriber_gets_a_keyframe_within_a_second(
    client: SessionsClient, codec: str
) -> None:
    rgb = (220, 120, 30)
    track = EncoderTrack(codec, rgb)  # one keyframe at the start, then only on request
    peer, transceiver = await publish(client, track, codec, "live")
    on_keyframe_request(transceiver.sender, track.request_keyframe)
    await asyncio.sleep(2.0)  # the first keyframe is long gone
    assert track.keyframes == 1

    loop = asyncio.get_running_loop()
    got: list[EncodedFrame] = []
    started = loop.time()
    await client.pull(peer.session_id, "live", kind="video", on_frame=got.append)
    await wait_for(lambda: bool(got), within=5, step=0.005)
    elapsed = loop.time() - started
    print(f"{codec}: subscribe → first frame (a keyframe) {elapsed * 1000:.0f} ms")
    assert got[0].keyframe and track.keyframes >= 2
    assert elapsed < 1.5, f"first frame after {elapsed:.2f} s"
    await wait_for(lambda: len(got) >= 5, within=5)
    pictures = decode_all(codec, [f.data for f in got])
    assert close_to(mean_rgb(pictures[-1]), rgb), mean_rgb(pictures[-1])
