"""The wire `Packet` (`proto/packet.proto`): the generated module and the codec every side uses."""
