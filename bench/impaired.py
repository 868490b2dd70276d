"""Media on an impaired network: Sluice against bare aiortc, same relay, same schedule.

For each impairment, two paths run side by side, each crossing its own `UdpRelay`
(tests/netsim) with the same impairment both ways and the same seed:

- `sluice`: a publisher here → relay → SFU → egress adapter (PCM, or JPEG) → endpoint.
- `bare`: a sender here → relay → a bare aiortc receiver here (its jitter buffer and
  decoder): what a consumer built on aiortc alone would get.

Audio is a 440 Hz (left) / 660 Hz (right) tone pre-encoded with Opus in-band FEC, as a
browser sends when the answer says `useinbandfec=1`; video is a 320x240 VP8 track whose
flat colour changes every second. The table of docs/reliability.md comes from

    python -m bench.impaired [--seconds 30] [--seed 1] [--parallel 1] [--only TEXT]
                             [--priority] [--quick]

and its JSON from bench/results/impaired.json. `--parallel` runs that many impairments
at once (each in its own worker process); `--quick` is the smoke run of `make test`.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any, cast

import av
import numpy as np
import numpy.typing as npt
from aiortc import MediaStreamTrack
from aiortc.contrib.media import MediaRelay
from aiortc.mediastreams import MediaStreamError

from bench.harness import (
    SESSION_NICE,
    Stack,
    egress_item,
    endpoint,
    prioritized_session,
    progress,
    running_stack,
)
from bench.impaired_figures import FREQS, AudioFrame, AudioRow, Picture, VideoRow, judged
from bench.report import print_table, write_result
from sluice.media.aiortc_internals import register_codecs
from sluice.media.ice import set_loopback
from sluice.wire.packet import decode
from tests.integration.audio import opus_tone_packets
from tests.integration.video import ColourCycleTrack, decode_jpeg
from tests.netsim import Impairment, UdpRelay, direct_via_relay, publish_via_relay
from tests.sfu.media import PacketLoopTrack

OUTAGE_AT_S = 3.5  # from the relay's start: after a first latency window, before the end
OUTAGE = Impairment(outage_every_s=10, outage_ms=300, outage_offset_s=OUTAGE_AT_S)
AUDIO_CASES = {
    "2 % loss": Impairment(loss=0.02),
    "5 % loss": Impairment(loss=0.05),
    "10 % loss": Impairment(loss=0.10),
    "30 ± 20 ms jitter, reordering": Impairment(delay_ms=30, jitter_ms=20),
    "300 ms outage every 10 s": OUTAGE,
}
VIDEO_CASES = {"5 % loss": Impairment(loss=0.05), "300 ms outage every 10 s": OUTAGE}
SIZE = (320, 240)
CASE_SETUP_S = 60.0  # what a case may take beyond its seconds (a busy machine's setup)
THUMBNAIL = (160, 120)  # what a picture is judged on (blocks of a broken one still show)


class Run:
    """One bench run: the stack, the endpoint every egress adapter sends to, the options."""

    def __init__(self, stack: Stack, seconds: float, seed: int) -> None:
        self.stack = stack
        self.seconds = seconds
        self.seed = seed
        self.fec_tone = opus_tone_packets(10.0, FREQS, fec=True)
        self.received: dict[str, list[tuple[float, bytes]]] = {}  # endpoint path → messages
        self.url: Callable[[str], str] = str

    def on_message(self, path: str, message: bytes, now: float) -> None:
        self.received.setdefault(path, []).append((now, message))

    def tone(self) -> PacketLoopTrack:
        return PacketLoopTrack("audio", self.fec_tone, 960, 48_000)

    @staticmethod
    def both(source: MediaStreamTrack) -> tuple[MediaStreamTrack, MediaStreamTrack]:
        """One source for both paths: a late sender delays both alike (encoded audio
        only: its packets are only read)."""
        fan_out = MediaRelay()
        return fan_out.subscribe(source), fan_out.subscribe(source)

    async def sluice(
        self, key: str, track: MediaStreamTrack, codec: str, imp: Impairment
    ) -> tuple[dict[str, Any], UdpRelay]:
        """`track` published across a relay, sent by an egress adapter to endpoint `key`.

        Returns the adapter's counters and the relay.
        """
        sessions = self.stack.sessions()
        relay: UdpRelay | None = None
        try:
            peer, relay = await publish_via_relay(
                sessions, [track], ["media"], upstream=imp, downstream=imp, seed=self.seed
            )
            adapter = await self.create(egress_item(self.url(key), peer.session_id, "media", codec))
            await asyncio.sleep(self.seconds)
            view = await self.stack.view(adapter["adapterId"])
            await self.stack.close([adapter["adapterId"]])
            if view["state"] != "active":
                raise RuntimeError(f"{key}: the adapter is {view['state']}: {view}")
            return dict(view["counters"]), relay
        finally:
            await sessions.close()
            if relay is not None:
                relay.close()

    async def create(self, item: dict[str, str]) -> dict[str, Any]:
        """Creates an adapter, waiting for the pool process the last case closed to free."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + CASE_SETUP_S / 2
        while True:
            try:
                return await self.stack.create(item)
            except RuntimeError as exc:
                if "no_capacity" not in str(exc) or loop.time() > deadline:
                    raise
            await asyncio.sleep(0.5)

    async def bare(
        self, track: MediaStreamTrack, imp: Impairment, keep: Callable[[Any, float], None]
    ) -> UdpRelay:
        """`track` to a bare aiortc receiver across a relay; `keep(frame, arrival)`."""
        sender, receiver, received, relay = await direct_via_relay(
            track, upstream=imp, downstream=imp, seed=self.seed
        )
        loop = asyncio.get_running_loop()

        async def read() -> None:
            with contextlib.suppress(MediaStreamError):
                while True:
                    frame = await received.recv()
                    keep(frame, loop.time())

        reader = asyncio.create_task(read())
        try:
            # As long as the Sluice path, whose adapter takes a moment to start.
            await asyncio.sleep(self.seconds + 1.0)
        finally:
            reader.cancel()
            await asyncio.gather(reader, return_exceptions=True)
            await sender.close()
            await receiver.close()
            relay.close()
        return relay


