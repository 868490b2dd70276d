"""Codecs aiortc lacks, registered process-wide.

Codecs: aiortc knows Opus, G722, PCMU, PCMA, VP8 and H264 only. `register_codecs` teaches
every peer connection of the process VP9 and H265 (`sluice.media.passthrough`): forwarded
as they came, never encoded or decoded by the SFU; and has Opus offered and answered with
`useinbandfec=1`, so that browsers send the in-band FEC egress conceals losses with. It
patches aiortc's module globals, so nothing calls it at import time: each process's entry
point does, once, before it makes a peer connection (the SFU app, the worker host, the
benchmarks and the tests).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import aiortc.codecs
import aiortc.rtcpeerconnection
import aiortc.rtcrtpreceiver
import aiortc.rtcrtpsender
from aiortc.rtcrtpparameters import RTCRtcpFeedback, RTCRtpCodecParameters

from sluice.media import passthrough
from sluice.media.aiortc_internals.guard import SeamBroken

_VIDEO_FEEDBACK = (("nack", None), ("nack", "pli"), ("goog-remb", None))  # as aiortc's VP8
_registered = False


def register_codecs() -> None:
    """Teaches aiortc VP9 and H265 (`sluice.media.passthrough`), for the whole process; idempotent.

    aiortc reads its codec tables through module globals, looked up at call time:
    `aiortc.codecs.CODECS` (offers, answers, capabilities, `setCodecPreferences`), and
    the functions `rtcrtpsender.get_encoder`, `rtcrtpreceiver.get_decoder`,
    `rtcrtpreceiver.depayload` and `rtcpeerconnection.is_codec_compatible` (which tells
    formats apart only for H264). Each is extended here for the new codecs and left as
    it was for the others; VP8 and H264 stay first, so default offers do not change.

    Raises:
        SeamBroken: one of those globals is missing (an aiortc upgrade moved it).
    """
    global _registered
    if _registered:
        return
    targets = [
        (aiortc.rtcrtpsender, "get_encoder"),
        (aiortc.rtcrtpreceiver, "get_decoder"),
        (aiortc.rtcrtpreceiver, "depayload"),
        (aiortc.rtcpeerconnection, "is_codec_compatible"),
        (aiortc.codecs, "get_encoder"),
        (aiortc.codecs, "get_decoder"),
        (aiortc.codecs, "depayload"),
    ]
    for module, name in targets:
        if not callable(getattr(module, name, None)):
            raise SeamBroken(f"aiortc has no {module.__name__}.{name}")
    tables = getattr(aiortc.codecs, "CODECS", None)
    if not isinstance(tables, dict) or not isinstance(tables.get("video"), list):
        raise SeamBroken("aiortc.codecs.CODECS is no longer a dict of codec lists")
    for codec in tables.get("audio", []):
        if codec.mimeType.lower() == "audio/opus":
            # Tells a publisher (a browser) to send in-band FEC, which egress uses to
            # rebuild a lost frame; aiortc writes it in every opus fmtp line.
            codec.parameters["useinbandfec"] = 1
    video: list[RTCRtpCodecParameters] = tables["video"]
    payload_type = 1 + max(c.payloadType for codecs in tables.values() for c in codecs)
    for spec in passthrough.PASSTHROUGH_CODECS:
        video += [
            RTCRtpCodecParameters(
                mimeType=spec.mime_type,
                clockRate=passthrough.VIDEO_CLOCK,
                payloadType=payload_type,
                rtcpFeedback=[RTCRtcpFeedback(type=t, parameter=p) for t, p in _VIDEO_FEEDBACK],
                parameters=dict(spec.parameters),
            ),
            RTCRtpCodecParameters(
                mimeType="video/rtx",
                clockRate=passthrough.VIDEO_CLOCK,
                payloadType=payload_type + 1,
                parameters={"apt": payload_type},
            ),
        ]
        payload_type += 2
    for module, name in targets:
        setattr(module, name, _EXTENSIONS[name](getattr(module, name)))
    _registered = True


def _extend_get_encoder(original: Callable[[Any], Any]) -> Callable[[Any], Any]:
    def get_encoder(codec: Any) -> Any:
        spec = passthrough.find(codec.name)
        return original(codec) if spec is None else spec.new_encoder()

    return get_encoder


def _extend_get_decoder(original: Callable[[Any], Any]) -> Callable[[Any], Any]:
    def get_decoder(codec: Any) -> Any:
        spec = passthrough.find(codec.name)
        return original(codec) if spec is None else passthrough.PyAvDecoder(spec.ffmpeg_decoder)

    return get_decoder


def _extend_depayload(original: Callable[[Any, bytes], bytes]) -> Callable[[Any, bytes], bytes]:
    def depayload(codec: Any, payload: bytes) -> bytes:
        spec = passthrough.find(codec.name)
        if spec is None:
            return original(codec, payload)
        try:
            return spec.depayload(payload)
        except spec.payload_error as exc:
            # The receiver skips a packet on ValueError; anything else would escape
            # into aiortc's transport loop.
            raise ValueError(str(exc)) from exc

    return depayload


def _extend_is_codec_compatible(original: Callable[[Any, Any], bool]) -> Callable[[Any, Any], bool]:
    def is_codec_compatible(a: Any, b: Any) -> bool:
        if not original(a, b):
            return False
        # A browser offers VP9 profiles 0 and 2 (H265 profiles 1 and 2) under one name.
        spec = passthrough.find(a.name)
        return spec is None or spec.same_format(a.parameters, b.parameters)

    return is_codec_compatible


_EXTENSIONS: dict[str, Callable[[Any], Any]] = {
    "get_encoder": _extend_get_encoder,
    "get_decoder": _extend_get_decoder,
    "depayload": _extend_depayload,
    "is_codec_compatible": _extend_is_codec_compatible,
}
