"""Three SFU nodes on one Redis: placement, routing, cascades, adapters and a node's death.

Real `sluice sfu` node processes (each its own port and UDP sockets), the API and a
worker pool; publishers and subscribers are aiortc peers of this process on loopback.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
from aiortc.mediastreams import MediaStreamError, MediaStreamTrack
from prometheus_client.parser import text_string_to_metric_families
from redis.asyncio import Redis

from sluice.cli.devserver import free_port
from sluice.media.types import EncodedFrame
from sluice.state import sfu_nodes, track_registry
from sluice.wire.packet import DecodedPacket, decode, encode
from tests.integration.audio import StereoToneTrack, pcm_channels, tone_pcm
from tests.integration.helpers import (
    BIN,
    Stack,
    egress_item,
    endpoint,
    ingest_item,
    stack_env,
    start_stack,
    wait_until,
)
from tests.integration.video import (
    COLOURS,
    ColourCycleTrack,
    colour_index,
    decode_jpeg,
    explained_by_one_phase,
)
from tests.sfu.media import dominant_frequency, mean_rgb

pytestmark = pytest.mark.timeout(180)


@pytest.fixture
def three(clean_redis: str, tmp_path: Path) -> Iterator[Stack]:
    """API, 4 worker processes and three SFU nodes."""
    running = start_stack(clean_redis, 4, tmp_path, sfu_nodes=3)
    try:
        wait_until(lambda: _count_nodes(clean_redis) == 3, 10, "three registered nodes")
        yield running
    finally:
        running.stop()
        for log in sorted(tmp_path.glob("*.log")):
            print(f"--- {log.name}\n{log.read_text(errors='replace')[-4000:]}")


def _nodes(redis_url: str) -> list[sfu_nodes.NodeInfo]:
    async def read() -> list[sfu_nodes.NodeInfo]:
        async with Redis.from_url(redis_url) as redis:
            return await sfu_nodes.live_nodes(redis)

    return asyncio.run(read())


def _count_nodes(redis_url: str) -> int:
    return len(_nodes(redis_url))


async def node_of_session(stack: Stack, session_id: str) -> str:
    """The URL of the node holding `session_id`, from the directory."""
    async with Redis.from_url(stack.redis_url, decode_responses=True) as redis:
        found = await track_registry.session_node(redis, session_id)
        assert found is not None, session_id
        node = await sfu_nodes.get(redis, found[1])
    assert node is not None
    return node.url


async def node_metrics(url: str) -> dict[tuple[str, str], float]:
    async with httpx.AsyncClient(timeout=5) as client:
        text = (await client.get(f"{url}/metrics")).text
    return {
        (sample.name, sample.labels.get("kind", "")): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


async def decoded_audio(track: MediaStreamTrack, seconds: float) -> np.ndarray:
    """Stereo s16 samples of `seconds` of a pulled audio track."""
    chunks: list[np.ndarray] = []
    got = 0
    while got < seconds * 48_000:
        frame = await asyncio.wait_for(track.recv(), 5)
        samples = frame.to_ndarray().reshape(-1, len(frame.layout.channels))
        chunks.append(samples)
        got += len(samples)
    return np.concatenate(chunks)


def assert_stereo_tone(stereo: np.ndarray) -> None:
    """440 Hz left, 660 Hz right, and no dropout in between (after the Opus start-up)."""
    stereo = stereo[9600:].astype(np.float64)
    assert abs(dominant_frequency(stereo[:, 0]) - 440) < 5
    assert abs(dominant_frequency(stereo[:, 1]) - 660) < 5
    blocks = len(stereo) // 960
    rms = np.sqrt((stereo[: blocks * 960, 0].reshape(blocks, 960) ** 2).mean(axis=1))
    assert rms.min() > 3_000, "a silent 20 ms block: the tone dropped out"


async def colours_in_order(track: MediaStreamTrack, seconds: float) -> list[int]:
    """The colour index of each decoded frame, runs collapsed; checks the order."""
    seen: list[int] = []
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        frame = await asyncio.wait_for(track.recv(), 5)
        rgb = np.array(mean_rgb(frame))
        index = int(np.argmin([np.linalg.norm(rgb - np.array(c)) for c in COLOURS]))
        if not seen or seen[-1] != index:
            seen.append(index)
    for a, b in itertools.pairwise(seen):
        assert b == (a + 1) % len(COLOURS), f"colours out of order: {seen}"
    return seen


async def test_cascade_adapters_and_one_upstream_per_track(three: Stack) -> None:
    node1, node2, node3 = three.nodes
    publisher_client = node1.sessions()
    subscriber_client = node2.sessions()
    try:
        publisher = await publisher_client.new_peer()
        tracks = [StereoToneTrack(440, 660), ColourCycleTrack(320, 240)]
        await publisher.publish(tracks, ["mic", "cam"])
        source = publisher.session_id
        assert await node_of_session(three, source) == node1.url

        # A subscriber session on node 2 hears the tone and sees the colours in order.
        first = await subscriber_client.new_peer()
        assert await node_of_session(three, first.session_id) == node2.url
        audio = await first.pull(source, "mic", kind="audio")
        video = await first.pull(source, "cam", kind="video")
        assert_stereo_tone(await decoded_audio(audio, 3.0))
        assert len(await colours_in_order(video, 3.5)) >= 3

        # A second subscriber on node 2 shares the upstream: node 1 forwards one copy.
        second = await subscriber_client.new_peer()
        audio2 = await second.pull(source, "mic", kind="audio")
        assert_stereo_tone(await decoded_audio(audio2, 2.0))
        on_node1 = await node_metrics(node1.url)
        on_node2 = await node_metrics(node2.url)
        assert on_node1[("sluice_sfu_subscribers", "audio")] == 1  # node 2's one upstream
        assert on_node1[("sluice_sfu_subscribers", "video")] == 1
        assert on_node2[("sluice_sfu_subscribers", "audio")] == 2  # its two subscribers
        assert on_node2[("sluice_sfu_upstreams", "")] == 2  # mic and cam, once each

        # Egress adapters on that publisher run on node 1 (no cascade) and work.
        pcm: list[bytes] = []
        jpegs: list[DecodedPacket] = []
        async with endpoint() as pcm_ep, endpoint() as jpeg_ep, three.client() as api:
            items = [
                egress_item(pcm_ep.url, source, "mic", "pcm"),
                egress_item(jpeg_ep.url, source, "cam", "jpeg"),
            ]
            resp = await api.post("/adapters/websocket/new", json={"tracks": items})
            assert resp.status_code == 200, resp.text
            assert all("adapterId" in t for t in resp.json()["tracks"]), resp.text
            await asyncio.sleep(3.5)
            pcm = [decode(m).payload for m in pcm_ep.connections[0].messages]
            jpegs = [decode(m) for m in jpeg_ep.connections[0].messages]
            after = await node_metrics(node1.url)
            assert after[("sluice_sfu_subscribers", "audio")] == 2  # + the PCM adapter
            assert after[("sluice_sfu_subscribers", "video")] == 2  # + the JPEG adapter
            assert (await node_metrics(node3.url))[("sluice_sfu_upstreams", "")] == 0
            ids = [{"adapterId": t["adapterId"]} for t in resp.json()["tracks"]]
            await api.post("/adapters/websocket/close", json={"tracks": ids})
        left, right = pcm_channels(pcm[25:])
        assert abs(dominant_frequency(left) - 440) < 5
        assert abs(dominant_frequency(right) - 660) < 5
        assert len(jpegs) >= 2
        indices = [colour_index(decode_jpeg(j.payload)) for j in jpegs]
        assert explained_by_one_phase([j.timestamp / 90_000 for j in jpegs], indices)

        # Late video subscribers get a picture as fast across the hop as on the publisher's
        # node: the keyframe request travels node 2 → node 1 → publisher.
        waits = {}
        for name, client in (("node 1", publisher_client), ("node 2", subscriber_client)):
            started = time.monotonic()
            late = await client.pull(source, "cam", kind="video")
            await asyncio.wait_for(late.recv(), 10)
            waits[name] = time.monotonic() - started
        print(f"late video subscriber, subscribe → first picture: {waits}")
        assert waits["node 2"] < 5.0

        # The subscribers leave: node 2 closes its upstreams, node 1 stops forwarding.
        for peer in subscriber_client.peers:
            await peer.close()
        await _eventually(lambda: _metric(node2.url, "sluice_sfu_upstreams", ""), 0, 10)
    finally:
        await subscriber_client.close()
        await publisher_client.close()


async def test_an_ingest_track_is_pulled_from_another_node(three: Stack) -> None:
    tone = tone_pcm(440, 660, 6.0)

    async def speak(ws: Any) -> None:
        for start in range(0, len(tone), 16_000):
            await ws.send(_packet(tone[start : start + 16_000]))

    async with endpoint() as ep, three.client() as api:
        ep.on_connect = speak
        resp = await api.post("/adapters/websocket/new", json={"tracks": [ingest_item(ep.url)]})
        track = resp.json()["tracks"][0]
        assert "adapterId" in track, resp.text
        ingest_node = await node_of_session(three, track["sessionId"])
        other = next(node for node in three.nodes if node.url != ingest_node)
        client = other.sessions()
        try:
            audio = await client.pull(track["sessionId"], "tts", kind="audio")
            assert_stereo_tone(await decoded_audio(audio, 2.5))
            assert await _metric(other.url, "sluice_sfu_upstreams", "") == 1
        finally:
            await client.close()
        await api.post(
            "/adapters/websocket/close", json={"tracks": [{"adapterId": track["adapterId"]}]}
        )


class Arrivals:
    """Arrival times of a tapped subscriber's frames, for stall checks."""

    def __init__(self) -> None:
        self.times: list[float] = []

    def __call__(self, _: EncodedFrame) -> None:
        self.times.append(time.monotonic())

    def longest_gap_s(self, since: float, observer_stalls: list[tuple[float, float]]) -> float:
        """The longest wait between two frames, leaving out waits that this process's own
        event loop caused: a frame cannot be seen while the loop is stalled, whichever
        node sent it (on a shared 2-core machine, the test process stalls too)."""
        times = [t for t in self.times if t >= since]
        gaps = [
            b - a
            for a, b in itertools.pairwise(times)
            if not any(start < b and a < end for start, end in observer_stalls)
        ]
        return max(gaps, default=float("inf"))


