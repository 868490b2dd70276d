"""aiortc client → SFU process → aiortc clients: content, passthrough, keyframes, ends."""

from __future__ import annotations

import asyncio
import itertools
import time
from typing import Any

import pytest
from aiortc import MediaStreamTrack, RTCRtpSender, RTCSessionDescription
from aiortc.mediastreams import MediaStreamError

from sluice.media.calls_client import SessionsClient
from sluice.media.types import EncodedFrame
from tests.sfu.media import (
    SAMPLES,
    VIDEO_CLOCK,
    ColourTrack,
    PacketLoopTrack,
    ToneTrack,
    close_to,
    collect_audio,
    dominant_frequency,
    encode_opus_tone,
    encode_vp8_colour,
    mean_rgb,
)
from tests.sfu.peers import wait_for

pytestmark = pytest.mark.timeout(90)


async def first_video_frame(track: MediaStreamTrack, within: float) -> Any:
    return await asyncio.wait_for(track.recv(), timeout=within)


async def test_audio_and_vp8_reach_two_subscribers(client: SessionsClient) -> None:
    publisher = await client.new_peer()
    names = await publisher.publish([ToneTrack(660.0), ColourTrack((220, 40, 40))], ["mic", "cam"])
    assert names == ["mic", "cam"]
    sid = publisher.session_id

    # Two subscribers, one per pull flow: client offer (kind known) and SFU offer.
    audio_a = await client.pull(sid, "mic", kind="audio")
    video_a = await client.pull(sid, "cam", kind="video")
    audio_b = await client.pull(sid, "mic")
    video_b = await client.pull(sid, "cam")

    for audio in (audio_a, audio_b):
        samples = await asyncio.wait_for(collect_audio(audio, 1.5), timeout=20)
        tail = samples[len(samples) // 2 :]  # past the start-up
        assert abs(dominant_frequency(tail) - 660.0) < 15
    for video in (video_a, video_b):
        frame = await first_video_frame(video, 10)
        for _ in range(5):  # a few frames in, the picture has settled
            frame = await first_video_frame(video, 5)
        assert close_to(mean_rgb(frame), (220, 40, 40)), mean_rgb(frame)


async def test_frames_are_forwarded_byte_for_byte(client: SessionsClient) -> None:
    """No re-encode: subscribers get exactly the publisher's encoded frames."""
    opus = encode_opus_tone(523.0, 25)
    vp8 = encode_vp8_colour((40, 200, 40), 30, gop=10)
    publisher = await client.new_peer()
    await publisher.publish(
        [
            PacketLoopTrack("audio", opus, SAMPLES, 48_000),
            PacketLoopTrack("video", vp8, VIDEO_CLOCK // 30, VIDEO_CLOCK),
        ],
        ["a", "v"],
    )
    got_audio: list[EncodedFrame] = []
    got_video: list[EncodedFrame] = []
    await client.pull(publisher.session_id, "a", kind="audio", on_frame=got_audio.append)
    await client.pull(publisher.session_id, "v", on_frame=got_video.append)
    await wait_for(lambda: len(got_audio) >= 50 and len(got_video) >= 30, within=20)

    assert {f.data for f in got_audio} <= set(opus)
    assert {f.data for f in got_video} <= set(vp8)
    assert got_video[0].keyframe, "a subscriber's video starts at a keyframe"
    # Consecutive, in publishing order (the loop wraps around).
    order = [vp8.index(f.data) for f in got_video[:30]]
    assert all((b - a) % len(vp8) == 1 for a, b in itertools.pairwise(order))


async def test_tapped_pulls_negotiate_no_bandwidth_estimation(client: SessionsClient) -> None:
    """A tapped pull leaves abs-send-time out in both flows (its consumer adapts no
    bitrate); a publisher keeps it, so the SFU's REMB still reaches its encoder."""
    publisher = await client.new_peer()
    await publisher.publish([ColourTrack((40, 200, 40))], ["cam"])
    got: list[EncodedFrame] = []
    await client.pull(publisher.session_id, "cam", kind="video", on_frame=got.append)
    await client.pull(publisher.session_id, "cam", on_frame=got.append)
    await client.pull(publisher.session_id, "cam", kind="video")  # decoded, untapped
    await wait_for(lambda: len(got) >= 20, within=20)
    offer_flow, answer_flow, untapped = client.peers[1:]
    for peer in (offer_flow, answer_flow):
        assert "abs-send-time" not in peer.pc.localDescription.sdp
    assert "abs-send-time" not in offer_flow.pc.remoteDescription.sdp  # the SFU agreed
    assert "abs-send-time" in untapped.pc.remoteDescription.sdp
    assert "abs-send-time" in publisher.pc.remoteDescription.sdp


async def test_late_subscriber_gets_a_keyframe_fast(client: SessionsClient) -> None:
    # aiortc's VP8 encoder makes a keyframe only at start and when asked (PLI).
    _, name = await client.publish(ColourTrack((40, 40, 220)), "cam")
    sid = client._peers[-1].session_id
    await asyncio.sleep(2.0)  # the publisher's first keyframe is long gone
    started = time.monotonic()
    video = await client.pull(sid, name, kind="video")
    frame = await first_video_frame(video, 10)
    elapsed = time.monotonic() - started
    assert close_to(mean_rgb(frame), (40, 40, 220), tolerance=60)
    assert elapsed < 5.0, f"first frame after {elapsed:.2f} s"
    print(f"subscribe → first decoded video frame: {elapsed * 1000:.0f} ms")


async def test_closing_a_published_track_ends_it_for_subscribers(
    client: SessionsClient,
) -> None:
    publisher = await client.new_peer()
    await publisher.publish([ColourTrack((200, 200, 40))], ["cam"])
    sub = await client.new_peer()
    video = await sub.pull(publisher.session_id, "cam", kind="video")
    await first_video_frame(video, 10)

    mid = publisher.pc.getTransceivers()[0].mid
    result = await publisher.close_tracks([mid], force=True)
    assert result["requiresImmediateRenegotiation"] is False
    assert result["tracks"][0]["trackName"] == "cam"

    async def drain() -> None:
        while True:
            await video.recv()

    with pytest.raises(MediaStreamError):
        await asyncio.wait_for(drain(), timeout=5)
    pub_state = await publisher.state()
    assert pub_state["tracks"][0]["status"] == "inactive"
    sub_state = await sub.state()
    assert sub_state["tracks"][0]["status"] == "inactive"
    # The closed track cannot be pulled any more.
    with pytest.raises(Exception, match="not_found_track_error"):
        await client.pull(publisher.session_id, "cam", kind="video")


async def test_publisher_leaving_ends_subscriber_tracks(client: SessionsClient) -> None:
    publisher = await client.new_peer()
    await publisher.publish([ToneTrack(440.0)], ["mic"])
    audio = await client.pull(publisher.session_id, "mic", kind="audio")
    await asyncio.wait_for(audio.recv(), timeout=10)
    await publisher.close()  # RTCP BYE from the publisher, then its connection goes

    async def drain() -> None:
        while True:
            await audio.recv()

    with pytest.raises(MediaStreamError):
        await asyncio.wait_for(drain(), timeout=10)


async def test_h264_is_forwarded_to_subscribers_preferring_vp8(client: SessionsClient) -> None:
    """Subscribers get the publisher's codec even when their own offer prefers another."""
    publisher = await client.new_peer()
    transceiver = publisher.pc.addTransceiver(ColourTrack((230, 120, 20)), direction="sendonly")
    h264 = [c for c in RTCRtpSender.getCapabilities("video").codecs if c.mimeType == "video/H264"]
    transceiver.setCodecPreferences(h264)
    await publisher.pc.setLocalDescription(await publisher.pc.createOffer())
    local = publisher.pc.localDescription
    answer = await client.call(
        "POST",
        f"/{publisher.session_id}/tracks/new",
        {"sessionDescription": {"type": "offer", "sdp": local.sdp}, "autoDiscover": True},
    )
    await publisher.pc.setRemoteDescription(RTCSessionDescription(**answer["sessionDescription"]))
    name = answer["tracks"][0]["trackName"]

    got: list[EncodedFrame] = []
    await client.pull(publisher.session_id, name, kind="video", on_frame=got.append)
    video = await client.pull(publisher.session_id, name)  # SFU offer
    frame = await first_video_frame(video, 15)
    for _ in range(5):
        frame = await first_video_frame(video, 5)
    assert close_to(mean_rgb(frame), (230, 120, 20)), mean_rgb(frame)
    await wait_for(lambda: len(got) >= 5, within=10)
    assert got[0].codec.name == "H264" and got[0].keyframe
