"""No snapshot from a damaged reference: after a lost frame, nothing until a keyframe."""

from __future__ import annotations

import fractions

import av
import numpy as np

from worker.pipelines.snapshots import SnapshotDecoder
from worker.protocol.picture_chain import ReferenceChain


def test_the_chain_breaks_at_a_gap_or_a_failure_and_mends_at_a_keyframe() -> None:
    chain = ReferenceChain()
    assert chain.admit(keyframe=True, after_gap=False)
    assert chain.admit(keyframe=False, after_gap=False)
    assert not chain.admit(keyframe=False, after_gap=True) and chain.broken
    assert not chain.admit(keyframe=False, after_gap=False)
    assert chain.admit(keyframe=True, after_gap=True) and not chain.broken
    chain.fail()
    chain.fail()
    assert chain.breaks == 2 and not chain.admit(keyframe=False, after_gap=False)


def vp8_moving_texture(frames: int = 20) -> list[bytes]:
    """A textured picture sliding sideways, one keyframe only (the first)."""
    encoder = av.CodecContext.create("libvpx", "w")
    encoder.width, encoder.height = 160, 120
    encoder.pix_fmt = "yuv420p"
    encoder.time_base = fractions.Fraction(1, 30)
    encoder.gop_size = 1000
    encoder.bit_rate = 500_000
    encoder.options = {"deadline": "realtime", "cpu-used": "8", "lag-in-frames": "0"}
    texture = np.random.default_rng(7).integers(0, 256, (120, 400, 3), dtype=np.uint8)
    out = []
    for i in range(frames):
        image = np.ascontiguousarray(texture[:, i * 8 : i * 8 + 160])
        frame = av.VideoFrame.from_ndarray(image, format="rgb24").reformat(format="yuv420p")
        frame.pts = i
        out += [bytes(p) for p in encoder.encode(frame)]
    return out


def pixels(decoder: SnapshotDecoder) -> np.ndarray:
    assert decoder.latest is not None
    return decoder.latest.frame.to_ndarray(format="rgb24").astype(np.float64)


def test_a_lost_frame_withholds_pictures_until_the_next_keyframe() -> None:
    frames = vp8_moving_texture()
    lost = 10
    whole = SnapshotDecoder(jpeg_quality=80)
    for i, data in enumerate(frames[: lost + 2]):
        whole.decode("VP8", data, i)
    # What happened before: the delta frames after the loss decode against a reference
    # that is not the sender's, and the "snapshot" shows a picture that was never sent.
    blind = SnapshotDecoder(jpeg_quality=80)
    for i, data in enumerate(frames[: lost + 2]):
        if i != lost:
            blind.decode("VP8", data, i)
    assert np.abs(pixels(blind) - pixels(whole)).mean() > 10

    decoder = SnapshotDecoder(jpeg_quality=80)
    produced = []
    for i, data in enumerate(frames):
        if i != lost:
            produced.append(
                decoder.decode("VP8", data, i, keyframe=i == 0, after_gap=i == lost + 1)
            )
    assert all(produced[:lost]) and not any(produced[lost:])
    assert decoder.needs_keyframe and decoder.withheld == len(frames) - lost - 1
    assert decoder.latest is not None and decoder.latest.rtp_timestamp == lost - 1
