"""The live checks: what really runs, judged from a :class:`checks.live.model.LiveState`.

Pure functions over the installation model and the live state the audit was given
(:attr:`checks.audit.rules.Context.live`); no Docker here. A part of the live state
that could not be read makes its checks ``skipped`` with that part's one-line reason,
never ``pass``; no live state at all: "live checks not run". NET-006 also runs from
/proc/net alone, without the Docker Engine.
"""

from __future__ import annotations

import re
from urllib.parse import urlsplit

from checks.audit.findings import FAIL, PASS, SKIPPED, Evidence, Outcome
from checks.audit.rules import Context, check
from checks.audit.rules.common import DB_PORTS, is_db_image, is_db_service
from checks.install.model import Port, Service
from checks.live.drift import drift, summary
from checks.live.model import Binding, Container, LiveState

NOT_RUN = "live checks not run"
IMAGE_MAX_AGE_DAYS = 7
#: Engines before this let LAN hosts reach ports published to 127.0.0.1 (moby/moby#45610).
LOOPBACK_TIGHT_FROM = (28, 0, 0)
#: Per hour, in one log: at or above these a burst is a finding.
TOO_MANY_REQUESTS_PER_HOUR = 50
SERVER_ERRORS_PER_HOUR = 20
SCANNER_PORT = 8080
_LEAK_LINES_SHOWN = 10


def _engine_needed(live: LiveState) -> Outcome | None:
    """Skipped with the Engine's own reason when it did not answer."""
    if live.engine is None:
        return Outcome(SKIPPED, reason=live.engine_error or "the Docker Engine did not answer")
    return None


def _no_containers(live: LiveState) -> Outcome:
    return Outcome(SKIPPED, reason=f"no container of compose project {live.project!r} is running "
                                   "(nothing to compare with the files)")


def _running(ctx: Context) -> LiveState | Outcome:
    """The live state of a check that reads the running containers, or why that check is skipped."""
    live = ctx.live
    if live is None:
        return Outcome(SKIPPED, reason=NOT_RUN)
    if (skipped := _engine_needed(live)) is not None:
        return skipped
    if not live.containers:
        return _no_containers(live)
    return live


def _is_scanner(svc: Service) -> bool:
    return "scanner" in svc.name.lower() or "scanner" in svc.image_repo


def _db_container(ctx: Context, c: Container) -> bool:
    svc = ctx.inst.service(c.service)
    return (svc is not None and is_db_service(svc)) or is_db_image(c.image)


def _sensitive_ports(ctx: Context, live: LiveState) -> dict[int, str | None]:
    """Host port -> the service publishing it (None when only the port number says database)."""
    ports: dict[int, str | None] = dict.fromkeys(DB_PORTS)
    for svc in ctx.inst.services:
        if is_db_service(svc):
            for port in svc.ports:
                for p in port.published_ports:
                    ports[p] = svc.name
        if _is_scanner(svc):
            for port in svc.ports:
                if SCANNER_PORT in port.target_ports:
                    for p in port.published_ports or [SCANNER_PORT]:
                        ports[p] = svc.name
    for c in live.containers:
        db = _db_container(ctx, c)
        for b in c.bindings:
            if db or b.container_port in DB_PORTS or ports.get(b.host_port, "") is None:
                ports[b.host_port] = c.service
    return ports


def _addr(ip: str, port: int) -> str:
    return f"[{ip}]:{port}" if ":" in ip else f"{ip}:{port}"


def _binding_addrs(b: Binding) -> list[str]:
    ip = b.host_ip.strip("[]")
    if ip == "":
        return [_addr("0.0.0.0", b.host_port), _addr("::", b.host_port)]
    return [_addr(ip, b.host_port)]


def _port_where(ctx: Context, service: str | None, host_port: int) -> Port | None:
    svc = ctx.inst.service(service) if service else None
    if svc is None:
        return None
    for port in svc.ports:
        if host_port in port.published_ports or (not port.published and host_port in port.target_ports):
            return port
    return None


