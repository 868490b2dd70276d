"""Prometheus metrics of the SFU process, read from the sessions when scraped.

Nothing here runs per packet or per frame: gauges are counted over the open sessions,
RTP figures are aiortc's own receiver statistics
(`sluice.media.aiortc_internals.receive_counts`), and forwarded frames are each
`Fanout`'s counter. A session's figures go when it does, so the manager adds them to its
`Totals` as it closes it; a counter is those totals plus the figures of the sessions
still open (or closing).

Labels come from fixed sets (`KINDS`, `CLOSE_REASONS`): never ids or track names.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING

from fastapi import APIRouter, Request, Response
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    GCCollector,
    PlatformCollector,
    ProcessCollector,
    generate_latest,
)
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric

from sluice.http.sessions_models import Location, TrackStatus
from sluice.media.aiortc_internals import receive_counts
from sluice.state.records import MediaKind

if TYPE_CHECKING:
    from sfu.manager import SessionManager
    from sfu.session import Session

KINDS: tuple[str, ...] = tuple(MediaKind)  # label values: a fixed set
# Every reason `SessionManager.close` is called with; anything else is "other".
CLOSE_REASONS = (
    "idle",
    "peer_closed",
    "connection_failed",
    "bad_first_offer",
    "shutdown",
    "other",
)


@dataclass
class KindCounts:
    """Counter figures of one media kind."""

    packets_received: int = 0
    packets_lost: int = 0
    frames_forwarded: int = 0

    def add(self, other: KindCounts) -> None:
        self.packets_received += other.packets_received
        self.packets_lost += other.packets_lost
        self.frames_forwarded += other.frames_forwarded


def session_counts(session: Session) -> dict[str, KindCounts]:
    """A session's counter figures by kind, from its first packet until now.

    Every receiver of its connection counts, published or not: all of them took media
    from the client. Frames forwarded are counted on the publishing side.
    """
    counts = {kind: KindCounts() for kind in KINDS}
    for transceiver in session.pc.getTransceivers():
        kind_counts = counts.get(transceiver.kind)
        if kind_counts is not None:
            received = receive_counts(transceiver.receiver)
            kind_counts.packets_received += received.packets_received
            kind_counts.packets_lost += received.packets_lost
    for track in session.tracks.values():
        if track.fanout is not None and track.kind in counts:
            counts[track.kind].frames_forwarded += track.fanout.forwarded
    return counts


class Totals:
    """Counters of the sessions closed so far, so that closing one lowers no counter."""

    def __init__(self) -> None:
        self.by_kind = {kind: KindCounts() for kind in KINDS}
        self.closes = dict.fromkeys(CLOSE_REASONS, 0)

    def session_closed(self, reason: str) -> None:
        self.closes[reason if reason in self.closes else "other"] += 1

    def retire(self, session: Session) -> None:
        """Keeps a closed session's final figures (call once its connection is closed)."""
        for kind, counts in session_counts(session).items():
            self.by_kind[kind].add(counts)


@dataclass
class _Scrape:
    sessions: int
    upstreams: int
    tracks: dict[str, int]
    subscribers: dict[str, int]
    counts: dict[str, KindCounts]
    closes: dict[str, int]


