"""A session's peer connection and what has been negotiated on it: offers, answers, taps."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from aiortc import RTCConfiguration, RTCPeerConnection, RTCSessionDescription

from sfu import sdp
from sluice.errors import InvalidParams
from sluice.http.sessions_models import SessionDescription
from sluice.media.aiortc_internals import ReceiverTap, receive_eagerly, tap_receiver
from sluice.media.types import EncodedFrame

FrameHandler = Callable[[str, EncodedFrame], None]  # (mid, frame)


class Negotiator:
    """Applies descriptions to one `RTCPeerConnection` and taps every receiver it gets.

    Args:
        configuration: ICE setup (`sluice.media.ice.rtc_configuration`).
        on_frame: gets each encoded frame received, with the mid it arrived on.
        announced_ip: an address to add beside the host candidates of every description
            the SFU gives out (`sdp.announce`); empty: none.
    """

    def __init__(
        self, configuration: RTCConfiguration, on_frame: FrameHandler, announced_ip: str = ""
    ) -> None:
        self.pc = RTCPeerConnection(configuration)
        self._announced_ip = announced_ip
        self.taps: dict[str, ReceiverTap] = {}
        self.known_mids: set[str] = set()  # every mid of an applied description
        self.remote_sections: dict[str, sdp.MediaSection] = {}  # as the client last wrote
        self.codecs: dict[str, str | None] = {}  # mid → negotiated codec
        self._on_frame = on_frame

    @staticmethod
    def judge(desc: SessionDescription, expected: str) -> list[sdp.MediaSection]:
        """The sections of a client description, or a 400 before anything is touched."""
        if desc.type != expected:
            raise InvalidParams(f"sessionDescription.type must be {expected!r} here")
        return sdp.judge(desc.sdp)

    async def apply_remote(
        self, desc: SessionDescription, sections: list[sdp.MediaSection]
    ) -> None:
        try:
            await self.pc.setRemoteDescription(RTCSessionDescription(desc.sdp, desc.type))
        except Exception as exc:  # aiortc raises assorted types for refused descriptions
            raise InvalidParams(f"the {desc.type} was refused: {exc}") from None
        for section in sections:
            self.remote_sections[section.mid] = section
            self.known_mids.add(section.mid)
            if desc.type == "answer":
                self.codecs[section.mid] = section.codec
        self._tap_new_receivers()

    async def answer(self) -> SessionDescription:
        await self.pc.setLocalDescription(await self.pc.createAnswer())
        receive_eagerly(self.pc)  # its sockets exist once the description is set
        return self._local_description()

    async def offer(self) -> SessionDescription:
        await self.pc.setLocalDescription(await self.pc.createOffer())
        receive_eagerly(self.pc)
        self._tap_new_receivers()
        return self._local_description()

    def transceiver(self, mid: str) -> Any:
        for transceiver in self.pc.getTransceivers():
            if transceiver.mid == mid:
                return transceiver
        raise InvalidParams(f"no media section with mid {mid!r}")

    def _local_description(self) -> SessionDescription:
        local = self.pc.localDescription
        for section in sdp.parse(local.sdp):
            self.known_mids.add(section.mid)
            if local.type == "answer":
                self.codecs[section.mid] = section.codec
        text = sdp.announce(local.sdp, self._announced_ip) if self._announced_ip else local.sdp
        return SessionDescription(type=local.type, sdp=text)

    def _tap_new_receivers(self) -> None:
        # Every receiver is tapped, named or not, so aiortc never decodes media here.
        # Taps go in before media can flow: aiortc connects in a task scheduled later.
        for transceiver in self.pc.getTransceivers():
            mid = transceiver.mid
            if mid is not None and mid not in self.taps:
                self.taps[mid] = tap_receiver(
                    transceiver.receiver, transceiver.kind, self._sink(mid)
                )

    def _sink(self, mid: str) -> Callable[[EncodedFrame], None]:
        on_frame = self._on_frame
        return lambda frame: on_frame(mid, frame)
