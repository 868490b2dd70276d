from __future__ import annotations

import ipaddress

import pytest

from sluice.config import Settings
from sluice.endpoint_policy import EndpointNotAllowed, EndpointPolicy, parse_networks


@pytest.mark.parametrize(
    "address",
    [
        "169.254.169.254",
        "fd00:ec2::254",
        "fe80::1",
        "0.0.0.0",
        "224.0.0.1",
        "100.100.100.200",
        "::ffff:169.254.169.254",
    ],
)
def test_metadata_and_link_local_are_refused_in_every_mode(address: str) -> None:
    permissive = EndpointPolicy(allow_private=True, allow=parse_networks("0.0.0.0/0, ::/0"))
    assert permissive.refusal(ipaddress.ip_address(address)) is not None


@pytest.mark.parametrize(
    "address",
    [
        "127.0.0.1",
        "10.1.2.3",
        "172.20.0.1",
        "192.168.1.1",
        "::1",
        "fd12::1",
        "100.64.0.1",
        "::ffff:10.0.0.1",
    ],
)
def test_private_addresses_need_the_setting(address: str) -> None:
    ip = ipaddress.ip_address(address)
    assert EndpointPolicy().refusal(ip) is not None
    assert EndpointPolicy(allow_private=True).refusal(ip) is None


def test_public_addresses_pass_and_lists_apply() -> None:
    public = ipaddress.ip_address("203.0.113.7")
    assert EndpointPolicy().refusal(public) is None
    assert EndpointPolicy(deny=parse_networks("203.0.113.0/24")).refusal(public) is not None
    only = EndpointPolicy(allow=parse_networks("198.51.100.0/24"))
    assert only.refusal(public) is not None
    assert only.refusal(ipaddress.ip_address("198.51.100.9")) is None


def test_every_resolved_address_must_pass() -> None:
    policy = EndpointPolicy()
    assert policy.choose(["203.0.113.7", "2001:db8::1"]) == "203.0.113.7"
    with pytest.raises(EndpointNotAllowed):
        policy.choose(["203.0.113.7", "10.0.0.1"])  # one private answer taints the host
    with pytest.raises(EndpointNotAllowed):
        policy.choose([])


def test_settings_build_the_policy() -> None:
    assert Settings(apps="a:b").endpoint_policy.allow_private is False
    assert Settings(apps="a:b", dev=True).endpoint_policy.allow_private is True
    with pytest.raises(ValueError):
        Settings(apps="a:b", endpoint_deny_networks="not-a-network")
