"""48 kHz stereo s16le PCM → Opus for ingest, coded as mono while both channels are equal.

Most ingest audio is mono: speech synthesis, a phone line, every mono input format this
service widens to stereo (`worker.protocol.ingest_format`). Coding two equal channels as
stereo costs libopus ~40 % more time per frame and gives a listener nothing. Opus may
switch a stream between mono and stereo at any packet (RFC 6716 §3.1, the TOC's `s` bit;
libopus's own automatic mode does it by bitrate), and decoders play a mono packet on
both channels, so the encoder is told `OPUS_SET_FORCE_CHANNELS(1)` after a few equal
frames and back to automatic at the first frame whose channels differ: what a
subscriber hears is the same audio either way.

libopus is called directly (`worker.pipelines.libopus`), not through PyAV: FFmpeg's
wrapper has no per-packet controls, and the `AudioFrame` and `Packet` it needs per 20 ms
cost a third of the encode again.
"""

from __future__ import annotations

import ctypes
import weakref

from worker.pipelines.libopus import OPUS_OK, OpusUnavailable, libopus
from worker.protocol.pcm import CHANNELS, FRAME_BYTES, FRAME_SAMPLES, SAMPLE_RATE

OPUS_APPLICATION_AUDIO = 2049  # FFmpeg's default too: music and speech alike
OPUS_SET_BITRATE = 4002
OPUS_SET_COMPLEXITY = 4010
OPUS_SET_FORCE_CHANNELS = 4022
OPUS_AUTO = -1000
DEFAULT_COMPLEXITY = 10  # FFmpeg's default, which ingest used until it called libopus itself
MAX_PACKET_BYTES = 4_000  # libopus's recommended output buffer
MONO_AFTER_FRAMES = 3  # equal frames in a row before coding mono: 60 ms, no flapping


class OpusPcmEncoder:
    """Encodes 20 ms frames of 48 kHz stereo s16le PCM (`FRAME_BYTES` each) to Opus.

    Args:
        bitrate: target bits per second (variable bitrate, libopus's constrained VBR).
        complexity: libopus's 0-10 speed/quality trade.
        mono_when_equal: code frames whose channels are equal as mono (off: always
            stereo, for comparison).

    Raises:
        OpusUnavailable: no libopus could be loaded, or it refused the settings.
    """

    def __init__(
        self, bitrate: int, complexity: int = DEFAULT_COMPLEXITY, *, mono_when_equal: bool = True
    ) -> None:
        lib = libopus()
        error = ctypes.c_int(0)
        state = lib.opus_encoder_create(
            SAMPLE_RATE, CHANNELS, OPUS_APPLICATION_AUDIO, ctypes.byref(error)
        )
        if error.value != OPUS_OK or not state:
            raise OpusUnavailable(f"opus_encoder_create failed ({error.value})")
        weakref.finalize(self, lib.opus_encoder_destroy, state)
        self._lib = lib
        self._state = state
        self._out = ctypes.create_string_buffer(MAX_PACKET_BYTES)
        self._mono_when_equal = mono_when_equal
        self._equal_frames = 0  # frames in a row whose channels were equal
        self.mono = False  # whether frames are being coded as mono now
        self._control(OPUS_SET_BITRATE, bitrate)
        self._control(OPUS_SET_COMPLEXITY, complexity)

    def encode(self, pcm: bytes) -> bytes:
        """One Opus packet for one 20 ms frame.

        Raises:
            ValueError: `pcm` is not one frame long.
            OpusUnavailable: libopus failed to encode (it does not, for valid input).
        """
        if len(pcm) != FRAME_BYTES:
            raise ValueError(f"an Opus frame is {FRAME_BYTES} bytes of PCM, not {len(pcm)}")
        if self._mono_when_equal:
            self._follow_channels(pcm)
        size = self._lib.opus_encode(self._state, pcm, FRAME_SAMPLES, self._out, MAX_PACKET_BYTES)
        if size < 0:
            raise OpusUnavailable(f"opus_encode failed ({size})")
        return ctypes.string_at(self._out, size)

    def _follow_channels(self, pcm: bytes) -> None:
        # Byte slices compare in C: the low bytes of left and right, then the high bytes.
        if pcm[0::4] == pcm[2::4] and pcm[1::4] == pcm[3::4]:
            self._equal_frames += 1
            if not self.mono and self._equal_frames >= MONO_AFTER_FRAMES:
                self._control(OPUS_SET_FORCE_CHANNELS, 1)
                self.mono = True
        else:
            self._equal_frames = 0
            if self.mono:
                self._control(OPUS_SET_FORCE_CHANNELS, OPUS_AUTO)
                self.mono = False

    def _control(self, request: int, value: int) -> None:
        result = self._lib.opus_encoder_ctl(
            ctypes.c_void_p(self._state), ctypes.c_int32(request), ctypes.c_int32(value)
        )
        if result != OPUS_OK:
            raise OpusUnavailable(f"opus_encoder_ctl({request}, {value}) failed ({result})")
