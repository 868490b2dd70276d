"""ICE configuration shared by every aiortc peer Sluice starts (SFU, pipelines, tests).

aioice gathers host candidates from `get_host_addresses()`, which leaves 127.0.0.1 out, so
two peers on one machine without a network would never meet. With `ice_loopback` on, the
host candidates are exactly `127.0.0.1` — never the machine's other addresses, so tests
and development keep all media on loopback.

`SLUICE_ICE_UDP_PORTS` pins the host candidates' ports to a range (what a firewall opens);
`docs/deploying.md` says which ports to open and when a STUN or TURN server is needed.
"""

from __future__ import annotations

from collections.abc import Callable

import aioice.ice
from aiortc import RTCConfiguration, RTCIceServer

from sluice.config import Settings
from sluice.media.aiortc_internals import pin_ice_ports

LOOPBACK_ADDRESSES = ["127.0.0.1"]

_HostAddresses = Callable[[bool, bool], list[str]]
_aioice_default: _HostAddresses = aioice.ice.get_host_addresses


def _loopback_only(use_ipv4: bool, use_ipv6: bool) -> list[str]:
    return list(LOOPBACK_ADDRESSES) if use_ipv4 else []


def set_loopback(enabled: bool) -> None:
    """Makes this process's ICE agents offer only 127.0.0.1 (or aioice's default choice).

    aioice looks the function up at gathering time, so swapping the module attribute
    affects every connection gathered afterwards, in every peer of the process.
    """
    chosen = _loopback_only if enabled else _aioice_default
    aioice.ice.get_host_addresses = chosen  # type: ignore[assignment]


def rtc_configuration(settings: Settings) -> RTCConfiguration:
    """The one place peers get their ICE setup from; also applies the loopback choice and
    the port range to every peer of the process.

    An explicit (possibly empty) server list matters: with `iceServers=None` aiortc
    falls back to a public STUN server, which would leave the machine. aiortc uses the
    first STUN and the first TURN URL only; TURN takes the configured credentials.
    """
    set_loopback(settings.ice_loopback)
    pin_ice_ports(settings.ice_port_range)
    username = settings.ice_username or None
    credential = settings.ice_credential.get_secret_value() or None
    servers = [
        RTCIceServer(urls=url, username=username, credential=credential)
        if url.startswith("turn")
        else RTCIceServer(urls=url)
        for url in settings.ice_server_urls
    ]
    return RTCConfiguration(iceServers=servers)
