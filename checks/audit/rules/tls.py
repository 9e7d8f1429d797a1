"""TLS-*: the reverse proxy in front of the API (internet profile only).

Looks for Caddy and nginx configurations under /etc/caddy, /etc/nginx and the
install directory (and files a caddy/nginx service in the compose file mounts)
that proxy to the API port.

Only regular files are read (a mount can expose anything: a FIFO would hang the
audit, /dev/zero never ends, /proc/self/environ holds this process's
environment), each opened without following a last-moment link and capped.
"""

from __future__ import annotations

import contextlib
import errno
import fnmatch
import glob
import os
import re
import stat
from dataclasses import dataclass, field

from checks.audit.findings import FAIL, PASS, SKIPPED, Outcome
from checks.audit.rules import Context, check
from checks.audit.rules.common import api_port, api_service
from checks.core.errors import InputError
from checks.core.textio import MAX_CONFIG_BYTES, Source, decode_source, read_capped
from checks.install.model import Where

PROTECTED = ("/api/v1/logs", "/api/v1/settings")


@dataclass(slots=True)
class Proxy:
    """A site (Caddy) or server block (nginx) that proxies to the API."""

    kind: str
    file: str
    line: int
    https: bool
    auth: bool
    blocked: set[str] = field(default_factory=set)

    def where(self, text: str) -> Where:
        return Where(self.file, self.line, text)


def _strip_comments(text: str) -> str:
    return "\n".join(re.sub(r"(^|\s)#.*$", "", line) for line in text.split("\n"))


def _blocks(text: str) -> list[tuple[str, int, str]]:
    """Top-level ``header { body }`` blocks: (header, line, body)."""
    out = []
    depth = 0
    header_start = 0
    body_start = 0
    for i, ch in enumerate(text):
        if ch == "{":
            if depth == 0:
                line_start = text.rfind("\n", 0, i) + 1
                # a header may span the previous lines until a blank/closing line
                header_start = line_start
                body_start = i + 1
            depth += 1
        elif ch == "}" and depth:
            depth -= 1
            if depth == 0:
                header = text[header_start:body_start - 1].strip()
                out.append((header, text.count("\n", 0, header_start) + 1, text[body_start:i]))
    return out


def _targets_api(upstreams: str, port: int) -> bool:
    return (re.search(rf"(^|[\s/:@])([\w.\-\[\]]*):{port}(\b|/)", upstreams) is not None
            or re.search(rf"^:{port}\b", upstreams.strip()) is not None)


def _covered(pattern: str, target: str) -> bool:
    pattern = pattern.strip().strip("\"'")
    if not pattern.startswith("/"):
        return False
    prefix = pattern.rstrip("/")
    return fnmatch.fnmatchcase(target, pattern) or fnmatch.fnmatchcase(target + "/", pattern) or (
        not any(c in pattern for c in "*?[") and (target == prefix or target.startswith(prefix + "/"))
        and prefix != "" and len(prefix) >= len("/api/v1/"))