@check("NET-006")
def net_006(ctx: Context) -> Outcome:
    live = ctx.live
    if live is None:
        return Outcome(SKIPPED, reason=NOT_RUN)
    if live.listeners is None and live.engine is None:
        reasons = [r for r in (live.listeners_error, live.engine_error) if r]
        return Outcome(SKIPPED, reason="; ".join(reasons) or "neither /proc/net nor the Docker Engine could be read")
    ports = _sensitive_ports(ctx, live)
    seen: dict[int, list[str]] = {}
    by_port: dict[int, str | None] = {}
    for lst in live.listeners or ():
        if lst.port in ports and not lst.loopback:
            addr = _addr(lst.address, lst.port)
            if addr not in seen.setdefault(lst.port, []):
                seen[lst.port].append(addr)
    container_of: dict[int, str] = {}
    for c in live.containers:
        if c.status not in ("running", "restarting"):
            continue
        for b in c.bindings:
            if b.host_port in ports and not b.loopback and b.protocol == "tcp":
                container_of.setdefault(b.host_port, c.name)
                by_port[b.host_port] = c.service
                for addr in _binding_addrs(b):
                    if addr not in seen.setdefault(b.host_port, []):
                        seen[b.host_port].append(addr)
    ev = []
    for port in sorted(seen):
        service = by_port.get(port) or ports.get(port)
        text = "listening now on " + " and ".join(seen[port])
        if port in container_of:
            text += f" (container {container_of[port]})"
        target = _port_where(ctx, service, port)
        ev.append(ctx.ev(target.where if target else None, service, "a database, cache or scanner port",
                         text=text, target=target))
    notes = []
    if live.listeners is None and live.listeners_error:
        notes.append(f"/proc/net not read: {live.listeners_error}")
    if live.engine is None and live.engine_error:
        notes.append(f"container bindings not read: {live.engine_error}")
    if ev:
        return Outcome(FAIL, ev)
    # One source read and found nothing: still a pass for what it saw, and the evidence says what was unseen.
    return Outcome(PASS, [ctx.ev(None, None, None, text=n) for n in notes])


def engine_version(text: str) -> tuple[int, int, int] | None:
    """``20.10.24+dfsg1`` -> (20, 10, 24); None when it is no version."""
    m = re.match(r"v?(\d+)\.(\d+)(?:\.(\d+))?", text.strip())
    if not m:
        return None
    return int(m.group(1)), int(m.group(2)), int(m.group(3) or 0)


@check("NET-008")
def net_008(ctx: Context) -> Outcome:
    live = ctx.live
    if live is None:
        return Outcome(SKIPPED, reason=NOT_RUN)
    if (skipped := _engine_needed(live)) is not None:
        return skipped
    assert live.engine is not None
    version = engine_version(live.engine.version)
    if version is None:
        return Outcome(SKIPPED, reason=f"the Docker Engine's version {live.engine.version!r} could not be read")
    if version >= LOOPBACK_TIGHT_FROM:
        return Outcome(PASS, [ctx.ev(None, None, None, text=f"Docker Engine {live.engine.version} (28.0.0 or newer)")])
    ev = []
    for c in live.containers:
        for b in c.bindings:
            if b.loopback:
                target = _port_where(ctx, c.service, b.host_port)
                text = (f"{_addr(b.host_ip.strip('[]'), b.host_port)} -> {b.container_port} (container {c.name}) "
                        f"on Docker Engine {live.engine.version}: hosts on the same LAN segment can reach it")
                ev.append(ctx.ev(target.where if target else None, c.service, "moby/moby#45610", text=text,
                                 target=target))
    return Outcome(FAIL if ev else PASS, ev)


def _built(ctx: Context, live: LiveState, service: str) -> bool:
    svc = ctx.inst.service(service)
    return service in live.built or (svc is not None and svc.opt("build") is not None)


def update_command(service: str, built: bool) -> str:
    """How the image of ``service`` is brought up to date (DesterLib's API is built, not pulled)."""
    if built:
        return f"docker compose build --pull {service} && docker compose up -d {service}"
    return f"docker compose pull {service} && docker compose up -d {service}"


@check("DKR-005")
def dkr_005(ctx: Context) -> Outcome:
    live = _running(ctx)
    if isinstance(live, Outcome):
        return live
    ev: list[Evidence] = []
    judged = 0
    for c in live.containers:
        if c.image_created is None:
            continue
        judged += 1
        age = (ctx.inst.now - c.image_created) / 86400
        if age > IMAGE_MAX_AGE_DAYS:
            svc = ctx.inst.service(c.service)
            text = f"{c.name} runs {c.image}, built {age:.0f} days ago"
            ev.append(ctx.ev(None, c.service, "update: " + update_command(c.service, _built(ctx, live, c.service)),
                             text=text, target=svc))
    if not judged:
        return Outcome(SKIPPED, reason="the Docker Engine gave no image creation date for the running containers")
    return Outcome(FAIL if ev else PASS, ev)


