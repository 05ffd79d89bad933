"""The fleet's network: one namespace per host and for the receiver, three bridges.

Every host namespace has three links, one per network, so each path can be cut
on its own with ``ip link set <veth> down`` (this kernel has no netem and no
iptables):

* ``db``  10.231.1.0/24: the host -> the PostgreSQL proxy (root namespace, .1)
* ``rx``  10.231.2.0/24: the host -> the receiver proxy (root namespace, .1);
  the receiver's own namespace sits on this bridge at .100
* ``cl``  10.231.3.0/24: the load generator (root namespace, .1) -> the host's
  ingest API

No namespace has a default route: a daemon reaches only the bridges, never an
address outside the namespaces and loopback.
"""

from __future__ import annotations

import subprocess
from dataclasses import dataclass

PREFIX = "tafl"
NETS = {"db": "10.231.1", "rx": "10.231.2", "cl": "10.231.3"}
RECEIVER_NS = f"{PREFIX}-rx"
RECEIVER_ADDR = f"{NETS['rx']}.100"


@dataclass(frozen=True)
class Host:
    index: int  # 1-based

    @property
    def name(self) -> str:
        return f"h{self.index}"

    @property
    def ns(self) -> str:
        return f"{PREFIX}-{self.name}"

    def veth(self, net: str) -> str:
        """The root-namespace end of this host's link to ``net`` (what a partition downs)."""
        return f"{PREFIX}-{self.name}-{net}"

    def addr(self, net: str) -> str:
        return f"{NETS[net]}.{10 + self.index}"


def gateway(net: str) -> str:
    return f"{NETS[net]}.1"


def bridge(net: str) -> str:
    return f"{PREFIX}-br-{net}"


def ip(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["ip", *args], check=check, capture_output=True, text=True)


def available() -> str | None:
    """None when namespaces can be made here, else why not (one line)."""
    import os

    if os.geteuid() != 0:
        return "network namespaces need root"
    probe = f"{PREFIX}-probe"
    try:
        ip("netns", "del", probe, check=False)
        r = ip("netns", "add", probe, check=False)
    except FileNotFoundError:
        return "the ip command (iproute2) is not installed"
    if r.returncode != 0:
        return f"ip netns add failed: {r.stderr.strip()}"
    ip("netns", "del", probe, check=False)
    return None


def cleanup() -> None:
    """Remove every namespace, veth and bridge of the fleet (also a crashed run's)."""
    for line in ip("-o", "link", "show", check=False).stdout.splitlines():
        name = line.split(":", 2)[1].strip().split("@", 1)[0]
        if name.startswith(f"{PREFIX}-") and not name.startswith(f"{PREFIX}-br-"):
            ip("link", "del", name, check=False)
    for net in NETS:
        ip("link", "del", bridge(net), check=False)
    for line in ip("netns", "list", check=False).stdout.splitlines():
        name = line.split()[0] if line.split() else ""
        if name.startswith(f"{PREFIX}-"):
            ip("netns", "del", name, check=False)


def _link(ns: str, root_end: str, inner: str, net: str, addr: str) -> None:
    ip("link", "add", root_end, "type", "veth", "peer", "name", inner, "netns", ns)
    ip("link", "set", root_end, "master", bridge(net))
    ip("link", "set", root_end, "up")
    ip("-n", ns, "addr", "add", f"{addr}/24", "dev", inner)
    ip("-n", ns, "link", "set", inner, "up")


def setup(hosts: list[Host]) -> None:
    """Create the bridges, the namespaces and their links (after :func:`cleanup`)."""
    for net in NETS:
        ip("link", "add", bridge(net), "type", "bridge")
        ip("addr", "add", f"{gateway(net)}/24", "dev", bridge(net))
        ip("link", "set", bridge(net), "up")
    for h in hosts:
        ip("netns", "add", h.ns)
        ip("-n", h.ns, "link", "set", "lo", "up")
        for net in NETS:
            _link(h.ns, h.veth(net), f"{net}0", net, h.addr(net))
    ip("netns", "add", RECEIVER_NS)
    ip("-n", RECEIVER_NS, "link", "set", "lo", "up")
    _link(RECEIVER_NS, f"{PREFIX}-rcv-rx", "rx0", "rx", RECEIVER_ADDR)


def set_link(veth: str, up: bool) -> None:
    ip("link", "set", veth, "up" if up else "down")


def netns_exec(ns: str) -> list[str]:
    return ["ip", "netns", "exec", ns]
