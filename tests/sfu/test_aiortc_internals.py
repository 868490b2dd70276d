"""Pins the aiortc behaviour `sluice.media.aiortc_internals` relies on.

An aiortc upgrade fails here first.

Three real peers in one process: publisher → relay (tapped receiver, `PacketTrack` sender)
→ subscriber, all on 127.0.0.1.
"""

from __future__ import annotations

import asyncio
import inspect
import itertools
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field

import aiortc.rtcpeerconnection
import aiortc.rtcrtpreceiver
import aiortc.rtcrtpsender
import pytest
from aiortc import RTCPeerConnection, RTCRtpReceiver, RTCRtpTransceiver, RTCSessionDescription
from aiortc.mediastreams import MediaStreamError
from aiortc.rtp import RTP_HISTORY_SIZE, is_rtcp

from sluice.media.aiortc_internals import (
    FrameDecoder,
    ReceiverTap,
    SeamBroken,
    direct_send,
    on_keyframe_request,
    receive_counts,
    receive_eagerly,
    register_codecs,
    renumber_like_source,
    restrict_codecs,
    send_directly,
    tap_receiver,
    without_abs_send_time,
)
from sluice.media.aiortc_internals.guard import ESTIMATOR_ATTR, SENDER_PREFIX
from sluice.media.frames import TimestampUnwrapper
from sluice.media.packet_track import PacketTrack, make_packet
from sluice.media.passthrough import PassthroughEncoder, PyAvDecoder
from sluice.media.types import EncodedFrame
from tests.sfu.encoded_video import decode_all, encode_colour, prefer
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


async def build_relay(
    pcs: list[RTCPeerConnection], source: object, kind: str, codec: str | None = None
) -> Relay:
    relay = Relay(new_pc(), new_pc(), new_pc(), new_pc())
    pcs += [relay.publisher, relay.relay_in, relay.relay_out, relay.subscriber]
    sending = relay.publisher.addTransceiver(source, direction="sendonly")
    if codec is not None:
        prefer(sending, codec)
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

    forwarding = relay.relay_out.addTransceiver(outbound, direction="sendonly")
    if codec is not None:
        restrict_codecs(forwarding, codec)  # a forwarder sends the codec it receives
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
    received: list[EncodedFrame] = []
    sub_tap = tap_receiver(relay.subscriber.getTransceivers()[0].receiver, "video", received.append)
    await wait_for(lambda: bool(received), within=5)  # so the subscriber knows the SSRC
    sub_tap.request_keyframe()
    await wait_for(lambda: bool(asked), within=5)


async def connect_tapped_audio(
    sender_pc: RTCPeerConnection, receiver_pc: RTCPeerConnection
) -> tuple[list[EncodedFrame], RTCRtpReceiver]:
    """Connects `sender_pc`'s offer to `receiver_pc`, whose audio receiver is tapped
    before media can flow; returns the frames it will receive, and the receiver."""
    await sender_pc.setLocalDescription(await sender_pc.createOffer())
    await receiver_pc.setRemoteDescription(sender_pc.localDescription)
    received: list[EncodedFrame] = []
    receiver = receiver_pc.getTransceivers()[0].receiver
    tap_receiver(receiver, "audio", received.append)
    await receiver_pc.setLocalDescription(await receiver_pc.createAnswer())
    await sender_pc.setRemoteDescription(receiver_pc.localDescription)
    return received, receiver


