"""Egress on an impaired network: the publisher's UDP crosses a seeded relay.

Reordered packets are put in their place and losses of up to 100 ms are concealed and
counted, so the endpoint's audio is never spliced (spec §7); a JPEG never shows a
picture decoded from a damaged reference.

Longer runs print the figures of docs/reliability.md (`NETSIM_REFERENCE=1` adds the
same source unimpaired):
`NETSIM_SECONDS=10 NETSIM_LOSS=0.05 pytest -s tests/integration/test_impaired_egress.py`.
"""

from __future__ import annotations

import asyncio
import itertools
import os
from typing import Any

import pytest

from sluice.wire.packet_pb2 import Packet
from tests.integration.audio import StereoToneTrack, opus_tone_packets
from tests.integration.helpers import Connection, Stack, egress_item, endpoint
from tests.integration.video import (
    ColourCycleTrack,
    colour_index,
    decode_jpeg,
    explained_by_one_phase,
)
from tests.netsim import Impairment, UdpRelay, publish_via_relay
from tests.netsim.measure import AudioFigures
from tests.sfu.media import PacketLoopTrack

pytestmark = [pytest.mark.integration, pytest.mark.timeout(90)]

SECONDS = float(os.environ.get("NETSIM_SECONDS", "4"))
LOSS = float(os.environ.get("NETSIM_LOSS", "0.10"))
SEED = int(os.environ.get("NETSIM_SEED", "5"))
REFERENCE = bool(os.environ.get("NETSIM_REFERENCE"))
FREQS = (440.0, 660.0)
REORDERING = Impairment(delay_ms=30, jitter_ms=20)  # ±20 ms on 20 ms packets: reorders


async def egress(stack: Stack, url: str, session_id: str) -> str:
    async with stack.client() as client:
        resp = await client.post(
            "/adapters/websocket/new", json={"tracks": [egress_item(url, session_id)]}
        )
    assert resp.status_code == 200, resp.text
    return str(resp.json()["tracks"][0]["adapterId"])


async def counters(stack: Stack, adapter_id: str) -> dict[str, Any]:
    async with stack.client() as client:
        view = (await client.get(f"/adapters/websocket/{adapter_id}")).json()
    return dict(view["counters"])


def figures(conn: Connection) -> AudioFigures:
    got = [Packet.FromString(m) for m in conn.messages if isinstance(m, bytes)]
    got = got[25:]  # past the start-up
    return AudioFigures.of([p.timestamp for p in got], [p.payload for p in got], FREQS)


async def test_reordered_and_lost_packets_are_put_in_place_and_concealed(stack: Stack) -> None:
    sessions = stack.sessions()
    relays: list[UdpRelay] = []
    try:
        # The lossy publisher sends in-band FEC, as browsers do when told `useinbandfec=1`.
        fec_tone = opus_tone_packets(SECONDS + 5, FREQS, fec=True)
        runs = {
            "reordered": (REORDERING, StereoToneTrack(*FREQS)),
            "lossy": (Impairment(loss=LOSS), PacketLoopTrack("audio", fec_tone, 960, 48_000)),
        }
        if REFERENCE:  # the same source unimpaired: what purity a clean stream gets
            runs["clean"] = (Impairment(), PacketLoopTrack("audio", fec_tone, 960, 48_000))
        sources = {}
        for name, (impairment, track) in runs.items():
            peer, relay = await publish_via_relay(
                sessions, [track], ["mic"], upstream=impairment, seed=SEED
            )
            relays.append(relay)
            sources[name] = peer.session_id
        async with endpoint() as ep:
            ids = {name: await egress(stack, ep.url, sid) for name, sid in sources.items()}
            conns = dict(zip(ids, await ep.wait_connections(len(ids)), strict=True))
            await asyncio.sleep(SECONDS + 0.5)
            seen = {name: await counters(stack, aid) for name, aid in ids.items()}
            # A create answers once its adapter is active (connected): in order.
            results = {name: figures(conn) for name, conn in conns.items()}
    finally:
        await sessions.close()
        for relay in relays:
            relay.close()
    for (name, result), relay in zip(results.items(), relays, strict=True):
        stats, counted = relay.upstream.stats, seen[name]
        print(
            f"{name}: relay {stats.datagrams} datagrams, {stats.lost} lost, {stats.reordered} "
            f"reordered; endpoint {result.line()}; concealed {counted.get('concealed')}, "
            f"lost {counted.get('lost')}"
        )
    # Spliced audio is a timestamp step over 20 ms and up to 100 ms (the code before
    # this had dozens in 4 s); on a loaded machine the SFU may drop a burst, which
    # counts as lost and jumps, so the rate is printed, not asserted.
    reordered, lossy = results["reordered"], results["lossy"]
    assert relays[0].upstream.stats.reordered >= 10
    assert (reordered.small_jumps, reordered.backwards) == (0, 0)
    assert relays[1].upstream.stats.lost >= 5
    assert (lossy.small_jumps, lossy.backwards) == (0, 0)
    assert seen["lossy"]["concealed"] >= 3


async def test_jpeg_under_loss_shows_only_pictures_that_were_sent(stack: Stack) -> None:
    """Lost frames and lost keyframe requests: snapshots wait for a keyframe, never lie."""
    sessions = stack.sessions()
    lossy = Impairment(loss=LOSS / 2)  # 5 % by default, as in the report
    peer, relay = await publish_via_relay(
        sessions, [ColourCycleTrack(640, 480)], ["cam"], upstream=lossy, downstream=lossy,
        seed=SEED,
    )  # fmt: skip
    try:
        async with endpoint() as ep, stack.client() as client:
            item = egress_item(ep.url, peer.session_id, "cam", codec="jpeg")
            resp = await client.post("/adapters/websocket/new", json={"tracks": [item]})
            assert resp.status_code == 200, resp.text
            (conn,) = await ep.wait_connections(1)
            await asyncio.sleep(SECONDS + 2)
            got = [Packet.FromString(m) for m in conn.messages if isinstance(m, bytes)]
    finally:
        await sessions.close()
        relay.close()
    times = [p.timestamp / 90_000 for p in got]
    colours = [colour_index(decode_jpeg(p.payload)) for p in got]
    gaps = [b - a for a, b in itertools.pairwise(times)]
    up, down = relay.upstream.stats, relay.downstream.stats
    print(
        f"jpeg: relay up {up.datagrams} datagrams {up.lost} lost, down {down.datagrams} "
        f"{down.lost} lost; {len(got)} JPEGs, intervals {[round(g, 2) for g in gaps]} s"
    )
    assert up.lost >= 5 and down.lost >= 1
    assert len(got) >= SECONDS - 1
    assert explained_by_one_phase(times, colours), list(zip(times, colours, strict=True))
