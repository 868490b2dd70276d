"""One SFU session: a client's peer connection with the tracks it pushes and pulls.

Every negotiation step runs under the session's lock, and every client description is
judged (`sfu.sdp`) before aiortc sees it, so a bad request leaves the session as it was.
"""

from __future__ import annotations

import asyncio
import secrets
import time
from collections.abc import Coroutine
from typing import Any

import structlog
from aiortc import RTCConfiguration
from aiortc.mediastreams import MediaStreamError

from sfu import sdp
from sfu.forward import Fanout, Subscriber, hook_sender, restrict_to_source
from sfu.negotiation import Negotiator
from sfu.plan import OfferPlan, pushes_without_offer
from sfu.tracks import Hub, SessionTrack
from sluice.errors import InvalidParams, SessionNotFound, SluiceError
from sluice.http.sessions_models import (
    CloseTracksRequest,
    Location,
    NewTracksRequest,
    SessionDescription,
    SessionView,
    TrackRequest,
    TrackResult,
    TracksResponse,
    TrackStatus,
    TrackView,
)
from sluice.media.types import EncodedFrame


def new_session_id() -> str:
    return secrets.token_hex(16)


class Session:
    """One client's session: pushed tracks fan out, pulled tracks are fed from elsewhere.

    Args:
        app_id: the owning app; other apps never see the session.
        configuration: ICE setup for its peer connection.
        hub: the holder of every session (lookups, registry, closing).
        announced_ip: the public address its descriptions announce (`sdp.announce`).
    """

    def __init__(
        self,
        app_id: str,
        configuration: RTCConfiguration,
        hub: Hub,
        session_id: str = "",
        announced_ip: str = "",
    ) -> None:
        self.id = session_id or new_session_id()
        self.app_id = app_id
        self.created_at_ms = int(time.time() * 1000)
        self.last_media_at = time.monotonic()
        self.closed = False
        self.tracks: dict[str, SessionTrack] = {}  # by mid
        self._neg = Negotiator(configuration, self._on_frame, announced_ip)
        self.pc = self._neg.pc
        self.pc.on("connectionstatechange", self._on_connection_state)
        self._hub = hub
        self._lock = asyncio.Lock()
        self._tasks: set[asyncio.Task[None]] = set()
        self._state = "new"
        self.log = structlog.get_logger("sluice.sfu").bind(session_id=self.id, app_id=app_id)

    # --- API operations ---------------------------------------------------------

    async def start(self, offer: SessionDescription | None) -> SessionDescription | None:
        """`sessions/new`: applies an optional first offer; its tracks get names later."""
        if offer is None:
            return None
        async with self._lock:
            self._check_open()
            sections = self._neg.judge(offer, "offer")
            await self._neg.apply_remote(offer, sections)
            return await self._neg.answer()

    async def new_tracks(self, req: NewTracksRequest) -> TracksResponse:
        """`tracks/new`: push, pull (either flow) and autoDiscover."""
        items = req.tracks or []
        if not items and not req.autoDiscover and req.sessionDescription is None:
            raise InvalidParams("tracks/new needs tracks, autoDiscover or a sessionDescription")
        self._check_open()
        # A track of another node's session is pulled here first (a network round trip
        # to that node), outside the lock, so the plan below finds it like a local one.
        await self._hub.prepare_pulls(self.app_id, items)
        async with self._lock:
            self._check_open()
            if req.sessionDescription is not None:
                return await self._tracks_with_offer(req.sessionDescription, items, req)
            return await self._tracks_without_offer(items)

    async def renegotiate(self, answer: SessionDescription) -> None:
        """`renegotiate`: the client's answer to an offer the SFU made."""
        async with self._lock:
            self._check_open()
            if self.pc.signalingState != "have-local-offer":
                raise InvalidParams("there is no pending SFU offer to answer")
            sections = self._neg.judge(answer, "answer")
            await self._neg.apply_remote(answer, sections)
            for track in self.tracks.values():
                if track.status is TrackStatus.INITIALIZING:
                    track.status = TrackStatus.ACTIVE
                    track.codec = self._neg.codecs.get(track.mid) or track.codec

    async def close_tracks(self, req: CloseTracksRequest) -> TracksResponse:
        """`tracks/close`: ends tracks now; renegotiates unless `force`."""
        async with self._lock:
            self._check_open()
            targets: list[SessionTrack] = []
            for i, item in enumerate(req.tracks):
                track = self.tracks.get(item.mid)
                if track is None:
                    raise InvalidParams(f"tracks[{i}].mid {item.mid!r} names no track here")
                targets.append(track)
            sections = None
            if req.sessionDescription is not None:
                sections = self._neg.judge(req.sessionDescription, "offer")
            for track in targets:
                await self._end_track(track, "closed_by_client")
            await self._hub.tracks_changed(self)
            results = [
                TrackResult(trackName=t.name, mid=t.mid, sessionId=t.source_session_id)
                for t in targets
            ]
            if req.sessionDescription is not None and sections is not None:
                await self._neg.apply_remote(req.sessionDescription, sections)
                answer = await self._neg.answer()
                return TracksResponse(
                    requiresImmediateRenegotiation=False, sessionDescription=answer, tracks=results
                )
            if req.force:
                return TracksResponse(requiresImmediateRenegotiation=False, tracks=results)
            offer = await self._neg.offer()
            return TracksResponse(
                requiresImmediateRenegotiation=True, sessionDescription=offer, tracks=results
            )

    def view(self) -> SessionView:
        return SessionView(
            tracks=[
                TrackView(
                    location=t.location,
                    mid=t.mid,
                    trackName=t.name,
                    status=t.status,
                    sessionId=t.source_session_id,
                    kind=t.kind,
                )
                for t in self.tracks.values()
            ]
        )

    async def close(self, reason: str) -> None:
        """Ends every track (subscribers elsewhere get RTCP BYE) and the connection."""
        if self.closed:
            return
        self.closed = True
        # Taking the lock lets a negotiation in progress finish on an open connection.
        async with self._lock:
            self.log.info("session_closed", reason=reason)
            for track in self.tracks.values():
                track.status = TrackStatus.INACTIVE
                if track.fanout is not None:
                    track.fanout.end()
                if track.subscriber is not None:
                    track.subscriber.close()
            tasks = list(self._tasks)
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            await self.pc.close()

    # --- liveness -----------------------------------------------------------------

    def refresh_liveness(self, now: float) -> None:
        """Counts a connected subscriber of a live track as media (it receives, not sends)."""
        if self._state != "connected":
            return
        for track in self.tracks.values():
            if track.location is Location.REMOTE and track.status is TrackStatus.ACTIVE:
                self.last_media_at = now
                return

    def _on_connection_state(self) -> None:
        old, self._state = self._state, self.pc.connectionState
        self.log.info("connection_state", old=old, new=self._state)
        # aiortc has no transient "disconnected": "failed" is final (ICE consent lost or
        # negotiation failed), so the session cannot carry media again. "closed" before we
        # closed it: the peer shut DTLS down (it closed its RTCPeerConnection), so its
        # tracks end now rather than when the idle timeout notices.
        if self._state == "failed":
            self._hub.request_close(self, "connection_failed")
        elif self._state == "closed" and not self.closed:
            self._hub.request_close(self, "peer_closed")

    # --- push / pull ----------------------------------------------------------------

    async def _tracks_with_offer(
        self, offer: SessionDescription, items: list[TrackRequest], req: NewTracksRequest
    ) -> TracksResponse:
        sections = self._neg.judge(offer, "offer")
        plan = OfferPlan(
            sections,
            items,
            auto_discover=req.autoDiscover,
            known_mids=self._neg.known_mids,
            published_mids=self.tracks.keys(),
            names_in_use=self._names_in_use(),
            resolve=self._resolve,
        )
        await self._neg.apply_remote(offer, sections)
        subscribed: list[Subscriber] = []
        try:
            for index, section, source in plan.pulls:
                transceiver = self._neg.transceiver(section.mid)
                assert source.fanout is not None
                sub = source.fanout.subscribe(self._source_end_callback(section.mid))
                subscribed.append(sub)
                transceiver.direction = "sendonly"
                restrict_to_source(transceiver, source)
                transceiver.sender.replaceTrack(sub.track)
                hook_sender(transceiver.sender, sub)
                self.tracks[section.mid] = SessionTrack(
                    Location.REMOTE, section.mid, source.name, source.kind,
                    source.source_session_id, TrackStatus.ACTIVE, transceiver,
                    source.codec, subscriber=sub,
                )  # fmt: skip
                plan.results[index] = self.tracks[section.mid].result()
                self._log_pull(self.tracks[section.mid], "client_offer")
            answer = await self._neg.answer()
        except BaseException:
            for sub in subscribed:
                sub.close()
            raise
        for push_index, section, name in plan.pushes:
            result = self._publish(section, name).result()
            if push_index is None:
                plan.results.append(result)
            else:
                plan.results[push_index] = result
        for track in self.tracks.values():
            if track.location is Location.REMOTE and track.codec is None:
                track.codec = self._neg.codecs.get(track.mid)
        await self._hub.tracks_changed(self)
        return TracksResponse(
            requiresImmediateRenegotiation=False,
            sessionDescription=answer,
            tracks=[r or TrackResult() for r in plan.results],
        )

    async def _tracks_without_offer(self, items: list[TrackRequest]) -> TracksResponse:
        pushes = pushes_without_offer(
            items, self._neg.remote_sections, self.tracks.keys(), self._names_in_use()
        )
        results: list[TrackResult] = []
        pulls: list[tuple[int, SessionTrack, Subscriber, Any]] = []
        for i, item in enumerate(items):
            if item.location is Location.LOCAL:
                results.append(TrackResult())
                continue
            source_or_error = self._resolve(i, item)
            if isinstance(source_or_error, TrackResult):
                results.append(source_or_error)
                continue
            source = source_or_error
            assert source.fanout is not None
            sub = source.fanout.subscribe(self._source_end_callback_later())
            transceiver = self.pc.addTransceiver(sub.track, direction="sendonly")
            restrict_to_source(transceiver, source)
            hook_sender(transceiver.sender, sub)
            pulls.append((i, source, sub, transceiver))
            results.append(TrackResult())
        for i, section, name in pushes:
            results[i] = self._publish(section, name).result()
        offer = None
        if pulls:
            try:
                offer = await self._neg.offer()
            except BaseException:
                for _, _, sub, _ in pulls:
                    sub.close()
                raise
            for i, source, sub, transceiver in pulls:
                mid = transceiver.mid
                sub.on_source_end = self._source_end_callback(mid)
                self.tracks[mid] = SessionTrack(
                    Location.REMOTE, mid, source.name, source.kind, source.source_session_id,
                    TrackStatus.INITIALIZING, transceiver, source.codec, subscriber=sub,
                )  # fmt: skip
                results[i] = self.tracks[mid].result()
                self._log_pull(self.tracks[mid], "sfu_offer")
        await self._hub.tracks_changed(self)
        return TracksResponse(
            requiresImmediateRenegotiation=offer is not None,
            sessionDescription=offer,
            tracks=results,
        )

    def _publish(self, section: sdp.MediaSection, name: str) -> SessionTrack:
        transceiver = self._neg.transceiver(section.mid)
        tap = self._neg.taps[section.mid]
        fanout = Fanout(section.kind, tap.request_keyframe)
        track = SessionTrack(
            Location.LOCAL, section.mid, name, section.kind, self.id, TrackStatus.ACTIVE,
            transceiver, self._neg.codecs.get(section.mid), fanout=fanout,
        )  # fmt: skip
        self.tracks[section.mid] = track
        self._spawn(self._watch_publisher(track))
        self.log.info(
            "track_published", track_name=name, mid=section.mid, kind=section.kind,
            codec=track.codec,
        )  # fmt: skip
        return track

    def _resolve(self, index: int, item: TrackRequest) -> SessionTrack | TrackResult:
        if not item.sessionId or not item.trackName:
            raise InvalidParams(f"tracks[{index}]: a remote track needs sessionId and trackName")
        try:
            return self._hub.find_published(self.app_id, item.sessionId, item.trackName)
        except SluiceError as exc:
            return TrackResult(
                trackName=item.trackName,
                sessionId=item.sessionId,
                mid=item.mid,
                errorCode=str(exc.error_code),
                errorDescription=exc.description,
            )

    def _log_pull(self, track: SessionTrack, flow: str) -> None:
        self.log.info(
            "track_pulled", track_name=track.name, source_session_id=track.source_session_id,
            mid=track.mid, kind=track.kind, codec=track.codec, flow=flow,
        )  # fmt: skip

    def _names_in_use(self) -> set[str]:
        return {
            t.name
            for t in self.tracks.values()
            if t.location is Location.LOCAL and t.status is not TrackStatus.INACTIVE
        }

    # --- track ends -------------------------------------------------------------------

    async def _end_track(self, track: SessionTrack, reason: str) -> None:
        if track.status is TrackStatus.INACTIVE:
            return
        track.status = TrackStatus.INACTIVE
        track.transceiver.direction = "inactive"
        if track.fanout is not None:
            track.fanout.end()
            await track.transceiver.receiver.stop()
        if track.subscriber is not None:
            track.subscriber.close()
            track.subscriber.track.end()
            await track.transceiver.sender.stop()  # sends RTCP BYE: the client's track ends
        self.log.info("track_closed", track_name=track.name, mid=track.mid, reason=reason)

    async def _watch_publisher(self, track: SessionTrack) -> None:
        """Ends a pushed track when its stream ends (publisher's BYE, stop or close)."""
        remote = track.transceiver.receiver.track
        try:
            while True:
                await remote.recv()
        except MediaStreamError:
            pass
        async with self._lock:
            if not self.closed:
                await self._end_track(track, "publisher_ended")
                await self._hub.tracks_changed(self)

    def _source_end_callback(self, mid: str) -> Any:
        def ended() -> None:
            if not self.closed and mid in self.tracks:
                self._spawn(self._source_ended(self.tracks[mid]))

        return ended

    def _source_end_callback_later(self) -> Any:
        return lambda: None  # replaced once the SFU offer has given the section its mid

    async def _source_ended(self, track: SessionTrack) -> None:
        async with self._lock:
            if not self.closed:
                await self._end_track(track, "source_ended")

    # --- negotiation helpers ---------------------------------------------------------

    def _on_frame(self, mid: str, frame: EncodedFrame) -> None:
        self.last_media_at = frame.received_at
        track = self.tracks.get(mid)
        if track is not None and track.fanout is not None:
            track.fanout.deliver(frame)

    def _check_open(self) -> None:
        if self.closed:
            raise SessionNotFound(f"session {self.id!r} is closed")

    def _spawn(self, coro: Coroutine[Any, Any, None]) -> None:
        task = asyncio.create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
