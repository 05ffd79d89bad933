"""The client IP of a request: the peer, or behind trusted proxies the right-most untrusted hop."""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable

from tuiaudit.config import ConfigError

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


def parse_proxies(values: Iterable[str]) -> tuple[Network, ...]:
    """IPs or CIDRs (``10.0.0.1``, ``10.0.0.0/8``, ``::1``) as networks."""
    out = []
    for value in values:
        try:
            out.append(ipaddress.ip_network(value.strip(), strict=False))
        except ValueError:
            raise ConfigError(
                f"trusted_proxies: {value!r} is neither an IP address nor a CIDR (e.g. 10.0.0.0/8)"
            ) from None
    return tuple(out)


def _ip(value: str | None) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    if not value:
        return None
    value = value.strip()
    if value.startswith("[") and "]" in value:  # "[::1]:443"
        value = value[1 : value.index("]")]
    elif value.count(":") == 1:  # "1.2.3.4:5678"
        value = value.split(":", 1)[0]
    try:
        ip = ipaddress.ip_address(value.split("%", 1)[0])
    except ValueError:
        return None
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        return ip.ipv4_mapped
    return ip


def client_ip(peer: str | None, forwarded_for: str | None, trusted: tuple[Network, ...]) -> str:
    """The address to record for a request; ``0.0.0.0`` when nothing usable is known.

    ``X-Forwarded-For`` is honoured only when the peer itself is a trusted
    proxy (anyone can send the header). Each proxy appends the address it
    received the request from, so the list is read from the right: the
    right-most address that is not itself a trusted proxy is the client
    (DESIGN §8.2). The left part is whatever the client wrote and is never
    believed. An unparsable hop stops the walk: what lies left of it is
    not vouched for by a proxy we trust.
    """
    peer_ip = _ip(peer)
    if peer_ip is None:
        return "0.0.0.0"
    if not forwarded_for or not any(peer_ip in net for net in trusted):
        return str(peer_ip)
    client = peer_ip
    for hop in reversed(forwarded_for.split(",")):
        ip = _ip(hop)
        if ip is None:
            break
        client = ip
        if not any(ip in net for net in trusted):
            break
    return str(client)
