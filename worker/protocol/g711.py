"""G.711 μ-law: 16-bit linear PCM to 8-bit codes and back, by table lookup.

The stdlib's `audioop` did this until Python 3.13 removed it; numpy tables do the same
in one indexing operation per frame. The encoder follows the classic reference (Sun's
`g711.c`, which `audioop` also used): the sample is taken to 14 bits by an arithmetic
shift, biased by 33, and its segment and 4-bit step are inverted into the code; 0 is
0xFF, full scale positive 0x80, full scale negative 0x00. The decoder gives each code
the middle of its interval, scaled back to 16 bits.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

_BIAS = 33  # in 14-bit units (0x84 in 16-bit ones)
_CLIP = 8159  # the largest 14-bit magnitude μ-law represents


def _encode_table() -> npt.NDArray[np.uint8]:
    """The code of every int16 value, indexed by the value's uint16 bit pattern."""
    linear = np.arange(65536, dtype=np.uint16).view(np.int16).astype(np.int32)
    shifted = linear >> 2  # arithmetic: -1 .. -4 become -1, as in the reference
    negative = shifted < 0
    biased = np.minimum(np.abs(shifted), _CLIP) + _BIAS  # 33 .. 8192
    # The segment is the bit length above 6 (33 .. 63 is 0, ..., 8192 is 8: clipped).
    segment = np.frexp(biased)[1] - 6
    step = (biased >> (segment + 1)) & 0x0F
    code = np.where(segment > 7, 0x7F, (np.minimum(segment, 7) << 4) | step)
    return np.where(negative, code ^ 0x7F, code ^ 0xFF).astype(np.uint8)


def _decode_table() -> npt.NDArray[np.int16]:
    """The int16 value of every code (0 .. 255)."""
    inverted = ~np.arange(256, dtype=np.int32) & 0xFF
    segment = (inverted >> 4) & 0x07
    magnitude = ((((inverted & 0x0F) << 3) + (_BIAS << 2)) << segment) - (_BIAS << 2)
    return np.where(inverted & 0x80, -magnitude, magnitude).astype(np.int16)


ENCODE = _encode_table()
DECODE = _decode_table()


def mulaw_encode(samples: npt.NDArray[np.int16]) -> bytes:
    """μ-law codes of `samples`, one byte each, in the same order.

    Args:
        samples: int16 linear PCM, any shape (interleaved channels stay interleaved).
    """
    return ENCODE[samples.view(np.uint16)].tobytes()


def mulaw_decode(codes: bytes) -> npt.NDArray[np.int16]:
    """Linear int16 samples of μ-law `codes`, one per byte."""
    return DECODE[np.frombuffer(codes, dtype=np.uint8)]
