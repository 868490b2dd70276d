"""The wire `Packet` (`proto/packet.proto`): the generated module, the codec every side uses,
and the framing of a binary message (a Packet, or the media alone)."""
