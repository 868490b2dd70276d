"""Pins the aiortc behaviour `sfu.aiortc_seam` relies on; an aiortc upgrade fails here first.

Three real peers in one process: publisher → relay (tapped receiver, `PacketTrack` sender)
→ subscriber, all on 127.0.0.1.
"""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

import aiortc.rtcrtpreceiver
import aiortc.rtcrtpsender
import pytest
from aiortc import RTCPeerConnection
from aiortc.mediastreams import MediaStreamError

from sfu.aiortc_seam import (
    EncodedFrame,
    FrameDecoder,
    PacketTrack,
    ReceiverTap,
    make_packet,
    on_keyframe_request,
    restrict_codecs,
    tap_receiver,
)
from sfu.frames import TimestampUnwrapper
from tests.sfu.media import (
    SAMPLES,
    ColourTrack,
    PacketLoopTrack,
    dominant_frequency,
    encode_opus_tone,
)
from tests.sfu.peers import negotiate, new_pc, wait_for

pytestmark = pytest.mark.timeout(60)


@dataclass
class Relay:
    """publisher → relay_in (tapped) → relay_out (PacketTrack) → subscriber."""

    publisher: RTCPeerConnection
    relay_in: RTCPeerConnection
    relay_out: RTCPeerConnection
    subscriber: RTCPeerConnection
    tap: ReceiverTap | None = None
    relayed: list[EncodedFrame] = field(default_factory=list)
    outbound: PacketTrack | None = None


@pytest.fixture
async def pcs() -> AsyncIterator[list[RTCPeerConnection]]:
    made: list[RTCPeerConnection] = []
    yield made
    await asyncio.gather(*(pc.close() for pc in made))


async def build_relay(pcs: list[RTCPeerConnection], source: object, kind: str) -> Relay:
    relay = Relay(new_pc(), new_pc(), new_pc(), new_pc())
    pcs += [relay.publisher, relay.relay_in, relay.relay_out, relay.subscriber]
    relay.publisher.addTransceiver(source, direction="sendonly")
    outbound = PacketTrack(kind)
    relay.outbound = outbound
    unwrap = TimestampUnwrapper()

    def forward(frame: EncodedFrame) -> None:
        relay.relayed.append(frame)
        pts = unwrap.unwrap(frame.timestamp)
        outbound.push(make_packet(frame.data, pts, frame.codec.clock_rate))

    # The tap must be in place before media flows: right after the offer is applied.
    await relay.publisher.setLocalDescription(await relay.publisher.createOffer())
    await relay.relay_in.setRemoteDescription(relay.publisher.localDescription)
    receiver = relay.relay_in.getTransceivers()[0].receiver
    relay.tap = tap_receiver(receiver, kind, forward)
    await relay.relay_in.setLocalDescription(await relay.relay_in.createAnswer())
    await relay.publisher.setRemoteDescription(relay.relay_in.localDescription)

    relay.relay_out.addTransceiver(outbound, direction="sendonly")
    await negotiate(relay.relay_out, relay.subscriber)
    return relay


async def test_opus_frames_pass_through_byte_for_byte(pcs: list[RTCPeerConnection]) -> None:
    payloads = encode_opus_tone(440.0, 50)
    decoders_made: list[object] = []
    original = aiortc.rtcrtpreceiver.get_decoder

    def counting(codec: object) -> object:
        decoders_made.append(codec)
        return original(codec)

    aiortc.rtcrtpreceiver.get_decoder = counting
    try:
        relay = await build_relay(pcs, PacketLoopTrack("audio", payloads, SAMPLES, 48_000), "audio")
        received: list[EncodedFrame] = []
        sub_rx = relay.subscriber.getTransceivers()[0].receiver
        tap_receiver(sub_rx, "audio", received.append)
        await wait_for(lambda: len(received) >= 60, within=15)
    finally:
        aiortc.rtcrtpreceiver.get_decoder = original

    assert not decoders_made, "a tapped receiver must never decode"
    assert relay.relayed[0].codec.name == "opus"
    published = set(payloads)
    assert all(f.data in published for f in relay.relayed)
    assert all(f.data in published for f in received)
    # In order: consecutive frames follow the published loop.
    order = [payloads.index(f.data) for f in received[:40]]
    assert all((b - a) % len(payloads) == 1 for a, b in itertools.pairwise(order))
    # And they decode to the tone.
    decoder = FrameDecoder(received[0].codec)
    pcm = []
    for i, frame in enumerate(received[10:60]):
        for audio in decoder.decode(frame, i * SAMPLES):
            pcm.append(audio.to_ndarray().reshape(-1, 2)[:, 0])
    import numpy as np

    assert abs(dominant_frequency(np.concatenate(pcm)) - 440.0) < 15


