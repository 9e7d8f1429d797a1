"""What the chosen exposure profile wants of the host firewall, before any backend's syntax.

:func:`wanted` is the one source of the rules every backend writes (ufw, firewalld, nft), so
the faces can show them in plain words and the guard (FW-003) can check them once.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from checks.install.model import Installation
    from checks.live.fwmodel import FirewallState
    from checks.live.model import LiveState

TAILSCALE_V4 = "100.64.0.0/10"
TAILSCALE_V6 = "fd7a:115c:a1e0::/48"


@dataclass(frozen=True, slots=True)
class Want:
    """One rule the profile asks for, in order (SSH first)."""

    action: str
    """``allow`` or ``deny``."""
    port: int | None
    """Destination port on this host (the published host port for a Docker publish); None: every port."""
    proto: str = "tcp"
    source: str = "any"
    """A CIDR or ``any``."""
    interface: str | None = None
    """``tailscale0`` for the tailscale profile."""
    why: str = ""
    """Plain words for the faces ("SSH, so this session is never cut off")."""
    forwarded: bool = False
    """The port is published by Docker on a non-loopback address: the rule must also hold on the
    forward path after DNAT (DOCKER-USER with conntrack's original port, the own nft table, or
    firewalld's StrictForwardPorts), since INPUT rules never see that traffic."""
    v6: bool | None = None
    """None: both families (a CIDR source decides by its own family); True/False: one only."""

    def text(self) -> str:
        """``allow 3001/tcp from 192.168.1.0/24`` (for the faces and the guard's message)."""
        what = f"{self.port}/{self.proto}" if self.port is not None else "everything"
        where = f" from {self.source}" if self.source != "any" else ""
        on = f" in on {self.interface}" if self.interface else ""
        return f"{self.action} {what}{where}{on}"


@dataclass(slots=True)
class BackendPlan:
    """What one backend (ufw, firewalld, nft) makes of the wanted rules; the fixer turns it into a Plan.

    ``edits`` are whole-file contents (before, after) of files under ``system_dirs``; ``sync`` is the
    argv that makes the live firewall equal the files and verifies it (``python -m
    checks.firewall.sync ufw --root DIR``), run last on apply and, after the files are restored,
    on rollback and undo (the reload pair of ADR 0008).
    """

    backend: str
    """``ufw``, ``firewalld`` or ``nft``."""
    edits: list[tuple[str, bytes | None, bytes, int | None, tuple[int, int] | None]]
    """``(path, before, after, mode, owner)``: before None for a new file (mode/owner then apply)."""
    system_dirs: list[str]
    sync: tuple[str, ...]
    commands: list[str] = field(default_factory=list)
    """The firewall commands a user would type for the same effect (``ufw allow 22/tcp``), shown in
    the preview beside the file diffs; informative, the files and ``sync`` are what is applied."""
    notes: list[str] = field(default_factory=list)
    refusals: list[tuple[str, str, str]] = field(default_factory=list)
    """``(check, reason, manual)``: what this backend cannot do (firewalld before 2.3.0 and NET-007)."""


PROFILES = ("local", "tailscale", "internet")
CACHE_DB_PORTS = (5432, 6379)
"""Denied whatever the installation publishes: PostgreSQL and Redis, the two DesterLib runs."""
WEB_PORTS = (80, 443)


class WantError(ValueError):
    """The profile cannot be expressed safely on this host (one line: why, and what to do)."""


def _family(cidr: str) -> bool | None:
    if cidr == "any":
        return None
    return ":" in cidr


def _published(inst: Installation, live: LiveState | None) -> dict[str, set[int]]:
    """Host ports per service that are published on a non-loopback address (what DNAT forwards).

    The running containers' bindings when a live Engine answered (what is really forwarded), else the
    compose files' ports (what will be once the stack runs)."""
    out: dict[str, set[int]] = {}
    if live is not None and live.engine is not None:
        for c in live.containers:
            for b in c.bindings:
                if not b.loopback and b.protocol == "tcp":
                    out.setdefault(c.service, set()).add(b.host_port)
        return out
    for svc in inst.services:
        for port in svc.ports:
            ip = (port.host_ip or "").strip("[]")
            if ip == "::1" or ip.startswith("127.") or port.protocol not in ("tcp", ""):
                continue
            for hp in port.published_ports:
                out.setdefault(svc.name, set()).add(hp)
    return out


def _api_ports(inst: Installation, live: LiveState | None, published: dict[str, set[int]]) -> list[int]:
    from checks.audit.rules.common import api_port, api_service

    svc = api_service(inst)
    if svc is None:
        return [3001]
    if live is not None and live.engine is not None:
        hp = {b.host_port for c in live.containers if c.service == svc.name for b in c.bindings}
        if hp:
            return sorted(hp)
    hp = {p for port in svc.ports for p in port.published_ports}
    return sorted(hp) if hp else [api_port(svc)]


def _db_ports(inst: Installation, live: LiveState | None) -> list[int]:
    from checks.audit.rules.common import db_ports, is_db_image

    ports = set(CACHE_DB_PORTS)
    for svc in inst.services:
        for port in db_ports(svc):
            ports.update(port.published_ports)
    if live is not None and live.engine is not None:
        for c in live.containers:
            if is_db_image(c.image) or c.image.split(":", 1)[0].rsplit("/", 1)[-1].startswith(("redis", "valkey")):
                ports.update(b.host_port for b in c.bindings)
    return sorted(ports)


def ssh_wants(fw: FirewallState) -> list[Want]:
    """The SSH allows, always first: every port sshd listens on and the session's own port."""
    ports = list(fw.ssh_ports)
    if fw.ssh_session is not None and fw.ssh_session.port not in ports:
        ports.insert(0, fw.ssh_session.port)
    if not ports:
        return [Want("allow", 22, why="SSH (no sshd or session seen: the standard port 22 is kept open)")]
    why = "SSH, so this session is never cut off"
    return [Want("allow", p, why=why) for p in ports]


def wanted(profile: str, fw: FirewallState, inst: Installation, live: LiveState | None) -> list[Want]:
    """The rules the exposure ``profile`` asks of the host firewall, in the order they must hold.

    SSH first; then the API (from the LAN networks, the tailnet, or not at all on the internet
    profile, where only 80 and 443 are open); the database and cache ports denied; the default deny
    of incoming traffic last (``Want("deny", None)``). ``forwarded`` marks ports the project's
    containers publish on non-loopback addresses, which INPUT rules never see.

    Raises :class:`WantError` when the profile cannot be expressed safely (local without any LAN
    network found: it would have to be opened to everyone)."""
    if profile not in PROFILES:
        raise WantError(f"unknown profile {profile!r} (local, tailscale or internet)")
    published = _published(inst, live)
    forwarded = {p for ports in published.values() for p in ports}
    out = ssh_wants(fw)
    api = _api_ports(inst, live, published)
    dbs = [p for p in _db_ports(inst, live) if p not in api]
    if profile == "local":
        nets = [n for n in fw.lan_networks if fw.ipv6 or _family(n) is not True]
        if not nets:
            raise WantError("no LAN network found on this host's interfaces, so the local profile cannot limit "
                            "the API to the LAN; rather than open it to everyone nothing is planned (check "
                            "`ip addr`, or choose --profile tailscale)")
        for port in api:
            for net in nets:
                out.append(Want("allow", port, source=net, why=f"the API from the LAN {net}",
                                forwarded=port in forwarded, v6=_family(net)))
    elif profile == "tailscale":
        for port in api:
            out.append(Want("allow", port, source=TAILSCALE_V4, why="the API from the tailnet",
                            forwarded=port in forwarded, v6=False))
            if fw.ipv6:
                out.append(Want("allow", port, source=TAILSCALE_V6, why="the API from the tailnet",
                                forwarded=port in forwarded, v6=True))
            if fw.tailscale:
                out.append(Want("allow", port, interface="tailscale0", why="the API on the tailscale0 interface",
                                forwarded=port in forwarded))
    else:
        for port in WEB_PORTS:
            out.append(Want("allow", port, why="HTTPS front door (80 for the certificate's renewal)",
                            forwarded=port in forwarded))
    allowed = {w.port for w in out}
    for port in dbs:
        if port not in allowed:
            out.append(Want("deny", port, why="database or cache: never reachable from the network",
                            forwarded=port in forwarded))
    denied = {w.port for w in out}
    for svc, ports in sorted(published.items()):
        for port in sorted(ports - denied):
            out.append(Want("deny", port, why=f"published by Docker for {svc}, not part of the {profile} profile",
                            forwarded=True))
            denied.add(port)
    out.append(Want("deny", None, proto="any", why="default: deny incoming"))
    return out
