"""CPU and memory per adapter process, N concurrent adapters of each type.

Types, run one after another on the same stack (one adapter = one forked process):

- `egress_pcm`: N egress PCM adapters on one published tone (Opus, from this process).
- `ingest`: N ingest adapters, each fed real-time 20 ms PCM Packets by this process's
  endpoint; nobody subscribes (the adapter still encodes Opus and sends it to the SFU).
- `ingest_pcm24k_mono`, `ingest_mulaw8k`: the same in other input formats (extensions.md
  E1), which the adapter converts to 48 kHz stereo (μ-law table, libsoxr) before the
  same playout: what a format costs, side by side with Cloudflare's 48 kHz stereo PCM.
- `jpeg_640x480`, `jpeg_1280x720`: N JPEG egress adapters on one published VP8 30 fps
  moving pattern (encoded once, in this process).

Beside `egress_pcm` and `ingest` (unless `--no-bare`), in the same window, the bare stack
(`bench.bare`): the same work written plainly with the same libraries, forked from a host
as adapters are, one stream per process in N processes and N streams in one process;
`ratios` gives an adapter's CPU against each, per stream.

CPU % of one core per process = (utime + stime) delta from `/proc/{pid}/stat` over a
steady-state window after a warm-up; memory = `/proc/{pid}/smaps_rollup` at the end of
the window. The SFU, the worker pool's parent and this process are measured too, to
show where the rest of the machine went (2 cores for everything).

With `--formats`, the egress formats and options instead, side by side: every variant of
a group runs at once on one source and is measured in the same window, so whatever else
loads the machine weighs on all of them alike (`cost_formats.json`):

- `audio_formats`: pcm 48 kHz stereo (the default), pcm 16 kHz mono in 20 and 100 ms
  Packets, μ-law 8 kHz, opus.
- `jpeg_options`: 640x480 VP8 at fps 1 (the default), fps 0.2, fps 1 with maxWidth 320.

    python -m bench.cost [-n 10] [--window 20] [--quick] [--formats]
                         [--types ingest,ingest_mulaw8k]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import io
import os
import time
from collections import defaultdict
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import av
import numpy as np
from websockets.asyncio.server import ServerConnection

from bench import bare as bench_bare
from bench.harness import (
    APP,
    SECRET,
    Connect,
    CpuWindow,
    Endpoint,
    Stack,
    egress_item,
    endpoint,
    ingest_item,
    memory_kib,
    progress,
    running_stack,
    wait_with_progress,
)
from bench.media import FRAME, FRAME_S, RATE, PatternVideoTrack
from bench.report import distribution, print_table, ratio, write_result
from examples.audio import mulaw_encode
from sluice.media.aiortc_internals import register_codecs
from sluice.media.ice import set_loopback
from sluice.wire.packet import decode, encode

# Ingest types: the endpoint's format (codec, sample rate, channels); `ingest` and
# `ingest_stereo` send exactly Cloudflare's item, the others add the format fields.
# `ingest` plays one tone on both channels (as speech synthesis sends), `ingest_stereo`
# a different tone on each (music): the adapter codes the first as mono Opus.
INGEST_FORMATS = {
    "ingest": ("pcm", 48_000, 2),
    "ingest_stereo": ("pcm", 48_000, 2),
    "ingest_pcm24k_mono": ("pcm", 24_000, 1),
    "ingest_mulaw8k": ("mulaw", 8_000, 1),
}
TYPES = ("egress_pcm", *INGEST_FORMATS, "jpeg_640x480", "jpeg_1280x720")
_MONO_16K = {"outputCodec": "pcm", "sampleRate": 16000, "channels": 1}
# Per group: the track it pulls and each variant's create fields (codec included).
FORMAT_GROUPS: dict[str, tuple[str, dict[str, dict[str, Any]]]] = {
    "audio_formats": (
        "mic",
        {
            "pcm_48k_stereo": {"outputCodec": "pcm"},
            "pcm_16k_mono": _MONO_16K,
            "pcm_16k_mono_100ms": {**_MONO_16K, "frameMs": 100},
            "mulaw_8k": {"outputCodec": "mulaw"},
            "opus": {"outputCodec": "opus"},
        },
    ),
    "jpeg_options": (
        "cam",
        {
            "jpeg_fps1": {"outputCodec": "jpeg"},
            "jpeg_fps0.2": {"outputCodec": "jpeg", "fps": 0.2},
            "jpeg_fps1_w320": {"outputCodec": "jpeg", "maxWidth": 320},
        },
    ),
}
WHERE = {
    "adapter processes": "one forked process per adapter (measured)",
    "bench process": "publishers (Opus / VP8 encode), WebSocket endpoints, ingest feeders",
    "sfu process": "`sluice sfu`: forwards the publisher's track to every adapter",
    "bare processes": "bench.bare: the same work without Sluice, beside egress_pcm and ingest",
}


class Tally:
    """Per-connection message counts, sizes and first-arrival times at the endpoint."""

    def __init__(self) -> None:
        self.count: defaultdict[str, int] = defaultdict(int)
        self.first_at: dict[str, float] = {}
        self.first_payload: dict[str, bytes] = {}
        self.sizes: list[int] = []
        self.keep_sizes = False
        self.bytes: defaultdict[str, int] = defaultdict(int)

    def on_message(self, path: str, message: bytes, now: float) -> None:
        self.count[path] += 1
        self.bytes[path] += len(message)
        if path not in self.first_at:
            self.first_at[path] = now
            self.first_payload[path] = decode(message).payload
        if self.keep_sizes:
            self.sizes.append(len(decode(message).payload))


def tone_frames(
    codec: str = "pcm", rate: int = RATE, channels: int = 2, *, two_tones: bool = False
) -> list[bytes]:
    """One second of a 440 Hz tone at about -12 dBFS, as 50 payloads of 20 ms in the
    given format (s16le PCM or μ-law); with `two_tones`, 660 Hz on the right channel."""
    t = np.arange(rate) / rate
    mono = (np.sin(2 * np.pi * 440 * t) * 8_000).astype(np.int16)
    samples = np.repeat(mono, channels)
    if two_tones:
        samples[1::2] = (np.sin(2 * np.pi * 660 * t) * 8_000).astype(np.int16)
    data = samples.astype("<i2").tobytes() if codec == "pcm" else mulaw_encode(samples)
    step = len(data) // 50
    return [data[i : i + step] for i in range(0, len(data), step)]


def tone_feeder(kind: str) -> Connect:
    """The sender of an ingest type: real-time 20 ms Packets of its format."""
    frames = tone_frames(*INGEST_FORMATS[kind], two_tones=kind == "ingest_stereo")

    async def feed(_: str, ws: ServerConnection) -> None:
        """On a drift-free grid, as a text-to-speech stream would."""
        loop = asyncio.get_running_loop()
        start, n = loop.time(), 0
        while True:
            await asyncio.sleep(max(0.0, start + n * FRAME_S - loop.time()))
            await ws.send(encode(n, n * FRAME, frames[n % len(frames)]))
            n += 1

    return feed


def jpeg_size(data: bytes) -> tuple[int, int] | None:
    try:
        with av.open(io.BytesIO(data), mode="r", format="mjpeg") as container:
            frame = next(container.decode(video=0))
        return int(frame.width), int(frame.height)
    except (av.error.FFmpegError, StopIteration):
        return None


async def publish_for(sessions: Any, kind: str) -> str:
    """The source a type's adapters pull ("" for ingest, which publishes its own)."""
    if kind == "egress_pcm":
        from bench.media import ClickTrack  # quiet audio, never armed: no clicks

        session_id, _ = await sessions.publish(ClickTrack(), "mic")
    elif kind.startswith("jpeg"):
        width, height = (int(v) for v in kind.split("_")[1].split("x"))
        track = PatternVideoTrack(width, height)
        session_id, _ = await sessions.publish(track, "cam", codec="VP8")
    else:
        return ""
    return str(session_id)