async def observe_stalls(stalls: list[tuple[float, float]], tick_s: float = 0.01) -> None:
    """Records every stretch (start, end) in which this loop ran 50 ms or more late."""
    while True:
        before = time.monotonic()
        await asyncio.sleep(tick_s)
        after = time.monotonic()
        if after - before - tick_s >= 0.05:
            stalls.append((before, after))


async def test_sigkill_of_a_node(three: Stack) -> None:
    node2 = three.nodes[1]
    clients = [node.sessions() for node in three.nodes]
    stalls: list[tuple[float, float]] = []
    observer = asyncio.create_task(observe_stalls(stalls))
    try:
        # Media that must not notice: a publisher on node 1 heard on nodes 1 and 3, and
        # one on node 3 heard on node 3.
        pub1 = await clients[0].new_peer()
        await pub1.publish([StereoToneTrack(440, 660)], ["mic"])
        pub3 = await clients[2].new_peer()
        await pub3.publish([StereoToneTrack(330, 550)], ["mic"])
        watched = {name: Arrivals() for name in ("1→1", "1→3", "3→3")}
        await clients[0].pull(pub1.session_id, "mic", kind="audio", on_frame=watched["1→1"])
        await clients[2].pull(pub1.session_id, "mic", kind="audio", on_frame=watched["1→3"])
        await clients[2].pull(pub3.session_id, "mic", kind="audio", on_frame=watched["3→3"])

        # What dies with node 2: its publisher, an egress adapter on it, a cascade from
        # it to node 3, and its own subscriber of node 1's track.
        pub2 = await clients[1].new_peer()
        await pub2.publish([StereoToneTrack(220, 330)], ["mic"])
        from_node2 = await clients[2].pull(pub2.session_id, "mic", kind="audio")
        await clients[1].pull(pub1.session_id, "mic", kind="audio")
        async with endpoint() as ep, three.client() as api:
            resp = await api.post(
                "/adapters/websocket/new",
                json={"tracks": [egress_item(ep.url, pub2.session_id, "mic", "pcm")]},
            )
            adapter_id = resp.json()["tracks"][0]["adapterId"]
            await asyncio.sleep(2.0)

            node2.kill()
            killed_at = time.monotonic()
            gone_after = await _until_404(api, pub2.session_id, 8)
            ended = await _ended_within(from_node2, 8) + gone_after
            view: dict[str, Any] = {}
            while time.monotonic() - killed_at < 15:
                view = (await api.get(f"/adapters/websocket/{adapter_id}")).json()
                if view["state"] == "closed":
                    break
                await asyncio.sleep(0.2)
            adapter_after = time.monotonic() - killed_at
            await asyncio.sleep(max(0.0, 5.0 - (time.monotonic() - killed_at)))
            print(
                f"node 2 killed: its session 404 after {gone_after:.1f} s, the cascade from "
                f"it ended after {ended:.1f} s, its egress adapter closed after "
                f"{adapter_after:.1f} s ({view.get('closeReason')})"
            )
            gaps = {name: a.longest_gap_s(killed_at - 1.0, stalls) for name, a in watched.items()}
            print(
                "longest gap per stream, from 1 s before the kill:", gaps,
                f"(this process stalled {len(stalls)} times, at most "
                f"{max((e - b for b, e in stalls), default=0):.3f} s)",
            )  # fmt: skip
            assert gone_after < 5.0
            assert ended < 5.0
            assert (view["state"], view["closeReason"]) == ("closed", "track_ended")
            assert all(gap < 0.1 for gap in gaps.values()), gaps

            # Restarted, node 2 rejoins as a new node and takes new sessions.
            node2.start()
            await _until_nodes(three.redis_url, 3, 40)
            fresh = node2.sessions()
            try:
                session_id, _ = await fresh.publish(StereoToneTrack(440, 660), "again")
                assert await node_of_session(three, session_id) == node2.url
                got = await api.get(f"/sessions/{session_id}")
                assert got.status_code == 200, got.text
                audio = await clients[0].pull(session_id, "again", kind="audio")
                assert_stereo_tone(await decoded_audio(audio, 2.0))
            finally:
                await fresh.close()
    finally:
        observer.cancel()
        await asyncio.gather(observer, return_exceptions=True)
        for client in clients:
            with contextlib.suppress(Exception):
                await client.close()