async def test_renumbered_sender_keeps_the_source_gaps_and_order(
    pcs: list[RTCPeerConnection],
) -> None:
    """Each packet leaves under its source number plus a constant: late stays late."""
    sender_pc, receiver_pc = new_pc(), new_pc()
    pcs += [sender_pc, receiver_pc]
    outbound = PacketTrack("audio")
    transceiver = sender_pc.addTransceiver(outbound, direction="sendonly")
    renumber_like_source(transceiver.sender, lambda: outbound.sequence)
    received, _ = await connect_tapped_audio(sender_pc, receiver_pc)

    payloads = encode_opus_tone(440.0, 12)
    # Source numbers across the wrap, with a loss (3) and a late packet (5 after 6).
    order = [0, 1, 2, 4, 6, 5, 7, 8, 9, 10, 11]
    for n in order:  # queued until the sender starts reading
        outbound.push(make_packet(payloads[n], n * SAMPLES, 48_000), (65_530 + n) % 65_536)
    await wait_for(lambda: len(received) == len(order), within=10)

    sent_order = [payloads.index(f.data) for f in received]
    assert sent_order == order
    shifts = {
        ((f.sequence_number or 0) - 65_530 - n) % 65_536
        for f, n in zip(received, order, strict=True)
    }
    assert len(shifts) == 1, [f.sequence_number for f in received]


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


async def test_directly_sent_packets_are_numbered_timed_and_counted_as_aiortc_would(
    pcs: list[RTCPeerConnection],
) -> None:
    """`send_directly`: the packets the track returns, in order, one RTP packet each,
    numbered and timed on one clock, with aiortc's counters, history and sender reports."""
    sender_pc, receiver_pc = new_pc(), new_pc()
    pcs += [sender_pc, receiver_pc]
    payloads = encode_opus_tone(440.0, 25)
    source = PacketLoopTrack("audio", payloads, SAMPLES, 48_000)
    sender = sender_pc.addTransceiver(source, direction="sendonly").sender
    send_directly(sender)
    received, receiver = await connect_tapped_audio(sender_pc, receiver_pc)
    through_aiortc: list[bytes] = []
    dtls_send_rtp = sender.transport._send_rtp

    async def send_rtp(data: bytes) -> None:
        if not is_rtcp(data):
            through_aiortc.append(data)
        await dtls_send_rtp(data)

    sender.transport._send_rtp = send_rtp
    await wait_for(lambda: len(received) >= 2 * len(payloads), within=10)
    assert through_aiortc == []  # every packet went the direct way

    # The track's packets in its order (it loops over `payloads`), consecutive numbers.
    first = payloads.index(received[0].data)
    assert [f.data for f in received] == [
        payloads[(first + i) % len(payloads)] for i in range(len(received))
    ]
    assert {((f.sequence_number or 0) - i) % 65_536 for i, f in enumerate(received)} == {
        received[0].sequence_number
    }
    assert {(f.timestamp - i * SAMPLES) % 2**32 for i, f in enumerate(received)} == {
        received[0].timestamp
    }
    # What NACKs are answered from, with the extensions aiortc's loop sets.
    history = getattr(sender, SENDER_PREFIX + "rtp_history")
    last = history[(received[-1].sequence_number or 0) % RTP_HISTORY_SIZE]
    assert last.payload == received[-1].data and last.marker == 1
    assert last.extensions.mid == sender_pc.getTransceivers()[0].mid
    assert last.extensions.abs_send_time is not None
    stats = await sender.getStats()
    outbound = next(s for s in stats.values() if s.type == "outbound-rtp")
    assert outbound.packetsSent >= len(received)
    transport = next(s for s in stats.values() if s.type == "transport")
    assert transport.packetsSent >= outbound.packetsSent  # the DTLS transport's counters
    # The sender's reports carry those counts to the receiver.
    for _ in range(100):
        reports = [
            s for s in (await receiver.getStats()).values() if s.type == "remote-outbound-rtp"
        ]
        if reports and reports[0].packetsSent > 0:
            break
        await asyncio.sleep(0.05)
    else:
        raise AssertionError("no sender report reached the receiver")


