"""SFU cost per forwarded subscriber, against a bare aiortc `MediaRelay` relay.

One source is published from this process, then `-n` subscribers pull it, each in its
own peer connection here with the receiver tapped (whole encoded frames counted, never
decoded, so this process does the same work in both cases). CPU % of one core of the
forwarding process is measured over a window with 0 subscribers and with N; cost per
subscriber = (CPU with N - CPU with 0) / N.

- `sluice`: the `sluice sfu` process: RTP forwarded as is (passthrough, no codec).
- `media_relay`: one separate Python process running bare aiortc as a relay: it
  receives the source (decoded once by aiortc's receiver), hands it to N senders through
  `aiortc.contrib.media.MediaRelay`, and every sender encodes it again. Signalling goes
  over a `multiprocessing` pipe; ICE on 127.0.0.1 only.

Sources: `audio` = a tone replayed from pre-encoded Opus (no encode here); `video` =
640x480 30 fps VP8 moving pattern (encoded once, here). Frames per second received per
subscriber show whether the forwarder kept up.

    python -m bench.sfu [-n 20] [--video-n 5] [--warmup 3] [--window 10] [--quick]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import multiprocessing
import os
import time
from collections import defaultdict
from collections.abc import Callable
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

from aiortc import (
    MediaStreamTrack,
    RTCConfiguration,
    RTCPeerConnection,
    RTCRtpSender,
    RTCSessionDescription,
)

from bench.harness import CpuWindow, Stack, progress, running_stack
from bench.media import OpusReplayTrack, PatternVideoTrack
from bench.report import distribution, print_table, ratio, write_result
from sluice.media.aiortc_internals import register_codecs, tap_receiver
from sluice.media.ice import set_loopback
from sluice.media.types import EncodedFrame

KINDS = ("audio", "video")
FORWARDERS = ("sluice", "media_relay")
WHERE = {
    "sfu process": "`sluice sfu`: RTP passthrough to every subscriber",
    "relay process": "bare aiortc: receive + decode once, MediaRelay, encode per subscriber",
    "bench process": "publisher and every subscriber (tapped receivers, no decode)",
}


# --- the bare aiortc relay (a child process) ---------------------------------------------


def relay_main(conn: Connection) -> None:
    """Entry point of the relay process: answers the bench's signalling over `conn`."""
    asyncio.run(_relay(conn))


async def _relay(conn: Connection) -> None:
    from aiortc.contrib.media import MediaRelay

    set_loopback(True)
    loop = asyncio.get_running_loop()
    relay = MediaRelay()
    peers: list[RTCPeerConnection] = []
    source: MediaStreamTrack | None = None

    async def receive() -> Any:
        return await loop.run_in_executor(None, conn.recv)

    while True:
        command, sdp = await receive()
        pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
        if command == "publish":
            peers.append(pc)
            await pc.setRemoteDescription(RTCSessionDescription(sdp, "offer"))
            source = pc.getTransceivers()[0].receiver.track
            await pc.setLocalDescription(await pc.createAnswer())
            conn.send(pc.localDescription.sdp)
        elif command == "subscribe" and source is not None:
            peers.append(pc)
            pc.addTransceiver(relay.subscribe(source), direction="sendonly")
            await pc.setLocalDescription(await pc.createOffer())
            conn.send(pc.localDescription.sdp)
            _, answer = await receive()
            await pc.setRemoteDescription(RTCSessionDescription(answer, "answer"))
            conn.send("ok")
        else:
            for peer in [*peers, pc]:
                await peer.close()
            conn.send("bye")
            return


