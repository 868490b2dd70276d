"""Every exception the SDK raises, under one base.

- `SluiceEndpointError`: the base.
  - `PacketDecodeError`: a binary message is not a `Packet`.
  - `SignatureError`: a signed dial or webhook does not check out.
  - `DialRefused`: an endpoint does not take a dial (no route, or a failed check).
  - `FormatError`: audio handed to a sender does not fit its format.
  - `SenderClosed`: the ingest connection is gone; pending marks and clears fail with it.
  - `ApiError`: the adapters or sessions API refused a call (status and `errorCode`).
"""

from __future__ import annotations


class SluiceEndpointError(Exception):
    """Base of the SDK's exceptions."""


class PacketDecodeError(SluiceEndpointError):
    """The bytes of a message are not a `Packet`.

    Attributes:
        size: length of the message in bytes.
        reason: what is wrong with it.
    """

    def __init__(self, size: int, reason: str) -> None:
        super().__init__(f"undecodable Packet ({size} bytes): {reason}")
        self.size = size
        self.reason = reason


class SignatureError(SluiceEndpointError):
    """A `Sluice-Signature` is missing, malformed, wrong, or its timestamp is too old."""


class DialRefused(SluiceEndpointError):
    """A dial an endpoint does not take.

    Attributes:
        status: the HTTP answer to the handshake (404: no route, 401: a failed check).
    """

    def __init__(self, status: int, reason: str) -> None:
        super().__init__(reason)
        self.status = status


class FormatError(SluiceEndpointError, ValueError):
    """Audio that does not fit the format it is sent in (rate, channels, sample size)."""


class SenderClosed(SluiceEndpointError):
    """The ingest connection closed.

    Attributes:
        code: the WebSocket close code, if one was received (1009: a message too big).
    """

    def __init__(self, code: int | None, reason: str = "") -> None:
        super().__init__(f"the connection closed (code {code}{', ' + reason if reason else ''})")
        self.code = code
        self.reason = reason


class ApiError(SluiceEndpointError):
    """The API answered with an error.

    Attributes:
        status: the HTTP status (200 for one failed item of a batch that partly succeeded).
        error_code: the contract's `errorCode`, e.g. `not_found_session_error`.
        description: the `errorDescription`.
    """

    def __init__(self, status: int, error_code: str, description: str) -> None:
        super().__init__(f"{status} {error_code}: {description}")
        self.status = status
        self.error_code = error_code
        self.description = description
