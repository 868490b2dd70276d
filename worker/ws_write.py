"""One binary WebSocket message written at once, without `Connection.send`'s machinery.

An egress pipeline sends one message per 20 ms frame, for hours. websockets'
`Connection.send` wraps each in an async context manager (`send_context`: a generator,
its enter and exit, a state check, the write, a drain): in an egress adapter's profile
that wrapping cost about as much as framing and writing the message. When nothing can
stand in the way (the connection is open, no fragmented message is being sent, the
transport is not paused by flow control), `write_now` does what `send` would: frame the
message with the sans-I/O protocol and write its bytes to the transport. Otherwise it
declines, and the caller awaits `send` as before.

It relies on websockets' asyncio `Connection` attributes `protocol`, `transport`,
`send_in_progress`, `paused`, `send_data()` and `set_connection_exc()`: pyproject pins
websockets' major version and `tests/unit/test_ws_write.py` pins their shapes.
"""

from __future__ import annotations

from websockets.asyncio.connection import Connection
from websockets.protocol import State


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
        or ws.send_in_progress is not None
        or ws.paused
        or ws.transport.is_closing()
    ):
        return False
    ws.protocol.send_binary(message)
    try:
        ws.send_data()
    except Exception as exc:  # as `send_context` handles a failed write
        ws.set_connection_exc(exc)
        ws.transport.abort()
        return None
    return True