class RelayProcess:
    """The relay child and the bench side of its peer connections."""

    def __init__(self) -> None:
        ctx = multiprocessing.get_context("spawn")
        self.conn, child = ctx.Pipe()
        self.process = ctx.Process(target=relay_main, args=(child,), daemon=True)
        self.process.start()
        self.peers: list[RTCPeerConnection] = []

    @property
    def pid(self) -> int:
        assert self.process.pid is not None
        return self.process.pid

    async def _ask(self, *message: Any) -> Any:
        self.conn.send(message)
        return await asyncio.get_running_loop().run_in_executor(None, self.conn.recv)

    async def publish(self, track: MediaStreamTrack, codec: str | None) -> None:
        pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
        self.peers.append(pc)
        transceiver = pc.addTransceiver(track, direction="sendonly")
        if codec is not None:
            wanted = f"{track.kind}/{codec}".lower()
            codecs = RTCRtpSender.getCapabilities(track.kind).codecs
            transceiver.setCodecPreferences([c for c in codecs if c.mimeType.lower() == wanted])
        await pc.setLocalDescription(await pc.createOffer())
        answer = await self._ask("publish", pc.localDescription.sdp)
        await pc.setRemoteDescription(RTCSessionDescription(answer, "answer"))

    async def subscribe(self, kind: str, sink: Callable[[EncodedFrame], None]) -> None:
        offer = await self._ask("subscribe", "")
        pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
        self.peers.append(pc)
        await pc.setRemoteDescription(RTCSessionDescription(offer, "offer"))
        tap_receiver(pc.getTransceivers()[0].receiver, kind, sink)
        await pc.setLocalDescription(await pc.createAnswer())
        assert await self._ask("answer", pc.localDescription.sdp) == "ok"

    async def close(self) -> None:
        with contextlib.suppress(EOFError, BrokenPipeError, OSError):
            await asyncio.wait_for(self._ask("stop", ""), 10)
        for pc in self.peers:
            await pc.close()
        self.process.join(5)
        if self.process.is_alive():
            self.process.kill()


# --- measurement -------------------------------------------------------------------------


def source(kind: str) -> tuple[MediaStreamTrack, str | None]:
    if kind == "audio":
        return OpusReplayTrack(), None
    return PatternVideoTrack(640, 480), "VP8"


async def measure(
    stack: Stack, forwarder: str, kind: str, n: int, warmup_s: float, window_s: float
) -> dict[str, Any]:
    set_loopback(True)
    frames: defaultdict[int, int] = defaultdict(int)

    def sink(index: int) -> Callable[[EncodedFrame], None]:
        def on_frame(_: EncodedFrame) -> None:
            frames[index] += 1

        return on_frame

    track, codec = source(kind)
    relay: RelayProcess | None = None
    sessions = stack.sessions()
    try:
        if forwarder == "sluice":
            pid = stack.pid("sfu")
            session_id, name = await sessions.publish(track, "src", codec=codec)
        else:
            relay = RelayProcess()
            pid = relay.pid
            await relay.publish(track, codec)
        pids = {"forwarder": pid, "bench": os.getpid()}
        await asyncio.sleep(warmup_s)
        idle = CpuWindow(pids)
        idle.start()
        await asyncio.sleep(window_s)
        cpu_0 = idle.stop()
        for i in range(n):
            if relay is None:
                await sessions.pull(session_id, name, kind=kind, on_frame=sink(i))
            else:
                await relay.subscribe(kind, sink(i))
        await asyncio.sleep(warmup_s)
        busy = CpuWindow(pids)
        before = dict(frames)
        busy.start()
        started = time.monotonic()
        await asyncio.sleep(window_s)
        cpu_n = busy.stop()
        elapsed = time.monotonic() - started
        fps = [(frames[i] - before.get(i, 0)) / elapsed for i in range(n)]
        load = os.getloadavg()
    finally:
        await sessions.close()
        if relay is not None:
            await relay.close()
        track.stop()
    per = (cpu_n["forwarder"] - cpu_0["forwarder"]) / n if n else None
    return {
        "subscribers": n,
        "cpu_pct_0": round(cpu_0["forwarder"], 1),
        "cpu_pct_n": round(cpu_n["forwarder"], 1),
        "cpu_pct_per_subscriber": round(per, 2) if per is not None else None,
        "cpu_pct_bench_0": round(cpu_0["bench"], 1),
        "cpu_pct_bench_n": round(cpu_n["bench"], 1),
        "frames_per_s_per_subscriber": distribution(fps),
        "loadavg_1m": round(load[0], 2),
    }


