"""Who the client is: its address, through trusted proxies only, and whether it may post.

Deployments sit behind load balancers, so the TCP peer is often a proxy. A forwarded-for
header is believed only when the peer is a trusted proxy; the header is read from the right
(the hop our proxy added) to the left, skipping trusted proxies, and the first address that
is not a trusted proxy is the client. Anything a client wrote into the header itself lies to
the left of that and is never reached.
"""

from __future__ import annotations

import functools
import ipaddress
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from aiohttp import web

from shared.errors import ConfigError

__all__ = ["ClientResolver", "IPAddress", "Networks", "address_text", "parse_address"]

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network


@functools.lru_cache(maxsize=4096)  # peers repeat (keep-alive, a load balancer): parse once
def parse_address(text: str | None) -> IPAddress | None:
    """An IP address from a peer or header value (``1.2.3.4``, ``1.2.3.4:80``, ``[::1]:80``);
    IPv4-mapped IPv6 addresses as IPv4. None when it is not an address."""
    if not text:
        return None
    value = text.strip()
    if value.startswith("["):  # [v6] or [v6]:port
        value = value[1:].partition("]")[0]
    elif value.count(":") == 1:  # v4:port
        value = value.partition(":")[0]
    try:
        address = ipaddress.ip_address(value.partition("%")[0])  # drop a v6 zone id
    except ValueError:
        return None
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped
    return address


@functools.lru_cache(maxsize=4096)
def address_text(address: IPAddress) -> str:
    """``str(address)``, remembered (it costs microseconds and clients repeat)."""
    return str(address)


class Networks:
    """A set of CIDR networks."""

    def __init__(self, specs: Iterable[str], setting: str) -> None:
        networks: list[IPNetwork] = []
        for spec in specs:
            try:
                networks.append(ipaddress.ip_network(spec.strip(), strict=False))
            except ValueError:
                raise ConfigError(f"{setting}: {spec!r} is not a network (CIDR)") from None
        self._networks = tuple(networks)

    def __bool__(self) -> bool:
        return bool(self._networks)

    def __contains__(self, address: object) -> bool:
        if not isinstance(address, ipaddress.IPv4Address | ipaddress.IPv6Address):
            return False
        return any(address in network for network in self._networks)

    def allows(self, address: IPAddress | None) -> bool:
        """As an allowlist: no networks allow everyone; else only addresses inside them."""
        return not self._networks or address in self

    def __repr__(self) -> str:
        return f"Networks({[str(n) for n in self._networks]!r})"


@dataclass(frozen=True, slots=True)
class ClientResolver:
    """Finds the client's address from the peer and, behind trusted proxies, a header."""

    trusted: Networks
    header: str = "X-Forwarded-For"

    def resolve(self, peer: str | None, forwarded: Sequence[str]) -> IPAddress | None:
        """The client address, or None when it cannot be known (a trusted proxy passed
        something that is not an address)."""
        address = parse_address(peer)
        if address is None or address not in self.trusted:
            return address
        hops = [hop for value in forwarded for hop in value.split(",") if hop.strip()]
        for hop in reversed(hops):
            hop_address = parse_address(hop)
            if hop_address is None:
                return None
            address = hop_address
            if address not in self.trusted:
                return address
        return address  # every hop is a trusted proxy: the farthest one

    def client_of(self, request: web.BaseRequest) -> IPAddress | None:
        """The client address of a request."""
        if not self.trusted:  # no proxy is believed: the peer is the client
            return parse_address(request.remote)
        return self.resolve(request.remote, request.headers.getall(self.header, []))