async def test_sessions_api_through_the_api_spreads_and_routes(three: Stack) -> None:
    client = three.sessions()  # the API's base URL: placement picks each session's node
    try:
        placed = set()
        for _ in range(6):
            peer = await client.new_peer()
            placed.add(await node_of_session(three, peer.session_id))
        assert len(placed) >= 2  # least loaded of two random nodes: not all on one
        session_id, _ = await client.publish(StereoToneTrack(440, 660), "mic")
        audio = await client.pull(session_id, "mic", kind="audio")
        assert_stereo_tone(await decoded_audio(audio, 2.0))
    finally:
        await client.close()


def test_sfu_command_runs_and_stops_several_nodes(clean_redis: str, tmp_path: Path) -> None:
    port = free_port()
    while not _port_free(port + 1):
        port = free_port()
    env = stack_env(clean_redis, sfu_nodes=2, sfu_port=port, worker_health_port=0)
    with (tmp_path / "sfu.log").open("ab") as log:
        proc = subprocess.Popen([str(BIN / "sluice"), "sfu"], env=env, stderr=log)
    try:
        wait_until(lambda: _count_nodes(clean_redis) == 2, 30, "two nodes")
        urls = sorted(node.url for node in _nodes(clean_redis))
        assert urls == [f"http://127.0.0.1:{port}", f"http://127.0.0.1:{port + 1}"]
    finally:
        proc.terminate()
        proc.wait(timeout=20)
    assert _count_nodes(clean_redis) == 0  # both left the directory on the way out