async def run(
    stack: Stack, sizes: dict[str, int], warmup_s: float, window_s: float
) -> dict[str, Any]:
    kinds: dict[str, Any] = {}
    for kind in KINDS:
        kinds[kind] = {}
        for forwarder in FORWARDERS:
            progress(f"sfu: {kind} via {forwarder}, 0 then {sizes[kind]} subscribers")
            r = await measure(stack, forwarder, kind, sizes[kind], warmup_s, window_s)
            kinds[kind][forwarder] = r
            progress(
                f"sfu: {kind} via {forwarder}: {r['cpu_pct_0']} % -> {r['cpu_pct_n']} %, "
                f"{r['cpu_pct_per_subscriber']} % per subscriber"
            )
        kinds[kind]["relay_over_sluice_per_subscriber"] = ratio(
            kinds[kind]["media_relay"]["cpu_pct_per_subscriber"],
            kinds[kind]["sluice"]["cpu_pct_per_subscriber"],
        )
    return {
        "kinds": kinds,
        "where": WHERE,
        "config": {"subscribers": sizes, "warmup_s": warmup_s, "window_s": window_s},
    }


def show(result: dict[str, Any]) -> None:
    header = [
        "source",
        "forwarder",
        "N",
        "cpu% at 0",
        "cpu% at N",
        "per subscriber",
        "fps/sub median",
        "fps/sub min",
        "bench cpu%",
    ]
    rows = []
    for kind, by in result["kinds"].items():
        for forwarder in FORWARDERS:
            r = by[forwarder]
            fps = r["frames_per_s_per_subscriber"]
            rows.append(
                [
                    kind,
                    forwarder,
                    r["subscribers"],
                    r["cpu_pct_0"],
                    r["cpu_pct_n"],
                    r["cpu_pct_per_subscriber"],
                    fps["median"],
                    fps["min"],
                    r["cpu_pct_bench_n"],
                ]
            )
    print_table("forwarding cost (CPU % of one core of the forwarding process)", header, rows)
    for kind, by in result["kinds"].items():
        times = by["relay_over_sluice_per_subscriber"]
        print(f"{kind}: media_relay / sluice, CPU per subscriber = {times}")


def parse(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench.sfu", description=__doc__)
    parser.add_argument("-n", "--subscribers", type=int, default=20, help="audio subscribers")
    parser.add_argument("--video-n", type=int, default=5, help="640x480 VP8 subscribers")
    parser.add_argument("--warmup", type=float, default=3.0, help="seconds before a window")
    parser.add_argument("--window", type=float, default=10.0, help="measured seconds")
    parser.add_argument("--quick", action="store_true", help="smoke run: 2 subscribers, 1 s")
    parser.add_argument("--results-dir", type=Path, default=None)
    return parser.parse_args(argv)


def main(argv: list[str] | None = None, stack: Stack | None = None) -> dict[str, Any]:
    register_codecs()  # this process makes peer connections of its own
    args = parse(argv)
    if args.quick:
        sizes, warmup, window = {"audio": 2, "video": 1}, 0.5, 1.0
    else:
        sizes = {"audio": args.subscribers, "video": args.video_n}
        warmup, window = args.warmup, args.window
    with contextlib.ExitStack() as exit_stack:
        if stack is None:
            stack = exit_stack.enter_context(running_stack(workers=1))
        result = asyncio.run(run(stack, sizes, warmup, window))
    result["quick"] = args.quick
    path = write_result("sfu", result, args.results_dir)
    show(result)
    print(f"written to {path}")
    return result


if __name__ == "__main__":
    main()
