"""A client of any Calls-compatible sessions API, for Sluice's own peers and for tests.

`base_url` is the app's base, e.g. `http://127.0.0.1:8080/v1/apps/app1` (the API, which
proxies to the SFU) or the SFU itself. Each `Peer` is one session: one peer connection.

    client = SessionsClient(base_url, secret, configuration=rtc_configuration(settings))
    session_id, name = await client.publish(track)
    remote = await client.pull(session_id, name)          # a decoded aiortc track
    ...
    await client.close()
"""

from __future__ import annotations

import ssl
from collections.abc import Sequence
from typing import Any

import httpx
from aiortc import (
    MediaStreamTrack,
    RTCConfiguration,
    RTCPeerConnection,
    RTCRtpSender,
    RTCRtpTransceiver,
    RTCSessionDescription,
)

from sluice.errors import SluiceError
from sluice.media.aiortc_internals import (
    ReceiverTap,
    receive_eagerly,
    send_directly,
    tap_receiver,
    without_abs_send_time,
)
from sluice.media.types import FrameSink


class SessionsApiError(SluiceError):
    """The sessions API refused a call, or one track of it (its status and code)."""

    def __init__(self, status: int, error_code: str, description: str) -> None:
        super().__init__(f"{status} {error_code}: {description}")
        self.status = status
        self.error_code = error_code
        self.description = description


class SessionsClient:
    """Creates peers (sessions) against one app of a sessions API.

    Args:
        base_url: `.../v1/apps/{appId}`.
        secret: the app secret (sent as a Bearer token).
        configuration: ICE setup for the peer connections; `sluice.media.ice.rtc_configuration`.
            Without one, no ICE servers are used (never a public default).
        timeout_s: per HTTP call.
        tls: how to verify an https:// sessions API (default: the system trust store,
            loaded per client).
    """

    def __init__(
        self,
        base_url: str,
        secret: str,
        *,
        configuration: RTCConfiguration | None = None,
        timeout_s: float = 10.0,
        tls: ssl.SSLContext | None = None,
    ) -> None:
        self._http = httpx.AsyncClient(
            base_url=base_url.rstrip("/") + "/sessions",
            headers={"Authorization": f"Bearer {secret}"},
            timeout=timeout_s,
            # Loading the trust store costs ~20 ms; a caller making many clients passes one.
            verify=tls if tls is not None else True,
        )
        self._configuration = configuration or RTCConfiguration(iceServers=[])
        self._peers: list[Peer] = []

    @property
    def peers(self) -> tuple[Peer, ...]:
        """The sessions this client made, oldest first."""
        return tuple(self._peers)

    async def new_peer(self) -> Peer:
        """A new session with its own peer connection."""
        body = await self.call("POST", "/new")
        peer = Peer(self, body["sessionId"], RTCPeerConnection(self._configuration))
        self._peers.append(peer)
        return peer

    async def publish(
        self,
        track: MediaStreamTrack,
        track_name: str | None = None,
        *,
        codec: str | None = None,
        encoded: bool = False,
    ) -> tuple[str, str]:
        """Publishes `track` in a new session; returns (session_id, track_name).

        With `codec` (e.g. "H264"), only that codec is offered; see `Peer.publish` for
        `encoded`.
        """
        peer = await self.new_peer()
        names = await peer.publish(
            [track], [track_name] if track_name else None, codec=codec, encoded=encoded
        )
        return peer.session_id, names[0]

    async def pull(
        self,
        session_id: str,
        track_name: str,
        *,
        kind: str | None = None,
        on_frame: FrameSink | None = None,
        hold_frames: int | None = None,
    ) -> MediaStreamTrack:
        """Pulls a published track in a new session; see `Peer.pull`."""
        peer = await self.new_peer()
        return await peer.pull(
            session_id, track_name, kind=kind, on_frame=on_frame, hold_frames=hold_frames
        )

    async def call(self, method: str, path: str, body: Any = None) -> dict[str, Any]:
        """One sessions API call.

        Raises:
            SessionsApiError: any answer but 2xx.
        """
        response = await self._http.request(method, path, json=body)
        data: dict[str, Any] = response.json() if response.content else {}
        if response.status_code >= 300:
            raise SessionsApiError(
                response.status_code,
                str(data.get("errorCode", "unknown")),
                str(data.get("errorDescription", response.text)),
            )
        return data

    async def close(self) -> None:
        for peer in self._peers:
            await peer.close()
        await self._http.aclose()


