"""Audio latency through Sluice, with bare-aiortc baselines measured in the same run.

Egress: one `ClickTrack` in this process (a click every 500 ms) feeds, through a
`MediaRelay`, four paths at once; each path ends at this process's WebSocket endpoint,
which detects the click in the Packet payloads. Latency = arrival at the endpoint -
the moment the source's `recv()` returned the click frame; one `time.monotonic()` clock.

- `sluice`: publisher → SFU → egress PCM adapter (its own process) → endpoint.
- `sfu_tap`: publisher → SFU → a peer here with the receiver tapped (no jitter buffer),
  Opus decoded → `websockets` → endpoint. Sluice's path minus the adapter process.
- `bare_default`: publisher → a second peer here, directly (no SFU), aiortc's default
  receiver (jitter buffer, decoder thread) → `websockets` → endpoint. What a bare aiortc
  consumer pays.
- `bare_tap`: the same direct hop with the receiver tapped: the floor.

Ingest: the endpoint sends real-time-paced PCM (20 ms Packets, a click every 500 ms) to
an ingest adapter; two subscribers here pull its track through the SFU — one tapped
(the floor of what a subscriber can see) and one default aiortc receiver. Latency =
detection - the moment the endpoint sent the click's Packet.

    python -m bench.latency [--clicks 80] [--quick]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, cast

import av
from aiortc import MediaStreamTrack, RTCConfiguration, RTCPeerConnection
from aiortc.contrib.media import MediaRelay
from aiortc.mediastreams import MediaStreamError
from websockets.asyncio.client import connect
from websockets.asyncio.server import ServerConnection

from bench.harness import (
    Stack,
    egress_item,
    endpoint,
    ingest_item,
    progress,
    running_stack,
)
from bench.media import (
    FRAME,
    FRAME_S,
    ClickDetector,
    ClickTrack,
    click_frame,
    match_latencies,
    per_click_ms,
    quiet_frame,
)
from bench.report import distribution, print_table, ratio, write_result
from sluice.media.aiortc_internals import FrameDecoder, register_codecs, tap_receiver
from sluice.media.ice import set_loopback
from sluice.media.types import EncodedFrame
from sluice.wire.packet import decode, encode

EGRESS_PATHS = ("sluice", "sfu_tap", "bare_default", "bare_tap")
INGEST_PATHS = ("sluice_tap", "sluice_default")
WHERE = {
    "bench process": "click publisher (Opus encode x3), endpoints, baseline receivers",
    "adapter process": "egress PCM adapter / ingest adapter (forked by `sluice worker`)",
    "sfu process": "`sluice sfu` forwarding",
}


class WsForwarder:
    """Sends PCM as Packets over a plain `websockets` client, in order, from any callback."""

    def __init__(self, url: str) -> None:
        self.url = url
        self._queue: asyncio.Queue[bytes] = asyncio.Queue()
        self._seq = 0
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        ws = await connect(self.url)

        async def pump() -> None:
            async with ws:
                while True:
                    await ws.send(await self._queue.get())

        self._task = asyncio.create_task(pump())

    def send(self, pcm: bytes) -> None:
        self._queue.put_nowait(encode(self._seq, self._seq * FRAME, pcm))
        self._seq += 1

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)


def tapped_decoder(out: Callable[[bytes], object]) -> Callable[[EncodedFrame], None]:
    """An `on_frame` sink that decodes Opus at once and hands PCM to `out`."""
    decoder: FrameDecoder | None = None

    def on_frame(frame: EncodedFrame) -> None:
        nonlocal decoder
        if decoder is None:
            decoder = FrameDecoder(frame.codec)
        for decoded in decoder.decode(frame, frame.timestamp):
            out(cast(av.AudioFrame, decoded).to_ndarray().tobytes())

    return on_frame


async def read_track(track: MediaStreamTrack, out: Callable[[bytes], object]) -> None:
    """Default aiortc receive: decoded frames from the track's jitter buffer."""
    with contextlib.suppress(MediaStreamError):
        while True:
            frame = await track.recv()
            out(cast(av.AudioFrame, frame).to_ndarray().tobytes())


