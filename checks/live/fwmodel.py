"""The host firewall as data: what ufw, firewalld, iptables, nft and sshd said (issue 12).

Read by :func:`checks.live.firewall.firewall_state` into :class:`FirewallState`, attached
to :attr:`checks.live.model.LiveState.firewall`, and read by the firewall checks (FW-001,
FW-002, FW-004, NET-007), the firewall plans (:mod:`checks.firewall`) and the faces.

A part that could not be read leaves its reason in ``errors`` and its field None: a check
that needs it is then ``error`` or ``skipped``, never ``pass``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

Runner = Callable[[Sequence[str], float], "RunResult"]
"""``run(argv, timeout) -> RunResult``: how the firewall's programs are asked (tests pass a fake).

Never a shell string; a program that is missing or does not answer in ``timeout`` seconds
is a RunResult with ``code`` 127 or 124 and the reason in ``stderr``, not an exception.
"""


@dataclass(frozen=True, slots=True)
class RunResult:
    code: int
    stdout: str
    stderr: str = ""


@dataclass(frozen=True, slots=True)
class FwRule:
    """One rule of the host firewall, normalised from ufw's, firewalld's or the chains' own form."""

    action: str
    """``allow``, ``deny``, ``reject`` or ``limit``."""
    port: int | None
    """Destination port; None: every port (``allow from 10.0.0.0/8``, ``allow in on tailscale0``)."""
    proto: str
    """``tcp``, ``udp`` or ``any``."""
    source: str = "any"
    """A CIDR (``192.168.1.0/24``, ``100.64.0.0/10``) or ``any``."""
    interface: str | None = None
    """``in on IFACE`` (ufw), a zone's interface (firewalld)."""
    v6: bool = False
    text: str = ""
    """As the firewall shows it (``5432/tcp ALLOW IN Anywhere``, ``port=5432/tcp``), for evidence."""
    persistent: bool = True
    """In the configuration the firewall loads at boot (user.rules, a permanent zone)."""
    live: bool = True
    """In the running rules."""


@dataclass(frozen=True, slots=True)
class SshSession:
    """The SSH session dester-harden runs in (``SSH_CONNECTION``): who must never be cut off."""

    client: str
    client_port: int
    server: str
    port: int


@dataclass(slots=True)
class FirewallState:
    """Everything the firewall checks and plans read."""

    frontend: str
    """``ufw``, ``firewalld`` or ``none`` (the one that is active; else the one installed; else none)."""
    active: bool | None
    """The frontend is running and enforcing (ufw's chains are live, firewalld's state is RUNNING);
    None: it could not be read (not root, a program that did not answer): see ``errors``."""
    version: str | None = None
    """The frontend's version (``0.36.2``, ``1.3.3``)."""
    ufw_installed: bool = False
    firewalld_installed: bool = False
    default_incoming: str | None = None
    """``deny``, ``reject`` or ``allow`` (ufw's DEFAULT_INPUT_POLICY; firewalld's default zone target)."""
    zone: str | None = None
    """firewalld's default zone (``public``)."""
    rules: tuple[FwRule, ...] = ()
    iptables: str | None = None
    """``nft`` (iptables-nft) or ``legacy``; None when iptables is missing."""
    mixed_backends: bool = False
    """Rules in both the legacy and the nf_tables tables: a mix that blocks every published port."""
    docker_backend: str | None = None
    """Docker's firewall backend: ``iptables`` or ``nftables`` (no DOCKER-USER chain there)."""
    docker_user: tuple[str, ...] | None = None
    """``iptables -S DOCKER-USER`` lines (IPv4); None: no such chain (or not readable: see errors)."""
    docker_user6: tuple[str, ...] | None = None
    """The same for ip6tables."""
    own_chain: tuple[str, ...] | None = None
    """``iptables -S DH-DOCKER``: dester-harden's chain that DOCKER-USER jumps to; None: no such chain."""
    own_chain6: tuple[str, ...] | None = None
    """The same for ip6tables."""
    own_table: bool = False
    """dester-harden's own nft table (``inet dester_harden``) is loaded."""
    strict_forward_ports: bool | None = None
    """firewalld's StrictForwardPorts; None: this firewalld has no such setting (before 2.3.0)."""
    ipv6: bool = True
    """IPv6 is on (``/proc/sys/net/ipv6/conf/all/disable_ipv6`` is 0)."""
    lan_networks: tuple[str, ...] = ()
    """The networks of this host's non-loopback interfaces, Docker's bridges excluded (``192.168.1.0/24``)."""
    tailscale: bool = False
    """A ``tailscale0`` interface exists."""
    ssh_ports: tuple[int, ...] = ()
    """The ports sshd listens on (/proc and its process), else those of sshd_config; empty: no sshd seen."""
    ssh_session: SshSession | None = None
    unpersisted: tuple[str, ...] = ()
    """Live rules (in text) that the persistent configuration does not hold: gone after a reboot (FW-004)."""
    container_ip_rules: tuple[str, ...] = ()
    """Rules that match a container's IP address: wrong after the container is recreated (FW-004)."""
    errors: tuple[str, ...] = field(default_factory=tuple)
    """One line per part that could not be read."""
