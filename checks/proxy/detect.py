"""The front doors that exist: what each protects and what it leaves open.

:func:`front_doors` reads (never writes) the system configuration under the
installation's ``host_root`` (``--root``), the installation directory and the
compose model:

- Caddy: ``/etc/caddy/Caddyfile`` and what it imports, Caddyfiles in the install
  directory, and what a caddy compose service mounts;
- nginx: ``/etc/nginx/nginx.conf`` and what it includes (a site only in
  ``sites-available`` is not loaded), nginx files in the install directory and
  what an nginx service mounts;
- Traefik: router labels on the API service (or a service whose load balancer
  port is the API's);
- cloudflared: ``config.yml`` in ``/etc/cloudflared``, the install owner's
  ``~/.cloudflared`` and the install directory, and a compose service running a
  tunnel with a token (its rules are in the dashboard: ``unknown``);
- ``tailscale serve``: only when the caller passes a runner (the tailscale profile).

Files are read through :mod:`checks.proxy.confread`: regular files only, no link
followed at the last moment, capped, nothing from /proc, /sys or /dev.
"""

from __future__ import annotations

import glob
import itertools
import os
import posixpath
import re
import shutil
import subprocess
from collections.abc import Callable
from dataclasses import dataclass, field, replace

from checks.core.sysroot import SystemRoot
from checks.install.discovery import api_port, find_api_service
from checks.install.model import Installation, Service
from checks.proxy.caddy import caddy_doors
from checks.proxy.confread import MAX_GLOB, Reader, in_pseudo, read_config
from checks.proxy.model import PROTECTED, FrontDoor
from checks.proxy.nginx import nginx_doors
from checks.proxy.tunnels import cloudflared_doors, is_cloudflared, tailscale_doors, token_tunnel, traefik_doors

__all__ = ["Detected", "front_doors", "read_config", "tailscale_status"]

#: ``tailscale serve status --json`` must answer within this (a hung daemon never stalls the audit).
TAILSCALE_TIMEOUT = 2.0


@dataclass(slots=True)
class Detected:
    """What :func:`front_doors` found."""

    doors: list[FrontDoor] = field(default_factory=list)
    unreadable: list[str] = field(default_factory=list)
    """Configuration files that exist but could not be read (display paths)."""
    notes: list[str] = field(default_factory=list)
    """What was not followed or cannot be judged from here, one line each."""


def tailscale_status() -> str | None:
    """``tailscale serve status --json`` of this machine, or None (no tailscale on PATH, no answer)."""
    binary = shutil.which("tailscale")
    if binary is None:
        return None
    try:
        res = subprocess.run([binary, "serve", "status", "--json"], capture_output=True, text=True,
                             timeout=TAILSCALE_TIMEOUT, check=False, stdin=subprocess.DEVNULL)
    except (OSError, subprocess.SubprocessError):
        return None
    return res.stdout if res.returncode == 0 else None


def _mount_resolver(svc: Service, conf_dir: str) -> Callable[[str, str], str | None]:
    """Container paths of ``svc`` -> host paths through its bind mounts (longest target first)."""
    binds = sorted(((m.target.rstrip("/") or "/", m.host_path) for m in svc.mounts if m.target and m.host_path),
                   key=lambda b: -len(b[0]))

    def resolve(pattern: str, here: str) -> str | None:
        if not pattern.startswith("/"):
            return os.path.join(here, pattern)
        for target, host in binds:
            if pattern == target or pattern.startswith(target + "/"):
                return host + pattern[len(target):]
        return None
    return resolve


def _owner_home(inst: Installation, sysroot: SystemRoot) -> str | None:
    """The install owner's home, from the passwd file under ``--root`` (or the system's)."""
    if sysroot.real:
        import pwd

        try:
            return pwd.getpwuid(inst.root_uid).pw_dir
        except KeyError:
            return None
    src = read_config(sysroot.path("/etc/passwd"), "/etc/passwd", inst.host_root)
    if src is None:
        return None
    for line in src.text.splitlines():
        parts = line.split(":")
        if len(parts) >= 6 and parts[2] == str(inst.root_uid):
            return sysroot.path(parts[5]) if parts[5].startswith("/") else None
    return None


