from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from typing import ClassVar as _ClassVar, Optional as _Optional

DESCRIPTOR: _descriptor.FileDescriptor

class Packet(_message.Message):
    __slots__ = ("sequenceNumber", "timestamp", "payload")
    SEQUENCENUMBER_FIELD_NUMBER: _ClassVar[int]
    TIMESTAMP_FIELD_NUMBER: _ClassVar[int]
    PAYLOAD_FIELD_NUMBER: _ClassVar[int]
    sequenceNumber: int
    timestamp: int
    payload: bytes
    def __init__(self, sequenceNumber: _Optional[int] = ..., timestamp: _Optional[int] = ..., payload: _Optional[bytes] = ...) -> None: ...
