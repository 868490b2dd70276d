"""What an Opus packet says about itself without decoding (RFC 6716 §3.1-3.2).

Its duration, to know how much audio a lost packet took with it, and whether it carries
in-band FEC (SILK's LBRR data): the previous 20 ms again at a lower rate, which a
decoder can use to rebuild that frame if its own packet was lost.
"""

from __future__ import annotations

SAMPLE_RATE = 48_000
_SILK_SIZES = (480, 960, 1920, 2880)  # 10, 20, 40, 60 ms
_HYBRID_SIZES = (480, 960)
_CELT_SIZES = (120, 240, 480, 960)
LONG_LENGTH_MARK = 252  # a frame length byte from here on takes a second byte


def frame_samples(toc: int) -> int:
    """Samples per channel (at 48 kHz) of each frame a packet with this TOC byte holds."""
    config = toc >> 3
    if config < 12:
        return _SILK_SIZES[config % 4]
    if config < 16:
        return _HYBRID_SIZES[config % 2]
    return _CELT_SIZES[config % 4]


def frame_count(packet: bytes) -> int:
    """How many frames the packet holds (0 if it is malformed)."""
    if not packet:
        return 0
    code = packet[0] & 0x03
    if code == 0:
        return 1
    if code in (1, 2):
        return 2
    return packet[1] & 0x3F if len(packet) > 1 else 0


def packet_samples(packet: bytes) -> int:
    """Samples per channel at 48 kHz the packet decodes to (0 if it is malformed)."""
    count = frame_count(packet)
    return frame_samples(packet[0]) * count if count else 0


def has_fec(packet: bytes) -> bool:
    """Whether the packet carries LBRR (in-band FEC) data for the frame before it.

    CELT-only packets never do. For SILK and hybrid ones, the first frame's first byte
    starts with a voice-activity bit per 20 ms SILK frame, then the LBRR bit (mid
    channel; the side channel's follow in stereo), as libopus's `opus_packet_has_lbrr`
    reads them.
    """
    if not packet or packet[0] >> 3 >= 16:
        return False
    first = _first_frame_start(packet)
    if first is None or first >= len(packet):
        return False
    per_opus_frame = max(1, frame_samples(packet[0]) // 960)  # 20 ms SILK frames
    head = packet[first]
    lbrr = (head >> (7 - per_opus_frame)) & 1
    if packet[0] & 0x04:  # stereo
        lbrr |= (head >> (6 - 2 * per_opus_frame)) & 1
    return bool(lbrr)


def _first_frame_start(packet: bytes) -> int | None:
    """Where the first frame's data begins (RFC 6716 §3.2), or None if malformed."""
    code = packet[0] & 0x03
    if code in (0, 1):
        return 1
    if code == 2:
        if len(packet) < 2:
            return None
        return 2 if packet[1] < LONG_LENGTH_MARK else 3
    if len(packet) < 2:
        return None
    count_byte, pos = packet[1], 2
    if count_byte & 0x40:  # padding: its length bytes follow, 255 meaning "and more"
        while pos < len(packet) and packet[pos] == 255:
            pos += 1
        pos += 1
    if count_byte & 0x80:  # VBR: the lengths of all frames but the last follow
        for _ in range((count_byte & 0x3F) - 1):
            if pos >= len(packet):
                return None
            pos += 1 if packet[pos] < LONG_LENGTH_MARK else 2
    return pos