class SfuCollector:
    """Reads the SessionManager's state at scrape time; see the module docstring.

    Call `collect()` on the event loop's thread only: the sessions change there.

    Args:
        manager: the process's sessions.
    """

    def __init__(self, manager: SessionManager) -> None:
        self._manager = manager
        self._lost = dict.fromkeys(KINDS, 0)  # highest loss exported

    def describe(self) -> Iterator[Metric]:
        """The families without samples (lets the registry refuse a clashing name)."""
        return self._families(None)

    def collect(self) -> Iterator[Metric]:
        return self._families(self._scrape())

    def _scrape(self) -> _Scrape:
        open_sessions = self._manager.open_sessions()
        tracks = dict.fromkeys(KINDS, 0)
        subscribers = dict.fromkeys(KINDS, 0)
        for session in open_sessions:
            for track in session.tracks.values():
                if track.kind not in tracks:
                    continue
                if track.location is Location.LOCAL and track.status is not TrackStatus.INACTIVE:
                    tracks[track.kind] += 1
                elif track.location is Location.REMOTE and track.status is TrackStatus.ACTIVE:
                    subscribers[track.kind] += 1
        totals = self._manager.totals
        counts = {kind: KindCounts() for kind in KINDS}
        for kind in KINDS:
            counts[kind].add(totals.by_kind[kind])
        for session in [*open_sessions, *self._manager.closing_sessions()]:
            for kind, session_kind_counts in session_counts(session).items():
                counts[kind].add(session_kind_counts)
        for kind in KINDS:
            # A stream's loss falls when a late packet arrives; a counter must not. The
            # other counters only grow: closed sessions' figures are kept in `totals`.
            lost = max(counts[kind].packets_lost, self._lost[kind])
            counts[kind].packets_lost = self._lost[kind] = lost
        upstreams = len(self._manager.cascades)
        return _Scrape(
            len(open_sessions), upstreams, tracks, subscribers, counts, dict(totals.closes)
        )

    def _families(self, scrape: _Scrape | None) -> Iterator[Metric]:
        sessions = GaugeMetricFamily("sluice_sfu_sessions", "Open sessions.")
        upstreams = GaugeMetricFamily(
            "sluice_sfu_upstreams",
            "Tracks of other nodes' sessions this node pulls once for its subscribers.",
        )
        tracks = GaugeMetricFamily(
            "sluice_sfu_tracks", "Published tracks not ended, by kind.", labels=["kind"]
        )
        subscribers = GaugeMetricFamily(
            "sluice_sfu_subscribers",
            "Pulled tracks being forwarded to a subscriber, by kind.",
            labels=["kind"],
        )
        counters = [
            (CounterMetricFamily(name, help_text, labels=["kind"]), field)
            for name, help_text, field in _COUNTERS
        ]
        closes = CounterMetricFamily(
            "sluice_sfu_session_closes", "Sessions closed, by reason.", labels=["reason"]
        )
        if scrape is not None:
            sessions.add_metric([], scrape.sessions)
            upstreams.add_metric([], scrape.upstreams)
            for kind in KINDS:
                tracks.add_metric([kind], scrape.tracks[kind])
                subscribers.add_metric([kind], scrape.subscribers[kind])
                for family, field in counters:
                    family.add_metric([kind], getattr(scrape.counts[kind], field))
            for reason, value in scrape.closes.items():
                closes.add_metric([reason], value)
        yield from (sessions, upstreams, tracks, subscribers)
        yield from (family for family, _ in counters)
        yield closes


_COUNTERS = (
    (
        "sluice_sfu_rtp_packets_received",
        "RTP packets received from publishers (retransmissions included), by kind.",
        "packets_received",
    ),
    (
        "sluice_sfu_rtp_packets_lost",
        "RTP packets lost on the way in (expected minus received, as RTCP receiver "
        "reports count them), by kind.",
        "packets_lost",
    ),
    (
        "sluice_sfu_frames_forwarded",
        "Encoded frames handed to subscribers' senders (one per subscriber), by kind.",
        "frames_forwarded",
    ),
)


def new_registry(manager: SessionManager) -> CollectorRegistry:
    """The app's metrics, with process, platform and GC collectors.

    Not the global default registry: several apps may live in one process (tests).
    """
    registry = CollectorRegistry()
    ProcessCollector(registry=registry)
    PlatformCollector(registry=registry)
    GCCollector(registry=registry)
    registry.register(SfuCollector(manager))
    return registry


router = APIRouter(tags=["operations"])


@router.get(
    "/metrics",
    summary="Prometheus metrics; no authentication: firewall this port",
    response_class=Response,
    responses={200: {"content": {"text/plain": {}}, "description": "Text exposition"}},
)
async def metrics(request: Request) -> Response:
    """Prometheus text exposition. Unauthenticated: keep this port off public networks."""
    # `async` on purpose: the collector reads the sessions on the event loop's thread,
    # where they change; a sync route would read them from a worker thread meanwhile.
    registry: CollectorRegistry = request.app.state.metrics
    return Response(generate_latest(registry), media_type=CONTENT_TYPE_LATEST)
