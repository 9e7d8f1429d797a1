"""Drift: every way a running container differs from what the compose files now say.

Used by DKR-009 (:mod:`checks.audit.rules.live`) and by the planner, which recreates
exactly the services that drifted. Pure: the installation model's service and a
:class:`checks.live.model.Container` in, :class:`Difference` values out. Environment
values are compared as keyed digests (:func:`checks.live.model.value_digest`): a
difference names the variable, never its value.
"""

from __future__ import annotations

import posixpath
from dataclasses import dataclass

from checks.install.model import Service
from checks.live.model import Binding, Container, value_digest

PORTS = "ports"
ENVIRONMENT = "environment"
MOUNTS = "mounts"
IMAGE = "image"
KINDS = (PORTS, ENVIRONMENT, MOUNTS, IMAGE)


@dataclass(frozen=True, slots=True)
class Difference:
    """One way the running container differs from the files (never a secret in it)."""

    kind: str
    """``ports``, ``environment``, ``mounts`` or ``image``."""
    what: str
    """One phrase: "5432/tcp published on all interfaces, the files say 127.0.0.1",
    "POSTGRES_PASSWORD differs" (a variable's name only)."""
    name: str | None = None
    """The environment variable, container port or mount target concerned."""


def _ip(host_ip: str | None) -> str:
    ip = (host_ip or "").strip("[]")
    return ip


def _shown_ip(ip: str) -> str:
    return ip if ip else "all interfaces"


def _wanted_ports(svc: Service) -> dict[tuple[int, str], list[tuple[str, int | None]]]:
    """(container port, protocol) -> [(host ip, host port or None for "Docker picks")] as the files say."""
    out: dict[tuple[int, str], list[tuple[str, int | None]]] = {}
    for port in svc.ports:
        targets = port.target_ports
        published = port.published_ports
        for i, target in enumerate(targets):
            if published and len(published) == len(targets):
                host: int | None = published[i]
            elif published and len(published) == 1:
                host = published[0]
            else:
                host = None  # a range onto one port, or no published port: Docker picks
            out.setdefault((target, port.protocol.lower() or "tcp"), []).append((_ip(port.host_ip), host))
    return out


def _running_ports(bindings: tuple[Binding, ...]) -> dict[tuple[int, str], list[tuple[str, int]]]:
    out: dict[tuple[int, str], list[tuple[str, int]]] = {}
    for b in bindings:
        out.setdefault((b.container_port, b.protocol.lower() or "tcp"), []).append((_ip(b.host_ip), b.host_port))
    return out


def _port_text(pairs: list[tuple[str, int | None]] | list[tuple[str, int]]) -> str:
    return " and ".join(f"{_shown_ip(ip)}:{host if host else '(random)'}" for ip, host in pairs)


def _port_differences(svc: Service, c: Container) -> list[Difference]:
    wanted, running = _wanted_ports(svc), _running_ports(c.bindings)
    out: list[Difference] = []
    for key in sorted(set(wanted) | set(running)):
        port = f"{key[0]}/{key[1]}"
        want, have = wanted.get(key, []), running.get(key, [])
        if not want:
            out.append(Difference(PORTS, f"{port} published on {_port_text(have)}; the files publish it no more",
                                  port))
            continue
        if not have:
            out.append(Difference(PORTS, f"{port} not published; the files publish it on {_port_text(want)}", port))
            continue
        unmatched = list(have)
        missing = []
        for ip, host in want:
            hit = next((h for h in unmatched if h[0] == ip and (host is None or h[1] in (host, 0))), None)
            if hit is None:
                missing.append((ip, host))
            else:
                unmatched.remove(hit)
        if missing or unmatched:
            out.append(Difference(PORTS, f"{port} published on {_port_text(have)}; the files say "
                                         f"{_port_text(want)}", port))
    return out


def _env_differences(svc: Service, c: Container) -> list[Difference]:
    out: list[Difference] = []
    for name in sorted(svc.environment):
        var = svc.environment[name]
        if var.value is None:
            continue  # an unresolved ${VAR}: nothing to compare the container with
        running = c.env.get(name)
        if running is None:
            out.append(Difference(ENVIRONMENT, f"{name} is not set in the container", name))
        elif running != value_digest(var.value):
            out.append(Difference(ENVIRONMENT, f"{name} differs", name))
    return out


def _norm(path: str | None) -> str:
    return posixpath.normpath(path) if path else ""


def _mount_differences(svc: Service, c: Container) -> list[Difference]:
    out: list[Difference] = []
    running = {_norm(m.target): m for m in c.mounts}
    wanted_targets = set()
    for m in svc.mounts:
        if not m.target or m.kind not in ("bind", "volume"):
            continue
        target = _norm(m.target)
        wanted_targets.add(target)
        live = running.get(target)
        mode = "read-only" if m.read_only else "read-write"
        if live is None:
            out.append(Difference(MOUNTS, f"{target} is not mounted in the container; the files mount it {mode}",
                                  target))
            continue
        if m.kind == "bind" and m.host_path is not None and (
                live.kind != "bind" or _norm(live.source) != _norm(m.host_path)):
            out.append(Difference(MOUNTS, f"{target} comes from {live.source or live.kind}; the files say "
                                          f"{m.host_path}", target))
            continue
        if live.read_write == m.read_only:
            now = "read-write" if live.read_write else "read-only"
            out.append(Difference(MOUNTS, f"{target} is mounted {now}; the files say {mode}", target))
    for target, live in sorted(running.items()):
        # Anonymous volumes come from the image's VOLUME lines; only a bind can only come from the files.
        if live.kind == "bind" and target not in wanted_targets:
            out.append(Difference(MOUNTS, f"{target} is bound from {live.source}; the files mount it no more",
                                  target))
    return out


def normal_image(ref: str) -> str:
    """``postgres`` -> ``docker.io/library/postgres:latest``, so equal references compare equal."""
    ref = ref.strip()
    digest = ""
    if "@" in ref:
        ref, digest = ref.split("@", 1)
        digest = "@" + digest
    first, _, rest = ref.partition("/")
    if not rest:
        ref = "docker.io/library/" + ref
    elif "." not in first and ":" not in first and first != "localhost":
        ref = "docker.io/" + ref
    elif first in ("index.docker.io", "registry-1.docker.io"):
        ref = "docker.io/" + rest
    if ref.startswith("docker.io/") and ref.count("/") == 1:
        ref = "docker.io/library/" + ref.split("/", 1)[1]
    if ":" not in ref.rsplit("/", 1)[-1] and not digest:
        ref += ":latest"
    return ref + digest


def _image_differences(svc: Service, c: Container) -> list[Difference]:
    wanted = svc.image_name
    if not wanted or not c.image or svc.opt("build") is not None:
        return []  # a built service's image is whatever the build tagged: the build decides
    if normal_image(wanted) != normal_image(c.image):
        return [Difference(IMAGE, f"runs {c.image}; the files say {wanted}", "image")]
    return []


def drift(service: Service, container: Container) -> list[Difference]:
    """Every way ``container`` differs from ``service`` as the files say it: ports, environment, mounts, image."""
    return (_port_differences(service, container) + _env_differences(service, container)
            + _mount_differences(service, container) + _image_differences(service, container))


def summary(differences: list[Difference]) -> str:
    """"ports, environment" : the kinds that differ, in a fixed order."""
    kinds = {d.kind for d in differences}
    return ", ".join(k for k in KINDS if k in kinds)
