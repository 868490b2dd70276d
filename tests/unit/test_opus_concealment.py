"""Opus packets read without decoding, and libopus's concealment (PLC and in-band FEC)."""

from __future__ import annotations

import ctypes

import numpy as np
import pytest

from tests.integration.audio import opus_tone_packets
from worker.pipelines.libopus import libopus
from worker.pipelines.opus_pcm import OpusPcmDecoder
from worker.protocol.opus_packet import frame_count, has_fec, packet_samples

FRAME = 960


def encode_tone(seconds: float, fec: bool) -> list[bytes]:
    return opus_tone_packets(seconds, (440.0, 660.0), fec=fec)


def test_durations_and_frame_counts() -> None:
    assert packet_samples(bytes([31 << 3])) == 960  # CELT FB 20 ms, one frame
    assert packet_samples(bytes([(31 << 3) | 1])) == 1920  # two frames
    assert packet_samples(bytes([(1 << 3) | 3, 3])) == 3 * 960  # SILK NB 20 ms, code 3
    assert packet_samples(bytes([15 << 3])) == 960  # hybrid FB 20 ms
    assert frame_count(b"") == 0 and packet_samples(bytes([3])) == 0


def test_fec_detection_agrees_with_libopus() -> None:
    packets = encode_tone(0.5, fec=True) + encode_tone(0.2, fec=False)
    lib = libopus()
    if not hasattr(lib, "opus_packet_has_lbrr"):
        pytest.skip("this libopus predates opus_packet_has_lbrr (1.5)")
    lib.opus_packet_has_lbrr.argtypes = [ctypes.c_char_p, ctypes.c_int32]
    ours = [has_fec(p) for p in packets]
    assert ours == [bool(lib.opus_packet_has_lbrr(p, len(p))) for p in packets]
    assert any(ours) and not all(ours)


def decode_with_losses(packets: list[bytes], lost: set[int], how: str) -> np.ndarray:
    decoder = OpusPcmDecoder()
    pcm = []
    for i, packet in enumerate(packets):
        if i not in lost:
            pcm += decoder.decode(packet)
        elif how == "splice":
            continue  # what egress did before: the audio around a loss is cut
        elif how == "fec" and i + 1 < len(packets) and has_fec(packets[i + 1]):
            pcm.append(decoder.conceal(FRAME, packets[i + 1]))
        else:
            pcm.append(decoder.conceal(FRAME))
    return np.frombuffer(b"".join(pcm), dtype="<i2").reshape(-1, 2)[:, 0].astype(np.float64)


def frame_levels(pcm: np.ndarray, frames: range) -> list[float]:
    return [float(np.sqrt(np.mean(pcm[i * FRAME : (i + 1) * FRAME] ** 2))) for i in frames]


def test_concealment_keeps_the_timeline_and_fec_rebuilds_the_lost_frame() -> None:
    packets = encode_tone(1.0, fec=True)
    lost = {20, 30, 40}
    clean = decode_with_losses(packets, set(), "plc")
    results = {how: decode_with_losses(packets, lost, how) for how in ("splice", "plc", "fec")}
    assert len(results["fec"]) == len(results["plc"]) == len(clean) == len(packets) * FRAME
    assert len(results["splice"]) == len(clean) - len(lost) * FRAME  # the audio was cut
    with_fec = [i for i in lost if has_fec(packets[i + 1])]  # libopus adds it as it sees fit
    assert with_fec
    for i in lost:
        (reference,) = frame_levels(clean, range(i, i + 1))
        (rebuilt,) = frame_levels(results["fec"], range(i, i + 1))
        (extrapolated,) = frame_levels(results["plc"], range(i, i + 1))
        if i in with_fec:
            assert abs(20 * np.log10(rebuilt / reference)) < 1.0  # FEC: the frame itself
        assert extrapolated > reference / 4  # PLC: a plausible continuation, not a hole


def test_a_decoder_refuses_nothing_it_is_given() -> None:
    decoder = OpusPcmDecoder()
    assert decoder.decode(b"") == []
    assert decoder.decode(b"\xff\xff\xff") == []  # malformed: skipped
    assert len(decoder.conceal(960)) == 3840  # PLC before anything was decoded: silence
