"""What a front door is, as the TLS checks and the TLS step see it."""

from __future__ import annotations

from dataclasses import dataclass, field

#: Paths of the API that no one outside may reach, even with the proxy's login, unless the user
#: opts in per key: each prefix covers the path itself and everything under or after it
#: (``/api/v1/settings/providers``, ``/api/docs.json``, ``/api/docs/swagger.json``).
PROTECTED: dict[str, str] = {
    "logs": "/api/v1/logs",
    "settings": "/api/v1/settings",
    "docs": "/api/docs",
}

KINDS = ("caddy", "nginx", "traefik", "cloudflared", "tailscale")
SERVERS = ("caddy", "nginx")
"""The front doors dester-harden can set up."""


@dataclass(frozen=True, slots=True)
class FrontDoor:
    """One way in to the API from outside: a Caddy site, an nginx server block (enabled), a Traefik
    router (compose labels), a cloudflared ingress rule, a ``tailscale serve`` handler."""

    kind: str
    """One of :data:`KINDS`."""
    file: str
    """Where it is configured (display path; ``tailscale serve status`` for tailscale)."""
    line: int | None
    hosts: tuple[str, ...] = ()
    """The names it answers to (``desterlib.example.com``; empty: any)."""
    https: bool = False
    """Serves HTTPS (a Caddy site address, ``listen 443 ssl``, a TLS router, a tunnel or tailnet)."""
    auth: bool = False
    """Asks for a login before proxying (basic auth, forward auth, Access, tailnet identity)."""
    blocked: frozenset[str] = field(default_factory=frozenset)
    """Keys of :data:`PROTECTED` it refuses."""
    unknown: bool = False
    """What it does is not known from here (a cloudflared tunnel run with a token: ingress in the dashboard)."""
    public: bool = True
    """Reachable from the internet (False for ``tailscale serve``: the tailnet only; ``funnel`` is public)."""
    opened: frozenset[str] = field(default_factory=frozenset)
    """Keys of :data:`PROTECTED` the user chose to serve behind the login (the TLS step's opt-ins, which
    dester-harden's own site files record in their header): served, but by the user's decision."""

    @property
    def accepted(self) -> frozenset[str]:
        """The opt-ins that count: only behind a login."""
        return self.opened if self.auth else frozenset()

    @property
    def open_paths(self) -> list[str]:
        """The protected paths it serves (to anyone who passes its login, or to everyone)."""
        return [p for k, p in PROTECTED.items() if k not in self.blocked]

    @property
    def unaccepted_paths(self) -> list[str]:
        """The protected paths it serves that the user did not choose to open behind its login."""
        return [p for k, p in PROTECTED.items() if k not in self.blocked and k not in self.accepted]

    def summary(self) -> str:
        """One line: what it protects and what it leaves open."""
        where = f"{self.file}:{self.line}" if self.line else self.file
        if self.unknown:
            return f"{self.kind} at {where}: its rules are not readable from here"
        parts = ["HTTPS" if self.https else "plain HTTP", "login required" if self.auth else "no login"]
        if self.open_paths:
            parts.append("serves " + ", ".join(self.open_paths))
        else:
            parts.append("refuses the logs, settings and docs")
        return f"{self.kind} at {where}: " + "; ".join(parts)


@dataclass(frozen=True, slots=True)
class Choice:
    """The front door the user asked for (the TLS step, or ``fix --domain D --proxy caddy|nginx``),
    kept in the installation's settings so a re-audit checks the same front door."""

    domain: str
    server: str
    """One of :data:`SERVERS`."""
    open_paths: frozenset[str] = field(default_factory=frozenset)
    """Keys of :data:`PROTECTED` the user opted in to serve behind the login."""
