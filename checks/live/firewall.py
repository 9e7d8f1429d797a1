"""Read the host firewall: :func:`firewall_state` -> :class:`checks.live.fwmodel.FirewallState`.

What is asked, all at once (threads, each program with its own timeout): ``iptables -S`` and
``ip6tables -S`` (ufw's chains, the INPUT policy, DOCKER-USER, in one answer each), ``iptables -V``
(nf_tables or legacy), ``nft list tables`` (dester-harden's own table, Docker's nftables backend),
``ip -j addr`` (the LAN networks, tailscale0, Docker's bridges), firewalld on its D-Bus
(:mod:`checks.live.firewalld`); besides, the files (ufw.conf, user.rules, user6.rules, after.rules,
/etc/default/ufw, firewalld.conf and its zones, sshd_config) and /proc. ``ufw status`` and
``firewall-cmd`` are not run: each is a Python program that takes 0.7 to 2 s to start here, and
the chains and files say the same. Nothing is written, nothing raises: a part that could not be
read leaves its reason in ``errors`` and its field None.

Without root the chains and ufw's rule files cannot be read: the state says so ("reading the
firewall needs root: run with sudo"), ``active`` is None, and the checks are skipped, never passed.
"""

from __future__ import annotations

import concurrent.futures
import ipaddress
import json
import os
import re
import subprocess
from collections.abc import Mapping, Sequence
from typing import Any

from checks.core.sysroot import SystemRoot
from checks.live import firewalld as fwd
from checks.live import iptables as ipt
from checks.live import ssh
from checks.live.fwmodel import FirewallState, FwRule, Runner, RunResult

TIMEOUT = 2.0
NEEDS_ROOT = "reading the firewall needs root: run with sudo"
OWN_TABLE = "inet dester_harden"
OWN_CHAIN = "DH-DOCKER"
"""dester-harden's chain that DOCKER-USER jumps to (:mod:`checks.firewall.ufw` writes it)."""
_DOCKER_IFACE = re.compile(r"^(docker\d*|br-[0-9a-f]{12}|docker_gwbridge|veth.*)$")
_SBIN = ("/usr/local/sbin", "/usr/sbin", "/sbin")
_MAX_FILE = 4 * 1024 * 1024

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


def run(argv: Sequence[str], timeout: float) -> RunResult:
    """The default :data:`Runner`: no shell, LANG=C, sbin on PATH; missing = 127, too slow = 124."""
    env = dict(os.environ, LANG="C", LC_ALL="C")
    path = env.get("PATH", "/usr/bin:/bin").split(":")
    env["PATH"] = ":".join(path + [p for p in _SBIN if p not in path])
    try:
        proc = subprocess.run(list(argv), capture_output=True, text=True, timeout=timeout, env=env,
                              stdin=subprocess.DEVNULL, errors="replace")
    except FileNotFoundError:
        return RunResult(127, "", f"{argv[0]}: not installed")
    except subprocess.TimeoutExpired:
        return RunResult(124, "", f"{argv[0]} did not answer in {timeout:g} s")
    except OSError as exc:
        return RunResult(126, "", f"{argv[0]}: {exc.strerror or exc}")
    return RunResult(proc.returncode, proc.stdout, proc.stderr)


def _read(root: SystemRoot, path: str) -> str | None:
    try:
        with open(root.path(path), "rb") as fh:
            return fh.read(_MAX_FILE).decode("utf-8", "replace")
    except OSError:
        return None


def _kv(text: str | None, key: str) -> str | None:
    for line in (text or "").splitlines():
        k, sep, v = line.strip().partition("=")
        if sep and k.strip() == key:
            return v.strip().strip("\"'")
    return None


def _why(what: str, res: RunResult) -> str:
    detail = (res.stderr or res.stdout).strip().splitlines()
    return f"{what}: {detail[0] if detail else f'exit status {res.code}'}"


def interfaces(text: str) -> tuple[tuple[str, ...], bool, list[Network]]:
    """``ip -j addr`` -> (LAN networks, tailscale0 present, Docker's bridge networks).

    Networks, not addresses (``192.168.1.20/24`` -> ``192.168.1.0/24``); loopback, link-local,
    Docker's interfaces and tailscale0 are no LAN.
    """
    lan: list[str] = []
    bridges: list[Network] = []
    tailscale = False
    for link in json.loads(text or "[]"):
        name = str(link.get("ifname", ""))
        if name == "tailscale0":
            tailscale = True
        for info in link.get("addr_info", []) or []:
            if info.get("family") not in ("inet", "inet6") or "local" not in info:
                continue
            net = ipaddress.ip_interface(f"{info['local']}/{info.get('prefixlen', 32)}").network
            if _DOCKER_IFACE.match(name):
                bridges.append(net)
            elif name != "lo" and name != "tailscale0" and info.get("scope") == "global" and \
                    not net.is_loopback and not net.is_link_local and str(net) not in lan:
                lan.append(str(net))
    return tuple(lan), tailscale, bridges


