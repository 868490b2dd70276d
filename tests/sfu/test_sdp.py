"""The SDP reader that judges client descriptions."""

from __future__ import annotations

import pytest

from sfu import sdp
from sluice.errors import InvalidParams

OFFER = """v=0
o=- 1 1 IN IP4 0.0.0.0
s=-
t=0 0
a=group:BUNDLE 0 1
m=audio 9 UDP/TLS/RTP/SAVPF 111 0
a=mid:0
a=sendrecv
a=rtpmap:111 opus/48000/2
a=rtpmap:0 PCMU/8000
m=video 9 UDP/TLS/RTP/SAVPF 96 97
a=mid:1
a=recvonly
a=rtpmap:96 VP8/90000
a=rtpmap:97 rtx/90000
m=video 0 UDP/TLS/RTP/SAVPF 96
a=mid:2
a=rtpmap:96 VP8/90000
"""


def test_sections() -> None:
    audio, video, dead = sdp.parse(OFFER.replace("\n", "\r\n"))
    assert (audio.kind, audio.mid, audio.direction, audio.codec) == (
        "audio",
        "0",
        "sendrecv",
        "opus",
    )
    assert audio.sends and audio.receives
    assert (video.direction, video.codec, video.sends) == ("recvonly", "VP8", False)
    assert dead.port == 0 and not dead.sends and not dead.receives
    assert sdp.has_candidates(OFFER) is False


@pytest.mark.parametrize(
    "text",
    [
        "",
        "hello",
        "v=0\r\nm=audio\r\n",
        "v=0\r\nm=audio 9 RTP 0\r\n",
        OFFER.replace("a=mid:1", "a=mid:0"),
    ],
)
def test_refused(text: str) -> None:
    with pytest.raises(InvalidParams):
        sdp.parse(text)


ANSWER = (
    "v=0\r\n"
    "m=audio 41000 UDP/TLS/RTP/SAVPF 111\r\n"
    "c=IN IP4 10.0.0.5\r\n"
    "a=mid:0\r\n"
    "a=candidate:f1 1 udp 2130706431 10.0.0.5 41000 typ host\r\n"
    "a=candidate:f2 1 udp 2130706431 2001:db8::5 41001 typ host\r\n"
    "a=candidate:f3 1 udp 2130706431 8b1f.local 41002 typ host\r\n"
    "a=candidate:f4 1 udp 1694498815 198.51.100.9 50000 typ srflx raddr 10.0.0.5 rport 41000\r\n"
    "a=end-of-candidates\r\n"
)


def candidate_lines(text: str) -> list[str]:
    return [line for line in text.split("\r\n") if line.startswith("a=candidate:")]


def test_announce_adds_a_reflexive_twin_of_each_host_candidate() -> None:
    announced = sdp.announce(ANSWER, "203.0.113.7")
    lines = candidate_lines(announced)
    assert len(lines) == 5
    host, twin = lines[0], lines[1]
    assert host == "a=candidate:f1 1 udp 2130706431 10.0.0.5 41000 typ host"
    fields = twin.split()
    # Same component and port, the announced address, the host candidate as its base.
    assert fields[1:3] == ["1", "udp"]
    assert fields[4:] == [
        "203.0.113.7", "41000", "typ", "srflx", "raddr", "10.0.0.5", "rport", "41000"
    ]  # fmt: skip
    assert fields[0] != "a=candidate:f1"  # a foundation of its own
    assert int(fields[3]) < 2130706431  # ranked below the host candidates
    assert announced.count("\r\n") == ANSWER.count("\r\n") + 1
    assert "\n" not in announced.replace("\r\n", "")
    # Nothing else moved: the rest of the description is as it was.
    assert announced.replace(twin + "\r\n", "") == ANSWER
    assert sdp.parse(announced)[0].mid == "0"


def test_announce_matches_the_address_family() -> None:
    lines = candidate_lines(sdp.announce(ANSWER, "2001:db8::1"))
    assert len(lines) == 5
    assert lines[2].split()[4:] == [
        "2001:db8::1", "41001", "typ", "srflx", "raddr", "2001:db8::5", "rport", "41001"
    ]  # fmt: skip


def test_announce_leaves_descriptions_without_candidates_alone() -> None:
    assert sdp.announce(OFFER, "203.0.113.7") == OFFER
