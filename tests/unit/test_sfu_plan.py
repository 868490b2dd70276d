"""Binding tracks/new items to media sections, decided before anything is applied."""

from __future__ import annotations

import pytest

from sfu.plan import pushes_without_offer
from sfu.sdp import MediaSection
from sluice.errors import InvalidParams
from sluice.http.sessions_models import Location, TrackRequest

SECTIONS = {
    "0": MediaSection("audio", "0", "sendonly", 9, ["111"], {"111": "opus"}),
    "1": MediaSection("video", "1", "recvonly", 9, ["96"], {"96": "VP8"}),
}


def local(mid: str | None, name: str | None) -> TrackRequest:
    return TrackRequest(location=Location.LOCAL, mid=mid, trackName=name)


def test_a_local_item_names_a_sending_section_of_the_last_offer() -> None:
    pushes = pushes_without_offer([local("0", "mic")], SECTIONS, (), set())
    assert [(i, s.mid, name) for i, s, name in pushes] == [(0, "0", "mic")]


@pytest.mark.parametrize(
    ("items", "published", "names", "message"),
    [
        ([local(None, "mic")], (), set(), "needs mid and trackName"),
        ([local("1", "cam")], (), set(), "not an unpublished sending section"),
        ([local("7", "x")], (), set(), "not an unpublished sending section"),
        ([local("0", "mic")], ("0",), set(), "not an unpublished sending section"),
        ([local("0", "mic")], (), {"mic"}, "'mic' exists"),
        ([TrackRequest(location=Location.REMOTE, trackName="t")], (), set(), "needs sessionId"),
    ],
)
def test_an_item_that_cannot_be_served_is_refused(
    items: list[TrackRequest], published: tuple[str, ...], names: set[str], message: str
) -> None:
    with pytest.raises(InvalidParams, match=message):
        pushes_without_offer(items, SECTIONS, published, names)
