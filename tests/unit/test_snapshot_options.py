"""E5 snapshot options: the picture size a JPEG is scaled to, and its quality."""

from __future__ import annotations

import av
import numpy as np
import pytest

from worker.pipelines.snapshots import Picture, SnapshotDecoder, fit_within


@pytest.mark.parametrize(
    ("size", "bounds", "expected"),
    [
        ((640, 480), (320, None), (320, 240)),
        ((640, 480), (None, 120), (160, 120)),
        ((640, 480), (320, 120), (160, 120)),  # the tighter bound wins
        ((640, 480), (4096, 4096), (640, 480)),  # never scaled up
        ((640, 480), (None, None), (640, 480)),
        ((1280, 720), (333, None), (333, 187)),  # aspect kept to the nearest pixel
        ((720, 1280), (320, 320), (180, 320)),  # portrait
        ((4000, 16), (100, None), (100, 1)),  # never below one pixel
    ],
)
def test_fit_within(
    size: tuple[int, int], bounds: tuple[int | None, int | None], expected: tuple[int, int]
) -> None:
    assert fit_within(*size, *bounds) == expected


def picture(width: int, height: int) -> Picture:
    image = np.zeros((height, width, 3), dtype=np.uint8)
    image[:, : width // 2] = (250, 30, 30)
    frame = av.VideoFrame.from_ndarray(image, format="rgb24").reformat(format="yuv420p")
    return Picture(frame, 0)


def jpeg_shape(data: bytes) -> tuple[int, int]:
    frame = av.CodecContext.create("mjpeg", "r").decode(av.Packet(data))[0]
    return frame.width, frame.height


def test_jpegs_are_scaled_down_and_quality_sets_the_size() -> None:
    source = picture(640, 480)
    assert jpeg_shape(SnapshotDecoder(75).encode_jpeg(source)) == (640, 480)
    small = SnapshotDecoder(75, max_width=320).encode_jpeg(source)
    assert jpeg_shape(small) == (320, 240)
    # Scaled, the left half is still red: the picture, not a crop.
    decoded = av.CodecContext.create("mjpeg", "r").decode(av.Packet(small))[0]
    rgb = decoded.to_ndarray(format="rgb24")
    assert rgb[120, 40, 0] > 200 and rgb[120, 280, 0] < 60
    noisy_array = np.random.default_rng(1).integers(0, 255, (240, 320, 3), dtype=np.uint8)
    noisy = Picture(av.VideoFrame.from_ndarray(noisy_array, format="rgb24"), 0)
    low, high = (len(SnapshotDecoder(q).encode_jpeg(noisy)) for q in (10, 95))
    assert low * 3 < high