def _flavour(res: RunResult) -> str | None:
    if res.code != 0:
        return None
    return "nft" if "nf_tables" in res.stdout else ("legacy" if "legacy" in res.stdout else None)


def _rule_lines(res: RunResult | None) -> int:
    return 0 if res is None or res.code != 0 else sum(1 for line in res.stdout.splitlines() if line.startswith("-A "))


def firewall_state(*, runner: Runner | None = None, root: SystemRoot | None = None, proc: str = "/proc",
                   environ: Mapping[str, str] | None = None, docker_backend: str | None = None,
                   euid: int | None = None, timeout: float = TIMEOUT) -> FirewallState:
    """Read the host firewall; see the module docstring. Never raises for what it reads."""
    runner = runner or run
    root = root or SystemRoot()
    environ = os.environ if environ is None else environ
    root_user = (os.geteuid() if euid is None else euid) == 0
    ufw_conf = _read(root, "/etc/ufw/ufw.conf")
    fwd_conf_present = os.path.exists(root.path("/etc/firewalld/firewalld.conf")) or \
        os.path.isdir(root.path("/usr/lib/firewalld/zones"))
    errors: list[str] = []

    def ask(argv: list[str]) -> RunResult:
        return runner(argv, timeout)

    with concurrent.futures.ThreadPoolExecutor(8, thread_name_prefix="firewall") as pool:
        jobs: dict[str, concurrent.futures.Future[RunResult]] = {"addr": pool.submit(ask, ["ip", "-j", "addr"])}
        fwd_job: concurrent.futures.Future[dict[str, Any]] | None = None
        if root_user:
            jobs |= {"v4": pool.submit(ask, ["iptables", "-S"]), "v6": pool.submit(ask, ["ip6tables", "-S"]),
                     "ver": pool.submit(ask, ["iptables", "-V"]), "nft": pool.submit(ask, ["nft", "list", "tables"])}
            if fwd_conf_present:
                fwd_job = pool.submit(_firewalld, ask, root)
        session = pool.submit(ssh.ssh_session, environ, proc)
        ports = pool.submit(ssh.ssh_ports, root, proc)
        state = FirewallState(frontend="none", active=None)
        state.ufw_installed = ufw_conf is not None
        state.firewalld_installed = fwd_conf_present
        state.ipv6 = _ipv6(proc)
        bridges = _read_interfaces(state, jobs["addr"].result(), errors)
        state.ssh_session, state.ssh_ports = session.result(), ports.result()
        if not root_user:
            state.frontend = "ufw" if state.ufw_installed else ("firewalld" if fwd_conf_present else "none")
            state.errors = (NEEDS_ROOT, *errors)
            return state
        v4, v6 = jobs["v4"].result(), jobs["v6"].result()
        state.iptables = _flavour(jobs["ver"].result())
        nft_res = jobs["nft"].result()
        tables = {line.removeprefix("table ").strip() for line in nft_res.stdout.splitlines()} \
            if nft_res.code == 0 else set()
        if nft_res.code != 0 and nft_res.code != 127:
            errors.append(_why("nft list tables", nft_res))
        state.own_table = OWN_TABLE in tables
        state.mixed_backends = _mixed(ask, state.iptables, v4, tables, proc)
        lines4 = v4.stdout.splitlines() if v4.code == 0 else []
        lines6 = v6.stdout.splitlines() if v6.code == 0 else []
        if v4.code != 0:
            errors.append(_why("iptables -S", v4))
        if v6.code != 0 and state.ipv6:
            errors.append(_why("ip6tables -S", v6))
        if v4.code == 0:
            state.docker_user = ipt.chain_lines(lines4, "DOCKER-USER")
            state.own_chain = ipt.chain_lines(lines4, OWN_CHAIN)
        if v6.code == 0:
            state.docker_user6 = ipt.chain_lines(lines6, "DOCKER-USER")
            state.own_chain6 = ipt.chain_lines(lines6, OWN_CHAIN)
        state.docker_backend = docker_backend or ("nftables" if {"ip docker-bridges", "ip6 docker-bridges"} & tables
                                                  else ("iptables" if state.docker_user is not None else None))
        ufw_active = _read_ufw(state, root, ufw_conf, lines4, lines6, v4.code == 0, bridges, errors)
        fwd_state = fwd_job.result() if fwd_job is not None else None
        fwd_active = bool(fwd_state and fwd_state.get("running"))
        if fwd_state and fwd_state.get("error"):
            errors.append(fwd_state["error"])
        if ufw_active is None or (fwd_state is not None and fwd_state.get("running") is None):
            state.active = None
        else:
            state.active = ufw_active or fwd_active
        if fwd_active and not ufw_active:
            _apply_firewalld(state, root, fwd_state or {})
        elif state.frontend == "none" and fwd_conf_present:
            state.frontend, state.version = "firewalld", (fwd_state or {}).get("version")
        _docker_user_persistence(state, root)
        state.container_ip_rules = tuple(sorted(set(state.container_ip_rules) | set(_container_rules(state, bridges))))
        state.errors = tuple(errors)
    return state