def _port_free(port: int) -> bool:
    with socket.socket() as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def _packet(payload: bytes) -> bytes:
    return encode(0, 0, payload)


async def _metric(url: str, name: str, kind: str) -> float:
    return (await node_metrics(url)).get((name, kind), -1.0)


async def _eventually(read: Any, expected: float, within_s: float) -> None:
    deadline = time.monotonic() + within_s
    while (value := await read()) != expected:
        assert time.monotonic() < deadline, f"still {value}, wanted {expected}"
        await asyncio.sleep(0.2)


async def _until_nodes(redis_url: str, count: int, within_s: float) -> None:
    deadline = time.monotonic() + within_s
    async with Redis.from_url(redis_url) as redis:
        while len(await sfu_nodes.live_nodes(redis)) != count:
            assert time.monotonic() < deadline, f"not {count} nodes after {within_s} s"
            await asyncio.sleep(0.2)


async def _until_404(api: httpx.AsyncClient, session_id: str, within_s: float) -> float:
    start = time.monotonic()
    while time.monotonic() - start < within_s:
        got = await api.get(f"/sessions/{session_id}")
        if got.status_code == 404:
            assert got.json()["errorCode"] == "not_found_session_error"
            return time.monotonic() - start
        await asyncio.sleep(0.1)
    return float("inf")


async def _ended_within(track: MediaStreamTrack, within_s: float) -> float:
    """Seconds from now until `track` ends (reading what it still holds meanwhile)."""
    start = time.monotonic()
    with contextlib.suppress(MediaStreamError, TimeoutError):
        async with asyncio.timeout(within_s):
            while True:
                await track.recv()
    return time.monotonic() - start
