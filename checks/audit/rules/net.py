"""NET-*: what the compose file publishes, and to whom."""

from __future__ import annotations

import ipaddress

from checks.audit.findings import FAIL, PASS, SKIPPED, Outcome
from checks.audit.rules import Context, check
from checks.audit.rules.common import api_port, api_service, db_ports
from checks.audit.rules.tls import detected
from checks.install.model import Port

_TAILNET_V4 = ipaddress.ip_network("100.64.0.0/10")
_TAILNET_V6 = ipaddress.ip_network("fd7a:115c:a1e0::/48")


def _ip_shown(port: Port) -> str:
    return port.host_ip or "all interfaces"


@check("NET-001")
def net_001(ctx: Context) -> Outcome:
    ev = []
    for svc in ctx.inst.services:
        for port in db_ports(svc):
            if port.all_interfaces:
                what = f"port {port.published or '(random)'} -> {port.target} on {_ip_shown(port)}"
                ev.append(ctx.ev(port.where, svc.name, what, target=port))
    return Outcome(FAIL if ev else PASS, ev)


@check("NET-002")
def net_002(ctx: Context) -> Outcome:
    ev = []
    for svc in ctx.inst.services:
        for port in db_ports(svc):
            ev.append(ctx.ev(port.where, svc.name, f"container port {port.target} published on {_ip_shown(port)}"))
    return Outcome(FAIL if ev else PASS, ev)


def allowed_on(host_ip: str | None, profile: str) -> bool:
    """Whether the API may answer on ``host_ip`` under ``profile`` (NET-003's rule, and its fix's)."""
    if profile == "local":
        return True
    if not host_ip:
        return False
    try:
        ip = ipaddress.ip_address(host_ip.strip("[]"))
    except ValueError:
        return False
    if ip.is_loopback:
        return True
    if profile == "tailscale":
        return (ip.version == 4 and ip in _TAILNET_V4) or (ip.version == 6 and ip in _TAILNET_V6)
    return False


def _bypass(ctx: Context, port: Port) -> str:
    """``; the caddy front door at F:L can be bypassed: ...`` when a front door exists."""
    doors = [d for d in detected(ctx).doors if not d.unknown]
    if not doors:
        return ""
    d = doors[0]
    where = f"{d.file}:{d.line}" if d.line else d.file
    ip = port.host_ip or "0.0.0.0"
    addr = f"[{ip.strip('[]')}]" if ":" in ip else ip
    more = f" (and {len(doors) - 1} more)" if len(doors) > 1 else ""
    return (f"; the {d.kind} front door at {where}{more} can be bypassed: "
            f"the API answers on {addr}:{port.published or port.target}")


@check("NET-003")
def net_003(ctx: Context) -> Outcome:
    svc = api_service(ctx.inst)
    if svc is None:
        return Outcome(SKIPPED, reason="no DesterLib API service found in the compose file")
    port_no = api_port(svc)
    allowed = {"local": "any address (LAN access is expected)", "tailscale": "127.0.0.1 or a Tailscale address",
               "internet": "127.0.0.1 (behind the HTTPS proxy)"}[ctx.profile]
    ev = []
    for port in svc.ports:
        if port_no not in port.target_ports and port_no not in port.published_ports:
            continue
        if not allowed_on(port.host_ip, ctx.profile):
            what = f"bound to {_ip_shown(port)}; the {ctx.profile} profile allows {allowed}" + _bypass(ctx, port)
            ev.append(ctx.ev(port.where, svc.name, what, target=port))
    return Outcome(FAIL if ev else PASS, ev)


@check("NET-004")
def net_004(ctx: Context) -> Outcome:
    ev = []
    for svc in ctx.inst.services:
        for key in ("network_mode", "pid", "ipc", "userns_mode"):
            node = svc.opt(key)
            if node is not None and isinstance(node.value, str) and node.value.strip().lower() == "host":
                from checks.install.model import Where

                text = f"{key}: host"
                ev.append(ctx.ev(Where(node.file, node.line, text), svc.name, f"{key}: host"))
    return Outcome(FAIL if ev else PASS, ev)


@check("NET-005")
def net_005(ctx: Context) -> Outcome:
    top = ctx.inst.top
    nets = top.get("networks") if top is not None else None
    declared = {}
    if nets is not None and nets.is_map():
        for name, node in nets.items():
            driver = node.get("driver") if node.is_map() else None
            external = node.get("external") if node.is_map() else None
            declared[name] = (str(driver.value).lower() if driver is not None and driver.value else
                              ("external" if external is not None and external.value else "bridge"))
    ev = []
    for svc in ctx.inst.services:
        mode = svc.opt("network_mode")
        if mode is not None and mode.value not in (None, "bridge"):
            continue  # host is NET-004's; none and service:x need no network
        on = svc.opt("networks")
        names: list[str] = []
        if on is not None and on.is_seq():
            names = [str(n.value) for n in on.value if n.value is not None]
        elif on is not None and on.is_map():
            names = [k for k, _ in on.items()]
        if not names or names == ["default"]:
            ev.append(ctx.svc_ev(svc, "on the default network only"))
        elif not any(declared.get(n, "bridge") in ("bridge", "external") for n in names):
            ev.append(ctx.svc_ev(svc, "no bridge network among " + ", ".join(names)))
    return Outcome(FAIL if ev else PASS, ev)

