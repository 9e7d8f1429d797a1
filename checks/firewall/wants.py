"""What the chosen exposure profile wants of the host firewall, before any backend's syntax.

:func:`wanted` is the one source of the rules every backend writes (ufw, firewalld, nft), so
the faces can show them in plain words and the guard (FW-003) can check them once.
"""

from __future__ import annotations

from dataclasses import dataclass, field

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