@dataclass(frozen=True, slots=True)
class Created:
    adapter_id: str
    started: float  # time.monotonic() when the create was sent
    create_ms: float  # until it answered (active)


async def create_adapters(
    stack: Stack, kind: str, ep: Endpoint, session_id: str, count: int
) -> dict[str, Created]:
    """`count` adapters of a type, created one after another, by endpoint path."""
    created: dict[str, Created] = {}
    for i in range(count):
        path = f"{kind}-{i}"
        item = item_for(kind, ep.url(path), i, session_id)
        started = time.monotonic()
        answer = await stack.create(item)
        elapsed_ms = (time.monotonic() - started) * 1000
        created[path] = Created(answer["adapterId"], started, elapsed_ms)
    return created


def item_for(kind: str, url: str, index: int, session_id: str) -> dict[str, Any]:
    """The create item of a type's `index`-th adapter."""
    if kind in INGEST_FORMATS:
        item: dict[str, Any] = ingest_item(url, f"tts{index}")
        if kind not in ("ingest", "ingest_stereo"):
            codec, rate, channels = INGEST_FORMATS[kind]
            item |= {"inputCodec": codec, "sampleRate": rate, "channels": channels}
        return item
    if kind == "egress_pcm":
        return egress_item(url, session_id, "mic", "pcm")
    return egress_item(url, session_id, "cam", "jpeg")