def relay_figures(relay: UdpRelay) -> dict[str, int]:
    """What the relay did to the media direction."""
    up = relay.upstream.stats
    return {
        "datagrams": up.datagrams,
        "lost": up.lost,
        "outage": up.outage,
        "reordered": up.reordered,
    }


def outages_of(relay: UdpRelay, imp: Impairment, until: float) -> list[tuple[float, float]]:
    """The relay's outages before `until`, on the event loop's clock."""
    start = relay.upstream.start
    return [(start + a, start + b) for a, b in imp.outages(until - start)]


async def audio_case(run: Run, key: str, imp: Impairment) -> dict[str, Any]:
    bare_got: list[AudioFrame] = []

    def keep(frame: Any, arrival: float) -> None:
        pcm = cast(av.AudioFrame, frame).to_ndarray().tobytes()
        bare_got.append((arrival, int(frame.pts or 0), pcm))

    to_sluice, to_bare = run.both(run.tone())
    (counters, sluice_relay), bare_relay = await asyncio.gather(
        run.sluice(key, to_sluice, "pcm", imp), run.bare(to_bare, imp, keep)
    )
    sluice_got = []
    for arrival, message in run.received.get(key, []):
        packet = decode(message)
        sluice_got.append((arrival, packet.timestamp, packet.payload))
    return {
        "sluice": AudioRow.of(sluice_got, counters.get("concealed", 0)).as_dict(),
        "bare": AudioRow.of(bare_got).as_dict(),
        "sluice_counters": counters,
        "relay": {"sluice": relay_figures(sluice_relay), "bare": relay_figures(bare_relay)},
    }


def jpeg_picture(arrival: float, message: bytes) -> Picture | None:
    """A JPEG Packet judged, or None if it is not a complete, decodable JPEG."""
    packet = decode(message)
    try:
        image = decode_jpeg(packet.payload)
    except (AssertionError, av.FFmpegError, StopIteration):
        return None
    return judged(arrival, packet.timestamp, image)


