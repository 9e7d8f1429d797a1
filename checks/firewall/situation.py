"""The firewall situation in plain words, for both faces: what is active, and what Docker lets past it.

``ufw 0.36.2 active (deny incoming), iptables-nft, Docker Engine 20.10.24 (iptables)`` then, per
database or cache port Docker publishes off loopback, whether the forward path governs it
(``but 5432 (postgres) is reachable from the LAN through Docker: no DOCKER-USER rule for it``).
The words come from the live state only; the checks (FW-001, FW-002, FW-004, NET-007) are where
a verdict is made and scored.
"""

from __future__ import annotations

from checks.live.fwmodel import FirewallState
from checks.live.model import Binding, LiveState

#: Ports whose exposure is named (the database and cache defaults); the install's own come from the bindings.
SENSITIVE = {5432: "PostgreSQL", 6379: "Redis"}


def _frontend(fw: FirewallState) -> str:
    if fw.frontend == "none":
        installed = [n for n, yes in (("ufw", fw.ufw_installed), ("firewalld", fw.firewalld_installed)) if yes]
        if installed:
            return f"no host firewall is active ({' and '.join(installed)} installed, not enabled)"
        return "no host firewall is installed (neither ufw nor firewalld)"
    name = f"{fw.frontend} {fw.version}" if fw.version else fw.frontend
    if not fw.active:
        return f"{name} is installed but not active"
    policy = f" ({fw.default_incoming} incoming)" if fw.default_incoming else ""
    zone = f", zone {fw.zone}" if fw.zone else ""
    return f"{name} active{policy}{zone}"


def governs(fw: FirewallState, port: int) -> bool:
    """Whether the forward path (after Docker's DNAT) holds a rule for host port ``port``.

    iptables backend: a DOCKER-USER rule naming the original destination port, or a jump to
    dester-harden's own chain that does; nftables backend: dester-harden's own table; firewalld:
    StrictForwardPorts. This is the same test NET-007 makes, in words for the faces.
    """
    if fw.docker_backend == "nftables":
        return fw.own_table
    if fw.frontend == "firewalld" and fw.active:
        return fw.strict_forward_ports is True
    lines = fw.docker_user or ()
    needle = f"--ctorigdstport {port}"
    if any(needle in line and ("DROP" in line or "REJECT" in line) for line in lines):
        return True
    return any("-j DH-DOCKER" in line for line in lines)


def exposed(live: LiveState | None) -> list[tuple[str, Binding]]:
    """(service, binding) of every TCP port the project publishes on a non-loopback address."""
    out: list[tuple[str, Binding]] = []
    for c in live.containers if live is not None else ():
        for b in c.bindings:
            fresh = all(b.host_port != o.host_port for _, o in out)
            if b.protocol == "tcp" and b.host_port and not b.loopback and fresh:
                out.append((c.service, b))
    return out


def _and(items: list[str]) -> str:
    return items[0] if len(items) == 1 else ", ".join(items[:-1]) + " and " + items[-1]


def situation_lines(fw: FirewallState | None, live: LiveState | None, error: str | None = None) -> list[str]:
    """One line each: the firewall, the forward path per published port, the SSH session, the oddities."""
    if fw is None:
        return [f"the firewall could not be read: {error}" if error else "the firewall was not read"]
    lines = [_frontend(fw)]
    tech = []
    if fw.iptables:
        tech.append(f"iptables-{fw.iptables}")
    if live is not None and live.engine is not None:
        backend = fw.docker_backend or live.engine.firewall_backend or "iptables"
        tech.append(f"Docker Engine {live.engine.version} ({backend} backend)")
    if tech:
        lines[0] += "; " + ", ".join(tech)
    if fw.mixed_backends:
        lines.append("iptables-legacy and iptables-nft both hold rules: Docker's published ports are blocked "
                     "or open depending on which one a packet meets; use one (iptables-nft on Debian 12)")
    active = fw.frontend != "none" and fw.active
    open_: list[str] = []
    bypass: list[str] = []
    governed: list[str] = []
    for service, b in exposed(live):
        name = f"{b.host_port} ({SENSITIVE.get(b.container_port) or SENSITIVE.get(b.host_port) or service})"
        (open_ if not active else bypass if not governs(fw, b.host_port) else governed).append(name)
    many = {True: ("are", "them"), False: ("is", "it")}
    if open_:
        lines.append(f"{_and(open_)} {many[len(open_) > 1][0]} published off loopback: open to the network")
    if bypass:
        verb, them = many[len(bypass) > 1]
        why = ("firewalld before 2.3.0 has no StrictForwardPorts" if fw.frontend == "firewalld"
               else f"no DOCKER-USER rule for {them}")
        lines.append(f"but {_and(bypass)} {verb} reachable from the LAN through Docker: {why}")
    if governed:
        verb, them = many[len(governed) > 1]
        lines.append(f"{_and(governed)} {verb} published off loopback, and the forward path governs {them}")
    if fw.ssh_session is not None:
        s = fw.ssh_session
        lines.append(f"SSH session from {s.client} to port {s.port}: allowed first in every plan")
    elif fw.ssh_ports:
        lines.append("sshd listens on " + ", ".join(str(p) for p in fw.ssh_ports) + ": allowed first in every plan")
    nets = ", ".join(fw.lan_networks) if fw.lan_networks else "none found"
    lines.append(f"LAN networks: {nets}; IPv6 {'on' if fw.ipv6 else 'off'}"
                 + ("; tailscale0 present" if fw.tailscale else ""))
    for e in fw.errors:
        lines.append(f"not read: {e}")
    return lines
