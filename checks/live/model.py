"""The live state as data: what the Docker Engine, /proc and the API's own endpoints said.

Gathered once per command (:mod:`checks.live.gather`), with timeouts, and read by
the live checks (:mod:`checks.audit.rules.live`), the planner and the faces. Nothing
here holds a secret: environment variables are kept as names and keyed digests
(:func:`value_digest`), logs as counts per finding, never as text.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass, field

from checks.live.fwmodel import FirewallState

_DIGEST_KEY = secrets.token_bytes(32)
"""Per process: a digest compares values within one run and means nothing outside it."""


def value_digest(value: str) -> str:
    """A keyed digest of an environment value: equal values, equal digests, within this process only."""
    return hmac.new(_DIGEST_KEY, value.encode("utf-8", "surrogateescape"), hashlib.sha256).hexdigest()[:32]


@dataclass(frozen=True, slots=True)
class Binding:
    """A published port of a running container."""

    host_ip: str
    """As the Engine has it: ``""`` (all interfaces, IPv6 too), ``0.0.0.0`` (IPv4 only), ``::``, ``127.0.0.1``..."""
    host_port: int
    container_port: int
    protocol: str = "tcp"

    @property
    def all_interfaces(self) -> bool:
        return self.host_ip.strip("[]") in ("", "0.0.0.0", "::")

    @property
    def loopback(self) -> bool:
        ip = self.host_ip.strip("[]")
        return ip == "::1" or ip.startswith("127.")


@dataclass(frozen=True, slots=True)
class LiveMount:
    """A mount of a running container."""

    kind: str
    """``bind``, ``volume``, ``tmpfs``..."""
    source: str
    """The host path of a bind, the volume's name for a volume."""
    target: str
    read_write: bool


@dataclass(frozen=True, slots=True)
class Container:
    """One container of the compose project, as ``docker inspect`` shows it."""

    id: str
    name: str
    service: str
    """Label ``com.docker.compose.service``."""
    status: str
    """``running``, ``restarting``, ``exited``..."""
    health: str | None
    """``healthy``, ``unhealthy``, ``starting``; None without a healthcheck."""
    restart_count: int
    started_at: str
    image: str
    """The image reference it was created from (``postgres:15-alpine``)."""
    image_id: str
    image_created: float | None
    """The image's creation time (epoch seconds); None when the Engine did not say."""
    bindings: tuple[Binding, ...] = ()
    """``HostConfig.PortBindings``: what was asked (``HostIp ""`` = all interfaces)."""
    mounts: tuple[LiveMount, ...] = ()
    env: dict[str, str] = field(default_factory=dict)
    """Environment variable name -> :func:`value_digest` of its value (never the value)."""
    networks: tuple[str, ...] = ()
    command: tuple[str, ...] = ()
    """``Config.Cmd``, each secret in it (``--requirepass PASS``, ``KEY_PASSWORD=...``, a URL's password)
    replaced by ``<secret:DIGEST>``, DIGEST being :func:`value_digest` of the secret."""
    config_hash: str | None = None
    """Label ``com.docker.compose.config-hash``."""


@dataclass(frozen=True, slots=True)
class EngineInfo:
    """The Docker Engine that answered."""

    version: str
    """Server version (``20.10.24``, ``28.2.2``)."""
    api_version: str
    endpoint: str
    """Where it answered, for messages (``unix:///var/run/docker.sock``)."""
    firewall_backend: str | None = None
    """``iptables`` or ``nftables`` (Engine 29's ``firewall-backend``); None when it did not say."""
    rootless: bool = False


@dataclass(frozen=True, slots=True)
class Listener:
    """A listening TCP socket from /proc/net/tcp or tcp6."""

    address: str
    """``0.0.0.0``, ``::``, ``127.0.0.1``, ``10.0.0.5``..."""
    port: int
    family: int
    """4 or 6."""

    @property
    def loopback(self) -> bool:
        return self.address == "::1" or self.address.startswith("127.") or self.address == "::ffff:127.0.0.1"


@dataclass(frozen=True, slots=True)
class LogFinding:
    """What a scan of one log found (counts and places, never the text)."""

    source: str
    """``docker logs api`` or a display path (``desterlib-data/logs/combined.log``)."""
    leaked_lines: tuple[int, ...] = ()
    """1-based line numbers holding a database URL with a password in it."""
    too_many_requests: dict[str, int] = field(default_factory=dict)
    """Hour (``2026-12-01T14``) -> how many 429 "Too many requests" lines."""
    server_errors: dict[str, int] = field(default_factory=dict)
    """Hour -> how many 5xx lines."""
    lines: int = 0
    """How many lines were read."""
    undated: int = 0
    """How many of the counted 429/5xx lines had no timestamp (counted under the hour of the scan)."""


@dataclass(frozen=True, slots=True)
class Probe:
    """One HTTP request to the API's admin surface on one of this host's own addresses."""

    url: str
    """``http://192.168.1.20:3001/api/docs`` (no credentials, no query)."""
    path: str
    status: int | None
    """HTTP status; None when nothing answered in time."""
    exposes: str | None = None
    """What an answer gives away: ``Swagger UI``, ``the TMDB API key``, ``the API's logs``; None when nothing."""


@dataclass(slots=True)
class LiveState:
    """Everything the live checks read. A part that could not be read has its reason instead."""

    project: str
    """The compose project name, as Compose derives it."""
    engine: EngineInfo | None = None
    engine_error: str | None = None
    """One line: why the Engine could not be asked ("permission denied on /var/run/docker.sock")."""
    containers: tuple[Container, ...] = ()
    listeners: tuple[Listener, ...] | None = None
    listeners_error: str | None = None
    addresses: tuple[str, ...] = ()
    """This host's own non-loopback addresses (the only ones probed)."""
    logs: tuple[LogFinding, ...] = ()
    logs_error: str | None = None
    probes: tuple[Probe, ...] = ()
    probes_error: str | None = None
    firewall: FirewallState | None = None
    """The host firewall (issue 12); None when it was not read (see ``firewall_error``)."""
    firewall_error: str | None = None
    built: frozenset[str] = frozenset()
    """Services the compose files build (``build:``) rather than pull."""
    gathered_at: float = 0.0

    @property
    def docker_reachable(self) -> bool:
        return self.engine is not None

    def container(self, service: str) -> Container | None:
        for c in self.containers:
            if c.service == service:
                return c
        return None
