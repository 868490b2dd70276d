"""The bare stack, as the baseline of an adapter's cost: no Sluice in the media path.

What an adapter does, written the plain way with the same libraries, on asyncio's own
event loop:

- `egress`: pull the published track from the SFU with aiortc's default receiver
  (jitter buffer, decoder thread), turn each decoded 20 ms frame into a `Packet` and
  send it on a WebSocket (`websockets`), as an egress PCM adapter does.
- `ingest`: connect to a WebSocket that sends 20 ms PCM Packets (48 kHz stereo) and
  publish them to the SFU as a track aiortc's sender encodes (Opus), as an ingest
  adapter does.

A host process imports all of that, calls `gc.freeze()` and forks `--processes`
children, as Sluice's worker host forks adapter processes; each child runs `--streams`
such streams, each on its own peer connection, session and WebSocket connection to
`<ws>/<name>-<process>-<stream>`. The host prints one JSON line, `{"pids": [...]}`, once
the children are forked, and ends them when it gets SIGTERM. `bench.cost` runs two
hosts beside Sluice's egress and ingest adapters, in the same CPU window (`--no-bare`
leaves them out): one stream per process (what a process-per-adapter design pays) and
every stream in one process (the floor the issue's goals are set against).

    python -m bench.bare --kind egress --sfu http://127.0.0.1:PORT/v1/apps/APP \
        --secret S --session ID --track mic --ws ws://127.0.0.1:PORT --name bare \
        [--processes 10] [--streams 1]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import json
import os
import signal
import ssl
import sys
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from fractions import Fraction
from typing import Any, cast

import av
import httpx
import numpy as np
from aiortc import RTCConfiguration, RTCPeerConnection, RTCSessionDescription
from aiortc.mediastreams import MediaStreamError, MediaStreamTrack
from websockets.asyncio.client import connect

from bench.media import FRAME, RATE
from sluice.media.ice import set_loopback
from sluice.tasks import first_completed
from sluice.wire.packet import decode, encode
from worker.lineage import die_with_parent

Layout = tuple[int, int]  # (processes, streams per process)


async def negotiate(http: httpx.AsyncClient, pc: RTCPeerConnection, track: dict[str, str]) -> None:
    """A new session for `pc` (its offer set) with one track (the client-offer flow)."""
    created = (await http.post("/sessions/new")).raise_for_status().json()
    body = {
        "sessionDescription": {"type": "offer", "sdp": pc.localDescription.sdp},
        "tracks": [track],
    }
    path = f"/sessions/{created['sessionId']}/tracks/new"
    answer = (await http.post(path, json=body)).raise_for_status().json()
    if "errorCode" in answer["tracks"][0]:
        raise RuntimeError(f"track refused: {answer['tracks'][0]}")
    await pc.setRemoteDescription(RTCSessionDescription(**answer["sessionDescription"]))


async def connected(pc: RTCPeerConnection, timeout_s: float = 30) -> None:
    """Returns once ICE and DTLS are up; raises if they are not within `timeout_s`."""
    deadline = asyncio.get_running_loop().time() + timeout_s
    while pc.connectionState != "connected":
        if (
            pc.connectionState in ("failed", "closed")
            or asyncio.get_running_loop().time() > deadline
        ):
            raise RuntimeError(f"peer connection {pc.connectionState}")
        await asyncio.sleep(0.05)


def new_peer() -> RTCPeerConnection:
    return RTCPeerConnection(RTCConfiguration(iceServers=[]))  # no public STUN default


async def egress(http: httpx.AsyncClient, args: argparse.Namespace, url: str) -> None:
    """Pulls the published track; its decoded frames as PCM Packets on a WebSocket."""
    pc = new_peer()
    try:
        receiver = pc.addTransceiver("audio", direction="recvonly").receiver
        remote = {"location": "remote", "sessionId": args.session, "trackName": args.track}
        await pc.setLocalDescription(await pc.createOffer())
        await negotiate(http, pc, remote)
        track = receiver.track  # made when the answer is set
        async with connect(url) as ws:
            sequence = 0
            with contextlib.suppress(MediaStreamError):
                while True:
                    frame = cast(av.AudioFrame, await track.recv())
                    pcm = frame.to_ndarray().tobytes()
                    await ws.send(encode(sequence, sequence * FRAME, pcm))
                    sequence += 1
    finally:
        await pc.close()


class PacketTrack(MediaStreamTrack):
    """48 kHz stereo PCM from a WebSocket's Packets, as aiortc's sender reads a track.

    The WebSocket's sender paces it (20 ms Packets in real time); a backlog beyond a
    second drops its oldest frame, so a stalled sender never makes latency grow.
    """

    kind = "audio"

    def __init__(self) -> None:
        super().__init__()
        self.frames: asyncio.Queue[av.AudioFrame] = asyncio.Queue(maxsize=50)
        self._pts = 0

    def put(self, pcm: bytes) -> None:
        samples = np.frombuffer(pcm, dtype=np.int16).reshape(1, -1)
        frame = av.AudioFrame.from_ndarray(samples, format="s16", layout="stereo")
        frame.sample_rate, frame.time_base, frame.pts = RATE, Fraction(1, RATE), self._pts
        self._pts += frame.samples
        if self.frames.full():
            self.frames.get_nowait()
        self.frames.put_nowait(frame)

    async def recv(self) -> av.AudioFrame:
        return await self.frames.get()


async def ingest(http: httpx.AsyncClient, args: argparse.Namespace, url: str) -> None:
    """Publishes a track made of the PCM Packets a WebSocket sends (aiortc encodes Opus)."""
    pc = new_peer()
    try:
        track = PacketTrack()
        transceiver = pc.addTransceiver(track, direction="sendonly")
        await pc.setLocalDescription(await pc.createOffer())  # gives the section its mid
        local = {"location": "local", "mid": str(transceiver.mid), "trackName": url.rsplit("/")[-1]}
        await negotiate(http, pc, local)
        # Connected first: the bench counts a stream as flowing once its WebSocket is.
        await connected(pc)
        async with connect(url) as ws:
            async for message in ws:
                track.put(decode(message if isinstance(message, bytes) else b"").payload)
    finally:
        await pc.close()


STREAMS = {"egress": egress, "ingest": ingest}


async def consume(args: argparse.Namespace, process: int, tls: ssl.SSLContext) -> None:
    """This child's streams, until SIGTERM."""
    stop = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
    stream = STREAMS[args.kind]
    headers = {"Authorization": f"Bearer {args.secret}"}
    client = httpx.AsyncClient(base_url=args.sfu, headers=headers, timeout=30, verify=tls)
    async with client as http:
        streams = [
            stream(http, args, f"{args.ws}/{args.name}-{process}-{index}")
            for index in range(args.streams)
        ]
        # A stream that ends or fails ends the child: the baseline would be short of it.
        await first_completed(stop.wait(), *streams)