async def direct_pair(
    track: MediaStreamTrack, on_frame: Callable[[EncodedFrame], None] | None
) -> tuple[RTCPeerConnection, RTCPeerConnection, MediaStreamTrack]:
    """Two peers in this process, `track` sent from one to the other over loopback."""
    config = RTCConfiguration(iceServers=[])
    sender, receiver = RTCPeerConnection(config), RTCPeerConnection(config)
    sender.addTransceiver(track, direction="sendonly")
    await sender.setLocalDescription(await sender.createOffer())
    await receiver.setRemoteDescription(sender.localDescription)
    transceiver = receiver.getTransceivers()[0]
    if on_frame is not None:
        tap_receiver(transceiver.receiver, "audio", on_frame)
    await receiver.setLocalDescription(await receiver.createAnswer())
    await sender.setRemoteDescription(receiver.localDescription)
    return sender, receiver, transceiver.receiver.track


async def wait_flowing(detectors: dict[str, ClickDetector], timeout_s: float = 20) -> None:
    """Until every path has delivered a second of audio."""
    async with asyncio.timeout(timeout_s):
        await asyncio.gather(*(d.flowing.wait() for d in detectors.values()))


async def egress(stack: Stack, clicks: int) -> dict[str, Any]:
    set_loopback(True)
    source = ClickTrack()
    relay = MediaRelay()
    detectors = {name: ClickDetector() for name in EGRESS_PATHS}

    def on_message(path: str, message: bytes, now: float) -> None:
        if path in detectors:
            detectors[path].feed(decode(message).payload, now)

    tasks: list[asyncio.Task[None]] = []
    peers: list[RTCPeerConnection] = []
    forwarders: list[WsForwarder] = []
    sessions = stack.sessions()
    async with endpoint(on_message) as ep:
        try:
            session_id, _ = await sessions.publish(relay.subscribe(source), "mic")
            adapter = await stack.create(egress_item(ep.url("sluice"), session_id, "mic", "pcm"))
            adapter_pid = stack.adapter_pid(adapter["adapterId"])
            for name in ("sfu_tap", "bare_default", "bare_tap"):
                forwarder = WsForwarder(ep.url(name))
                await forwarder.start()
                forwarders.append(forwarder)
                sink = tapped_decoder(forwarder.send) if name.endswith("tap") else None
                if name == "sfu_tap":
                    await sessions.pull(session_id, "mic", kind="audio", on_frame=sink)
                    continue
                sender, receiver, track = await direct_pair(relay.subscribe(source), sink)
                peers += [sender, receiver]
                if sink is None:
                    tasks.append(asyncio.create_task(read_track(track, forwarder.send)))
            await wait_flowing(detectors)
            await asyncio.sleep(1.0)
            source.armed.set()
            progress(f"latency: egress, {clicks} clicks on {len(EGRESS_PATHS)} paths")
            while len(source.click_times) < clicks:
                await asyncio.sleep(1.0)
                if len(source.click_times) % 20 == 0:
                    progress(f"latency: egress {len(source.click_times)}/{clicks} clicks")
            source.armed.clear()
            await asyncio.sleep(1.0)
            await stack.close([adapter["adapterId"]])
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            for forwarder in forwarders:
                await forwarder.stop()
            for pc in peers:
                await pc.close()
            await sessions.close()
            source.stop()
    paths: dict[str, Any] = {}
    for name, detector in detectors.items():
        latencies = match_latencies(source.click_times, detector.times)
        paths[name] = {
            "latency_ms": distribution(latencies, 1000),
            "detected": len(latencies),
            "clicks_sent": len(source.click_times),
            "per_click_ms": per_click_ms(source.click_times, detector.times),
        }
    return {"paths": paths, "adapter_pid": adapter_pid}


