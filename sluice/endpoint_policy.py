"""Which addresses Sluice may dial on an API client's behalf (server-side request forgery).

An adapter's endpoint is any URL a client names, so without a policy Sluice could be
pointed at cloud metadata services or at hosts on its own private network. The policy is
applied to every address the endpoint's host resolves to, at dial time and again on every
reconnect, so a DNS answer that changes after the create (rebinding) is judged too; the
connection then goes to the address that was checked.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from sluice.errors import ErrorCode, SluiceError

Address = ipaddress.IPv4Address | ipaddress.IPv6Address
Network = ipaddress.IPv4Network | ipaddress.IPv6Network

# Never dialled, whatever the settings: link-local (cloud metadata lives there), metadata
# addresses outside it, "this host", multicast and reserved space.
ALWAYS_DENIED: tuple[Network, ...] = tuple(
    ipaddress.ip_network(n)
    for n in (
        "0.0.0.0/8",
        "169.254.0.0/16",
        "100.100.100.200/32",  # Alibaba Cloud metadata
        "224.0.0.0/4",
        "240.0.0.0/4",
        "::/128",
        "fe80::/10",
        "fd00:ec2::254/128",  # AWS metadata over IPv6
        "ff00::/8",
    )
)

# Denied unless private endpoints are allowed (development sets that).
PRIVATE: tuple[Network, ...] = tuple(
    ipaddress.ip_network(n)
    for n in (
        "127.0.0.0/8",
        "10.0.0.0/8",
        "172.16.0.0/12",
        "192.168.0.0/16",
        "100.64.0.0/10",  # carrier-grade NAT
        "::1/128",
        "fc00::/7",
    )
)


class EndpointNotAllowed(SluiceError):
    """The endpoint resolves to an address the policy refuses."""

    error_code, status = ErrorCode.WEBSOCKET_ENDPOINT_NOT_ALLOWED, 400


def parse_networks(spec: str) -> tuple[Network, ...]:
    """`"10.1.0.0/16, 2001:db8::/32"` → networks.

    Raises:
        ValueError: an entry is not a network.
    """
    return tuple(
        ipaddress.ip_network(part.strip(), strict=False) for part in spec.split(",") if part.strip()
    )


@dataclass(frozen=True, slots=True)
class EndpointPolicy:
    """Allow and deny rules; `deny` beats `allow`, and `ALWAYS_DENIED` beats both.

    Args:
        allow_private: loopback and private ranges may be dialled.
        allow: if not empty, only these networks may be dialled.
        deny: never dialled.
    """

    allow_private: bool = False
    allow: tuple[Network, ...] = ()
    deny: tuple[Network, ...] = ()

    def refusal(self, address: Address) -> str | None:
        """Why `address` may not be dialled, or None if it may."""
        if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
            address = address.ipv4_mapped  # ::ffff:10.0.0.1 is 10.0.0.1
        if _within(address, ALWAYS_DENIED):
            return "link-local, metadata or reserved address"
        if _within(address, self.deny):
            return "address in SLUICE_ENDPOINT_DENY_NETWORKS"
        if self.allow and not _within(address, self.allow):
            return "address outside SLUICE_ENDPOINT_ALLOW_NETWORKS"
        if not self.allow_private and _within(address, PRIVATE):
            return "loopback or private address (SLUICE_ALLOW_PRIVATE_ENDPOINTS is off)"
        return None

    def choose(self, addresses: Sequence[str]) -> str:
        """The first resolved address, if every one of them is allowed.

        All must pass: a host that resolves to one public and one private address could
        otherwise be steered to the private one.

        Raises:
            EndpointNotAllowed: any address is refused, or there is none.
        """
        if not addresses:
            raise EndpointNotAllowed("the endpoint's host did not resolve")
        for text in addresses:
            why = self.refusal(ipaddress.ip_address(text.split("%", 1)[0]))
            if why is not None:
                raise EndpointNotAllowed(f"{why}: {text}")
        return addresses[0]


def _within(address: Address, networks: Iterable[Network]) -> bool:
    return any(address.version == n.version and address in n for n in networks)