def parse_caddy(text: str, file: str, port: int) -> list[Proxy]:
    out = []
    for header, line, body in _blocks(_strip_comments(text)):
        if not header or header.startswith("("):
            continue  # the global options block or a snippet
        if "reverse_proxy" not in body:
            continue
        upstream_lines = re.findall(r"reverse_proxy\s+([^{\n]*)", body)
        if not any(_targets_api(u, port) for u in upstream_lines):
            continue
        addrs = [a.strip() for a in re.split(r"[,\s]+", header) if a.strip()]
        https = any(not a.startswith("http://") and not re.fullmatch(r":\d+", a) or a.endswith(":443") for a in addrs)
        https = https or bool(re.search(r"^\s*tls\s", body, re.M))
        auth = bool(re.search(r"^\s*(basicauth|basic_auth|forward_auth|jwtauth|authorize|authenticate)\b", body, re.M))
        matchers: dict[str, list[str]] = {}
        for name, paths in re.findall(r"^\s*(@[\w-]+)\s+path\s+([^\n{]+)", body, re.M):
            matchers.setdefault(name, []).extend(paths.split())
        for name, paths in re.findall(r"^\s*(@[\w-]+)\s*\{[^}]*?\bpath\s+([^\n}]+)", body, re.M):
            matchers.setdefault(name, []).extend(paths.split())
        blocked = set()
        for m in re.finditer(r"^\s*(respond|abort|error)\s+([^\n{]*)", body, re.M):
            words = m.group(2).split()
            status = next((w for w in words if w.isdigit()), "")
            if m.group(1) == "respond" and status and not status.startswith(("4", "5")):
                continue
            pats: list[str] = []
            for w in words:
                pats += matchers.get(w, []) if w.startswith("@") else ([w] if w.startswith("/") else [])
            blocked |= {t for t in PROTECTED for p in pats if _covered(p, t)}
        for m in re.finditer(r"^\s*(handle|route|handle_path)\s+(\S+)\s*\{([^}]*)\}", body, re.M):
            if re.search(r"\b(respond\s+\S*\s*4\d\d|respond\s+4\d\d|abort|error\s+\S*\s*4\d\d)", m.group(3)):
                pats = matchers.get(m.group(2), []) if m.group(2).startswith("@") else [m.group(2)]
                blocked |= {t for t in PROTECTED for p in pats if _covered(p, t)}
        out.append(Proxy("caddy", file, line, https, auth, blocked))
    return out


def parse_nginx(text: str, file: str, port: int) -> list[Proxy]:
    text = _strip_comments(text)
    out = []
    servers = []
    for header, line, body in _blocks(text):
        if header == "server":
            servers.append((line, body))
        elif header == "http":
            for h2, l2, b2 in _blocks(body):
                if h2 == "server":
                    servers.append((line + l2 - 1, b2))
    upstreams = {name: ups for name, ups in re.findall(r"upstream\s+([\w.\-]+)\s*\{([^}]*)\}", text)}
    for line, body in servers:
        passes = re.findall(r"proxy_pass\s+https?://([^;\s]+)", body)
        def hits(target: str) -> bool:
            host = target.split("/", 1)[0]
            if host in upstreams:
                return _targets_api(upstreams[host], port)
            return _targets_api(" " + host, port)
        if not any(hits(p) for p in passes):
            continue
        listens = re.findall(r"^\s*listen\s+([^;]+);", body, re.M)
        https = any(re.search(r"\bssl\b|\bquic\b", line) or re.search(r"(^|:)443\b", line.split()[0])
                    for line in listens)
        auth = bool(re.search(r"^\s*auth_basic\s+(?!off\b)[^;]+;", body, re.M)
                    or re.search(r"^\s*auth_request\s", body, re.M))
        blocked = set()
        for m in re.finditer(r"location\s+(=|~\*?|\^~)?\s*([^\s{]+)\s*\{([^}]*)\}", body):
            modifier, pattern, inner = m.group(1) or "", m.group(2), m.group(3)
            if not re.search(r"\bdeny\s+all\s*;|\breturn\s+(4\d\d|444)\b", inner):
                continue
            for target in PROTECTED:
                if modifier.startswith("~"):
                    flags = re.I if modifier == "~*" else 0
                    try:
                        if re.search(pattern.strip("\"'"), target, flags):
                            blocked.add(target)
                    except re.error:
                        pass
                elif modifier == "=":
                    if pattern == target:
                        blocked.add(target)
                elif target.startswith(pattern.rstrip("/")) and len(pattern.rstrip("/")) > len("/api/v1"):
                    blocked.add(target)
        out.append(Proxy("nginx", file, line, https, auth, blocked))
    return out


