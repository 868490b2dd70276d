"""snapshots: a snapshot sink for vision. Sluice sends JPEG pictures of a video track at
the rate and size you choose (E5); each is saved in a folder under its time, then handed
to `look`, the place a vision model goes.

    python -m sluice_endpoint.examples.snapshots --session SESSION --track cam \\
        --fps 2 --max-width 640 --out snapshots

With `make run` going, publish your camera on the demo page (http://127.0.0.1:8080/,
**Start**) and pass the session id and the video track's name it shows. Each picture is
`OUT/<UTC time of arrival>_<seconds into the track>.jpg`, and one line is printed:

    snapshots/20250601T101502.250Z_00003.500s.jpg  640x360, 24.1 KB

To run a model, replace `look` (`Sink(out, look=my_model)`): it gets a `Snapshot` (the
JPEG's bytes, its file, its times) in a thread, and what it returns is printed.
"""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from pathlib import Path

from sluice_endpoint.client import AsyncSluiceClient, EgressItem
from sluice_endpoint.egress import EgressStream
from sluice_endpoint.examples.cli import add_source, attached, first_of, parser, run, say
from sluice_endpoint.formats import VideoFormat
from sluice_endpoint.items import JpegFrame
from sluice_endpoint.server import Endpoint, url_of

VIDEO_CLOCK_RATE = 90_000
# Start-of-frame markers carry the picture's size (not DHT C4, JPG C8, DAC CC).
_SOF = {0xC0, 0xC1, 0xC2, 0xC3, 0xC5, 0xC6, 0xC7, 0xC9, 0xCA, 0xCB, 0xCD, 0xCE, 0xCF}


@dataclass(frozen=True, slots=True)
class Snapshot:
    """One picture, as saved.

    Attributes:
        jpeg: the JPEG file's bytes.
        path: where it was saved.
        received: when it arrived (UTC).
        media_s: its time in the track, from the first picture.
        sequence_number: its Packet's.
    """

    jpeg: bytes
    path: Path
    received: datetime
    media_s: float
    sequence_number: int


def jpeg_size(jpeg: bytes) -> tuple[int, int] | None:
    """(width, height) from a JPEG's start-of-frame header; None if it has none."""
    position = 2
    while position + 9 <= len(jpeg):
        if jpeg[position] != 0xFF:
            return None
        marker = jpeg[position + 1]
        if marker in _SOF:
            height = int.from_bytes(jpeg[position + 5 : position + 7], "big")
            width = int.from_bytes(jpeg[position + 7 : position + 9], "big")
            return width, height
        position += 2 + int.from_bytes(jpeg[position + 2 : position + 4], "big")
    return None


def describe(snapshot: Snapshot) -> str:
    """The stand-in for a model: what any JPEG says about itself."""
    size = jpeg_size(snapshot.jpeg)
    shape = f"{size[0]}x{size[1]}" if size else "no picture size"
    return f"{shape}, {len(snapshot.jpeg) / 1000:.1f} KB"


class Sink:
    """The egress handler: saves every snapshot, then asks `look` about it.

    Args:
        out: the folder (created if needed).
        look: the model; runs in a thread, its answer goes to `report`.
        report: gets each snapshot and what `look` said.
    """

    def __init__(
        self,
        out: Path,
        look: Callable[[Snapshot], str | None] = describe,
        report: Callable[[Snapshot, str | None], None] = lambda _s, _r: None,
    ) -> None:
        self.out = out
        self.look = look
        self.report = report
        self.saved: list[Snapshot] = []
        self.changed = asyncio.Event()  # set whenever a snapshot was saved

    async def __call__(self, stream: EgressStream) -> None:
        first: int | None = None
        async for item in stream:
            if not isinstance(item, JpegFrame):
                continue
            first = item.timestamp if first is None else first
            media_s = ((item.timestamp - first) % (1 << 32)) / VIDEO_CLOCK_RATE
            received = datetime.now(UTC)
            name = f"{received:%Y%m%dT%H%M%S}.{received.microsecond // 1000:03d}Z"
            path = self.out / f"{name}_{media_s:09.3f}s.jpg"
            await asyncio.to_thread(self._save, path, item.data)
            snapshot = Snapshot(item.data, path, received, media_s, item.sequence_number)
            self.saved.append(snapshot)
            self.changed.set()
            self.report(snapshot, await asyncio.to_thread(self.look, snapshot))

    def _save(self, path: Path, jpeg: bytes) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(jpeg)


async def collect(
    sink: Sink,
    api: AsyncSluiceClient,
    item: EgressItem,
    *,
    stop: asyncio.Event,
    count: int | None = None,
    host: str = "127.0.0.1",
    port: int = 0,
) -> None:
    """Serves `sink`, attaches it (`item` without its endpoint yet), and runs until `stop`,
    the track ends, or `count` snapshots are saved."""
    endpoint = Endpoint()
    ended = asyncio.Event()

    async def handler(stream: EgressStream) -> None:
        try:
            await sink(stream)
        finally:
            ended.set()

    endpoint.egress("/snapshots", VideoFormat(fps=item.fps or 1.0))(handler)

    async def enough() -> None:
        while count is None or len(sink.saved) < count:
            sink.changed.clear()
            await sink.changed.wait()

    async with endpoint.serve(host, port) as server:
        url = f"{url_of(server)}/snapshots"
        async with attached(api, replace(item, endpoint=url)) as adapter:
            say(f"snapshots: {url} <- egress {adapter.adapter_id} ({item.track_name}, JPEG)")
            await first_of(stop.wait(), ended.wait(), enough())


def main(argv: list[str] | None = None) -> int:
    options = parser("snapshots", __doc__)
    add_source(options, "video")
    options.add_argument("--out", type=Path, default=Path("snapshots"), help="the folder")
    options.add_argument("--fps", type=float, default=1.0, help="pictures a second (0.1-5)")
    options.add_argument("--max-width", type=int, help="scale down to this width")
    options.add_argument("--max-height", type=int, help="scale down to this height")
    options.add_argument("--quality", type=int, help="JPEG quality, 1-100")
    options.add_argument("--count", type=int, help="stop after this many pictures")
    args = options.parse_args(argv)
    item = EgressItem(
        args.session, args.track, "", "jpeg", fps=args.fps, max_width=args.max_width,
        max_height=args.max_height, quality=args.quality,
    )  # fmt: skip

    def report(snapshot: Snapshot, answer: str | None) -> None:
        print(f"{snapshot.path}  {answer or ''}", flush=True)

    async def go(stop: asyncio.Event) -> int:
        async with AsyncSluiceClient(args.api, args.secret) as api:
            sink = Sink(args.out, report=report)
            await collect(
                sink, api, item, stop=stop, count=args.count, host=args.host, port=args.port
            )
        return 0

    return run(options.prog, go)


if __name__ == "__main__":
    sys.exit(main())
