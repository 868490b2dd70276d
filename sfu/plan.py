"""Binding a tracks/new request to the media sections of the client's offer.

Everything is decided before the offer is applied, so a request that cannot be served
is refused (400) with the session untouched.
"""

from __future__ import annotations

import secrets
from collections.abc import Callable, Collection

from sfu import sdp
from sfu.tracks import SessionTrack
from sluice.errors import InvalidParams
from sluice.http.sessions_models import Location, TrackRequest, TrackResult

Resolver = Callable[[int, TrackRequest], "SessionTrack | TrackResult"]


class OfferPlan:
    """Which sections are pushed under which names, and which pulled track goes where.

    Args:
        sections: the offer's media sections.
        items: the request's tracks, in request order.
        auto_discover: every new sending section becomes a pushed track.
        known_mids: sections negotiated before this offer.
        published_mids: sections already carrying a track of this session.
        names_in_use: names of this session's live pushed tracks.
        resolve: finds a pulled track's source, or the per-item error for it.

    Raises:
        InvalidParams: an item names a section that is missing or cannot serve it.
    """

    def __init__(
        self,
        sections: list[sdp.MediaSection],
        items: list[TrackRequest],
        *,
        auto_discover: bool,
        known_mids: Collection[str],
        published_mids: Collection[str],
        names_in_use: set[str],
        resolve: Resolver,
    ) -> None:
        self.results: list[TrackResult | None] = [None] * len(items)
        self.pushes: list[tuple[int | None, sdp.MediaSection, str]] = []
        self.pulls: list[tuple[int, sdp.MediaSection, SessionTrack]] = []
        self._fresh = [s for s in sections if s.mid not in known_mids]
        self._by_mid = sdp.by_mid(sections)
        self._claimed: set[str] = set()
        names = set(names_in_use)
        for i, item in enumerate(items):
            if item.location is Location.LOCAL:
                section = self._push_section(i, item, published_mids, names)
                names.add(section_name := str(item.trackName))
                self.pushes.append((i, section, section_name))
        if auto_discover:
            for section in self._fresh:
                if section.kind in sdp.MEDIA_KINDS and section.sends:
                    if section.mid in self._claimed:
                        continue
                    name = f"{section.kind}-{section.mid}"
                    while name in names:
                        name = f"{section.kind}-{section.mid}-{secrets.token_hex(2)}"
                    self._claimed.add(section.mid)
                    names.add(name)
                    self.pushes.append((None, section, name))
        for i, item in enumerate(items):
            if item.location is Location.REMOTE:
                resolved = resolve(i, item)
                if isinstance(resolved, TrackResult):
                    self.results[i] = resolved
                else:
                    self.pulls.append((i, self._pull_section(i, item, resolved), resolved))

    def _push_section(
        self, i: int, item: TrackRequest, published: Collection[str], names: set[str]
    ) -> sdp.MediaSection:
        if not item.trackName or not item.mid:
            raise InvalidParams(f"tracks[{i}]: a local track needs trackName and mid")
        section = self._by_mid.get(item.mid)
        if section is None:
            raise InvalidParams(f"tracks[{i}].mid {item.mid!r} is not in the offer")
        if section.kind not in sdp.MEDIA_KINDS or not section.sends:
            raise InvalidParams(f"tracks[{i}].mid {item.mid!r} does not send media")
        if item.mid in published or item.mid in self._claimed:
            raise InvalidParams(f"tracks[{i}].mid {item.mid!r} is already published")
        if item.trackName in names:
            raise InvalidParams(f"tracks[{i}].trackName {item.trackName!r} exists")
        self._claimed.add(item.mid)
        return section

    def _pull_section(self, i: int, item: TrackRequest, source: SessionTrack) -> sdp.MediaSection:
        # A forwarder cannot translate: the section must accept the publisher's codec.
        def fits(s: sdp.MediaSection) -> bool:
            codecs = {name.lower() for name in s.codecs.values()}
            return (
                s.kind == source.kind
                and s.direction == "recvonly"
                and s.mid not in self._claimed
                and (source.codec is None or source.codec.lower() in codecs)
            )

        wanted = f"recvonly {source.kind} section accepting {source.codec}"
        if item.mid is not None:
            section = self._by_mid.get(item.mid)
            if section is None or section not in self._fresh or not fits(section):
                raise InvalidParams(
                    f"tracks[{i}].mid {item.mid!r} is not a new, unclaimed {wanted}"
                )
        else:
            section = next((s for s in self._fresh if fits(s)), None)
            if section is None:
                raise InvalidParams(f"tracks[{i}]: the offer has no unclaimed {wanted} left")
        self._claimed.add(section.mid)
        return section


def pushes_without_offer(
    items: list[TrackRequest],
    remote_sections: dict[str, sdp.MediaSection],
    published_mids: Collection[str],
    names_in_use: set[str],
) -> list[tuple[int, sdp.MediaSection, str]]:
    """The local items of a request without an offer: sections of the last offer.

    Raises:
        InvalidParams: an item is incomplete, names no unpublished sending section of the
            last offer, or reuses a name.
    """
    names = set(names_in_use)
    pushes: list[tuple[int, sdp.MediaSection, str]] = []
    for i, item in enumerate(items):
        if item.location is Location.REMOTE and not (item.sessionId and item.trackName):
            raise InvalidParams(f"tracks[{i}]: a remote track needs sessionId and trackName")
    for i, item in enumerate(items):
        if item.location is not Location.LOCAL:
            continue
        if item.mid is None or item.trackName is None:
            raise InvalidParams(f"tracks[{i}]: a local track needs mid and trackName")
        section = remote_sections.get(item.mid)
        if section is None or not section.sends or item.mid in published_mids:
            raise InvalidParams(
                f"tracks[{i}].mid {item.mid!r} is not an unpublished sending section "
                "of the last offer; push with a sessionDescription"
            )
        if item.trackName in names:
            raise InvalidParams(f"tracks[{i}].trackName {item.trackName!r} exists")
        names.add(item.trackName)
        pushes.append((i, section, item.trackName))
    return pushes
