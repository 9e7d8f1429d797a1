"""This host's own addresses: the only places the API's admin surface is probed.

IPv4 comes from ``fib_trie`` (its ``/32 host LOCAL`` entries are the addresses assigned to
this namespace's interfaces), IPv6 from ``if_inet6``; both under a ``proc_net`` directory so
tests can read another network namespace. Left out: loopback (the checks are about what
other hosts reach), IPv6 link-local (it needs a zone to be probed), and the addresses of
Docker's own bridges (``docker0``, ``br-<id>``, ``docker_gwbridge``: only this host and its
containers reach them). An IPv4 address's interface is the one whose directly connected route
in ``route`` covers it.
"""

from __future__ import annotations

import ipaddress
import os
import re
import struct

from checks.live.errors import LiveError, one_line

_MAX_BYTES = 8 * 1024 * 1024
_DOCKER_BRIDGE = re.compile(r"^(docker0|docker_gwbridge|br-[0-9a-f]{12})$")


def docker_bridge(iface: str) -> bool:
    """Whether ``iface`` is a bridge the Docker Engine made for its networks."""
    return bool(_DOCKER_BRIDGE.match(iface))


def _u32(hexword: str) -> ipaddress.IPv4Address:
    """A /proc/net/route field (``%08X`` of a native-order be32) as an address."""
    return ipaddress.IPv4Address(struct.pack("=I", int(hexword, 16)))


def routes(route_text: str) -> list[tuple[str, ipaddress.IPv4Network]]:
    """(interface, network) of the directly connected routes (no gateway) in a ``route`` text."""
    out = []
    for line in route_text.splitlines()[1:]:
        f = line.split()
        if len(f) < 8:
            continue
        try:
            if int(f[2], 16) != 0:
                continue
            out.append((f[0], ipaddress.IPv4Network(f"{_u32(f[1])}/{_u32(f[7])}", strict=False)))
        except ValueError:
            continue
    return out


def _iface_of(ip: ipaddress.IPv4Address, table: list[tuple[str, ipaddress.IPv4Network]]) -> str | None:
    best = [(net.prefixlen, name) for name, net in table if ip in net and net.prefixlen > 0]
    return max(best)[1] if best else None


def _text(path: str) -> str:
    with open(path, "rb") as fh:
        return fh.read(_MAX_BYTES).decode("ascii", "replace")


def ipv4(fib_trie: str, route_text: str = "") -> list[str]:
    """The local IPv4 addresses in a ``fib_trie`` text, loopback and Docker's bridges excluded."""
    table = routes(route_text)
    out: list[str] = []
    last: str | None = None
    for line in fib_trie.splitlines():
        stripped = line.strip()
        if stripped.startswith(("|--", "+--")):
            last = stripped[3:].strip().split()[0] if stripped.startswith("|--") else None
        elif stripped.startswith("/32 host LOCAL") and last is not None:
            try:
                ip = ipaddress.IPv4Address(last)
            except ValueError:
                continue
            iface = _iface_of(ip, table)
            if not ip.is_loopback and str(ip) not in out and not (iface and docker_bridge(iface)):
                out.append(str(ip))
    return out


def ipv6(if_inet6: str) -> list[str]:
    """The IPv6 addresses in an ``if_inet6`` text, loopback and link-local excluded."""
    out: list[str] = []
    for line in if_inet6.splitlines():
        fields = line.split()
        if len(fields) < 6 or len(fields[0]) != 32:
            continue
        try:
            ip = ipaddress.IPv6Address(bytes.fromhex(fields[0]))
        except ValueError:
            continue
        if ip.is_loopback or ip.is_link_local or str(ip) in out or docker_bridge(fields[5]):
            continue
        out.append(str(ip))
    return out


def own_addresses(proc_net: str = "/proc/net") -> tuple[str, ...]:
    """This namespace's non-loopback addresses, IPv4 first. :class:`LiveError` when IPv4 cannot be read."""
    try:
        route_text = _text(os.path.join(proc_net, "route"))
    except OSError:
        route_text = ""  # without routes no address is known as a bridge's: all are kept
    try:
        v4 = ipv4(_text(os.path.join(proc_net, "fib_trie")), route_text)
    except OSError as exc:
        raise LiveError(f"cannot read this host's addresses from {proc_net}/fib_trie: {one_line(exc)}") from None
    try:
        v6 = ipv6(_text(os.path.join(proc_net, "if_inet6")))
    except OSError:
        v6 = []  # IPv6 disabled: no addresses of that family, not an error.
    return tuple(v4 + v6)
