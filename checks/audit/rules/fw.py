"""The host firewall checks: FW-001, FW-002, FW-003 (the plan-time guard), FW-004 and NET-007.

Pure functions over :attr:`checks.live.model.LiveState.firewall` (read by
:func:`checks.live.firewall.firewall_state`). A firewall that could not be read makes each of
them ``skipped`` (not root: "run with sudo") or ``error`` (a program that failed), with the
reason; never ``pass``.
"""

from __future__ import annotations

import shlex

from checks.audit.findings import ERROR, FAIL, PASS, SKIPPED, Evidence, Outcome
from checks.audit.rules import Context, check
from checks.audit.rules.common import DB_PORTS, db_ports, is_db_image, is_db_service
from checks.audit.rules.live import NOT_RUN, _addr, _port_where
from checks.live.firewall import NEEDS_ROOT, OWN_CHAIN
from checks.live.fwmodel import FirewallState
from checks.live.model import Binding, Container

_DROPS = ("DROP", "REJECT")


def _firewall(ctx: Context) -> FirewallState | Outcome:
    """The firewall state, or why a firewall check cannot say anything."""
    live = ctx.live
    if live is None:
        return Outcome(SKIPPED, reason=NOT_RUN)
    fw = live.firewall
    if fw is None:
        return Outcome(SKIPPED, reason=live.firewall_error or "the host firewall was not read")
    if fw.active is None:
        if NEEDS_ROOT in fw.errors:
            return Outcome(SKIPPED, reason=NEEDS_ROOT)
        return Outcome(ERROR, reason="; ".join(fw.errors) or "the host firewall could not be read")
    return fw


def _describe(fw: FirewallState) -> str:
    name = f"{fw.frontend} {fw.version}" if fw.version else fw.frontend
    where = f", zone {fw.zone}" if fw.zone else ""
    return f"{name} active{where}, default incoming {fw.default_incoming or 'unknown'}"


@check("FW-001")
def fw_001(ctx: Context) -> Outcome:
    """Fail without an enforcing ufw or firewalld, or with one whose default lets everything in."""
    fw = _firewall(ctx)
    if isinstance(fw, Outcome):
        return fw
    if fw.active and fw.default_incoming == "allow":
        return Outcome(FAIL, [ctx.ev(None, None, None, text=_describe(fw))],
                       f"{fw.frontend} is active but lets every incoming connection in (default allow)")
    if fw.active:
        return Outcome(PASS, [ctx.ev(None, None, None, text=_describe(fw))])
    installed = [n for n, on in (("ufw", fw.ufw_installed), ("firewalld", fw.firewalld_installed)) if on]
    text = (" and ".join(installed) + " installed, not active") if installed else "neither ufw nor firewalld installed"
    return Outcome(FAIL, [ctx.ev(None, None, None, text=text)], "no host firewall is active")


def database_ports(ctx: Context) -> dict[int, str | None]:
    """Database and cache ports -> the service publishing it: 5432, 6379 and the install's db/cache publishes."""
    ports: dict[int, str | None] = dict.fromkeys(DB_PORTS)
    for svc in ctx.inst.services:
        for port in db_ports(svc):
            for p in port.published_ports:
                ports[p] = svc.name
    live = ctx.live
    for c in live.containers if live is not None else ():
        owner = ctx.inst.service(c.service)
        if (owner is not None and is_db_service(owner)) or is_db_image(c.image):
            for b in c.bindings:
                if b.host_port:
                    ports.setdefault(b.host_port, c.service)
    return ports


