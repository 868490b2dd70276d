"""With `SLUICE_ICE_UDP_PORTS` set, media flows and every UDP socket stays inside the range.

A real stack (SFU, API, one worker) on 127.0.0.1: an egress adapter pulls a published tone
through the SFU, so both the SFU and the adapter's pipeline process hold ICE sockets.
"""

from __future__ import annotations

import asyncio

import pytest

from tests.integration.helpers import Stack, egress_item, endpoint
from tests.integration.test_egress import create, packets, publish_tone
from tests.udp import children, some_ports, udp_ports

pytestmark = pytest.mark.integration

PORTS = some_ports(width=60)


@pytest.mark.workers(1, ice_udp_ports=f"{PORTS[0]}-{PORTS[-1]}")
async def test_egress_flows_on_pinned_ports(stack: Stack) -> None:
    sessions, session_id, _ = await publish_tone(stack)
    try:
        async with endpoint() as ep:
            await create(stack, [egress_item(ep.url, session_id)])
            (conn,) = await ep.wait_connections(1)
            await asyncio.sleep(1.0)
            assert len(packets(conn)) >= 30  # ~50 per second: media went SFU → pipeline → endpoint
            sfu_ports = udp_ports(stack.sfu.pid)
            pipeline_ports = udp_ports(*children(stack.worker.pid))
    finally:
        await sessions.close()
    # The SFU: the publisher's session and the pipeline's; the pipeline: its own peer.
    assert len(sfu_ports) >= 2 and pipeline_ports, (sfu_ports, pipeline_ports)
    assert all(port in PORTS for port in sfu_ports + pipeline_ports), (
        sfu_ports,
        pipeline_ports,
        PORTS,
    )
