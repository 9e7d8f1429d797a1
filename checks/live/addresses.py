"""This host's own addresses: the only places the API's admin surface is probed.

IPv4 comes from ``fib_trie`` (its ``/32 host LOCAL`` entries are the addresses assigned to
this namespace's interfaces), IPv6 from ``if_inet6``; both under a ``proc_net`` directory so
tests can read another network namespace. Loopback is left out (the checks are about what
other hosts reach) and so is IPv6 link-local (it needs a zone to be probed).
"""

from __future__ import annotations

import ipaddress
import os

from checks.live.errors import LiveError, one_line

_MAX_BYTES = 8 * 1024 * 1024


def _text(path: str) -> str:
    with open(path, "rb") as fh:
        return fh.read(_MAX_BYTES).decode("ascii", "replace")


def ipv4(fib_trie: str) -> list[str]:
    """The local IPv4 addresses in a ``fib_trie`` text, loopback excluded."""
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
            if not ip.is_loopback and str(ip) not in out:
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
        if ip.is_loopback or ip.is_link_local or str(ip) in out:
            continue
        out.append(str(ip))
    return out


def own_addresses(proc_net: str = "/proc/net") -> tuple[str, ...]:
    """This namespace's non-loopback addresses, IPv4 first. :class:`LiveError` when IPv4 cannot be read."""
    try:
        v4 = ipv4(_text(os.path.join(proc_net, "fib_trie")))
    except OSError as exc:
        raise LiveError(f"cannot read this host's addresses from {proc_net}/fib_trie: {one_line(exc)}") from None
    try:
        v6 = ipv6(_text(os.path.join(proc_net, "if_inet6")))
    except OSError:
        v6 = []  # IPv6 disabled: no addresses of that family, not an error.
    return tuple(v4 + v6)