@check("FW-002")
def fw_002(ctx: Context) -> Outcome:
    """Fail on an allow (or limit) rule, live or persistent, for a database or cache port.

    A rule of an inactive firewall counts too: enabling the firewall would open the port.
    """
    fw = _firewall(ctx)
    if isinstance(fw, Outcome):
        return fw
    ports = database_ports(ctx)
    ev: list[Evidence] = []
    seen: set[str] = set()
    for rule in fw.rules:
        if rule.action not in ("allow", "limit") or rule.port not in ports or rule.proto == "udp":
            continue
        if rule.text in seen:
            continue
        seen.add(rule.text)
        assert rule.port is not None
        service = ports[rule.port]
        note = "not active" if not rule.live else ("live only" if not rule.persistent else None)
        ev.append(ctx.ev(None, service, note, text=rule.text))
    if ev:
        return Outcome(FAIL, ev, "the firewall allows " + ", ".join(sorted({e.text for e in ev})))
    return Outcome(PASS, [ctx.ev(None, None, None, text=f"{fw.frontend}: no allow rule for "
                                 + ", ".join(str(p) for p in sorted(ports)))])


@check("FW-003")
def fw_003(ctx: Context) -> Outcome:
    """The SSH lockout guard works on firewall plans (:mod:`checks.firewall.guard`), not on an audit."""
    return Outcome(SKIPPED, reason="guard on firewall plans: applies when a firewall change is planned "
                   "(dester-harden refuses a plan that would cut the SSH session)")


@check("FW-004")
def fw_004(ctx: Context) -> Outcome:
    """Fail on live rules the boot configuration does not hold, and on rules that name a container's IP."""
    fw = _firewall(ctx)
    if isinstance(fw, Outcome):
        return fw
    ev = [ctx.ev(None, None, "gone after a reboot", text=t) for t in fw.unpersisted]
    ev += [ctx.ev(None, None, "names a container's address: wrong once the container is recreated", text=t)
           for t in fw.container_ip_rules]
    if ev:
        return Outcome(FAIL, ev, f"{len(ev)} firewall rule(s) will not survive a reboot or a container restart")
    return Outcome(PASS, [ctx.ev(None, None, None, text=f"{fw.frontend}: the live rules are the persistent ones")])


# -- NET-007 -------------------------------------------------------------------------------------
def _port_range(words: list[str], option: str) -> tuple[int, int] | None:
    if option not in words:
        return None
    value = words[words.index(option) + 1] if words.index(option) + 1 < len(words) else ""
    lo, _, hi = value.partition(":")
    if not lo.isdigit() or (hi and not hi.isdigit()):
        return None
    return int(lo), int(hi or lo)


def _words(line: str) -> list[str]:
    try:
        return shlex.split(line)
    except ValueError:
        return line.split()


def _drops(lines: tuple[str, ...], port: int) -> bool:
    """Whether a chain's lines drop (or reject) new connections to published port ``port``.

    A drop matching conntrack's original destination port (``--ctorigdstport P``: after DNAT the
    packet's own port is the container's), or a drop that names no port and no source at all (a
    catch-all such as ufw-docker's ``-j DROP ... -d 192.168.0.0/16``).
    """
    for line in lines:
        words = _words(line)
        if "-j" not in words or words[words.index("-j") + 1:words.index("-j") + 2] not in (["DROP"], ["REJECT"]):
            continue
        span = _port_range(words, "--ctorigdstport")
        if span is not None and span[0] <= port <= span[1]:
            return True
        if span is None and "--dport" not in words and "--dports" not in words and "-s" not in words:
            return True
    return False


def _governed_iptables(user: tuple[str, ...] | None, own: tuple[str, ...] | None, port: int) -> bool:
    if not user:
        return False
    if _drops(user, port):
        return True
    jumps = any(_words(line)[-2:] == ["-j", OWN_CHAIN] for line in user)
    return jumps and own is not None and _drops(own, port)


def _allowed_to_all(fw: FirewallState, port: int, v6: bool) -> bool:
    """The firewall's own rules open ``port`` to everyone: Docker's path then bypasses nothing."""
    return any(r.action == "allow" and r.port == port and r.source == "any" and r.interface is None and
               r.live and r.proto in ("tcp", "any") and r.v6 == v6 for r in fw.rules)