@check("DKR-009")
def dkr_009(ctx: Context) -> Outcome:
    live = _running(ctx)
    if isinstance(live, Outcome):
        return live
    ev: list[Evidence] = []
    idle: list[Evidence] = []
    for svc in ctx.inst.services:
        c = live.container(svc.name)
        if c is None:
            idle.append(ctx.ev(svc.where, svc.name, "in the files, no container: not running (not drift)",
                               text=f"service {svc.name} is not running"))
            continue
        diffs = drift(svc, c)
        if not diffs:
            continue
        text = (f"fixed on disk, not applied: service {svc.name} runs with the old {summary(diffs)} "
                "and must be recreated")
        ev.append(ctx.ev(svc.where, svc.name, "; ".join(d.what for d in diffs), text=text, target=svc))
    return Outcome(FAIL, ev) if ev else Outcome(PASS, idle)


def _lines(nums: tuple[int, ...]) -> str:
    shown = ", ".join(str(n) for n in nums[:_LEAK_LINES_SHOWN])
    return shown + (f" and {len(nums) - _LEAK_LINES_SHOWN} more" if len(nums) > _LEAK_LINES_SHOWN else "")


def _bursts(per_hour: dict[str, int], floor: int) -> list[tuple[str, int]]:
    return sorted((h, n) for h, n in per_hour.items() if n >= floor)


@check("OPS-002")
def ops_002(ctx: Context) -> Outcome:
    live = ctx.live
    if live is None:
        return Outcome(SKIPPED, reason=NOT_RUN)
    if not live.logs:
        return Outcome(SKIPPED, reason=live.logs_error or live.engine_error or "no API log could be read")
    ev = []
    for lf in live.logs:
        if lf.leaked_lines:
            n = len(lf.leaked_lines)
            text = (f"{n} line{'s' if n != 1 else ''} of {lf.source} hold{'s' if n == 1 else ''} DATABASE_URL "
                    f"with its password (line{'s' if n != 1 else ''} {_lines(lf.leaked_lines)})")
            ev.append(ctx.ev(None, None, "rotate the password, then truncate the log", text=text))
        for hour, count in _bursts(lf.too_many_requests, TOO_MANY_REQUESTS_PER_HOUR):
            ev.append(ctx.ev(None, None, f"at least {TOO_MANY_REQUESTS_PER_HOUR} an hour is a burst",
                             text=f"{count} \"Too many requests\" (429) answers in {lf.source} in the hour {hour}"))
        for hour, count in _bursts(lf.server_errors, SERVER_ERRORS_PER_HOUR):
            ev.append(ctx.ev(None, None, f"at least {SERVER_ERRORS_PER_HOUR} an hour is a burst",
                             text=f"{count} server errors (5xx) in {lf.source} in the hour {hour}"))
    if ev:
        return Outcome(FAIL, ev)
    if live.logs_error:
        # Some logs were read and were clean; the others could not be: no pass for what was not seen.
        return Outcome(SKIPPED, reason=live.logs_error)
    read = ", ".join(f"{lf.source} ({lf.lines} lines)" for lf in live.logs)
    return Outcome(PASS, [ctx.ev(None, None, None, text=f"read {read}")])


def _loopback_url(url: str) -> bool:
    host = (urlsplit(url).hostname or "").strip("[]")
    return host == "localhost" or host == "::1" or host.startswith("127.")


@check("NET-009")
def net_009(ctx: Context) -> Outcome:
    live = ctx.live
    if live is None:
        return Outcome(SKIPPED, reason=NOT_RUN)
    if not live.probes:
        if live.probes_error:
            return Outcome(SKIPPED, reason=live.probes_error)
        # Nothing to probe: the API is published on none of this host's non-loopback addresses.
        text = ("this host has no non-loopback address" if not live.addresses else
                "the API is published on none of this host's non-loopback addresses")
        return Outcome(PASS, [ctx.ev(None, None, None, text=text)])
    ev = []
    for p in live.probes:
        if p.status is not None and 200 <= p.status < 300 and p.exposes and not _loopback_url(p.url):
            ev.append(ctx.ev(None, None, f"gives away {p.exposes}, without authentication",
                             text=f"GET {p.url} answered {p.status}"))
    if ev:
        return Outcome(FAIL, ev)
    if live.probes_error:
        return Outcome(SKIPPED, reason=live.probes_error)
    return Outcome(PASS)