def front_doors(inst: Installation, *, tailscale: Callable[[], str | None] | None = None) -> Detected:
    """Every front door to the API found for ``inst``; ``tailscale`` runs ``tailscale serve status
    --json`` (:func:`tailscale_status`; None: not asked, as outside the tailscale profile)."""
    sysroot = SystemRoot(inst.host_root)
    reader = Reader(inst.host_root, inst.display, planned=inst.planned, planned_links=inst.planned_links)
    svc = find_api_service(inst)
    port = api_port(svc) if svc else 3001
    doors: list[FrontDoor] = []

    def system(pattern: str, here: str) -> str | None:
        # Normalised as a system path first: "/../x" is "/x"; a relative "../../x" that leaves
        # --root DIR names nothing of the copy.
        if pattern.startswith("/"):
            norm = posixpath.normpath(pattern)
            if not sysroot.real and os.path.commonpath([norm, sysroot.root]) == sysroot.root:
                # Already a path under --root DIR (a tree whose files name DIR/etc/..., as a server
                # running from that copy needs them to): not moved under DIR twice.
                return norm
            return sysroot.path(norm)
        joined = os.path.normpath(os.path.join(here, pattern))
        if not sysroot.real and os.path.commonpath([joined, sysroot.root]) != sysroot.root:
            return None
        return joined

    def local(pattern: str, here: str) -> str | None:
        # An absolute path in a file of the install directory is a container's or another
        # machine's: only what a service mounts says where it is (see _compose_doors).
        return None if pattern.startswith("/") else os.path.join(here, pattern)

    # What compose services mount first: their container paths resolve through the mounts, so their
    # reading of a file the install directory also holds is the one kept.
    doors += _compose_doors(inst, reader, svc, port)
    # Caddy: the main Caddyfile (and imports), then Caddyfiles lying in the install directory.
    root = inst.root
    doors += caddy_doors(reader, [sysroot.path("/etc/caddy/Caddyfile")], port, system)
    doors += caddy_doors(reader, _globbed(root, ("Caddyfile", "*/Caddyfile", "caddy/*")), port, local)
    # nginx: nginx.conf and its includes; without one, Debian's own includes.
    conf_dir = sysroot.path("/etc/nginx")
    main = os.path.join(conf_dir, "nginx.conf")
    if os.path.lexists(main):
        entries = [main]
    else:
        entries = _globbed(conf_dir, ("conf.d/*.conf", "sites-enabled/*"))
        if entries:
            reader.notes.append(f"{inst.display(main)} not found: read conf.d/*.conf and sites-enabled/* "
                                "as Debian's nginx.conf includes them")
    doors += nginx_doors(reader, entries, conf_dir, port, system)
    doors += nginx_doors(reader, _globbed(root, ("nginx.conf", "nginx/*.conf", "nginx/conf.d/*.conf", "*.conf")),
                         root, port, local)
    doors += _cloudflared_files(inst, sysroot, reader, port)
    if tailscale is not None:
        output = tailscale()
        if output:
            doors += tailscale_doors(output, port)
    return Detected(_unique(_with_opt_ins(doors, reader)), reader.unreadable, reader.notes)


#: The header line of dester-harden's own site files that records the user's opt-ins
#: (checks.proxy.generate): "...; opened by the user: /api/docs, /api/v1/logs."
_OPENED = re.compile(r"^#.*\bopened by the user: ([^\n]*?)\.?$", re.M)


def _with_opt_ins(doors: list[FrontDoor], reader: Reader) -> list[FrontDoor]:
    """Doors of dester-harden's own site files, with the paths the user chose to open behind the login."""
    texts = {src.display: src.text for src in reader.sources() if src is not None}
    out = []
    for d in doors:
        head = texts.get(d.file, "")[:800]
        m = _OPENED.search(head) if "generated by dester-harden" in head.lower() else None
        if m is not None and d.kind in ("caddy", "nginx"):
            paths = {p.strip() for p in m.group(1).split(",")}
            d = replace(d, opened=frozenset(k for k, p in PROTECTED.items() if p in paths))
        out.append(d)
    return out


