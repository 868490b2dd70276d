"""libopus through ctypes: the copy PyAV's wheel ships (already loaded, and there wherever
PyAV is), else the system's (`libopus0`).

PyAV reaches libopus only through FFmpeg, which hides what pipelines need: concealment
(`opus_decode` with no packet, or with in-band FEC) and encoder controls per packet
(`OPUS_SET_FORCE_CHANNELS`). `worker.pipelines.opus_pcm` decodes with it,
`worker.pipelines.opus_encode` encodes.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools
from pathlib import Path
from typing import Any

import av

from sluice.errors import MediaError

OPUS_OK = 0


class OpusUnavailable(MediaError):
    """No libopus could be loaded."""


@functools.cache
def libopus() -> Any:
    """The libopus this process codes with (loaded once).

    Raises:
        OpusUnavailable: neither PyAV's copy nor a system one is there.
    """
    package = Path(av.__file__).parent
    bundled = sorted(package.parent.glob("av.libs/libopus*.so*"))
    bundled += sorted((package / ".dylibs").glob("libopus*.dylib"))
    system = ctypes.util.find_library("opus")
    for path in [str(p) for p in bundled] + ([system] if system else []):
        try:
            lib = ctypes.CDLL(path)
        except OSError:
            continue
        _declare(lib)
        return lib
    raise OpusUnavailable("no libopus found (PyAV's wheel ships one; or install libopus0)")


def _declare(lib: Any) -> None:
    error_out = ctypes.POINTER(ctypes.c_int)
    lib.opus_decoder_create.argtypes = [ctypes.c_int32, ctypes.c_int, error_out]
    lib.opus_decoder_create.restype = ctypes.c_void_p
    lib.opus_decoder_destroy.argtypes = [ctypes.c_void_p]
    lib.opus_decoder_destroy.restype = None
    lib.opus_decode.argtypes = [
        ctypes.c_void_p,
        ctypes.c_char_p,
        ctypes.c_int32,
        ctypes.POINTER(ctypes.c_int16),
        ctypes.c_int,
        ctypes.c_int,
    ]
    lib.opus_decode.restype = ctypes.c_int
    lib.opus_encoder_create.argtypes = [ctypes.c_int32, ctypes.c_int, ctypes.c_int, error_out]
    lib.opus_encoder_create.restype = ctypes.c_void_p
    lib.opus_encoder_destroy.argtypes = [ctypes.c_void_p]
    lib.opus_encoder_destroy.restype = None
    lib.opus_encode.argtypes = [
        ctypes.c_void_p,
        ctypes.c_char_p,  # interleaved s16 samples, as bytes
        ctypes.c_int,
        ctypes.c_void_p,
        ctypes.c_int32,
    ]
    lib.opus_encode.restype = ctypes.c_int32
    # `opus_encoder_ctl` is variadic: no argtypes, every argument passed as a c_int32.
    lib.opus_encoder_ctl.restype = ctypes.c_int