class Peer:
    """One session of the sessions API and its peer connection."""

    def __init__(self, client: SessionsClient, session_id: str, pc: RTCPeerConnection) -> None:
        self.client = client
        self.session_id = session_id
        self.pc = pc
        # Tapped transceivers, in the order their tracks were pulled with `on_frame` (a
        # receiver's track exists only once the answer is applied). Their sections are
        # negotiated without abs-send-time (see `pull`).
        self._tapped: list[tuple[RTCRtpTransceiver, ReceiverTap]] = []

    @property
    def taps(self) -> list[ReceiverTap]:
        """The taps of the tracks pulled with `on_frame`, in order."""
        return [tap for _, tap in self._tapped]

    def request_keyframe(self, track: MediaStreamTrack) -> None:
        """Asks the SFU for a keyframe of a track pulled with `on_frame` (a PLI).

        aiortc asks by itself only when its own jitter buffer sees a loss; a tapped
        receiver's consumer (e.g. a forwarder) decides when it needs one.
        """
        for transceiver, tap in self._tapped:
            if transceiver.receiver.track is track:
                tap.request_keyframe()

    async def publish(
        self,
        tracks: Sequence[MediaStreamTrack],
        names: Sequence[str] | None = None,
        *,
        codec: str | None = None,
        encoded: bool = False,
    ) -> list[str]:
        """Pushes tracks with one offer (the client-offer flow); returns their names.

        Without `names`, the SFU names them (`autoDiscover`). With `encoded`, the tracks
        return encoded packets (`av.Packet`, one RTP packet each: audio), which their
        senders send past aiortc's per-packet layers
        (`sluice.media.aiortc_internals.send_directly`).
        """
        transceivers = [self.pc.addTransceiver(t, direction="sendonly") for t in tracks]
        if encoded:
            for transceiver in transceivers:
                send_directly(transceiver.sender)
        if codec is not None:
            for transceiver in transceivers:
                wanted = f"{transceiver.kind}/{codec}".lower()
                capabilities = RTCRtpSender.getCapabilities(transceiver.kind).codecs
                transceiver.setCodecPreferences(
                    [c for c in capabilities if c.mimeType.lower() == wanted]
                )
        await self._set_local(await self.pc.createOffer())
        body: dict[str, Any] = {"sessionDescription": self._local()}
        if names is None:
            body["autoDiscover"] = True
        else:
            body["tracks"] = [
                {"location": "local", "mid": t.mid, "trackName": name}
                for t, name in zip(transceivers, names, strict=True)
            ]
        answer = await self._path_call("POST", "/tracks/new", body)
        await self.pc.setRemoteDescription(_description(answer["sessionDescription"]))
        for result in answer["tracks"]:
            _raise_track_error(result)
        by_mid = {r["mid"]: r["trackName"] for r in answer["tracks"]}
        return [by_mid[t.mid] for t in transceivers]

    async def pull(
        self,
        session_id: str,
        track_name: str,
        *,
        kind: str | None = None,
        on_frame: FrameSink | None = None,
        hold_frames: int | None = None,
    ) -> MediaStreamTrack:
        """Pulls another session's track; returns the receiving aiortc track.

        With `kind` the client offers a `recvonly` section (Cloudflare's client-offer
        flow, one round trip); without it the SFU offers and the client answers through
        `renegotiate`. With `on_frame`, whole encoded frames go there undecoded as soon
        as they are complete — `hold_frames` newer frames may wait behind a missing packet
        (see `sluice.media.aiortc_internals.tap_receiver`) — and the returned track only
        reports the end of the stream; `sluice.media.aiortc_internals.FrameDecoder`
        decodes them, and `taps` gets the tap (to ask for keyframes). A tapped track
        is negotiated without `abs-send-time`: its consumer forwards or decodes and never
        adapts a bitrate, so the bandwidth estimate (and the REMB it sends) would be work
        for nothing on both sides (`sluice.media.aiortc_internals.header_extensions`).

        Raises:
            SessionsApiError: the call or this track failed (e.g. not_found_track_error).
        """
        item = {"location": "remote", "sessionId": session_id, "trackName": track_name}
        if kind is not None:
            transceiver = self.pc.addTransceiver(kind, direction="recvonly")
            if on_frame is not None:
                self._tap(transceiver, on_frame, hold_frames)
            await self._set_local(await self.pc.createOffer())
            body = {"sessionDescription": self._local(), "tracks": [item]}
            answer = await self._path_call("POST", "/tracks/new", body)
            _raise_track_error(answer["tracks"][0])
            await self.pc.setRemoteDescription(_description(answer["sessionDescription"]))
            return transceiver.receiver.track
        answer = await self._path_call("POST", "/tracks/new", {"tracks": [item]})
        result = answer["tracks"][0]
        _raise_track_error(result)
        await self.pc.setRemoteDescription(_description(answer["sessionDescription"]))
        transceiver = self._transceiver(result["mid"])
        if on_frame is not None:
            self._tap(transceiver, on_frame, hold_frames)
        await self._set_local(await self.pc.createAnswer())
        await self._path_call("PUT", "/renegotiate", {"sessionDescription": self._local()})
        return transceiver.receiver.track

    async def close_tracks(self, mids: Sequence[str], *, force: bool = True) -> dict[str, Any]:
        body = {"tracks": [{"mid": m} for m in mids], "force": force}
        return await self._path_call("PUT", "/tracks/close", body)

    async def state(self) -> dict[str, Any]:
        return await self._path_call("GET", "", None)

    async def close(self) -> None:
        await self.pc.close()

    def _transceiver(self, mid: str) -> RTCRtpTransceiver:
        for transceiver in self.pc.getTransceivers():
            if transceiver.mid == mid:
                return transceiver
        raise SessionsApiError(200, "invalid_answer", f"no media section with mid {mid!r}")

    def _tap(
        self, transceiver: RTCRtpTransceiver, on_frame: FrameSink, hold_frames: int | None
    ) -> None:
        """Taps a pulled section before its description is made (see `pull`)."""
        tap = tap_receiver(
            transceiver.receiver,
            transceiver.kind,
            on_frame,
            hold_frames=hold_frames,
            estimate_bandwidth=False,
        )
        self._tapped.append((transceiver, tap))

    async def _set_local(self, description: RTCSessionDescription) -> None:
        if self._tapped:
            description = without_abs_send_time(description, [t for t, _ in self._tapped])
        await self.pc.setLocalDescription(description)
        receive_eagerly(self.pc)  # its sockets exist once the description is set

    def _local(self) -> dict[str, str]:
        local = self.pc.localDescription
        return {"type": local.type, "sdp": local.sdp}

    async def _path_call(self, method: str, path: str, body: Any) -> dict[str, Any]:
        return await self.client.call(method, f"/{self.session_id}{path}", body)


def _description(data: dict[str, str]) -> RTCSessionDescription:
    return RTCSessionDescription(sdp=data["sdp"], type=data["type"])


def _raise_track_error(result: dict[str, Any]) -> None:
    if "errorCode" in result:
        raise SessionsApiError(200, result["errorCode"], result.get("errorDescription", ""))