def _globbed(base: str, patterns: tuple[str, ...]) -> list[str]:
    out: list[str] = []
    for pat in patterns:
        out += sorted(glob.glob(os.path.join(base, pat)))
    return out


def _compose_doors(inst: Installation, reader: Reader, api: Service | None, port: int) -> list[FrontDoor]:
    doors: list[FrontDoor] = []
    names = {s.name for s in inst.services}
    for svc in inst.services:
        file = inst.display(svc.compose_file.path)
        found, notes = traefik_doors(svc, file, port, svc is api)
        doors += found
        reader.notes.extend(notes)
        repo = svc.image_repo
        kind = ("caddy" if repo.startswith("caddy") else "nginx" if repo.startswith(("nginx", "openresty"))
                else "cloudflared" if is_cloudflared(svc) else None)
        if kind == "cloudflared":
            token = token_tunnel(svc, file)
            if token is not None:
                doors.append(token[0])
                reader.notes.append(token[1])
        if kind is None:
            continue
        files = _mounted_files(svc, inst.host_root)
        if kind == "caddy":
            main = [f for t, f in files if t == "/etc/caddy/Caddyfile"]
            doors += caddy_doors(reader, main + [f for _, f in files], port, _mount_resolver(svc, "/etc/caddy"))
        elif kind == "nginx":
            conf = [f for t, f in files if t == "/etc/nginx/nginx.conf"]
            entries = conf or [f for _, f in files]
            doors += nginx_doors(reader, entries, _host_of(svc, "/etc/nginx") or inst.root, port,
                                 _mount_resolver(svc, "/etc/nginx"))
        else:
            for _, f in files:
                src = reader.read(f)
                if src is not None:
                    doors += cloudflared_doors(src, port, names)
    return doors


def _host_of(svc: Service, container_dir: str) -> str | None:
    resolve = _mount_resolver(svc, container_dir)
    return resolve(container_dir, "/")


def _mounted_files(svc: Service, host_root: str) -> list[tuple[str, str]]:
    """(container path, host path) of the regular files a service's bind mounts provide."""
    out: list[tuple[str, str]] = []
    for m in svc.mounts:
        if not m.host_path or in_pseudo(os.path.realpath(m.host_path), host_root):
            continue  # /proc mounted into the proxy: thousands of entries, none of them configuration
        target = (m.target or "").rstrip("/")
        if os.path.isdir(m.host_path):
            # Capped: a proxy that mounts a data directory must not have every file in it read.
            hits = sorted(itertools.islice(glob.iglob(os.path.join(m.host_path, "*")), MAX_GLOB))
            out += [(f"{target}/{os.path.basename(p)}", p) for p in hits]
        else:
            out.append((target, m.host_path))
    return out


def _cloudflared_files(inst: Installation, sysroot: SystemRoot, reader: Reader, port: int) -> list[FrontDoor]:
    dirs = [sysroot.path("/etc/cloudflared")]
    home = _owner_home(inst, sysroot)
    if home:
        dirs.append(os.path.join(home, ".cloudflared"))
    dirs += [inst.root, os.path.join(inst.root, "cloudflared")]
    names = {s.name for s in inst.services}
    doors: list[FrontDoor] = []
    for d in dirs:
        for name in ("config.yml", "config.yaml"):
            path = os.path.join(d, name)
            if not os.path.lexists(path):
                continue
            src = reader.read(path)
            if src is not None:
                doors += cloudflared_doors(src, port, names)
    return doors


def _unique(doors: list[FrontDoor]) -> list[FrontDoor]:
    seen: set[tuple[str, str, int | None]] = set()
    out = []
    for d in doors:
        key = (d.kind, d.file, d.line)
        if key not in seen:
            seen.add(key)
            out.append(d)
    return out
