"""Test video: a track whose colour changes every second, and JPEG checks."""

from __future__ import annotations

import fractions
import io

import av
import numpy as np

from tests.sfu.media import PacedTrack

FPS = 30
COLOURS = [(220, 30, 30), (30, 200, 40), (40, 60, 220), (230, 220, 40)]


class ColourCycleTrack(PacedTrack):
    """Solid frames whose colour steps through `COLOURS`, one per second, in real time."""

    kind = "video"

    def __init__(
        self, width: int = 640, height: int = 480, *, switch_to: tuple[int, int] | None = None
    ) -> None:
        super().__init__()
        self._sizes = [(width, height), switch_to or (width, height)]
        self._images = {size: _solid_images(*size) for size in self._sizes}

    async def recv(self) -> av.VideoFrame:
        await self._wait_turn(FPS)
        # With `switch_to`, the resolution changes after 2 s (a camera or layer switch).
        size = self._sizes[1] if self._n >= 2 * FPS else self._sizes[0]
        image = self._images[size][(self._n // FPS) % len(COLOURS)]
        frame = av.VideoFrame.from_ndarray(image, format="rgb24")
        frame.pts = self._n * (90_000 // FPS)
        frame.time_base = fractions.Fraction(1, 90_000)
        self._n += 1
        return frame


def _solid_images(width: int, height: int) -> list[np.ndarray]:
    images = []
    for rgb in COLOURS:
        image = np.zeros((height, width, 3), dtype=np.uint8)
        image[:, :] = rgb
        images.append(image)
    return images


def decode_jpeg(data: bytes) -> np.ndarray:
    """RGB pixels of one JPEG (raises if it is not a complete JPEG)."""
    assert data[:2] == b"\xff\xd8" and data[-2:] == b"\xff\xd9", "not a complete JPEG"
    with av.open(io.BytesIO(data), format="mjpeg") as container:
        frame = next(container.decode(video=0))
    return frame.to_ndarray(format="rgb24")


def colour_index(image: np.ndarray) -> int:
    h, w, _ = image.shape
    centre = image[h // 2 - 8 : h // 2 + 8, w // 2 - 8 : w // 2 + 8].reshape(-1, 3).mean(axis=0)
    distances = [float(np.linalg.norm(centre - np.array(c))) for c in COLOURS]
    return int(np.argmin(distances))


def explained_by_one_phase(times_s: list[float], indices: list[int]) -> bool:
    """Whether one source phase explains every snapshot's colour from its timestamp."""
    for phase in np.arange(0, len(COLOURS), 0.01):
        expected = [int((t + phase) // 1) % len(COLOURS) for t in times_s]
        if expected == indices:
            return True
    return False
