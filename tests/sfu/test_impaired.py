"""The SFU on an impaired network: a publisher whose UDP crosses a seeded relay.

What the subscribers must see: every packet that reached the SFU, late ones included,
in sequence numbers that keep the publisher's order and gaps, so their own jitter
buffers put late packets in place and see losses as losses.
"""

from __future__ import annotations

import asyncio
import contextlib
import fractions
import itertools

import av
import pytest
from aiortc import MediaStreamTrack
from aiortc.mediastreams import MediaStreamError

from sluice.media.aiortc_internals import on_keyframe_request
from sluice.media.calls_client import SessionsClient
from sluice.media.types import EncodedFrame
from tests.netsim import Impairment, publish_via_relay
from tests.sfu.media import FPS, SAMPLES, VIDEO_CLOCK, PacedTrack, ToneTrack, encode_vp8_colour

pytestmark = pytest.mark.timeout(60)

REORDERING = Impairment(delay_ms=30, jitter_ms=20)  # ±20 ms on 20 ms packets: reorders
SECONDS = 4.0


async def decoded_timestamps(track: MediaStreamTrack, into: list[int]) -> None:
    with contextlib.suppress(MediaStreamError):
        while True:
            into.append((await track.recv()).pts)


def holes(timestamps: list[int], step: int = SAMPLES) -> int:
    """Frames missing between the first and the last timestamp seen, past the start-up."""
    seen = sorted(set(timestamps))[10:]
    return sum((b - a) // step - 1 for a, b in itertools.pairwise(seen))


def renumbered(frames: list[EncodedFrame]) -> set[int]:
    """Sequence number minus frame count from the first: one value if numbered like the source."""
    seq0, ts0 = frames[0].sequence_number or 0, frames[0].timestamp
    return {
        ((f.sequence_number or 0) - seq0 - (f.timestamp - ts0) % 2**32 // SAMPLES) % 2**16
        for f in frames
    }


async def test_reordered_audio_reaches_subscribers_whole(client: SessionsClient) -> None:
    peer, relay = await publish_via_relay(
        client, [ToneTrack(440.0)], ["mic"], upstream=REORDERING, seed=11
    )
    try:
        tapped: list[EncodedFrame] = []
        await client.pull(peer.session_id, "mic", kind="audio", on_frame=tapped.append)
        plain = await client.pull(peer.session_id, "mic", kind="audio")
        decoded: list[int] = []
        task = asyncio.create_task(decoded_timestamps(plain, decoded))
        await asyncio.sleep(SECONDS)
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
    finally:
        await peer.close()
        relay.close()
    stats = relay.upstream.stats
    tapped_ts = [f.timestamp for f in tapped]
    print(
        f"relay: {stats.datagrams} datagrams, {stats.reordered} reordered, {stats.dropped} "
        f"dropped; tapped subscriber {len(tapped)} frames, {holes(tapped_ts)} missing; "
        f"plain subscriber {len(decoded)} frames, {holes(decoded)} missing"
    )
    assert stats.reordered >= 10 and stats.dropped == 0
    assert holes(tapped_ts) == 0
    assert renumbered(tapped) == {0}  # late packets kept their place in the numbering
    assert holes(decoded) == 0


async def test_lost_audio_stays_a_gap_in_the_numbering(client: SessionsClient) -> None:
    """A subscriber must see a loss as a loss (to conceal it), not a timestamp jump."""
    peer, relay = await publish_via_relay(
        client, [ToneTrack(440.0)], ["mic"], upstream=Impairment(loss=0.1), seed=5
    )
    try:
        tapped: list[EncodedFrame] = []
        await client.pull(peer.session_id, "mic", kind="audio", on_frame=tapped.append)
        await asyncio.sleep(2.0)
    finally:
        await peer.close()
        relay.close()
    stats = relay.upstream.stats
    missing = holes([f.timestamp for f in tapped])
    print(f"relay: {stats.datagrams} datagrams, {stats.lost} lost; {missing} frames missing")
    assert stats.lost >= 5 and missing >= 3
    assert renumbered(tapped) == {0}


class KeyframeOnRequest(PacedTrack):
    """Pre-encoded VP8 at 30 fps that sends a keyframe only when asked (a PLI)."""

    kind = "video"

    def __init__(self) -> None:
        super().__init__()
        self._frames = encode_vp8_colour((200, 40, 40), 30, gop=1000)
        self.want_keyframe = True

    async def recv(self) -> av.Packet:
        await self._wait_turn(FPS)
        index, self.want_keyframe = 0 if self.want_keyframe else 1 + self._n % 29, False
        packet = av.Packet(self._frames[index])
        packet.pts = self._n * (VIDEO_CLOCK // FPS)
        packet.time_base = fractions.Fraction(1, VIDEO_CLOCK)
        self._n += 1
        return packet


async def test_a_lost_keyframe_request_is_repeated_until_one_comes(client: SessionsClient) -> None:
    """Frames lost, and the PLIs that ask for a keyframe lost too: the SFU asks again."""
    outage_at, pli_outage_s = 2.0, 1.0
    upstream = Impairment(outage_every_s=100, outage_ms=200, outage_offset_s=outage_at)
    downstream = Impairment(
        outage_every_s=100, outage_ms=pli_outage_s * 1000, outage_offset_s=outage_at
    )
    source = KeyframeOnRequest()
    peer, relay = await publish_via_relay(
        client, [source], ["cam"], upstream=upstream, downstream=downstream, seed=3
    )
    loop = asyncio.get_running_loop()
    started = loop.time()
    plis: list[float] = []  # when each PLI reached the publisher, from the outage

    def on_pli() -> None:
        plis.append(round(loop.time() - started - outage_at, 2))
        source.want_keyframe = True

    on_keyframe_request(peer.pc.getTransceivers()[0].sender, on_pli)
    try:
        frames: list[EncodedFrame] = []
        await client.pull(peer.session_id, "cam", kind="video", on_frame=frames.append)
        await asyncio.sleep(outage_at + 2.0 - (loop.time() - started))
    finally:
        await peer.close()
        relay.close()
    keyframes = [
        round(f.received_at - started - outage_at, 2)
        for f in frames
        if f.keyframe and f.received_at - started > outage_at
    ]
    print(
        f"relay: up {relay.upstream.stats.outage} and down {relay.downstream.stats.outage} "
        f"datagrams dropped; PLIs at {plis}, keyframes at {keyframes} s from the outage"
    )
    assert relay.upstream.stats.outage >= 3 and relay.downstream.stats.outage >= 1
    # The PLIs sent during the outage were lost; the next retry reached the publisher.
    after = [t for t in plis if t >= pli_outage_s]
    assert after and after[0] < pli_outage_s + 0.5
    assert keyframes and keyframes[0] < pli_outage_s + 0.8