# The types the bare stack runs beside, in the same window (`bench.bare`'s kinds): one
# stream per process, as many processes as adapters, and all of those streams in one.
BARE_KINDS = {"egress_pcm": "egress", "ingest": "ingest"}


def bare_layouts(n: int) -> dict[str, bench_bare.Layout]:
    return {"bare_per_process": (n, 1), "bare_shared": (1, n)}


async def measure(
    stack: Stack, kind: str, n: int, warmup_s: float, window_s: float, bare: bool = False
) -> dict[str, Any]:
    """`n` adapters of `kind`; with `bare`, the bare stack beside them (`BARE_KINDS`)."""
    set_loopback(True)
    tally = Tally()
    tally.keep_sizes = kind.startswith("jpeg")
    sessions = stack.sessions()
    feeder = tone_feeder(kind) if kind in INGEST_FORMATS else None
    bare = bare and kind in BARE_KINDS
    adapters: dict[str, str] = {}
    async with endpoint(tally.on_message, feeder) as ep, contextlib.AsyncExitStack() as hosts:
        try:
            session_id = await publish_for(sessions, kind)
            created = await create_adapters(stack, kind, ep, session_id, n)
            adapters = {path: c.adapter_id for path, c in created.items()}
            progress(f"cost: {kind}: {n} adapters created")
            pids = {path: stack.adapter_pid(a) for path, a in adapters.items()}
            others = {"sfu": stack.pid("sfu"), "bench": os.getpid()}
            others["worker_pool_parent"] = stack.pid("worker")
            bare_pids: dict[str, dict[str, int]] = {}
            if bare:
                layouts = bare_layouts(n)
                started = await hosts.enter_async_context(
                    bench_bare.running(
                        BARE_KINDS[kind],
                        f"{stack.sfu_url}/v1/apps/{APP}",
                        SECRET,
                        ep.url("").rstrip("/"),
                        layouts,
                        session_id=session_id,
                        track_name="mic",
                    )
                )
                bare_pids = {
                    name: {f"{name}-{i}": pid for i, pid in enumerate(started.pids[name])}
                    for name in layouts
                }
                # Egress streams send to the endpoint; ingest streams connect and take.
                seen = tally.count if kind == "egress_pcm" else ep.connected
                await flowing(seen, bare_paths(layouts), started.check, timeout_s=60)
                progress(f"cost: {kind}: the bare stack beside it flows")
            await asyncio.sleep(warmup_s)
            measured = {**pids, **others}
            for by_path in bare_pids.values():
                measured |= by_path
            window = CpuWindow(measured)
            counts_before = dict(tally.count)
            load_before = os.getloadavg()
            window.start()
            await wait_with_progress(window_s, f"cost: {kind} window")
            cpu = window.stop()
            if bare:
                started.check()  # every bare stream ran through the window
            counts = {
                p: tally.count[p] - counts_before.get(p, 0) for p in {*adapters, *tally.count}
            }
            memory = {p: memory_kib(pid) for p, pid in measured.items()}
            load_after = os.getloadavg()
            views = [await stack.view(a) for a in adapters.values()]
        finally:
            if adapters:  # also when the bare stack beside them failed
                await stack.close(list(adapters.values()))
            await sessions.close()
    adapter_cpu = [cpu[p] for p in adapters]
    result: dict[str, Any] = {
        "adapters": n,
        "window_s": window_s,
        "cpu_pct_per_adapter": distribution(adapter_cpu),
        "cpu_pct_sum_adapters": round(sum(adapter_cpu), 1),
        "pss_mib_per_adapter": distribution([memory[p]["pss_kib"] for p in adapters], 1 / 1024),
        "rss_mib_per_adapter": distribution([memory[p]["rss_kib"] for p in adapters], 1 / 1024),
        "private_mib_per_adapter": distribution(
            [memory[p]["private_kib"] for p in adapters], 1 / 1024
        ),
        "cpu_pct_others": {k: round(cpu[k], 1) for k in others},
        "pss_mib_others": {k: round(memory[k]["pss_kib"] / 1024, 1) for k in others},
        "messages_per_s_per_adapter": distribution([counts[p] / window_s for p in adapters]),
        "create_ms": distribution([c.create_ms for c in created.values()]),
        "loadavg_1m": [round(load_before[0], 2), round(load_after[0], 2)],
        "counters": [v.get("counters", {}) for v in views],
        "states": sorted({str(v.get("state")) for v in views}),
    }
    if bare:
        result["bare"] = bare_figures(n, bare_pids, cpu, memory, counts, window_s)
        sluice_cpu = result["cpu_pct_per_adapter"]["mean"]
        result["ratios"] = {
            f"sluice/{name}": ratio(sluice_cpu, figures["cpu_pct_per_stream"]["mean"])
            for name, figures in result["bare"].items()
        }
    if kind.startswith("jpeg"):
        firsts = [
            (tally.first_at[p] - created[p].started) * 1000 for p in adapters if p in tally.first_at
        ]
        result["create_to_first_jpeg_ms"] = distribution(firsts)
        result["jpeg_bytes"] = distribution(tally.sizes)
        first = next(iter(tally.first_payload.values()), b"")
        result["jpeg_resolution"] = jpeg_size(first)
    return result