def _candidate_files(ctx: Context) -> list[tuple[str, str]]:
    host = ctx.inst.host_root
    root = ctx.inst.root
    files: list[tuple[str, str]] = []
    for pat in ("etc/caddy/Caddyfile", "etc/caddy/*.caddy", "etc/caddy/conf.d/*", "etc/caddy/sites-enabled/*"):
        files += [("caddy", p) for p in glob.glob(os.path.join(host, pat))]
    for pat in ("etc/nginx/nginx.conf", "etc/nginx/sites-enabled/*", "etc/nginx/conf.d/*.conf"):
        files += [("nginx", p) for p in glob.glob(os.path.join(host, pat))]
    for pat in ("Caddyfile", "*/Caddyfile", "caddy/*"):
        files += [("caddy", p) for p in glob.glob(os.path.join(root, pat))]
    for pat in ("nginx.conf", "nginx/*.conf", "nginx/conf.d/*.conf", "*.conf"):
        files += [("nginx", p) for p in glob.glob(os.path.join(root, pat))]
    for svc in ctx.inst.services:
        repo = svc.image_repo
        kind = "caddy" if repo.startswith("caddy") else "nginx" if repo.startswith(("nginx", "openresty")) else None
        if kind is None:
            continue
        for m in svc.mounts:
            if m.host_path and _in_pseudo(os.path.realpath(m.host_path), host):
                continue  # /proc mounted into the proxy: thousands of entries, none of them configuration
            if m.host_path and os.path.isdir(m.host_path):
                files += [(kind, p) for p in glob.glob(os.path.join(m.host_path, "*"))]
            elif m.host_path:
                files.append((kind, m.host_path))
    seen = set()
    out = []
    for kind, path in files:
        real = _regular_config(path, host)
        if real is not None and real not in seen:
            seen.add(real)
            out.append((kind, path))
    return out


#: Kernel and device filesystems: their "files" are not configuration, and
#: reading some of them blocks, never ends, or returns this process's secrets.
_PSEUDO = ("proc", "sys", "dev")


def _pseudo_devices() -> set[int]:
    out = set()
    for top in ("/proc", "/sys"):
        with contextlib.suppress(OSError):
            out.add(os.stat(top).st_dev)
    return out


def _in_pseudo(real: str, host_root: str) -> bool:
    for top in _PSEUDO:
        for base in {"/", host_root}:
            d = os.path.join(base, top)
            if real == d or real.startswith(d + os.sep):
                return True
    return False


def _regular_config(path: str, host_root: str) -> str | None:
    """The real path of ``path`` if it is a regular file outside /proc, /sys and /dev, else None."""
    real = os.path.realpath(path)
    if _in_pseudo(real, host_root):
        return None
    try:
        st = os.lstat(real)
    except OSError:
        return None
    if not stat.S_ISREG(st.st_mode) or st.st_dev in _pseudo_devices():
        return None
    return real


def read_config(path: str, display: str, host_root: str = "/") -> Source | None:
    """A proxy configuration file's text; None when it is not a regular file
    (skipped, not an error); InputError when it cannot be read or is too big."""
    real = _regular_config(path, host_root)
    if real is None:
        return None
    flags = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_NOCTTY | os.O_CLOEXEC
    try:
        fd = os.open(real, flags)
    except OSError as exc:
        if exc.errno in (errno.ELOOP, errno.ENOENT, errno.ENXIO):
            return None  # replaced by a link (or gone, or a socket) since it was looked at
        raise InputError(f"cannot open proxy configuration: {os.strerror(exc.errno or errno.EIO)}", display) from None
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode) or st.st_dev in _pseudo_devices():
            return None  # swapped for a FIFO or a device since it was looked at
        if st.st_size > MAX_CONFIG_BYTES:
            raise InputError(f"proxy configuration is over the {MAX_CONFIG_BYTES // 1048576} MiB limit", display)
        data = read_capped(fd, MAX_CONFIG_BYTES)
        if data is None:  # grew while we read it
            raise InputError(f"proxy configuration is over the {MAX_CONFIG_BYTES // 1048576} MiB limit", display)
    except OSError as exc:
        raise InputError(f"cannot read proxy configuration: {os.strerror(exc.errno or errno.EIO)}", display) from None
    finally:
        os.close(fd)
    return decode_source(real, display, "proxy configuration", data, st)


