"""Whether the next decoded picture can be trusted (pure).

A delta frame decodes against the pictures before it. If one of them was lost (the
receiver tap gave up on packets: `EncodedFrame.after_gap`), failed to decode, or was
skipped, a decoder still makes a picture of the delta frame — from a damaged reference,
with colours and shapes that were never sent. From then on nothing is decoded until a
keyframe, which needs no reference, starts the chain again.
"""

from __future__ import annotations


class ReferenceChain:
    """Tracks a decoder's reference chain; frames are offered in decoding order."""

    def __init__(self) -> None:
        self.broken = False
        self.breaks = 0  # times the chain broke (each one asks for a keyframe)

    def admit(self, keyframe: bool, after_gap: bool) -> bool:
        """Whether to decode this frame (and trust the picture it makes)."""
        if keyframe:
            self.broken = False
            return True
        if after_gap:
            self.fail()
        return not self.broken

    def fail(self) -> None:
        """A frame of the chain is missing or did not decode: wait for a keyframe."""
        if not self.broken:
            self.broken = True
            self.breaks += 1