async def test_send_directly_leaves_the_sending_to_aiortc_without_its_transports_seam(
    pcs: list[RTCPeerConnection], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(direct_send, "_sends_directly", lambda dtls: False)
    sender_pc, receiver_pc = new_pc(), new_pc()
    pcs += [sender_pc, receiver_pc]
    source = PacketLoopTrack("audio", encode_opus_tone(440.0, 5), SAMPLES, 48_000)
    sender = sender_pc.addTransceiver(source, direction="sendonly").sender
    send_directly(sender)
    received, _ = await connect_tapped_audio(sender_pc, receiver_pc)
    await wait_for(lambda: len(received) >= 10, within=10)
    assert "_next_encoded_frame" not in vars(sender)  # aiortc's own again
    assert {((f.sequence_number or 0) - i) % 65_536 for i, f in enumerate(received)} == {
        received[0].sequence_number
    }


async def test_send_directly_refuses_a_sender_without_its_seam(
    pcs: list[RTCPeerConnection],
) -> None:
    pcs.append(pc := new_pc())
    sender = pc.addTransceiver("audio", direction="sendonly").sender
    delattr(sender, SENDER_PREFIX + "rtp_history")
    with pytest.raises(SeamBroken, match="rtp_history"):
        send_directly(sender)
    source = inspect.getsource(aiortc.rtcrtpsender.RTCRtpSender._run_rtp)
    assert "await self._next_encoded_frame(codec)" in source  # looked up at every turn


def test_sender_packs_packets_instead_of_encoding() -> None:
    """The fact `PacketTrack` rests on: `pack()` exists and the sender branches on it."""
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


class CountingEstimator:
    """Wraps a receiver's remote bitrate estimator, counting the packets fed to it."""

    def __init__(self, inner: object) -> None:
        self.inner = inner
        self.fed = 0

    def add(self, **kwargs: object) -> object:
        self.fed += 1
        return self.inner.add(**kwargs)  # type: ignore[attr-defined]


async def pull_video(
    publisher: RTCPeerConnection,
    receiving: RTCPeerConnection,
    tap: Callable[[RTCRtpTransceiver], None],
    *,
    offered_by: str = "receiver",
    declined: bool = True,
) -> RTCRtpTransceiver:
    """`receiving` pulls a colour track from `publisher` as `SessionsClient.pull` does:
    `tap` taps its transceiver, whose section leaves abs-send-time out if `declined`."""

    async def set_local(description: RTCSessionDescription) -> None:
        if declined:
            description = without_abs_send_time(description, [transceiver])
        await receiving.setLocalDescription(description)

    if offered_by == "receiver":  # the client-offer pull: a recvonly section
        transceiver = receiving.addTransceiver("video", direction="recvonly")
        tap(transceiver)
        await set_local(await receiving.createOffer())
        await publisher.setRemoteDescription(receiving.localDescription)
        sending = publisher.getTransceivers()[0]
        sending.sender.replaceTrack(ColourTrack((200, 30, 30)))
        sending.direction = "sendonly"
        await publisher.setLocalDescription(await publisher.createAnswer())
        await receiving.setRemoteDescription(publisher.localDescription)
    else:  # the SFU-offer pull: the receiving end answers
        publisher.addTransceiver(ColourTrack((200, 30, 30)), direction="sendonly")
        await publisher.setLocalDescription(await publisher.createOffer())
        await receiving.setRemoteDescription(publisher.localDescription)
        transceiver = receiving.getTransceivers()[0]
        tap(transceiver)
        await set_local(await receiving.createAnswer())
        await publisher.setRemoteDescription(receiving.localDescription)
    return transceiver


@pytest.mark.parametrize("declined", [True, False])
@pytest.mark.parametrize("offered_by", ["receiver", "sender"])
async def test_declined_abs_send_time_stops_bandwidth_estimation(
    pcs: list[RTCPeerConnection], declined: bool, offered_by: str
) -> None:
    """What `without_abs_send_time` relies on: the other end agrees to leave the extension
    out, the sender then stamps no packet with it, and the receiver feeds its estimator
    only packets that carry it."""
    publisher, receiving = new_pc(), new_pc()
    pcs += [publisher, receiving]
    frames: list[EncodedFrame] = []

    def tap(transceiver: RTCRtpTransceiver) -> None:
        tap_receiver(transceiver.receiver, "video", frames.append)

    transceiver = await pull_video(
        publisher, receiving, tap, offered_by=offered_by, declined=declined
    )
    estimator = CountingEstimator(getattr(transceiver.receiver, ESTIMATOR_ATTR))
    setattr(transceiver.receiver, ESTIMATOR_ATTR, estimator)
    await wait_for(lambda: len(frames) >= 10, within=15)
    assert ("abs-send-time" in receiving.localDescription.sdp) is not declined
    assert (estimator.fed == 0) is declined, estimator.fed


async def test_direct_video_reaches_the_tap_past_aiortc(pcs: list[RTCPeerConnection]) -> None:
    """A tapped video receiver without bandwidth estimation gets its RTP straight from
    SRTP (`direct_receive`), as a pipeline's pull does: frames arrive whole, in order."""
    publisher, receiving = new_pc(), new_pc()
    pcs += [publisher, receiving]
    frames: list[EncodedFrame] = []

    def tap(transceiver: RTCRtpTransceiver) -> None:
        tap_receiver(transceiver.receiver, "video", frames.append, estimate_bandwidth=False)

    transceiver = await pull_video(publisher, receiving, tap)
    receive_eagerly(receiving)
    dtls = transceiver.receiver.transport
    await wait_for(lambda: dtls.state == "connected" and len(frames) >= 5, within=15)
    parsed_by_aiortc: list[bytes] = []
    handle_rtp_data = dtls._handle_rtp_data
    dtls._handle_rtp_data = lambda data, **kw: (  # type: ignore[method-assign]
        parsed_by_aiortc.append(data) or handle_rtp_data(data, **kw)
    )
    seen = len(frames)
    await wait_for(lambda: len(frames) >= seen + 30, within=15)

    assert parsed_by_aiortc == []
    assert frames[0].keyframe and all(f.codec.name == "VP8" for f in frames)
    steps = {(b.timestamp - a.timestamp) % 2**32 for a, b in itertools.pairwise(frames[seen:])}
    assert steps and all(0 < step < 90_000 for step in steps)  # in order, none repeated
    assert receive_counts(transceiver.receiver).packets_received >= len(frames)


# --- VP9 and H265, which `register_codecs` adds -----------------------------------------


def test_registered_codecs_come_after_aiortc_own_and_only_once() -> None:
    register_codecs()  # already done at import: a second call changes nothing
    video = aiortc.codecs.CODECS["video"]
    names = [c.mimeType for c in video if not aiortc.codecs.is_rtx(c)]
    assert names == ["video/VP8", "video/H264", "video/H264", "video/VP9", "video/H265"]
    by_type = {c.payloadType: c for c in video}
    assert len(by_type) == len(video), "payload types are unique"
    for codec in video:
        if aiortc.codecs.is_rtx(codec):
            assert by_type[codec.parameters["apt"]].clockRate == codec.clockRate == 90_000
    vp9, h265 = (c for c in video if c.mimeType in ("video/VP9", "video/H265"))
    assert vp9.parameters == {"profile-id": "0"} and vp9.clockRate == 90_000
    assert h265.parameters["profile-id"] == "1" and h265.clockRate == 90_000
    assert {"nack", "pli"} <= {f.parameter or f.type for f in vp9.rtcpFeedback}


async def test_opus_is_negotiated_with_inband_fec(pcs: list[RTCPeerConnection]) -> None:
    """What tells a browser to send the FEC that egress rebuilds lost frames from."""
    offerer, answerer = new_pc(), new_pc()
    pcs += [offerer, answerer]
    offerer.addTransceiver("audio", direction="recvonly")
    answerer.addTransceiver("audio", direction="sendonly")
    await negotiate(offerer, answerer)
    for description in (offerer.localDescription, answerer.localDescription):
        fmtp = [line for line in description.sdp.splitlines() if line.startswith("a=fmtp:")]
        assert any("useinbandfec=1" in line for line in fmtp), description.sdp


def test_aiortc_looks_the_codec_functions_up_where_they_are_extended() -> None:
    """Each function is read from its module's globals at call time; pins both halves."""
    import inspect

    calls = {
        aiortc.rtcrtpsender.RTCRtpSender._next_encoded_frame: "get_encoder(codec)",
        aiortc.rtcrtpreceiver.decoder_worker: "get_decoder(codec)",
        aiortc.rtcrtpreceiver.RTCRtpReceiver._handle_rtp_packet: "depayload(codec,",
        aiortc.rtcpeerconnection.find_common_codecs: "is_codec_compatible(",
    }
    for function, call in calls.items():
        assert call in inspect.getsource(function), (function, call)
    # A malformed payload must surface as the ValueError the receiver skips packets on.
    assert "except ValueError" in inspect.getsource(
        aiortc.rtcrtpreceiver.RTCRtpReceiver._handle_rtp_packet
    )
    vp9, h265 = (
        c for c in aiortc.codecs.CODECS["video"] if c.mimeType in ("video/VP9", "video/H265")
    )
    for codec in (vp9, h265):
        assert isinstance(aiortc.rtcrtpsender.get_encoder(codec), PassthroughEncoder)
        assert isinstance(aiortc.rtcrtpreceiver.get_decoder(codec), PyAvDecoder)
        with pytest.raises(ValueError):
            aiortc.rtcrtpreceiver.depayload(codec, b"\x80")  # truncated
    vp8 = aiortc.codecs.CODECS["video"][0]
    assert type(aiortc.rtcrtpsender.get_encoder(vp8)).__name__ == "Vp8Encoder"
    assert aiortc.rtcrtpreceiver.depayload(vp8, b"\x10\x02") == b"\x02"


async def test_only_the_vp9_profile_offered_is_accepted(pcs: list[RTCPeerConnection]) -> None:
    offerer, answerer = new_pc(), new_pc()
    pcs += [offerer, answerer]
    prefer(offerer.addTransceiver("video", direction="recvonly"), "VP9")
    await offerer.setLocalDescription(await offerer.createOffer())
    # A browser lists VP9 profile 2 (10-bit) too, under the same name.
    lines = offerer.localDescription.sdp.replace("\r\n", "\n").split("\n")
    munged: list[str] = []
    for line in lines:
        if line.startswith("m=video"):
            head, formats = line.split(" UDP/TLS/RTP/SAVPF ")
            line = f"{head} UDP/TLS/RTP/SAVPF 110 {formats}"
        munged.append(line)
        if line.startswith("a=mid:"):
            munged += ["a=rtpmap:110 VP9/90000", "a=fmtp:110 profile-id=2"]

    await answerer.setRemoteDescription(RTCSessionDescription("\r\n".join(munged), "offer"))
    await answerer.setLocalDescription(await answerer.createAnswer())
    answer = answerer.localDescription.sdp
    assert "a=rtpmap:110" not in answer
    assert "VP9/90000" in answer and "profile-id=0" in answer


@pytest.mark.parametrize("codec", ["VP9", "H265"])
async def test_vp9_and_h265_relay_byte_for_byte_and_never_decode(
    pcs: list[RTCPeerConnection], codec: str
) -> None:
    published = encode_colour(codec, (200, 60, 160), 30, gop=10)
    decoders_made: list[object] = []
    original = aiortc.rtcrtpreceiver.get_decoder

    def counting(params: object) -> object:
        decoders_made.append(params)
        return original(params)

    aiortc.rtcrtpreceiver.get_decoder = counting
    try:
        source = PacketLoopTrack("video", published, 3000, 90_000)
        relay = await build_relay(pcs, source, "video", codec)
        received: list[EncodedFrame] = []
        tap_receiver(relay.subscriber.getTransceivers()[0].receiver, "video", received.append)
        await wait_for(lambda: len(received) >= 30, within=15)
    finally:
        aiortc.rtcrtpreceiver.get_decoder = original

    assert not decoders_made, "a tapped receiver must never decode"
    assert {f.codec.name for f in relay.relayed + received} == {codec}
    for frames in (relay.relayed, received):
        indices = [published.index(f.data) for f in frames]  # byte-identical
        assert all((b - a) % len(published) == 1 for a, b in itertools.pairwise(indices))
        assert [f.keyframe for f in frames] == [i % 10 == 0 for i in indices]
    assert received[0].keyframe
    assert len(decode_all(codec, [f.data for f in received])) == len(received)
    decoder = FrameDecoder(received[0].codec)  # what `sluice.media.calls_client` users decode with
    pictures = [p for i, f in enumerate(received) for p in decoder.decode(f, i * 3000)]
    assert len(pictures) == len(received)
    assert (pictures[-1].width, pictures[-1].height) == (320, 240)


def test_ice_agent_seam() -> None:
    """`pin_ice_ports` finds aioice's gathering where it relies on, and aiortc takes it up.

    Media over pinned ports: tests/sfu/test_ice.py.
    """
    import aioice
    from aiortc.rtcicetransport import RTCIceGatherer

    from sluice.media.aiortc_internals import pin_ice_ports

    try:
        pin_ice_ports(range(20_000, 20_010))
        agent = RTCIceGatherer()._connection
        assert type(agent) is not aioice.Connection and isinstance(agent, aioice.Connection)
    finally:
        pin_ice_ports(None)
    assert type(RTCIceGatherer()._connection) is aioice.Connection


async def test_eager_receive_handles_media_in_the_datagram_callback(
    pcs: list[RTCPeerConnection],
) -> None:
    """`receive_eagerly`: frames, statistics and RTCP as before, aiortc's queue unused."""
    relay = await build_relay(
        pcs, PacketLoopTrack("audio", encode_opus_tone(440.0, 50), SAMPLES, 48_000), "audio"
    )
    sub_rx = relay.subscriber.getTransceivers()[0].receiver
    received: list[EncodedFrame] = []
    tap_receiver(sub_rx, "audio", received.append)
    receive_eagerly(relay.subscriber)
    receive_eagerly(relay.subscriber)  # idempotent: sockets already handled stay as they are
    dtls = sub_rx.transport
    # Media that arrives before the handshake ends has no key yet: aiortc's way.
    await wait_for(lambda: dtls.state == "connected" and len(received) >= 5, within=15)
    queue = dtls.transport._connection._queue
    queued: list[object] = []
    put = queue.put_nowait
    queue.put_nowait = lambda item: (queued.append(item), put(item))  # type: ignore[method-assign]
    parsed_by_aiortc: list[bytes] = []
    handle_rtp_data = dtls._handle_rtp_data
    dtls._handle_rtp_data = lambda data, **kw: (  # type: ignore[method-assign]
        parsed_by_aiortc.append(data) or handle_rtp_data(data, **kw)
    )
    await wait_for(lambda: len(received) >= 60, within=15)

    assert all(f.codec.name == "opus" for f in received)
    counts = receive_counts(sub_rx)
    assert counts.packets_received >= 60  # the receiver's statistics are kept
    stats = await relay.subscriber.getStats()
    transport = next(s for s in stats.values() if s.type == "transport")
    assert transport.packetsReceived >= counts.packets_received  # and the transport's
    # Media never went through aioice's queue (DTLS and STUN still may).
    assert not [d for d, _ in (q for q in queued if q) if 127 < d[0] < 192]
    # Audio RTP of a known source went straight to the tap (`direct_audio`).
    assert parsed_by_aiortc == []
    # RTCP arrives the same way: the sender's reports reach the subscriber's receiver.
    for _ in range(100):
        if any(s.type == "remote-outbound-rtp" for s in (await sub_rx.getStats()).values()):
            break
        await asyncio.sleep(0.05)
    else:
        raise AssertionError("no sender report reached the eager receiver")
