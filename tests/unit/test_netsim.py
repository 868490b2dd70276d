"""The impaired-network relay of the loss and reordering tests: its schedule and its I/O."""

from __future__ import annotations

import asyncio

import pytest

from tests.netsim import (
    Impairment,
    Schedule,
    UdpRelay,
    is_media,
    server_address,
    via_relay,
)


def fates(imp: Impairment, seed: int, times: list[float]) -> list[tuple[bool, float]]:
    schedule = Schedule(imp, seed, start=0.0)
    return [(v.drop, round(v.release_at, 9)) for v in map(schedule.decide, times)]


def test_a_seed_repeats_exactly_and_another_differs() -> None:
    imp = Impairment(loss=0.1, delay_ms=30, jitter_ms=20)
    times = [i * 0.02 for i in range(500)]
    assert fates(imp, 7, times) == fates(imp, 7, times)
    assert fates(imp, 7, times) != fates(imp, 8, times)


def test_loss_rate_and_jitter_bounds() -> None:
    schedule = Schedule(Impairment(loss=0.05, delay_ms=30, jitter_ms=20), 3, start=0.0)
    verdicts = [schedule.decide(i * 0.02) for i in range(10_000)]
    assert 0.04 < schedule.stats.lost / 10_000 < 0.06
    delays = [v.release_at - i * 0.02 for i, v in enumerate(verdicts) if not v.drop]
    assert 0.010 <= min(delays) < 0.0105 and 0.0495 < max(delays) <= 0.050
    assert schedule.stats.reordered > 0  # ±20 ms on a 20 ms spacing overtakes


def test_jitter_without_reordering_keeps_the_order() -> None:
    schedule = Schedule(Impairment(delay_ms=30, jitter_ms=20, reorder=False), 3, start=0.0)
    releases = [schedule.decide(i * 0.02).release_at for i in range(2_000)]
    assert releases == sorted(releases)
    assert schedule.stats.reordered == 0


def test_a_datagram_keeps_its_fate_when_an_earlier_one_changes_its_own() -> None:
    """Two draws per datagram whatever happens: changing the loss rate moves no delay."""
    times = [i * 0.02 for i in range(300)]
    clear = fates(Impairment(delay_ms=30, jitter_ms=20), 5, times)
    lossy = fates(Impairment(loss=0.2, delay_ms=30, jitter_ms=20), 5, times)
    kept = [(c, lo) for c, lo in zip(clear, lossy, strict=True) if not lo[0]]
    assert kept and all(c == lo for c, lo in kept)


def test_periodic_outages_drop_everything_inside_them() -> None:
    imp = Impairment(outage_every_s=2.0, outage_ms=500, outage_offset_s=1.0)
    schedule = Schedule(imp, 1, start=10.0)
    dropped = [t for t in (10 + i * 0.01 for i in range(400)) if schedule.decide(t).drop]
    # 1.0-1.5 s and 3.0-3.5 s after the start, 50 datagrams each.
    assert len(dropped) == 100 == schedule.stats.outage
    assert 10.99 < dropped[0] <= 11.0 and dropped[-1] < 13.5


@pytest.mark.parametrize(
    "kwargs",
    [{"loss": 1.5}, {"delay_ms": 10, "jitter_ms": 20}, {"outage_every_s": 0.2, "outage_ms": 300}],
)
def test_impossible_impairments_are_refused(kwargs: dict[str, float]) -> None:
    with pytest.raises(ValueError):
        Impairment(**kwargs)


ANSWER = """v=0\r
m=audio 50123 UDP/TLS/RTP/SAVPF 96\r
c=IN IP4 127.0.0.1\r
a=candidate:abc 1 udp 2130706431 127.0.0.1 50123 typ host\r
m=video 0 UDP/TLS/RTP/SAVPF 97\r
"""


def test_the_answer_is_pointed_at_the_relay() -> None:
    assert server_address(ANSWER) == ("127.0.0.1", 50123)
    rewritten = via_relay(ANSWER, 40000)
    assert "127.0.0.1 40000 typ host" in rewritten
    assert "m=audio 40000 " in rewritten and "m=video 0 " in rewritten
    assert "50123" not in rewritten
    with pytest.raises(ValueError):
        server_address("v=0\r\n")


async def test_relay_passes_handshakes_at_once_and_impairs_media() -> None:
    loop = asyncio.get_running_loop()
    got: asyncio.Queue[tuple[bytes, tuple[str, int]]] = asyncio.Queue()

    class Sink(asyncio.DatagramProtocol):
        def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
            got.put_nowait((data, addr))

    server, _ = await loop.create_datagram_endpoint(Sink, local_addr=("127.0.0.1", 0))
    client, _ = await loop.create_datagram_endpoint(Sink, local_addr=("127.0.0.1", 0))
    relay = await UdpRelay.start(
        server.get_extra_info("sockname"), upstream=Impairment(delay_ms=50), seed=1
    )
    try:
        stun, rtp = b"\x00\x01stun", b"\x80\x6frtp"
        assert not is_media(stun) and is_media(rtp)
        sent_at = loop.time()
        client.sendto(rtp, ("127.0.0.1", relay.port))
        client.sendto(stun, ("127.0.0.1", relay.port))
        first = await asyncio.wait_for(got.get(), 1)
        second = await asyncio.wait_for(got.get(), 1)
        assert [first[0], second[0]] == [stun, rtp]  # the handshake overtook the delayed RTP
        assert loop.time() - sent_at >= 0.045
        assert first[1] == ("127.0.0.1", relay.port)  # the server sees the relay
        server.sendto(b"\x80reply", ("127.0.0.1", relay.port))
        reply, source = await asyncio.wait_for(got.get(), 1)
        assert reply == b"\x80reply" and source == ("127.0.0.1", relay.port)
    finally:
        relay.close()
        server.close()
        client.close()


def test_outage_windows_are_where_the_schedule_drops() -> None:
    imp = Impairment(outage_every_s=2.0, outage_ms=500, outage_offset_s=1.0)
    assert imp.outages(5.0) == [(1.0, 1.5), (3.0, 3.5)]
    assert Impairment(loss=0.1).outages(5.0) == []
    inside = [start + 0.25 for start, _ in imp.outages(5.0)]
    assert all(imp.in_outage(t) for t in inside)
