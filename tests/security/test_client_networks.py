"""The client allowlist at the running ingress, with and without a trusted proxy.

The tests post from chosen loopback addresses: 127.0.0.1 is a stranger, 127.0.0.2 a sender
on an allowed network, 127.0.0.3 the load balancer."""

from __future__ import annotations

import ipaddress

import pytest

from ingress.clientnet import ClientResolver, Networks, parse_address
from shared.errors import ConfigError
from shared.settings import Settings
from tests.security.conftest import StartIngress, new_secret, with_overrides
from tests.support.broker import BrokerClient

pytestmark = pytest.mark.broker

STRANGER, SENDER, PROXY = "127.0.0.1", "127.0.0.2", "127.0.0.3"


async def _sources(broker: BrokerClient) -> list[str]:
    return [
        str((m.headers or {})["x-source-address"])
        for m in await broker.take_all(broker.topology.raw)
    ]


async def test_without_a_proxy_only_clients_on_allowed_networks_get_in(
    start_ingress: StartIngress, broker: BrokerClient
) -> None:
    secret = new_secret()
    ingress = await start_ingress(tokens=[f"ci={secret}"], allowed_networks=[f"{SENDER}/32"])

    refused = await ingress.post(f"/callbacks/{secret}", source=STRANGER)
    accepted = await ingress.post(f"/callbacks/{secret}", source=SENDER)

    assert refused.status == 403
    assert accepted.status == 200
    assert await _sources(broker) == [SENDER]
    assert (await ingress.readiness())["refused"] == {"network": 1}


async def test_a_forwarded_for_header_from_an_untrusted_peer_is_ignored(
    start_ingress: StartIngress, broker: BrokerClient
) -> None:
    secret = new_secret()
    ingress = await start_ingress(tokens=[f"ci={secret}"], allowed_networks=["10.0.0.0/8"])

    reply = await ingress.post(
        f"/callbacks/{secret}", source=STRANGER, headers={"X-Forwarded-For": "10.1.2.3"}
    )

    assert reply.status == 403
    assert await broker.count(broker.topology.raw) == 0


async def test_behind_a_trusted_proxy_the_forwarded_client_is_checked_and_recorded(
    start_ingress: StartIngress, broker: BrokerClient
) -> None:
    secret = new_secret()
    ingress = await start_ingress(
        tokens=[f"ci={secret}"],
        allowed_networks=["10.0.0.0/8"],
        trusted_proxies=[f"{PROXY}/32"],
    )
    path = f"/callbacks/{secret}"

    inside = await ingress.post(path, source=PROXY, headers={"X-Forwarded-For": "10.1.2.3"})
    # A client that writes its own header: the proxy appends the real peer on the right.
    spoofed = await ingress.post(
        path, source=PROXY, headers={"X-Forwarded-For": "10.9.9.9, 203.0.113.7"}
    )
    # The proxy itself is not on an allowed network: no header, no entry.
    bare = await ingress.post(path, source=PROXY)

    assert (inside.status, spoofed.status, bare.status) == (200, 403, 403)
    assert await _sources(broker) == ["10.1.2.3"]


async def test_the_trusted_header_is_a_setting(
    start_ingress: StartIngress, broker: BrokerClient
) -> None:
    secret = new_secret()
    ingress = await start_ingress(
        tokens=[f"ci={secret}"],
        allowed_networks=["10.0.0.0/8"],
        trusted_proxies=[f"{PROXY}/32"],
        forwarded_header="X-Real-IP",
    )
    path = f"/callbacks/{secret}"

    ignored = await ingress.post(path, source=PROXY, headers={"X-Forwarded-For": "10.1.2.3"})
    used = await ingress.post(path, source=PROXY, headers={"X-Real-IP": "10.4.5.6"})

    assert (ignored.status, used.status) == (403, 200)
    assert await _sources(broker) == ["10.4.5.6"]


async def test_health_endpoints_are_not_gated_by_the_allowlist(
    start_ingress: StartIngress,
) -> None:
    ingress = await start_ingress(tokens=[f"ci={new_secret()}"], allowed_networks=[f"{SENDER}/32"])
    for path in ("/healthz", "/readyz"):
        async with ingress.session(STRANGER).get(ingress.url(path)) as response:
            assert response.status == 200, path


@pytest.mark.parametrize(
    ("peer", "forwarded", "client"),
    [
        ("192.0.2.1", ["10.0.0.1"], "192.0.2.1"),  # peer not trusted: header ignored
        ("10.0.0.2", [], "10.0.0.2"),  # trusted peer, no header: the peer
        ("10.0.0.2", ["198.51.100.5"], "198.51.100.5"),
        ("10.0.0.2", ["203.0.113.1, 198.51.100.5"], "198.51.100.5"),  # rightmost untrusted
        ("10.0.0.2", ["198.51.100.5, 10.0.0.7"], "198.51.100.5"),  # through two proxies
        ("10.0.0.2", ["198.51.100.5", "10.0.0.7"], "198.51.100.5"),  # two header lines
        ("10.0.0.2", ["10.0.0.9, 10.0.0.7"], "10.0.0.9"),  # every hop trusted: the farthest
        ("10.0.0.2", ["198.51.100.5:4711"], "198.51.100.5"),  # a port
        ("10.0.0.2", ["[2001:db8::1]:443"], "2001:db8::1"),
        ("10.0.0.2", ["::ffff:198.51.100.5"], "198.51.100.5"),  # v4-mapped
        ("10.0.0.2", ["unknown"], None),  # a trusted proxy passed no address
        (None, [], None),
    ],
)
def test_the_client_is_the_rightmost_hop_that_is_not_a_trusted_proxy(
    peer: str | None, forwarded: list[str], client: str | None
) -> None:
    resolver = ClientResolver(Networks(["10.0.0.0/24"], "trusted_proxies"))
    resolved = resolver.resolve(peer, forwarded)
    assert resolved == (ipaddress.ip_address(client) if client else None)


def test_an_empty_allowlist_allows_everyone_and_a_set_one_refuses_the_unknown() -> None:
    assert Networks([], "allowed_networks").allows(None)
    allowlist = Networks(["10.0.0.0/8", "2001:db8::/32"], "allowed_networks")
    assert allowlist.allows(parse_address("10.200.1.1"))
    assert allowlist.allows(parse_address("2001:db8::7"))
    assert not allowlist.allows(parse_address("11.0.0.1"))
    assert not allowlist.allows(None)


def test_an_invalid_network_is_a_config_error_naming_the_setting(settings: Settings) -> None:
    from ingress.guard import Guard

    with pytest.raises(ConfigError, match=r"allowed_networks: '10\.0\.0\.0/33'"):
        Guard.from_settings(with_overrides(settings, allowed_networks=["10.0.0.0/33"]))
    with pytest.raises(ConfigError, match="trusted_proxies: 'lb'"):
        Guard.from_settings(with_overrides(settings, trusted_proxies=["lb"]))