def forward_gap(fw: FirewallState, b: Binding) -> str | None:
    """Why the forward path (after Docker's DNAT) does not govern published binding ``b``; None: it does.

    The test NET-007 makes, public so the faces (:mod:`checks.firewall.situation`) can say the same.
    """
    if fw.docker_backend == "nftables":
        return None if fw.own_table else ("Docker's nftables backend has no DOCKER-USER chain and "
                                          "dester-harden's table inet dester_harden is not loaded")
    if fw.frontend == "firewalld" and fw.strict_forward_ports:
        return None
    ip = b.host_ip.strip("[]")
    families = [False] if ip == "0.0.0.0" or "." in ip else ([True] if ip == "::" else [False, True])
    missing = []
    for v6 in families:
        if v6 and (not fw.ipv6 or fw.docker_user6 is None):
            continue  # no ip6tables rules from Docker: IPv6 goes through docker-proxy, the INPUT path
        user, own = (fw.docker_user6, fw.own_chain6) if v6 else (fw.docker_user, fw.own_chain)
        if not _governed_iptables(user, own, b.host_port) and not _allowed_to_all(fw, b.host_port, v6):
            missing.append("ip6tables" if v6 else "iptables")
    if not missing:
        return None
    why = f"no DOCKER-USER rule drops --ctorigdstport {b.host_port} ({', '.join(missing)})"
    if fw.frontend == "firewalld":
        why += "; firewalld " + ("without StrictForwardPorts=yes" if fw.strict_forward_ports is False else
                                 f"{fw.version or ''} has no StrictForwardPorts (2.3.0+)".replace("  ", " "))
    return why


@check("NET-007")
def net_007(ctx: Context) -> Outcome:
    """Fail when a firewall is active but the project's non-loopback publishes bypass it.

    Docker's published ports go through the forward path after DNAT, where ufw's and firewalld's
    input rules do not apply. Governed means: DOCKER-USER (or dester-harden's DH-DOCKER, jumped to
    from it) drops new connections by conntrack's original port, or firewalld's StrictForwardPorts,
    or, with Docker's nftables backend, dester-harden's own table; or the firewall itself opens the
    port to everyone (then nothing is bypassed).

    With no firewall active this check passes, saying so: there is nothing for Docker to bypass,
    FW-001 fails for the missing firewall and NET-001/NET-006 for the open ports; failing here too
    would report one hole three times. Without running containers it is skipped (nothing published).
    """
    fw = _firewall(ctx)
    if isinstance(fw, Outcome):
        return fw
    live = ctx.live
    assert live is not None
    if not fw.active:
        return Outcome(PASS, [ctx.ev(None, None, None, text="no host firewall is active: nothing for Docker to "
                                     "bypass (FW-001 reports the missing firewall)")])
    if live.engine is None:
        return Outcome(SKIPPED, reason=live.engine_error or "the Docker Engine did not answer")
    running: list[Container] = [c for c in live.containers if c.status == "running"]
    if not running:
        return Outcome(SKIPPED, reason=f"no container of compose project {live.project!r} is running "
                                       "(nothing published)")
    if (fw.docker_backend != "nftables" and fw.docker_user is None
            and any(e.startswith("iptables") for e in fw.errors)):
        return Outcome(ERROR, reason="; ".join(fw.errors))
    ev: list[Evidence] = []
    for c in running:
        for b in c.bindings:
            if not b.host_port or b.loopback or b.protocol != "tcp":
                continue
            why = forward_gap(fw, b)
            if why is None:
                continue
            target = _port_where(ctx, c.service, b.host_port)
            text = f"{_addr(b.host_ip.strip('[]') or '0.0.0.0', b.host_port)} -> {b.container_port} " \
                   f"(container {c.name}): {why}"
            ev.append(ctx.ev(target.where if target else None, c.service, f"{_describe(fw)}", text=text,
                             target=target))
    if ev:
        return Outcome(FAIL, ev, f"{fw.frontend} is active, but Docker-published ports bypass it")
    return Outcome(PASS, [ctx.ev(None, None, None, text=f"{_describe(fw)}; every published port is governed "
                                 "on the forward path")])

