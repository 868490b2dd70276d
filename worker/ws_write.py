"""One binary WebSocket message written at once, without `Connection.send`'s machinery.

An egress pipeline sends one message per 20 ms frame, for hours. websockets'
`Connection.send` wraps each in an async context manager (`send_context`: a generator,
its enter and exit, a state check, the write, a drain), and the sans-I/O protocol builds
a `Frame`, checks it, serializes it through a `BytesIO` and queues it for
`data_to_send()`: in an egress adapter's profile that cost several times the socket
write itself. When nothing can stand in the way (the connection is open, no fragmented
message is being sent, the transport is not paused by flow control), `write_now` does
what `send` would: one masked binary frame (RFC 6455 §5.2), written to the transport.
With an extension negotiated (Sluice dials without compression; a subclass might not)
or protocol output queued, the protocol frames it. Otherwise it declines, and the
caller awaits `send` as before.

It relies on websockets' asyncio `Connection` attributes `protocol`, `transport`,
`send_in_progress`, `paused`, `send_data()` and `set_connection_exc()`, and on the
protocol's `state`, `side`, `extensions`, `expect_continuation_frame` and `writes`:
pyproject pins websockets' major version and `tests/unit/test_ws_write.py` pins them
(and that a frame made here reads back as the protocol's own).
"""

from __future__ import annotations

import os
import struct

from websockets.asyncio.connection import Connection
from websockets.protocol import CLIENT, State

try:
    from websockets.speedups import apply_mask  # C, in every wheel websockets publishes
except ImportError:  # pragma: no cover - a source build without a compiler
    from websockets.utils import apply_mask

FIN_BINARY = 0x82  # FIN, opcode 2
MASKED = 0x80


def write_now(ws: Connection, message: bytes) -> bool | None:
    """Frames and writes `message` if nothing stands in the way.

    Returns:
        True: written to the transport (as `send` would have returned).
        False: not written; await `ws.send(message)` instead.
        None: the write failed: the connection is being torn down, as `send` would
            have done before raising `ConnectionClosed`; the message is not sent.
    """
    if (
        ws.protocol.state is not State.OPEN
        or ws.protocol.expect_continuation_frame
        or ws.send_in_progress is not None
        or ws.paused
        or ws.transport.is_closing()
    ):
        return False
    protocol = ws.protocol
    try:
        if protocol.extensions or protocol.writes or protocol.side is not CLIENT:
            protocol.send_binary(message)
            ws.send_data()
        else:
            ws.transport.write(masked_frame(message))
    except Exception as exc:  # as `send_context` handles a failed write
        ws.set_connection_exc(exc)
        ws.transport.abort()
        return None
    return True


def masked_frame(message: bytes) -> bytes:
    """A client's single binary frame of `message`: header, mask key, masked payload."""
    length = len(message)
    if length < 126:
        head = bytes((FIN_BINARY, MASKED | length))
    elif length < 65536:
        head = struct.pack("!BBH", FIN_BINARY, MASKED | 126, length)
    else:
        head = struct.pack("!BBQ", FIN_BINARY, MASKED | 127, length)
    mask = os.urandom(4)
    return head + mask + apply_mask(message, mask)