async def video_case(run: Run, key: str, imp: Impairment) -> dict[str, Any]:
    bare_got: list[Picture] = []

    def keep(frame: Any, arrival: float) -> None:
        small = cast(av.VideoFrame, frame).reformat(*THUMBNAIL, format="rgb24")
        image = cast(npt.NDArray[np.uint8], small.to_ndarray())
        bare_got.append(judged(arrival, int(frame.pts or 0), image))

    # A source each: with one source's frame objects fanned out to two VP8 encoders
    # (each in an executor thread) the run hung at exit. Each track is paced from its
    # own start, so their colours change within milliseconds of each other.
    (counters, sluice_relay), bare_relay = await asyncio.gather(
        run.sluice(key, ColourCycleTrack(*SIZE), "jpeg", imp),
        run.bare(ColourCycleTrack(*SIZE), imp, keep),
    )
    until = asyncio.get_running_loop().time()
    judged_jpegs = [jpeg_picture(a, m) for a, m in run.received.get(key, [])]
    sluice_got = [p for p in judged_jpegs if p is not None]
    undecodable = len(judged_jpegs) - len(sluice_got)
    return {
        "sluice": VideoRow.of(
            sluice_got, undecodable, outages_of(sluice_relay, imp, until)
        ).as_dict(),
        "bare": VideoRow.of(bare_got, 0, outages_of(bare_relay, imp, until)).as_dict(),
        "sluice_counters": counters,
        "relay": {"sluice": relay_figures(sluice_relay), "bare": relay_figures(bare_relay)},
    }


def audio_checks(label: str, case: dict[str, Any]) -> dict[str, bool]:
    """What Sluice's egress PCM must do under every impairment (loose: a shared machine)."""
    row, relay = case["sluice"], case["relay"]["sluice"]
    checks = {
        # A busy machine's SFU may drop a burst; an outage's 300 ms cannot be concealed.
        "no frame missing but in outages": row["missing_pct"] <= (10 if relay["outage"] else 5),
        "Packets keep coming": row["per_second"] >= 40,
        "timestamps never stall or go back": row["backwards"] == 0,
        "no spliced audio": row["spliced"] == 0,
        "latency does not grow": row["latency_growth_ms"] <= 60,
        "the tone stays pure": min(row["purity_left"], row["purity_right"]) >= 80,
    }
    if relay["lost"] >= 3:
        checks["losses are concealed"] = (case["sluice_counters"].get("concealed") or 0) > 0
    return {f"audio {label}: {name}": ok for name, ok in checks.items()}


def video_checks(label: str, case: dict[str, Any]) -> dict[str, bool]:
    """What Sluice's JPEG egress must do: never a broken picture, ~1 FPS, quick recovery."""
    row = case["sluice"]
    checks = {"no broken or wrong JPEG": row["broken"] == 0 and row["wrong"] == 0}
    if label == "5 % loss":
        checks["~1 JPEG a second"] = 0.7 <= row["per_second"] <= 1.3
        checks["no interval over 2.5 s"] = row["max_interval_s"] <= 2.5
    if label.startswith("300 ms outage"):
        recovery = row["recovery_s"]
        checks["a correct picture within 2 s of each outage"] = (
            bool(recovery) and max(recovery) <= 2.0
        )
    return {f"jpeg {label}: {name}": ok for name, ok in checks.items()}


def chosen_cases(only: str) -> list[tuple[str, str, Impairment]]:
    """(kind, label, impairment) of every case whose "kind label" contains `only`."""
    cases = [("audio", label, imp) for label, imp in AUDIO_CASES.items()]
    cases += [("jpeg", label, imp) for label, imp in VIDEO_CASES.items()]
    return [case for case in cases if only in f"{case[0]} {case[1]}"]


async def run_cases(
    run: Run, cases: list[tuple[str, str, Impairment]], parallel: int
) -> dict[str, Any]:
    limit = asyncio.Semaphore(parallel)

    async def one(n: int, kind: str, label: str, imp: Impairment) -> dict[str, Any]:
        async with limit:
            progress(f"{kind} under {label}: {run.seconds:.0f} s")
            case = audio_case if kind == "audio" else video_case
            try:
                async with asyncio.timeout(run.seconds + CASE_SETUP_S):
                    return await case(run, f"{kind}-{n}", imp)
            except (TimeoutError, RuntimeError, ValueError) as exc:
                # A broken path is a result (its checks fail), not the end of the run.
                progress(f"{kind} under {label}: FAILED: {exc!r}")
                return {"error": repr(exc)}

    async with endpoint(on_message=run.on_message) as ep:
        run.url = ep.url
        results = await asyncio.gather(*(one(n, *case) for n, case in enumerate(cases)))
    result: dict[str, Any] = {"audio": {}, "jpeg": {}, "checks": {}}
    for (kind, label, _), case in zip(cases, results, strict=True):
        result[kind][label] = case
        if "error" in case:
            result["checks"][f"{kind} {label}: ran"] = False
            continue
        checks = audio_checks if kind == "audio" else video_checks
        result["checks"].update(checks(label, case))
    return result


