"""A seeded, impaired network on 127.0.0.1 for tests and benchmarks (the kernel has no netem).

    peer, relay = await publish_via_relay(client, [track], ["mic"],
                                          upstream=Impairment(loss=0.05), seed=7)
    ...
    await peer.close(); relay.close()

`schedule` decides each datagram's fate (pure, seeded), `relay` moves datagrams, `peers`
puts the relay between a test's WebRTC peer and the SFU.
"""

from tests.netsim.peers import (
    direct_via_relay,
    publish_via_relay,
    pull_via_relay,
    server_address,
    via_relay,
)
from tests.netsim.relay import UdpRelay, is_media
from tests.netsim.schedule import CLEAR, Impairment, Schedule, Verdict

__all__ = [
    "CLEAR",
    "Impairment",
    "Schedule",
    "UdpRelay",
    "Verdict",
    "direct_via_relay",
    "is_media",
    "publish_via_relay",
    "pull_via_relay",
    "server_address",
    "via_relay",
]
