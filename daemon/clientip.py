"""The client IP of a request: the peer, or X-Forwarded-For's first hop behind a trusted proxy."""

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
    proxy (anyone can send the header); its first valid address is the client.
    """
    peer_ip = _ip(peer)
    if peer_ip is not None and forwarded_for and any(peer_ip in net for net in trusted):
        first = _ip(forwarded_for.split(",", 1)[0])
        if first is not None:
            return str(first)
    return str(peer_ip) if peer_ip is not None else "0.0.0.0"