def show(result: dict[str, Any]) -> None:
    rows = []
    for label, case in result["audio"].items():
        for path in ("sluice", "bare") if "error" not in case else ():
            r = case[path]
            rows.append(
                [label, path, r["per_second"], r["backwards"], r["spliced"], r["gaps"],
                 r["missing_pct"], r["concealed_pct"],
                 f"{r['purity_left']:.1f} / {r['purity_right']:.1f}", r["latency_growth_ms"]]
            )  # fmt: skip
    header = ["impairment", "path", "frames/s", "backwards", "spliced", "gaps > 100 ms",
              "missing %", "concealed %", "purity L / R %", "latency growth ms"]  # fmt: skip
    if rows:
        print_table("egress PCM (bare: aiortc's own receiver)", header, rows)
    rows = []
    for label, case in result["jpeg"].items():
        for path in ("sluice", "bare") if "error" not in case else ():
            r = case[path]
            rows.append(
                [label, path, r["pictures"], r["per_second"], r["max_interval_s"],
                 r["broken"], r["wrong"], " ".join(f"{s:.2f}" for s in r["recovery_s"]) or None]
            )  # fmt: skip
    header = ["impairment", "path", "pictures", "per s", "max interval s", "broken", "wrong",
              "recovery s"]  # fmt: skip
    if rows:
        print_table("JPEG egress (bare: every frame aiortc decodes)", header, rows)
    failed = [name for name, ok in result["checks"].items() if not ok]
    print(f"\nchecks: {len(result['checks']) - len(failed)} of {len(result['checks'])} hold")
    for name in failed:
        print(f"  FAILED {name}")


def parse(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench.impaired", description=__doc__)
    parser.add_argument("--seconds", type=float, default=30.0, help="length of each path")
    parser.add_argument("--seed", type=int, default=1, help="the relays' schedule")
    parser.add_argument("--parallel", type=int, default=1, help="impairments run at once")
    parser.add_argument(
        "--only", default="", help='the cases whose "kind label" contains this (e.g. "jpeg")'
    )
    parser.add_argument("--quick", action="store_true", help="smoke run: 6 s, 3 at once")
    parser.add_argument(
        "--priority",
        action="store_true",
        help="run this session at autogroup nice -19 (Linux, root; see "
        "bench.harness.prioritized_session): on a shared machine, figures of Sluice, not "
        "of the other work",
    )
    parser.add_argument("--results-dir", type=Path, default=None)
    return parser.parse_args(argv)


def main(argv: list[str] | None = None, stack: Stack | None = None) -> dict[str, Any]:
    register_codecs()  # this process makes peer connections of its own
    set_loopback(True)
    args = parse(argv)
    cases = chosen_cases(args.only)
    if not cases:
        raise SystemExit(f"no case matches {args.only!r}")
    seconds, parallel = (6.0, 3) if args.quick else (args.seconds, max(1, args.parallel))
    with contextlib.ExitStack() as exit_stack:
        if args.priority:
            exit_stack.enter_context(prioritized_session())
        if stack is None:
            # One spare pool process: a closed adapter's may take a moment to be free.
            workers = min(parallel + 1, len(cases))
            stack = exit_stack.enter_context(running_stack(workers=workers))
        result = asyncio.run(run_cases(Run(stack, seconds, args.seed), cases, parallel))
    result.update(
        {
            "quick": args.quick,
            "config": {"seconds": seconds, "seed": args.seed, "parallel": parallel},
            "session_nice": SESSION_NICE if args.priority else 0,
            "impairments": {f"{kind} {label}": repr(imp) for kind, label, imp in cases},
        }
    )
    path = write_result("impaired", result, args.results_dir)
    show(result)
    print(f"written to {path}")
    return result


if __name__ == "__main__":
    sys.exit(0 if all(main()["checks"].values()) else 1)
