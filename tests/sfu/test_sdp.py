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
