"""Just enough SDP reading to validate a client's description before it touches a session.

aiortc's own parser raises assorted exceptions deep inside `setRemoteDescription`; judging
the text first lets bad input become a clean 400 with the session left as it was.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field

from aioice import Candidate
from aioice.candidate import candidate_foundation, candidate_priority

from sluice.errors import InvalidParams
from sluice.state.records import MediaKind

DIRECTIONS = ("sendrecv", "sendonly", "recvonly", "inactive")
MEDIA_KINDS = tuple(MediaKind)
# What the SFU carries: aiortc's own codecs, and those `sluice.media.aiortc_internals` registers.
SUPPORTED_CODECS = {"opus", "pcmu", "pcma", "g722", "vp8", "h264", "vp9", "h265"}


@dataclass(slots=True)
class MediaSection:
    kind: str  # audio, video, application, ...
    mid: str
    direction: str
    port: int
    payload_types: list[str]
    codecs: dict[str, str] = field(default_factory=dict)  # payload type → codec name

    @property
    def sends(self) -> bool:
        """The side that wrote this section sends media in it."""
        return self.port != 0 and self.direction in ("sendrecv", "sendonly")

    @property
    def receives(self) -> bool:
        return self.port != 0 and self.direction in ("sendrecv", "recvonly")

    @property
    def codec(self) -> str | None:
        """The preferred codec: the first payload type's name."""
        for pt in self.payload_types:
            name = self.codecs.get(pt)
            if name and name.lower() not in ("rtx", "red", "ulpfec", "flexfec-03"):
                return name
        return None


def parse(sdp: str) -> list[MediaSection]:
    """The media sections of a description, in order.

    Raises:
        InvalidParams: not SDP (no `v=0`), a media section without a mid, or a mid twice.
    """
    lines = [line.strip() for line in sdp.replace("\r\n", "\n").split("\n") if line.strip()]
    if not lines or lines[0] != "v=0":
        raise InvalidParams("sessionDescription.sdp is not SDP (it must start with v=0)")
    sections: list[MediaSection] = []
    session_direction = "sendrecv"
    current: MediaSection | None = None
    explicit_direction = False
    for line in lines[1:]:
        if line.startswith("m="):
            if current is not None and not explicit_direction:
                current.direction = session_direction
            current = _media_line(line)
            sections.append(current)
            explicit_direction = False
        elif line.startswith("a="):
            attr, _, value = line[2:].partition(":")
            if attr in DIRECTIONS:
                if current is None:
                    session_direction = attr
                else:
                    current.direction = attr
                    explicit_direction = True
            elif current is None:
                continue
            elif attr == "mid":
                current.mid = value.strip()
            elif attr == "rtpmap":
                pt, _, rest = value.partition(" ")
                current.codecs[pt] = rest.split("/")[0]
    if current is not None and not explicit_direction:
        current.direction = session_direction
    seen: set[str] = set()
    for index, section in enumerate(sections):
        if not section.mid:
            raise InvalidParams(f"media section {index} of the SDP has no a=mid")
        if section.mid in seen:
            raise InvalidParams(f"mid {section.mid!r} appears twice in the SDP")
        seen.add(section.mid)
    return sections


def _media_line(line: str) -> MediaSection:
    parts = line[2:].split()
    if len(parts) < 3 or not parts[1].split("/")[0].isdigit():
        raise InvalidParams(f"malformed media line in SDP: {line[:80]!r}")
    return MediaSection(
        kind=parts[0],
        mid="",
        direction="sendrecv",
        port=int(parts[1].split("/")[0]),
        payload_types=parts[3:],
    )


def judge(text: str) -> list[MediaSection]:
    """`parse`, plus what aiortc would refuse halfway through applying a description.

    Raises:
        InvalidParams: unparsable, an unknown media kind, or a live audio/video section
            without any codec the SFU can carry (aiortc would fail after changing state).
    """
    sections = parse(text)
    for section in sections:
        if section.kind not in MEDIA_KINDS and section.kind != "application":
            raise InvalidParams(f"media section {section.mid!r} has kind {section.kind!r}")
        if section.kind in MEDIA_KINDS and section.port != 0:
            names = {name.lower() for name in section.codecs.values()}
            if not names & SUPPORTED_CODECS:
                raise InvalidParams(
                    f"media section {section.mid!r} offers no codec the SFU supports"
                )
    return sections


def by_mid(sections: list[MediaSection]) -> dict[str, MediaSection]:
    return {s.mid: s for s in sections}


def has_candidates(sdp: str) -> bool:
    return "a=candidate:" in sdp


def announce(text: str, address: str) -> str:
    """Adds `address` beside each UDP host candidate of its IP family, on the same port.

    Behind a 1:1 NAT (a cloud VM's public address) the SFU's sockets are reachable at the
    public address on their own ports, which is what a STUN server would report: the new
    candidates are server-reflexive ones with the host candidate as their base. The host
    candidates stay, for peers on the same network (`SLUICE_SFU_ANNOUNCED_IP`).
    """
    version = ipaddress.ip_address(address).version
    out: list[str] = []
    for line in text.splitlines(keepends=True):
        out.append(line)
        body = line.rstrip("\r\n")
        if not body.startswith("a=candidate:"):
            continue
        try:
            host = Candidate.from_sdp(body[len("a=candidate:") :])
            same_family = ipaddress.ip_address(host.host).version == version
        except ValueError:
            continue  # not ours to judge: an mDNS name, or a line aiortc would not write
        if host.type != "host" or host.transport.lower() != "udp" or not same_family:
            continue
        reflexive = Candidate(
            foundation=candidate_foundation("srflx", "udp", host.host),
            component=host.component,
            transport=host.transport,
            priority=candidate_priority(host.component, "srflx"),
            host=address,
            port=host.port,
            type="srflx",
            related_address=host.host,
            related_port=host.port,
        )
        out.append(f"a=candidate:{reflexive.to_sdp()}{line[len(body) :]}")
    return "".join(out)