def child(args: argparse.Namespace, process: int, tls: ssl.SSLContext) -> None:
    """A forked consumer process; never returns."""
    code = 0
    try:
        asyncio.run(consume(args, process, tls))
    # Anything, KeyboardInterrupt included: a child must never return into the host's loop.
    except BaseException as error:
        print(f"bare consumer {process}: {error!r}", file=sys.stderr, flush=True)
        code = 1
    os._exit(code)


@dataclass
class Hosts:
    """The bare hosts a bench started: their consumers' pids by host name."""

    pids: dict[str, list[int]] = field(default_factory=dict)
    processes: dict[str, asyncio.subprocess.Process] = field(default_factory=dict)

    def check(self) -> None:
        """Raises if a host ended (its consumers' errors are on stderr)."""
        for name, host in self.processes.items():
            if host.returncode is not None:
                raise RuntimeError(f"bare host {name} ended (exit {host.returncode})")


@contextlib.asynccontextmanager
async def running(
    kind: str,
    sfu: str,
    secret: str,
    ws: str,
    layouts: dict[str, Layout],
    *,
    session_id: str = "",
    track_name: str = "",
) -> AsyncIterator[Hosts]:
    """Bare hosts of `kind` by name, each `(processes, streams)`, for the bench's side.

    Endpoint paths are `<name>-<process>-<stream>`.
    """
    hosts = Hosts()
    try:
        for name, (processes, streams) in layouts.items():
            command = [sys.executable, "-m", "bench.bare", "--sfu", sfu, "--secret", secret]
            command += ["--kind", kind, "--session", session_id, "--track", track_name]
            command += ["--ws", ws]
            command += ["--name", name, "--processes", str(processes), "--streams", str(streams)]
            host = await asyncio.create_subprocess_exec(*command, stdout=asyncio.subprocess.PIPE)
            hosts.processes[name] = host
            assert host.stdout is not None
            line = await asyncio.wait_for(host.stdout.readline(), 60)
            if not line:
                raise RuntimeError(
                    f"bare host {name} ended before forking (exit {host.returncode})"
                )
            hosts.pids[name] = list(json.loads(line)["pids"])
        yield hosts
    finally:
        for host in hosts.processes.values():
            if host.returncode is None:
                host.terminate()
        for host in hosts.processes.values():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(host.wait(), 10)
            if host.returncode is None:
                host.kill()
                await host.wait()


def parse(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench.bare", description=__doc__)
    parser.add_argument("--sfu", required=True, help="the sessions API: .../v1/apps/<app>")
    parser.add_argument("--secret", required=True, help="the app's secret")
    parser.add_argument("--kind", choices=sorted(STREAMS), default="egress")
    parser.add_argument("--session", default="", help="egress: the publisher's session id")
    parser.add_argument("--track", default="", help="egress: the published track's name")
    parser.add_argument("--ws", required=True, help="the endpoint's base URL")
    parser.add_argument("--name", default="bare", help="first part of each endpoint path")
    parser.add_argument("--processes", type=int, default=1)
    parser.add_argument("--streams", type=int, default=1, help="streams per process")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    args = parse(argv)
    set_loopback(True)  # every peer offers 127.0.0.1 only
    # Made once and shared, as Sluice's worker host shares its own: a trust store loaded
    # in each child (httpx's default) would cost each one ~1 MB of its own.
    tls = ssl.create_default_context()
    # Everything a consumer imports is loaded above; what the children share stays
    # shared when the collector leaves it alone (Sluice's worker host does the same).
    gc.freeze()
    pids: list[int] = []
    ended = False

    def end(*_: Any) -> None:
        nonlocal ended
        if not ended:
            ended = True
            for pid in pids:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGTERM)

    # The handler first, and SIGTERM held while forking: a stop arriving meanwhile is
    # handled once every pid is known, so that no consumer outlives this host.
    signal.signal(signal.SIGTERM, end)
    signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGTERM})
    for process in range(args.processes):
        pid = os.fork()
        if pid == 0:
            signal.signal(signal.SIGTERM, signal.SIG_DFL)  # the consumer's loop sets its own
            signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGTERM})
            die_with_parent(signal.SIGTERM)  # a host killed outright takes its consumers
            child(args, process, tls)
        pids.append(pid)
    print(json.dumps({"pids": pids}), flush=True)
    signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGTERM})
    code = 0
    for _ in pids:
        _, status = os.wait()
        code = code or os.waitstatus_to_exitcode(status)
        end()  # one consumer gone: the baseline is broken, end the others
    sys.exit(code)


if __name__ == "__main__":
    main()
