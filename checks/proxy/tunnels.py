"""Front doors that are not a web server's configuration file: Traefik labels in compose,
cloudflared tunnels (a config file, or a compose service run with a token), ``tailscale serve``."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator

from checks.core.errors import InputError
from checks.core.textio import Source
from checks.core.yamlpos import Node, parse_yaml
from checks.install.model import Service
from checks.proxy.confread import PROBES
from checks.proxy.model import PROTECTED, FrontDoor

# -- Traefik ---------------------------------------------------------------------------------------

_AUTH_MIDDLEWARES = ("basicauth", "digestauth", "forwardauth")
_ALLOW_MIDDLEWARES = ("ipallowlist", "ipwhitelist")
TRAEFIK_NOTE = ("Traefik cannot refuse a path without a plugin: the protected paths count as open unless a router "
                "for them is limited by an IP allowlist")


def labels(svc: Service) -> dict[str, tuple[str, int]]:
    """A service's labels (list ``k=v`` or mapping form): key -> (value, line)."""
    node = svc.opt("labels")
    out: dict[str, tuple[str, int]] = {}
    if node is None:
        return out
    if node.is_seq():
        for item in node.value:
            if isinstance(item.value, str) and "=" in item.value:
                k, v = item.value.split("=", 1)
                out[k.strip()] = (v.strip(), item.line)
            elif isinstance(item.value, str):
                out[item.value.strip()] = ("", item.line)
    elif node.is_map():
        for key, item in node.items():
            value = item.value
            text = ("true" if value else "false") if isinstance(value, bool) else "" if value is None else str(value)
            out[key] = (text, item.line)
    return out


def _truthy(text: str) -> bool:
    return text.strip().strip("\"'").lower() in ("true", "1", "yes", "on")


def _used(opts: dict[str, tuple[str, int]]) -> list[str]:
    """The middlewares a router names (``login``, ``login@docker``, ``auth@file``)."""
    return [u.strip() for u in opts.get("middlewares", ("", 0))[0].split(",") if u.strip()]


def _kinds(used: list[str], middlewares: dict[str, set[str]]) -> set[str]:
    """What the middlewares defined in these labels do (``basicauth``, ``ipallowlist``)."""
    return {kind for u in used if "@" not in u or u.endswith("@docker")
            for kind in middlewares.get(u.split("@", 1)[0], ())}


def traefik_doors(svc: Service, file: str, port: int, is_api: bool) -> tuple[list[FrontDoor], list[str]]:
    """The Traefik routers of ``svc``'s labels when they lead to the API, and notes."""
    lab = labels(svc)
    if not any(k.startswith("traefik.http.") for k in lab):
        return [], []
    lb_ports = {v for k, (v, _) in lab.items()
                if re.fullmatch(r"traefik\.http\.services\.[^.]+\.loadbalancer\.server\.port", k)}
    if not (is_api or str(port) in lb_ports):
        return [], []
    if "traefik.enable" in lab and not _truthy(lab["traefik.enable"][0]):
        return [], []
    routers: dict[str, dict[str, tuple[str, int]]] = {}
    middlewares: dict[str, set[str]] = {}
    for k, (v, line) in lab.items():
        m = re.fullmatch(r"traefik\.http\.routers\.([^.]+)\.(.+)", k)
        if m:
            routers.setdefault(m.group(1), {})[m.group(2).lower()] = (v, line)
        m = re.fullmatch(r"traefik\.http\.middlewares\.([^.]+)\.([^.]+)(\..*)?", k)
        if m:
            middlewares.setdefault(m.group(1), set()).add(m.group(2).lower())
    doors = []
    notes = [f"{file}: {TRAEFIK_NOTE}"]
    allow_blocked: set[str] = set()
    main: list[tuple[str, dict[str, tuple[str, int]]]] = []
    for name, opts in routers.items():
        kinds = _kinds(_used(opts), middlewares)
        rule = opts.get("rule", ("", 0))[0]
        paths = re.findall(r"Path(?:Prefix)?\(\s*`([^`]*)`", rule)
        if paths and kinds & set(_ALLOW_MIDDLEWARES):
            # A router only for protected paths, open to listed addresses only: outsiders are refused.
            allow_blocked |= {k for k, probes in PROBES.items()
                              if all(any(p.startswith(x) for x in paths) for p in probes)}
            continue
        main.append((name, opts))
    for name, opts in main:
        used = _used(opts)
        elsewhere = [u for u in used if "@" in u and not u.endswith("@docker")]
        kinds = _kinds(used, middlewares)
        rule, line = opts.get("rule", ("", svc.where.line or 0))
        hosts = tuple(re.findall(r"Host\(\s*`([^`]*)`", rule))
        entry = opts.get("entrypoints", ("", 0))[0].lower()
        https = ("websecure" in entry or "https" in entry or "443" in entry
                 or _truthy(opts.get("tls", ("", 0))[0]) or any(k.startswith("tls.") for k in opts))
        auth = bool(kinds & set(_AUTH_MIDDLEWARES))
        blocked = allow_blocked
        if kinds & set(_ALLOW_MIDDLEWARES):
            blocked = set(PROTECTED)  # the whole router is limited to listed addresses
        unknown = bool(elsewhere) and not auth
        if unknown:
            notes.append(f"{file}:{line}: router {name} uses {', '.join(elsewhere)}, defined outside the compose file")
        doors.append(FrontDoor("traefik", file, line or None, hosts, https, auth, frozenset(blocked), unknown))
    return doors, notes