async def ingest(stack: Stack, clicks: int) -> dict[str, Any]:
    set_loopback(True)
    armed = asyncio.Event()
    sent: list[float] = []
    lateness: list[float] = []
    quiet = [quiet_frame(i).tobytes() for i in range(50)]
    click = click_frame().tobytes()

    async def feed(_: str, ws: ServerConnection) -> None:
        """20 ms Packets on a drift-free real-time grid; a click every 25th once armed."""
        loop = asyncio.get_running_loop()
        start, n, since = loop.time(), 0, 0
        while True:
            await asyncio.sleep(max(0.0, start + n * FRAME_S - loop.time()))
            lateness.append(loop.time() - (start + n * FRAME_S))
            is_click = armed.is_set() and since % 25 == 0
            since += armed.is_set()
            message = encode(n, n * FRAME, click if is_click else quiet[n % 50])
            if is_click:
                sent.append(time.monotonic())
            await ws.send(message)
            n += 1

    detectors = {name: ClickDetector() for name in INGEST_PATHS}
    sessions = stack.sessions()
    tasks: list[asyncio.Task[None]] = []
    async with endpoint(on_connect=feed) as ep:
        try:
            adapter = await stack.create(ingest_item(ep.url("ingest"), "tts"))
            adapter_pid = stack.adapter_pid(adapter["adapterId"])
            tap = detectors["sluice_tap"]
            await sessions.pull(
                adapter["sessionId"],
                "tts",
                kind="audio",
                on_frame=tapped_decoder(lambda pcm: tap.feed(pcm, time.monotonic())),
            )
            default = detectors["sluice_default"]
            track = await sessions.pull(adapter["sessionId"], "tts", kind="audio")
            out: Callable[[bytes], object] = lambda pcm: default.feed(pcm, time.monotonic())  # noqa: E731
            tasks.append(asyncio.create_task(read_track(track, out)))
            await wait_flowing(detectors)
            await asyncio.sleep(1.0)
            armed.set()
            progress(f"latency: ingest, {clicks} clicks")
            while len(sent) < clicks:
                await asyncio.sleep(1.0)
                if len(sent) % 20 == 0:
                    progress(f"latency: ingest {len(sent)}/{clicks} clicks")
            armed.clear()
            await asyncio.sleep(1.0)
            view = await stack.view(adapter["adapterId"])
            await stack.close([adapter["adapterId"]])
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            await sessions.close()
    paths = {
        name: {
            "latency_ms": distribution(match_latencies(sent, d.times), 1000),
            "clicks_sent": len(sent),
            "per_click_ms": per_click_ms(sent, d.times),
        }
        for name, d in detectors.items()
    }
    return {
        "paths": paths,
        "adapter_pid": adapter_pid,
        "adapter_counters": view.get("counters", {}),
        "endpoint_send_lateness_ms": distribution(lateness, 1000),
    }


async def run(stack: Stack, clicks: int) -> dict[str, Any]:
    started = time.monotonic()
    result: dict[str, Any] = {
        "egress": await egress(stack, clicks),
        "ingest": await ingest(stack, clicks),
    }
    paths = result["egress"]["paths"]
    floor = paths["bare_default"]["latency_ms"]["median"]
    result["ratios_median"] = {
        f"{name}/bare_default": ratio(paths[name]["latency_ms"]["median"], floor)
        for name in EGRESS_PATHS
    }
    # Per click, each path minus the bare tap: stalls of this process or the machine hit
    # every path at once and cancel out here, what a path itself adds does not.
    floor_clicks = paths["bare_tap"]["per_click_ms"]
    result["paired_excess_over_bare_tap_ms"] = {
        name: distribution(
            [
                a - b
                for a, b in zip(paths[name]["per_click_ms"], floor_clicks, strict=True)
                if a is not None and b is not None
            ]
        )
        for name in EGRESS_PATHS
        if name != "bare_tap"
    }
    result["where"] = WHERE
    result["config"] = {"clicks": clicks, "click_every_ms": 500}
    result["elapsed_s"] = round(time.monotonic() - started, 1)
    return result


def show(result: dict[str, Any]) -> None:
    rows = []
    for direction in ("egress", "ingest"):
        for name, path in result[direction]["paths"].items():
            lat = path["latency_ms"]
            rows.append([f"{direction}:{name}", lat["n"], lat["median"], lat["p95"], lat["max"]])
    print_table("audio latency (ms)", ["path", "n", "median", "p95", "max"], rows)
    print(f"median ratios: {result['ratios_median']}")
    excess = result["paired_excess_over_bare_tap_ms"]
    rows = [[name, d["n"], d["median"], d["p95"], d["max"]] for name, d in excess.items()]
    print_table("per click, minus bare_tap (ms)", ["path", "n", "median", "p95", "max"], rows)
    print(f"ingest adapter counters: {result['ingest']['adapter_counters']}")


def parse(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench.latency", description=__doc__)
    parser.add_argument("--clicks", type=int, default=80, help="clicks per path")
    parser.add_argument("--quick", action="store_true", help="smoke run: 4 clicks")
    parser.add_argument("--results-dir", type=Path, default=None)
    return parser.parse_args(argv)


def main(argv: list[str] | None = None, stack: Stack | None = None) -> dict[str, Any]:
    register_codecs()  # this process makes peer connections of its own
    args = parse(argv)
    clicks = 4 if args.quick else args.clicks
    with contextlib.ExitStack() as exit_stack:
        if stack is None:
            stack = exit_stack.enter_context(running_stack(workers=2))
        result = asyncio.run(run(stack, clicks))
    result["quick"] = args.quick
    path = write_result("latency", result, args.results_dir)
    show(result)
    print(f"written to {path}")
    return result


if __name__ == "__main__":
    main()
