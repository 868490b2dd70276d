"""`direct_receive`: the same packet fields, statistics, feedback and declines as aiortc's
own path."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import pytest
from aiortc.codecs import depayload
from aiortc.rtcrtpparameters import RTCRtpCodecParameters
from aiortc.rtcrtpreceiver import NackGenerator, StreamStatistics
from aiortc.rtp import HeaderExtensionsMap, RtpPacket

from sluice.media.aiortc_internals.direct_receive import handle_rtp, take_audio, take_video
from sluice.media.aiortc_internals.guard import CODECS_ATTR, STREAMS_ATTR, SeamBroken

SSRC = 0x1234_5678
OPUS = RTCRtpCodecParameters(mimeType="audio/opus", clockRate=48_000, channels=2, payloadType=111)
RTX = RTCRtpCodecParameters(
    mimeType="audio/rtx", clockRate=48_000, payloadType=112, parameters={"apt": 111}
)


class Receiver:
    """Stands in for an `RTCRtpReceiver`: its private tables, under their mangled names."""

    def __init__(self) -> None:
        self._enabled = True
        setattr(self, CODECS_ATTR, {111: OPUS, 112: RTX})
        setattr(self, STREAMS_ATTR, {SSRC: StreamStatistics(48_000)})
        self._RTCRtpReceiver__active_ssrc: dict[int, Any] = {}
        self.added: list[Any] = []

    def add(self, packet: Any) -> tuple[bool, None]:  # the tap's
        self.added.append(packet)
        return False, None

    @property
    def stats(self) -> StreamStatistics:
        streams: dict[int, StreamStatistics] = getattr(self, STREAMS_ATTR)
        return streams[SSRC]


@pytest.fixture
def receiver() -> Receiver:
    receiver = Receiver()
    take_audio(receiver, receiver.add)  # type: ignore[arg-type]
    return receiver


def dtls_for(receiver: Receiver) -> Any:
    return SimpleNamespace(_rtp_router=SimpleNamespace(ssrc_table={SSRC: receiver}))


def rtp(seq: int, *, payload: bytes = b"\xfc\x01\x02", pt: int = 111, **fields: Any) -> bytes:
    packet = RtpPacket(payload_type=pt, sequence_number=seq, timestamp=960 * seq, ssrc=SSRC)
    packet.payload = payload
    packet.marker = fields.pop("marker", 0)
    packet.csrc = fields.pop("csrc", [])
    packet.padding_size = fields.pop("padding", 0)
    extensions = fields.pop("extensions", None)
    if extensions is not None:
        packet.extensions.mid, packet.extensions.audio_level = extensions
    extension_map = HeaderExtensionsMap()
    extension_map.configure(
        SimpleNamespace(
            headerExtensions=[
                SimpleNamespace(id=1, uri="urn:ietf:params:rtp-hdrext:sdes:mid"),
                SimpleNamespace(id=2, uri="urn:ietf:params:rtp-hdrext:ssrc-audio-level"),
            ]
        )
    )
    return bytes(packet.serialize(extension_map))


@pytest.mark.parametrize(
    "fields",
    [
        {},
        {"marker": 1},
        {"csrc": [1, 2, 3]},
        {"padding": 7},
        {"extensions": ("0", (True, 30))},
        {"csrc": [9], "padding": 3, "extensions": ("audio", (False, 3)), "payload": b"x" * 200},
    ],
)
def test_fields_are_those_aiortc_parses(receiver: Receiver, fields: dict[str, Any]) -> None:
    data = rtp(7, **fields)

    assert handle_rtp(dtls_for(receiver), data)

    ours, theirs = receiver.added[-1], RtpPacket.parse(data)
    for name in ("payload_type", "marker", "sequence_number", "timestamp", "payload"):
        assert getattr(ours, name) == getattr(theirs, name), name
    assert ours._data == theirs.payload  # Opus depayloads to itself


def test_statistics_count_every_packet_as_aiortc_does(receiver: Receiver) -> None:
    aiortc_stats = StreamStatistics(48_000)
    for seq in (1, 2, 4, 3, 5):
        handle_rtp(dtls_for(receiver), rtp(seq))
        aiortc_stats.add(RtpPacket.parse(rtp(seq)))

    assert receiver.stats.packets_received == aiortc_stats.packets_received == 5
    assert receiver.stats.max_seq == aiortc_stats.max_seq == 5
    assert receiver.stats.packets_lost == 0
    assert SSRC in receiver._RTCRtpReceiver__active_ssrc


@pytest.mark.parametrize(
    "data",
    [
        rtp(1, pt=112),  # RTX: aiortc unwraps it
        rtp(1, pt=96),  # a payload type the receiver did not negotiate
        rtp(1)[:11],  # shorter than a header
        bytes([0x40]) + rtp(1)[1:],  # RTP version 1
        bytes([rtp(1)[0] | 0x20]) + rtp(1)[1:-1] + b"\x00",  # padding of length 0
        bytes([rtp(1)[0] | 0x10]) + rtp(1)[1:12],  # an extension flag with no extension
    ],
)
def test_what_aiortc_should_judge_is_declined(receiver: Receiver, data: bytes) -> None:
    assert not handle_rtp(dtls_for(receiver), data)
    assert receiver.added == []


def test_unknown_sources_and_receivers_are_declined(receiver: Receiver) -> None:
    assert not handle_rtp(SimpleNamespace(_rtp_router=SimpleNamespace(ssrc_table={})), rtp(1))
    other = SimpleNamespace(_rtp_router=SimpleNamespace(ssrc_table={SSRC: object()}))
    assert not handle_rtp(other, rtp(1))
    getattr(receiver, STREAMS_ATTR).clear()  # its first packet: aiortc makes the statistics
    assert not handle_rtp(dtls_for(receiver), rtp(1))


def test_a_disabled_receiver_drops_packets(receiver: Receiver) -> None:
    receiver._enabled = False
    assert handle_rtp(dtls_for(receiver), rtp(1))
    assert receiver.added == [] and receiver.stats.packets_received == 0


def test_a_receiver_without_its_tables_is_a_broken_seam() -> None:
    with pytest.raises(SeamBroken):
        take_audio(SimpleNamespace(_enabled=True), lambda _: (False, None))  # type: ignore[arg-type]


# --- video: NACK, depayloading, PLI ------------------------------------------------------

VP8 = RTCRtpCodecParameters(mimeType="video/VP8", clockRate=90_000, payloadType=96)
VIDEO_RTX = RTCRtpCodecParameters(
    mimeType="video/rtx", clockRate=90_000, payloadType=97, parameters={"apt": 96}
)


class VideoReceiver(Receiver):
    """A video receiver: its NACK generator, estimator and RTCP feedback senders too."""

    def __init__(self) -> None:
        super().__init__()
        setattr(self, CODECS_ATTR, {96: VP8, 97: VIDEO_RTX})
        setattr(self, STREAMS_ATTR, {SSRC: StreamStatistics(90_000)})
        self._RTCRtpReceiver__nack_generator = NackGenerator()
        self._RTCRtpReceiver__remote_bitrate_estimator: object | None = object()
        self.nacks: list[tuple[int, list[int]]] = []
        self.plis: list[int] = []
        self.keyframe_due = False

    def add(self, packet: Any) -> tuple[bool, None]:
        self.added.append(packet)
        return self.keyframe_due, None

    async def _send_rtcp_nack(self, media_ssrc: int, lost: list[int]) -> None:
        self.nacks.append((media_ssrc, lost))

    async def _send_rtcp_pli(self, media_ssrc: int) -> None:
        self.plis.append(media_ssrc)


@pytest.fixture
def video() -> VideoReceiver:
    receiver = VideoReceiver()
    take_video(receiver, receiver.add)  # type: ignore[arg-type]
    return receiver


def vp8(seq: int, descriptor: bytes = b"\x10", **fields: Any) -> bytes:
    return rtp(seq, payload=descriptor + b"\x9d\x01\x2a" * 10, pt=96, **fields)


def test_video_is_depayloaded_as_aiortc_does(video: VideoReceiver) -> None:
    for descriptor in (b"\x10", b"\x90\x80\x12", b"\x90\xe0\x92\x34\x01\x02"):
        assert handle_rtp(dtls_for(video), vp8(1, descriptor, marker=1))
        theirs = RtpPacket.parse(vp8(1, descriptor, marker=1))
        assert video.added[-1]._data == depayload(VP8, theirs.payload)
        assert video.added[-1].marker == 1
    assert video._RTCRtpReceiver__remote_bitrate_estimator is None  # never fed


def test_a_gap_sends_the_nack_aiortc_would(video: VideoReceiver) -> None:
    theirs = NackGenerator()
    for seq in (10, 11, 14, 12):
        handle_rtp(dtls_for(video), vp8(seq))
        theirs.add(RtpPacket.parse(vp8(seq)))
    assert video.nacks == [(SSRC, [12, 13])]  # once, when the gap showed
    assert video._RTCRtpReceiver__nack_generator.missing == theirs.missing == {13}


def test_a_keyframe_due_sends_a_pli(video: VideoReceiver) -> None:
    handle_rtp(dtls_for(video), vp8(1))
    assert video.plis == []
    video.keyframe_due = True
    handle_rtp(dtls_for(video), vp8(2))
    assert video.plis == [SSRC]


def test_video_rtx_is_left_to_aiortc_and_a_bad_descriptor_dropped(video: VideoReceiver) -> None:
    assert not handle_rtp(dtls_for(video), rtp(1, pt=97))  # aiortc unwraps RTX
    assert handle_rtp(dtls_for(video), rtp(2, payload=b"\x90\x80", pt=96))  # no PictureID
    assert video.added == [] and video.stats.packets_received == 1  # counted, as aiortc does


def test_a_video_receiver_without_feedback_senders_is_a_broken_seam() -> None:
    receiver = Receiver()  # audio's tables only: no NACK generator
    with pytest.raises(SeamBroken):
        take_video(receiver, receiver.add)  # type: ignore[arg-type]