# -- cloudflared -----------------------------------------------------------------------------------

def is_cloudflared(svc: Service) -> bool:
    return svc.image_repo == "cloudflared" or svc.image_name.startswith("cloudflare/cloudflared")


def _words(node: Node | None) -> list[str]:
    if node is None:
        return []
    if node.is_seq():
        return [str(i.value) for i in node.value if i.is_scalar() and i.value is not None]
    if node.is_scalar() and node.value is not None:
        return str(node.value).split()
    return []


def token_tunnel(svc: Service, file: str) -> tuple[FrontDoor, str] | None:
    """A cloudflared service run with a token: its ingress lives in the Cloudflare dashboard."""
    words = _words(svc.opt("command")) + _words(svc.opt("entrypoint"))
    token = any(w == "--token" or w.startswith("--token=") for w in words) or "TUNNEL_TOKEN" in svc.environment
    if not (is_cloudflared(svc) and token and ("tunnel" in words or "TUNNEL_TOKEN" in svc.environment)):
        return None
    line = svc.where.line
    door = FrontDoor("cloudflared", file, line, (), True, False, frozenset(), unknown=True)
    note = (f"{file}:{line}: the cloudflared service {svc.name} runs a tunnel with a token: its ingress rules and "
            "any Access policy are kept in the Cloudflare dashboard, not readable from here")
    return door, note


def _local_api(service: str, port: int, names: set[str]) -> bool:
    m = re.fullmatch(r"https?://(\[[^\]]+\]|[^:/]+):(\d+)(/.*)?", service.strip())
    return m is not None and int(m.group(2)) == port and m.group(1).strip("[]") in (
        {"localhost", "127.0.0.1", "::1", "0.0.0.0"} | names)


def _access(node: Node | None) -> bool:
    origin = node.get("originRequest") if node is not None else None
    access = origin.get("access") if origin is not None else None
    required = access.get("required") if access is not None else None
    return required is not None and required.value is True


def cloudflared_doors(src: Source, port: int, names: set[str]) -> list[FrontDoor]:
    """The ingress rules of a cloudflared config that lead to the API (``names``: compose hosts)."""
    try:
        root = parse_yaml(src.text, src.display)
    except InputError:
        return []
    ingress = root.get("ingress") if root is not None else None
    if ingress is None or not ingress.is_seq():
        return []
    out = []
    for rule in ingress.value:
        service = rule.get("service")
        if service is None or not isinstance(service.value, str) or not _local_api(service.value, port, names):
            continue
        host = rule.get("hostname")
        hosts = (str(host.value),) if host is not None and host.value else ()
        path = rule.get("path")
        blocked: frozenset[str] = frozenset()
        if path is not None and isinstance(path.value, str):
            blocked = _path_rule_blocked(path.value)
        auth = _access(rule) or _access(root)
        # The tunnel terminates TLS at Cloudflare: the hostname is HTTPS whatever the origin speaks.
        out.append(FrontDoor("cloudflared", src.display, rule.line, hosts, True, auth, blocked))
    return out


def _path_rule_blocked(regex: str) -> frozenset[str]:
    """A rule limited to a path regex serves only what it matches."""
    try:
        pat = re.compile(regex)
    except re.error:
        return frozenset()
    return frozenset(k for k, probes in PROBES.items() if not any(pat.search(p) for p in probes))


# -- tailscale serve -------------------------------------------------------------------------------

def _handlers(status: dict[str, object]) -> Iterator[tuple[str, str, str]]:
    web = status.get("Web")
    if not isinstance(web, dict):
        return
    for hostport, conf in web.items():
        handlers = conf.get("Handlers") if isinstance(conf, dict) else None
        if not isinstance(handlers, dict):
            continue
        for mount, h in handlers.items():
            proxy = h.get("Proxy") if isinstance(h, dict) else None
            if isinstance(proxy, str):
                yield str(hostport), str(mount), proxy


def tailscale_doors(output: str, port: int) -> list[FrontDoor]:
    """The ``tailscale serve status --json`` handlers that proxy to the API."""
    try:
        status = json.loads(output)
    except ValueError:
        return []
    if not isinstance(status, dict):
        return []
    funnel = status.get("AllowFunnel")
    funnel = funnel if isinstance(funnel, dict) else {}
    tcp = status.get("TCP")
    tcp = tcp if isinstance(tcp, dict) else {}
    mounts: dict[str, list[str]] = {}
    for hostport, mount, proxy in _handlers(status):
        target = proxy if "://" in proxy else "http://" + proxy
        if re.fullmatch(r"(https?|https\+insecure)://(localhost|127\.0\.0\.1|\[::1\]):" + str(port) + r"(/.*)?",
                        target):
            mounts.setdefault(hostport, []).append(mount)
    out = []
    for hostport, paths in mounts.items():
        host, _, hport = hostport.rpartition(":")
        conf = tcp.get(hport)
        https = hport == "443" or (isinstance(conf, dict) and conf.get("HTTPS") is True)
        public = funnel.get(hostport) is True
        blocked = frozenset(k for k, probes in PROBES.items()
                            if not any(p.startswith(m.rstrip("/") + "/") or p == m.rstrip("/") or m == "/"
                                       for p in probes for m in paths))
        # On the tailnet only tailnet members reach it (their identity is the login); a funnel is public.
        out.append(FrontDoor("tailscale", "tailscale serve status", None, (host,) if host else (), https,
                             auth=not public, blocked=blocked, public=public))
    return out