def find_proxies(ctx: Context) -> tuple[list[Proxy], list[str]]:
    """Proxies to the API, and files that could not be read."""
    svc = api_service(ctx.inst)
    port = api_port(svc) if svc else 3001
    proxies: list[Proxy] = []
    unreadable: list[str] = []
    planned = ctx.inst.planned
    candidates = _candidate_files(ctx)
    seen = {os.path.abspath(p) for _, p in candidates}
    for path in planned:  # a site file the planner is about to write (the fix's own re-audit)
        if path not in seen and path.startswith(os.path.join(ctx.inst.host_root, "etc/caddy/")):
            candidates.append(("caddy", path))
        elif path not in seen and path.startswith(os.path.join(ctx.inst.host_root, "etc/nginx/")):
            candidates.append(("nginx", path))
    for kind, path in candidates:
        display = ctx.inst.display(path)
        if os.path.abspath(path) in planned:
            if path.endswith((".htpasswd", ".crt", ".key")):
                continue
            proxies += (parse_caddy if kind == "caddy" else parse_nginx)(
                planned[os.path.abspath(path)].decode("utf-8", "replace"), display, port)
            continue
        try:
            src = read_config(path, display, ctx.inst.host_root)
        except InputError:
            unreadable.append(display)
            continue
        if src is None:
            continue
        parse = parse_caddy if kind == "caddy" else parse_nginx
        proxies += parse(src.text, display, port)
    return proxies, unreadable


def _not_internet(ctx: Context) -> Outcome | None:
    if ctx.profile != "internet":
        return Outcome(SKIPPED, reason=f"applies to the internet profile only (profile: {ctx.profile})")
    return None


@check("TLS-001")
def tls_001(ctx: Context) -> Outcome:
    if (o := _not_internet(ctx)) is not None:
        return o
    proxies, unreadable = find_proxies(ctx)
    https = [p for p in proxies if p.https]
    if https:
        return Outcome(PASS, [ctx.ev(p.where(f"{p.kind} site with HTTPS"), None, None) for p in https])
    ev = [ctx.ev(p.where(f"{p.kind} proxies to the API without HTTPS"), None, "plain HTTP") for p in proxies]
    reason = "no Caddy or nginx configuration proxies to the API" if not proxies else "the proxy serves plain HTTP"
    if unreadable:
        reason += " (could not read: " + ", ".join(unreadable) + ")"
    return Outcome(FAIL, ev, reason)


@check("TLS-002")
def tls_002(ctx: Context) -> Outcome:
    if (o := _not_internet(ctx)) is not None:
        return o
    proxies, _ = find_proxies(ctx)
    if not proxies:
        return Outcome(SKIPPED, reason="no reverse proxy to the API found (see TLS-001)")
    ev = [ctx.ev(p.where(f"{p.kind} proxy to the API"), None, "no basic_auth/auth_basic or forward auth")
          for p in proxies if not p.auth]
    return Outcome(FAIL if ev else PASS, ev)


@check("TLS-003")
def tls_003(ctx: Context) -> Outcome:
    if (o := _not_internet(ctx)) is not None:
        return o
    proxies, _ = find_proxies(ctx)
    if not proxies:
        return Outcome(SKIPPED, reason="no reverse proxy to the API found (see TLS-001)")
    ev = []
    for p in proxies:
        open_paths = [t for t in PROTECTED if t not in p.blocked]
        if open_paths:
            ev.append(ctx.ev(p.where(f"{p.kind} proxy to the API"), None, "serves " + " and ".join(open_paths)))
    return Outcome(FAIL if ev else PASS, ev)