def bare_paths(layouts: dict[str, bench_bare.Layout]) -> list[str]:
    """The endpoint paths of every bare stream (`bench.bare`: `<name>-<process>-<stream>`)."""
    return [
        f"{name}-{process}-{stream}"
        for name, (processes, streams) in layouts.items()
        for process in range(processes)
        for stream in range(streams)
    ]


async def flowing(
    seen: Mapping[str, object], paths: list[str], check: Callable[[], None], timeout_s: float
) -> None:
    """Returns once every path is in `seen` (truthy); raises after `timeout_s`, or
    whatever `check` raises meanwhile."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_s
    while missing := [p for p in paths if not seen.get(p)]:
        check()
        if loop.time() > deadline:
            raise TimeoutError(f"{len(missing)} bare stream(s) not flowing, e.g. {missing[0]}")
        await asyncio.sleep(0.2)


def bare_figures(
    n: int,
    bare_pids: dict[str, dict[str, int]],
    cpu: dict[str, float],
    memory: dict[str, dict[str, int]],
    counts: dict[str, int],
    window_s: float,
) -> dict[str, Any]:
    """Per stream CPU and per process memory of each bare layout, from the shared window."""
    figures: dict[str, Any] = {}
    for name, by_key in bare_pids.items():
        streams_per_process = n // len(by_key)
        paths = [p for p in counts if p.startswith(f"{name}-")]
        figures[name] = {
            "processes": len(by_key),
            "streams_per_process": streams_per_process,
            "cpu_pct_per_stream": distribution([cpu[k] / streams_per_process for k in by_key]),
            "pss_mib_per_process": distribution([memory[k]["pss_kib"] for k in by_key], 1 / 1024),
            "private_mib_per_process": distribution(
                [memory[k]["private_kib"] for k in by_key], 1 / 1024
            ),
            "messages_per_s_per_stream": distribution([counts[p] / window_s for p in paths]),
        }
    return figures


async def publish_source(sessions: Any, track_name: str) -> str:
    """The source of a format group: quiet audio, or a 640x480 VP8 moving pattern."""
    if track_name == "mic":
        from bench.media import ClickTrack  # quiet audio, never armed: no clicks

        session_id, _ = await sessions.publish(ClickTrack(), "mic")
    else:
        session_id, _ = await sessions.publish(PatternVideoTrack(640, 480), "cam", codec="VP8")
    return str(session_id)


async def measure_side_by_side(
    stack: Stack, group: str, n: int, warmup_s: float, window_s: float
) -> dict[str, Any]:
    """`n` adapters of every variant of `group` at once, one CPU window for all."""
    set_loopback(True)
    track_name, variants = FORMAT_GROUPS[group]
    tally = Tally()
    sessions = stack.sessions()
    adapters: dict[str, tuple[str, str]] = {}  # path → (variant, adapter id)
    async with endpoint(tally.on_message) as ep:
        try:
            session_id = await publish_source(sessions, track_name)
            for i in range(n):
                for variant, fields in variants.items():  # interleaved: none all first
                    path = f"{variant}-{i}"
                    url = ep.url(path)
                    item = {**egress_item(url, session_id, track_name, "pcm"), **fields}
                    adapters[path] = (variant, (await stack.create(item))["adapterId"])
            progress(f"cost: {group}: {len(adapters)} adapters created")
            pids = {path: stack.adapter_pid(a) for path, (_, a) in adapters.items()}
            await asyncio.sleep(warmup_s)
            window = CpuWindow({**pids, "sfu": stack.pid("sfu"), "bench": os.getpid()})
            counts, sizes = dict(tally.count), dict(tally.bytes)
            load_before = os.getloadavg()
            window.start()
            await wait_with_progress(window_s, f"cost: {group} window")
            cpu = window.stop()
            memory = {path: memory_kib(pid) for path, pid in pids.items()}
            load_after = os.getloadavg()
            await stack.close([a for _, a in adapters.values()])
        finally:
            await sessions.close()
    results: dict[str, Any] = {}
    for variant in variants:
        paths = [p for p, (v, _) in adapters.items() if v == variant]
        per_s = [(tally.count[p] - counts.get(p, 0)) / window_s for p in paths]
        bytes_per_s = [(tally.bytes[p] - sizes.get(p, 0)) / window_s for p in paths]
        results[variant] = {
            "cpu_pct_per_adapter": distribution([cpu[p] for p in paths]),
            "messages_per_s_per_adapter": distribution(per_s),
            "bytes_per_s_per_adapter": distribution(bytes_per_s),
            "pss_mib_per_adapter": distribution([memory[p]["pss_kib"] for p in paths], 1 / 1024),
        }
    return {
        "adapters_per_variant": n,
        "window_s": window_s,
        "variants": results,
        "cpu_pct_others": {k: round(cpu[k], 1) for k in ("sfu", "bench")},
        "loadavg_1m": [round(load_before[0], 2), round(load_after[0], 2)],
    }


async def run_formats(
    stack: Stack, n: int, warmup_s: float, window_s: float, settle_s: float = 2.0
) -> dict[str, Any]:
    groups: dict[str, Any] = {}
    for group in FORMAT_GROUPS:
        groups[group] = await measure_side_by_side(stack, group, n, warmup_s, window_s)
        await asyncio.sleep(settle_s)  # let the closed adapters' processes exit
    return {
        "groups": groups,
        "config": {"adapters_per_variant": n, "warmup_s": warmup_s, "window_s": window_s},
    }


async def run(
    stack: Stack,
    n: int,
    warmup_s: float,
    window_s: float,
    settle_s: float = 2.0,
    kinds: tuple[str, ...] = TYPES,
    bare: bool = True,
) -> dict[str, Any]:
    types: dict[str, Any] = {}
    for kind in kinds:
        progress(f"cost: {kind}: creating {n} adapters")
        types[kind] = await measure(stack, kind, n, warmup_s, window_s, bare)
        await asyncio.sleep(settle_s)  # let the closed adapters' processes exit
    return {
        "types": types,
        "where": WHERE,
        "config": {"adapters": n, "warmup_s": warmup_s, "window_s": window_s, "bare": bare},
    }


def show(result: dict[str, Any]) -> None:
    rows = []
    for kind, r in result["types"].items():
        cpu, pss = r["cpu_pct_per_adapter"], r["pss_mib_per_adapter"]
        first = r.get("create_to_first_jpeg_ms", {}).get("median")
        rows.append(
            [
                kind,
                r["adapters"],
                cpu["mean"],
                cpu["max"],
                pss["mean"],
                pss["max"],
                r["private_mib_per_adapter"]["mean"],
                r["cpu_pct_others"]["sfu"],
                r["cpu_pct_others"]["bench"],
                r["messages_per_s_per_adapter"]["median"],
                first,
                r.get("jpeg_bytes", {}).get("median"),
            ]
        )
    header = [
        "type",
        "n",
        "cpu% mean",
        "cpu% max",
        "PSS MiB mean",
        "PSS max",
        "private MiB",
        "sfu cpu%",
        "bench cpu%",
        "msg/s",
        "first JPEG ms",
        "JPEG bytes",
    ]
    print_table("cost per adapter process (CPU % of one core)", header, rows)
    bare_rows = [
        [
            kind,
            name,
            f["processes"],
            f["streams_per_process"],
            f["cpu_pct_per_stream"]["mean"],
            r["ratios"][f"sluice/{name}"],
            f["pss_mib_per_process"]["mean"],
            f["private_mib_per_process"]["mean"],
            f["messages_per_s_per_stream"]["median"],
        ]
        for kind, r in result["types"].items()
        for name, f in r.get("bare", {}).items()
    ]
    if bare_rows:
        header = ["type", "bare stack", "processes", "streams each", "cpu% per stream"]
        header += ["sluice/this"]
        header += ["PSS MiB", "private MiB", "msg/s"]
        print_table("the bare stack beside the adapters, same window", header, bare_rows)


def show_formats(result: dict[str, Any]) -> None:
    rows = []
    for group, r in result["groups"].items():
        variants = r["variants"]
        baseline = next(iter(variants.values()))["cpu_pct_per_adapter"]["mean"]
        for variant, v in variants.items():
            cpu = v["cpu_pct_per_adapter"]
            rows.append(
                [
                    group,
                    variant,
                    cpu["n"],
                    cpu["mean"],
                    cpu["max"],
                    ratio(cpu["mean"], baseline),
                    v["messages_per_s_per_adapter"]["median"],
                    v["bytes_per_s_per_adapter"]["median"],
                    v["pss_mib_per_adapter"]["mean"],
                ]
            )
    header = ["group", "variant", "n", "cpu% mean", "cpu% max", "vs first", "msg/s", "B/s", "PSS"]
    print_table("cost per adapter process, side by side (CPU % of one core)", header, rows)


def parse(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench.cost", description=__doc__)
    parser.add_argument(
        "-n", "--adapters", type=int, default=None, help="adapters per type (10; --formats: 2)"
    )
    parser.add_argument(
        "--formats", action="store_true", help="egress formats and options side by side"
    )
    parser.add_argument("--warmup", type=float, default=4.0, help="seconds before the window")
    parser.add_argument("--window", type=float, default=20.0, help="measured seconds")
    parser.add_argument("--quick", action="store_true", help="smoke run: 2 adapters, 1.5 s")
    parser.add_argument("--results-dir", type=Path, default=None)
    parser.add_argument(
        "--no-bare",
        dest="bare",
        action="store_false",
        help="egress_pcm and ingest without the bare stack beside them (bench.bare)",
    )
    parser.add_argument(
        "--types", default=",".join(TYPES), help=f"comma-separated subset of {', '.join(TYPES)}"
    )
    args = parser.parse_args(argv)
    args.types = tuple(kind for kind in args.types.split(",") if kind)
    if unknown := set(args.types) - set(TYPES):
        parser.error(f"unknown type(s): {', '.join(sorted(unknown))}")
    return args


def main(argv: list[str] | None = None, stack: Stack | None = None) -> dict[str, Any]:
    register_codecs()  # this process makes peer connections of its own
    args = parse(argv)
    adapters = args.adapters or (2 if args.formats else 10)
    quick = (1 if args.formats else 2, 0.5, 1.5, 0.5)
    n, warmup, window, settle = quick if args.quick else (adapters, args.warmup, args.window, 2.0)
    # Side by side, every variant of a group runs at once.
    workers = n * max(len(v) for _, v in FORMAT_GROUPS.values()) if args.formats else n
    with contextlib.ExitStack() as exit_stack:
        if stack is None:
            # Many adapters created back to back on a busy machine: more time to pick up.
            settings = (
                {"SLUICE_PICKUP_TIMEOUT_S": "5", "SLUICE_CONNECT_TIMEOUT_S": "15"}
                if args.formats
                else None
            )
            stack = exit_stack.enter_context(running_stack(workers=workers, settings=settings))
        if args.formats:
            result = asyncio.run(run_formats(stack, n, warmup, window, settle))
        else:
            result = asyncio.run(run(stack, n, warmup, window, settle, args.types, args.bare))
    result["quick"] = args.quick
    path = write_result("cost_formats" if args.formats else "cost", result, args.results_dir)
    (show_formats if args.formats else show)(result)
    print(f"written to {path}")
    return result


if __name__ == "__main__":
    main()