def _ipv6(proc: str) -> bool:
    try:
        with open(os.path.join(proc, "sys/net/ipv6/conf/all/disable_ipv6"), "rb") as fh:
            return fh.read(8).strip() == b"0"
    except OSError:
        return False  # no such file: this kernel has no IPv6 at all


def _read_interfaces(state: FirewallState, res: RunResult, errors: list[str]) -> list[Network]:
    if res.code != 0:
        errors.append(_why("ip -j addr", res))
        return []
    try:
        state.lan_networks, state.tailscale, bridges = interfaces(res.stdout)
    except (ValueError, TypeError, AttributeError) as exc:
        errors.append(f"ip -j addr: its answer could not be read ({exc})")
        return []
    return bridges


def _mixed(ask: Any, flavour: str | None, v4: RunResult, tables: set[str], proc: str) -> bool:
    """Rules in both the legacy tables and the nf_tables ones (each side's iptables-save)."""
    if flavour == "nft":
        try:
            with open(os.path.join(proc, "net/ip_tables_names"), "rb") as fh:
                legacy_loaded = bool(fh.read(4096).strip())
        except OSError:
            legacy_loaded = False
        if not legacy_loaded and "iptables-legacy tables present" not in v4.stderr:
            return False
        return _rule_lines(v4) > 0 and _rule_lines(ask(["iptables-legacy-save"])) > 0
    if flavour == "legacy" and tables & {"ip filter", "ip nat", "ip6 filter", "ip6 nat"}:
        return _rule_lines(v4) > 0 and _rule_lines(ask(["iptables-nft-save"])) > 0
    return False


def _read_ufw(state: FirewallState, root: SystemRoot, conf: str | None, lines4: list[str], lines6: list[str],
              readable: bool, bridges: list[Network], errors: list[str]) -> bool | None:
    """ufw's part of the state; whether ufw enforces (its chains are live), None when unreadable."""
    if conf is None:
        return False
    state.frontend = "ufw"
    state.version = _ufw_version(root)
    enabled = (_kv(conf, "ENABLED") or "no").lower() == "yes"
    policy = (_kv(_read(root, "/etc/default/ufw"), "DEFAULT_INPUT_POLICY") or "").upper()
    state.default_incoming = {"DROP": "deny", "REJECT": "reject", "ACCEPT": "allow"}.get(policy)
    if not readable:
        return None
    active = "-A ufw-before-input -j ufw-user-input" in lines4
    rules: list[FwRule] = []
    unpersisted: list[str] = []
    routes: list[str] = []
    for name, chain, live_lines, v6 in (("user.rules", "ufw-user-", lines4, False),
                                        ("user6.rules", "ufw6-user-", lines6, True)):
        text = _read(root, f"/etc/ufw/{name}")
        if text is None:
            errors.append(f"/etc/ufw/{name} could not be read")
            continue
        file_rules, file_lines, file_routes = ipt.user_rules(text, v6)
        routes += file_routes
        persisted = {ipt.rule_key(line) for line in file_lines}
        live = [line for line in live_lines if line.startswith(f"-A {chain}") and
                line.split()[1] in (f"{chain}input", f"{chain}forward")]
        rules += [FwRule(r.action, r.port, r.proto, r.source, r.interface, r.v6, r.text, True, active)
                  for r in file_rules]
        for line in live:
            if ipt.rule_key(line) not in persisted:
                unpersisted.append(f"{line} (not in /etc/ufw/{name})")
                extra = ipt.fw_rule(line, v6, persistent=False)
                if extra is not None:
                    rules.append(extra)
    if active and not enabled:
        unpersisted.append("ufw is running but /etc/ufw/ufw.conf says ENABLED=no: it is off after a reboot")
    state.rules, state.unpersisted = tuple(rules), tuple(unpersisted)
    state.container_ip_rules = tuple(r for r in routes if any(ipt.inside(a, bridges) for a in ipt.addresses_in(r)))
    return active