async def test_keyframe_request_reaches_publisher_and_sender_hook(
    pcs: list[RTCPeerConnection],
) -> None:
    relay = await build_relay(pcs, ColourTrack((200, 30, 30)), "video")
    assert relay.tap is not None
    await wait_for(lambda: len(relay.relayed) >= 10, within=15)
    assert relay.relayed[0].codec.name == "VP8"
    # aiortc's VP8 encoder makes one keyframe per 3000 frames: any later one answers a PLI.
    seen = len(relay.relayed)
    relay.tap.request_keyframe()
    await wait_for(lambda: any(f.keyframe for f in relay.relayed[seen:]), within=5)

    # A subscriber's PLI lands in the relay sender's hook instead of aiortc's encoder flag.
    asked: list[bool] = []
    on_keyframe_request(relay.relay_out.getTransceivers()[0].sender, lambda: asked.append(True))
    sub_tap = tap_receiver(relay.subscriber.getTransceivers()[0].receiver, "video", lambda f: None)
    await asyncio.sleep(0.3)  # let a few packets through so the subscriber knows the SSRC
    sub_tap.request_keyframe()
    await wait_for(lambda: bool(asked), within=5)


async def test_sender_stop_sends_bye_and_ends_the_remote_track(
    pcs: list[RTCPeerConnection],
) -> None:
    relay = await build_relay(pcs, ColourTrack((30, 200, 30)), "video")
    remote = relay.subscriber.getTransceivers()[0].receiver.track
    await asyncio.wait_for(remote.recv(), timeout=10)  # media flows and decodes
    await relay.relay_out.getTransceivers()[0].sender.stop()

    async def drain() -> None:
        while True:
            await remote.recv()

    with pytest.raises(MediaStreamError):
        await asyncio.wait_for(drain(), timeout=5)


async def test_tapped_track_reports_the_end_of_the_stream(pcs: list[RTCPeerConnection]) -> None:
    relay = await build_relay(pcs, ColourTrack((30, 30, 200)), "video")
    await wait_for(lambda: len(relay.relayed) >= 3, within=15)
    track = relay.relay_in.getTransceivers()[0].receiver.track
    await relay.publisher.getTransceivers()[0].sender.stop()  # RTCP BYE
    with pytest.raises(MediaStreamError):
        await asyncio.wait_for(track.recv(), timeout=5)


def test_sender_packs_packets_instead_of_encoding() -> None:
    """The fact `PacketTrack` rests on: `pack()` exists and the sender branches on it."""
    import inspect

    source = inspect.getsource(aiortc.rtcrtpsender.RTCRtpSender._next_encoded_frame)
    assert ".pack(" in source
    for name in ("OpusEncoder", "Vp8Encoder", "H264Encoder"):
        assert callable(getattr(getattr(aiortc.codecs, name), "pack", None))


async def test_restrict_codecs_narrows_an_answer_and_an_offer(
    pcs: list[RTCPeerConnection],
) -> None:
    client, sfu = new_pc(), new_pc()
    pcs += [client, sfu]
    client.addTransceiver("video", direction="recvonly")  # offers VP8 first, then H264
    await client.setLocalDescription(await client.createOffer())
    await sfu.setRemoteDescription(client.localDescription)
    transceiver = sfu.getTransceivers()[0]
    transceiver.direction = "sendonly"
    restrict_codecs(transceiver, "H264")
    await sfu.setLocalDescription(await sfu.createAnswer())
    rtpmaps = [line for line in sfu.localDescription.sdp.splitlines() if "a=rtpmap:" in line]
    names = {line.split()[1].split("/")[0] for line in rtpmaps}
    assert names == {"H264", "rtx"}, rtpmaps

    offerer = new_pc()
    pcs.append(offerer)
    sending = offerer.addTransceiver("audio", direction="sendonly")
    restrict_codecs(sending, "opus")
    await offerer.setLocalDescription(await offerer.createOffer())
    assert "PCMU" not in offerer.localDescription.sdp
    assert "opus/48000" in offerer.localDescription.sdp
