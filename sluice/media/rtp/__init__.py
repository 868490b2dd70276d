"""RTP payload formats aiortc lacks, as pure code: payloads in, frames out, and back.

Shared by the SFU (which forwards these frames) and the workers (which decode them);
nothing here touches a socket, an event loop or the clock.

- `assembly`: the codec-independent core of a frame assembler (reordering, loss, caps).
- `vp9_payload`, `vp9`: VP9 (RFC 9628) descriptors, assembler and packetizer.
- `h265`: H.265 (RFC 7798) payloads, access-unit assembler and packetizer.
"""