def _ufw_version(root: SystemRoot) -> str | None:
    text = _read(root, "/usr/sbin/ufw")
    m = re.search(r'^version\s*=\s*["\']([^"\']+)["\']', text or "", re.M)
    return m.group(1) if m else None


def _firewalld(ask: Any, root: SystemRoot) -> dict[str, Any]:
    """firewalld on its bus: ``running`` (None: could not tell), ``version``, ``zone``, the runtime :class:`Zone`."""
    res = ask(fwd.busctl("get-property", *fwd.BUS, "org.fedoraproject.FirewallD1", "state", "version"))
    if res.code == 127:
        return {"running": None, "error": "busctl is missing: firewalld's state was not read"}
    if res.code != 0:
        return {"running": False}  # the name is not on the bus (or there is no bus): firewalld is not running
    try:
        values = [fwd.parse_busctl(line) for line in res.stdout.splitlines() if line.strip()]
        running = str(values[0]).upper() == "RUNNING"
        version = str(values[1]) if len(values) > 1 else None
        if not running:
            return {"running": False, "version": version}
        zres = ask(fwd.busctl("call", *fwd.BUS, "org.fedoraproject.FirewallD1", "getDefaultZone"))
        zone = str(fwd.parse_busctl(zres.stdout)) if zres.code == 0 else fwd.conf_value(root, "DefaultZone")
        if not zone:
            return {"running": None, "error": _why("firewalld's default zone", zres)}
        sres = ask(fwd.busctl("call", *fwd.BUS, "org.fedoraproject.FirewallD1.zone", "getZoneSettings2", "s", zone))
        if sres.code != 0:
            return {"running": None, "error": _why(f"firewalld's zone {zone}", sres)}
        runtime = fwd.zone_from_settings(fwd.parse_busctl(sres.stdout))
    except (ValueError, TypeError, KeyError, IndexError, AttributeError) as exc:
        return {"running": None, "error": f"firewalld's answer could not be read ({exc})"}
    return {"running": True, "version": version, "zone": zone, "runtime": runtime}


def _apply_firewalld(state: FirewallState, root: SystemRoot, found: dict[str, Any]) -> None:
    """firewalld's part of the state: runtime (the bus) against permanent (the zone file), StrictForwardPorts."""
    zone, runtime = str(found["zone"]), found["runtime"]
    state.frontend, state.version, state.zone = "firewalld", found.get("version"), zone
    state.default_incoming = fwd.default_incoming(runtime.target)
    state.strict_forward_ports = fwd.strict_forward_ports(root, state.version)
    permanent_name = fwd.conf_value(root, "DefaultZone") or zone
    permanent = fwd.zone_from_xml(root, permanent_name)
    perm_rules = fwd.zone_rules(root, permanent_name, permanent) if permanent is not None else []
    rules, unpersisted = fwd.merge(fwd.zone_rules(root, zone, runtime), perm_rules)
    if permanent_name != zone:
        unpersisted.append(f"the default zone is {zone} now but {permanent_name} after a reboot")
    state.rules, state.unpersisted = tuple(rules), (*state.unpersisted, *unpersisted)


def _docker_user_persistence(state: FirewallState, root: SystemRoot) -> None:
    """DOCKER-USER lines that no file loads at boot (after.rules for ufw, iptables-persistent's rules.v4)."""
    extra: list[str] = []
    for live, files in ((state.docker_user, ("/etc/ufw/after.rules", "/etc/iptables/rules.v4")),
                        (state.docker_user6, ("/etc/ufw/after6.rules", "/etc/iptables/rules.v6"))):
        if not live:
            continue
        persisted = {ipt.rule_key(line) for f in files
                     for line in ipt.chain_rules_in(_read(root, f) or "", "DOCKER-USER")}
        for line in live:
            if line.startswith("-A ") and line != "-A DOCKER-USER -j RETURN" and ipt.rule_key(line) not in persisted:
                extra.append(f"{line} (DOCKER-USER: in no file loaded at boot)")
    state.unpersisted = (*state.unpersisted, *extra)


def _container_rules(state: FirewallState, bridges: list[Network]) -> list[str]:
    out = []
    for line in (*(state.docker_user or ()), *(state.docker_user6 or ())):
        if any(ipt.inside(a, bridges) for a in ipt.addresses_in(line)):
            out.append(line)
    for rule in state.rules:
        if rule.source != "any" and ipt.inside(rule.source, bridges):
            out.append(rule.text)
    return out
