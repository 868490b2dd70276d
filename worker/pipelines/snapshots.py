"""Decode every video frame off the event loop; keep the newest picture; make JPEGs.

Inter-frame codecs need every frame decoded to have a picture at all, and a 1080p
decode costs milliseconds, so decoding runs on one worker thread (PyAV releases the GIL
while FFmpeg works) and the event loop only hands frames over. One thread keeps frames
in order; JPEG encoding runs on the same thread, between decodes, and only for the
pictures sent: scaling down (E5 `maxWidth`/`maxHeight`) happens there too.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from fractions import Fraction

import av
from av import VideoFrame
from av.video.codeccontext import VideoCodecContext

from worker.protocol.picture_chain import ReferenceChain

# SDP codec names → FFmpeg decoders.
DECODERS = {"VP8": "vp8", "H264": "h264", "VP9": "vp9", "H265": "hevc"}
JPEG_TIME_BASE = Fraction(1, 90_000)
# A hostile keyframe can claim any size; FFmpeg allocates what it claims before it finds
# the data missing (~0.5 GiB for 16000x16000). 4K UHD is the most a snapshot needs.
MAX_PIXELS = 4096 * 2304
MAX_SIDE = 8192  # MJPEG cannot encode a side over 65500; a 65520x16 claim passes MAX_PIXELS


def fit_within(
    width: int, height: int, max_width: int | None, max_height: int | None
) -> tuple[int, int]:
    """The size of a `width` x `height` picture scaled down to fit the bounds.

    The aspect ratio is kept (to the nearest pixel) and a picture is never scaled up;
    None is no bound on that side.
    """
    scale = min(
        1.0,
        max_width / width if max_width else 1.0,
        max_height / height if max_height else 1.0,
    )
    if scale >= 1.0:
        return width, height
    return max(1, round(width * scale)), max(1, round(height * scale))


def jpeg_qscale(quality: int) -> int:
    """Maps a 1-100 quality (higher is better, as in most tools) to MJPEG's 2-31 qscale."""
    quality = min(100, max(1, quality))
    return round(2 + (100 - quality) * 29 / 99)


@dataclass(slots=True, frozen=True)
class Picture:
    frame: VideoFrame
    rtp_timestamp: int


class SnapshotDecoder:
    """Decodes a track's frames in order; `latest` is the newest picture (thread-safe).

    Args:
        jpeg_quality: 1-100.
        max_width, max_height: JPEGs are scaled down to fit these (None: no bound).
    """

    def __init__(
        self, jpeg_quality: int, max_width: int | None = None, max_height: int | None = None
    ) -> None:
        self._qscale = jpeg_qscale(jpeg_quality)
        self._max_size = (max_width, max_height)
        self._lock = threading.Lock()
        self._latest: Picture | None = None
        self._codec_name: str | None = None
        self._decoder: VideoCodecContext | None = None
        self._encoder: VideoCodecContext | None = None
        self._encoded = 0
        self._chain = ReferenceChain()
        self.decode_errors = 0
        self.withheld = 0  # frames not decoded because their reference chain was broken

    @property
    def latest(self) -> Picture | None:
        with self._lock:
            return self._latest

    @property
    def needs_keyframe(self) -> bool:
        """Whether pictures wait for a keyframe (a frame was lost or did not decode)."""
        return self._chain.broken

    def decode(
        self,
        codec_name: str,
        data: bytes,
        rtp_timestamp: int,
        *,
        keyframe: bool = True,
        after_gap: bool = False,
    ) -> bool:
        """Decodes one encoded frame (worker thread); True if it produced a picture.

        Args:
            keyframe: the frame needs no earlier one (`EncodedFrame.keyframe`).
            after_gap: frames were lost just before it (`EncodedFrame.after_gap`).

        After a loss or a decode error nothing is decoded until a keyframe
        (`needs_keyframe`): a picture of a delta frame would come from a damaged reference.
        """
        if codec_name != self._codec_name:
            name = DECODERS.get(codec_name)
            if name is None:
                raise ValueError(f"no decoder for {codec_name}")
            self._decoder = _new_decoder(name)
            self._codec_name = codec_name
        assert self._decoder is not None
        if not data:
            return False  # an empty packet would tell FFmpeg the stream ended
        if not self._chain.admit(keyframe, after_gap):
            self.withheld += 1
            return False
        try:
            frames = self._decoder.decode(av.Packet(data))
        except av.error.EOFError:
            # Ended anyway (e.g. a decoder flushed): a fresh one takes the next keyframe.
            self._decoder = _new_decoder(DECODERS[codec_name])
            return self._failed()
        except av.error.FFmpegError:
            return self._failed()  # a damaged frame: the next keyframe repairs it
        if not frames:
            return False
        if frames[-1].is_corrupt:
            return self._failed()  # FFmpeg concealed damage it found: not what was sent
        if frames[-1].width > MAX_SIDE or frames[-1].height > MAX_SIDE:
            return self._failed()  # concealed from a hostile header: no real picture
        picture = Picture(frames[-1], rtp_timestamp)
        with self._lock:
            self._latest = picture
        return True

    def _failed(self) -> bool:
        self.decode_errors += 1
        self._chain.fail()
        return False

    def encode_jpeg(self, picture: Picture) -> bytes:
        """One complete JPEG of `picture`, scaled down to the bounds if set (worker thread)."""
        frame = picture.frame
        width, height = fit_within(frame.width, frame.height, *self._max_size)
        encoder = self._encoder
        if encoder is None or (encoder.width, encoder.height) != (width, height):
            # A resolution change (simulcast layer, camera switch) needs a fresh encoder.
            encoder = av.CodecContext.create("mjpeg", "w")
            assert isinstance(encoder, VideoCodecContext)
            encoder.width, encoder.height = width, height
            encoder.pix_fmt = "yuvj420p"
            encoder.time_base = JPEG_TIME_BASE
            encoder.qmin = encoder.qmax = self._qscale
            self._encoder = encoder
        if (width, height) == (frame.width, frame.height):
            image = frame.reformat(format="yuvj420p")
        else:
            # Area averaging: what a thumbnail wants (no aliasing from dropped pixels).
            image = frame.reformat(
                width=width, height=height, format="yuvj420p", interpolation="AREA"
            )
        image.pts = self._encoded
        self._encoded += 1
        try:
            return b"".join(bytes(packet) for packet in encoder.encode(image))
        except av.error.FFmpegError:
            self._encoder = None  # the next picture gets a fresh one
            raise


def _new_decoder(name: str) -> VideoCodecContext:
    decoder = av.CodecContext.create(name, "r")
    assert isinstance(decoder, VideoCodecContext)
    decoder.options = {"max_pixels": str(MAX_PIXELS)}
    return decoder
