"""The firewalld backend: the default zone's permanent file, StrictForwardPorts, and firewalld's sync.

:func:`plan` rewrites ``/etc/firewalld/zones/<zone>.xml`` (under the SystemRoot; when there is none
yet, it starts from the packaged ``/usr/lib/firewalld/zones/<zone>.xml``, as firewalld itself does
on the first ``--permanent`` change). Every element it does not own stays, in order; its own
elements come right after ``<short>``/``<description>``, each behind a ``<!-- dester-harden -->``
comment, SSH first:

* an allow from anywhere: ``<service name="ssh"/>`` for 22, ``<port port="P" protocol="tcp"/>`` else;
* an allow from a network: a rich rule ``rule family=ipv4 source address=NET port port=P
  protocol=tcp accept`` (the API from each LAN network, tailscale's 100.64.0.0/10 and
  fd7a:115c:a1e0::/48; firewalld matches interfaces by zone, so ``in on tailscale0`` is the
  tailscale sources here);
* a deny of a database/cache port (FW-002): every port, service and accepting rich rule of the
  zone that opens it is removed (also the user's own: that is the fix);
* default deny: firewalld's ``default`` target (what ``public`` ships with) already rejects every
  new connection the zone does not allow (ICMP aside), and so do ``%%REJECT%%`` and ``DROP``;
  those are kept. A zone whose target is ``ACCEPT`` gets the ``default`` target.

Docker-published ports (NET-007) never pass the zone: Docker's bridges sit in the ``docker`` zone
with target ACCEPT and the DNAT happens before the zone's input rules. firewalld 2.3.0 and later
have ``StrictForwardPorts=yes`` (firewalld.conf), which blocks those DNATs unless a forward port
allows them: then the conf is edited and each port that must stay reachable gets a forward port
to itself on this host (``to-port`` only: docker-proxy serves it, no container address that a
recreate would change; FW-004). An older firewalld gets a refusal and the manual fix instead:
bind the publish to 127.0.0.1 (the network step, NET-001) or upgrade.

The zone is checked by firewalld's own parser (``firewall.core.io.zone.zone_reader``, run by the
interpreter of ``firewall-cmd``) on a scratch copy before it is planned: a zone firewalld would
refuse at ``--reload`` (which then falls back to its stock configuration) is never written.

:func:`sync` is what ``python -m checks.firewall.sync firewalld`` runs after the files changed (and
after a rollback or undo restored them): a reload (``firewall-cmd --reload``, asked through
firewalld's own D-Bus client in its interpreter when it can be: one interpreter for the reload and
one for both listings instead of three ``firewall-cmd`` starts of a second each), a wait until
Docker has put its rules back (its reload handler needs 0.2-0.3 s), then the check that the
running zone equals the permanent one and the file's ports, services and sources; a difference is
a one-line :class:`SyncError`, which rolls the transaction back.

The XML itself (reading, writing, comparing, firewalld's parser) is :mod:`checks.firewall.zonefile`.
"""

from __future__ import annotations

import json
import os
import re
import sys
import time
import xml.etree.ElementTree as ET
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor

from checks.core.sysroot import SystemRoot
from checks.firewall.sysfiles import first_line, new_owner, read_system
from checks.firewall.wants import BackendPlan, Want
from checks.firewall.zonefile import (
    CONF,
    MARK,
    PACKAGED_ZONES,
    ZONES,
    ZoneView,
    comment,
    default_zone,
    element,
    element_key,
    file_view,
    forward_rule,
    interpreter,
    is_comment,
    is_marker,
    opens,
    parse_list_all,
    parse_version,
    parse_zone,
    render_zone,
    rich_port_rule,
    rich_text,
    service_ports,
    strict_conf,
    validate_zone,
)
from checks.live.fwmodel import FirewallState, Runner, RunResult

STRICT_SINCE = (2, 3, 0)
CHECKS = ("FW-001", "FW-002", "FW-004", "NET-007")
"""The checks a refusal of the whole zone names (nothing can be planned for any of them)."""
NOT_RUNNING = 252
"""firewall-cmd's exit status when firewalld does not run."""
DOCKER_WAIT = 5.0
"""Seconds Docker gets to put its rules back after ``--reload`` before the sync gives up."""

_DENY_TARGETS = {"default", "%%REJECT%%", "DROP", "REJECT"}


class SyncError(Exception):
    """The live firewalld could not be made equal to the files (one line, for the sync command)."""


# --- planning ------------------------------------------------------------------------------------

Validator = Callable[[bytes, str], "str | None"]
"""``validate(zone_xml, zone_name) -> None | error line``."""


def plan(wants: Sequence[Want], fw: FirewallState, sysroot: SystemRoot, inst: object = None, *,
         validate: Validator | None = None) -> BackendPlan:
    """The firewalld form of ``wants`` for the default zone (see the module docstring).

    ``inst`` (the installation) is not needed: the wants carry the ports. ``validate`` defaults to
    firewalld's own parser (:func:`validate_zone`).
    """
    zone = default_zone(sysroot, fw)
    sync = sync_argv("firewalld", sysroot)
    out = BackendPlan("firewalld", [], [sysroot.path("/etc/firewalld")], sync)
    if fw.unpersisted:
        # The sync's reload replaces the running rules with the permanent ones: say it before it happens.
        out.notes.append(f"firewall-cmd --reload drops {len(fw.unpersisted)} runtime-only rule(s) "
                         f"({'; '.join(fw.unpersisted[:3])}{'; ...' if len(fw.unpersisted) > 3 else ''}): "
                         "a reboot would too (FW-004); make one permanent first to keep it")
    if not re.fullmatch(r"[\w.-]+", zone):
        out.refusals += [(c, f"firewalld's default zone {zone!r} is not a plain name", "") for c in CHECKS]
        return out
    path = os.path.join(sysroot.path(ZONES), zone + ".xml")
    try:
        before = read_system(path)
        base = before
        if base is None:
            base = read_system(os.path.join(sysroot.path(PACKAGED_ZONES), zone + ".xml"))
            if base is None and not sysroot.real:
                base = read_system(os.path.join(PACKAGED_ZONES, zone + ".xml"))
        root = parse_zone(base, path) if base is not None else element("zone")
    except ValueError as exc:
        out.refusals += [(c, str(exc), "") for c in CHECKS]
        return out

    db_ports = {w.port for w in wants if w.action == "deny" and w.port is not None}
    kept: list[ET.Element] = []
    skip_next = False
    for el in list(root):
        if skip_next:  # the element behind our marker: ours, planned again below
            skip_next = False
            if not is_comment(el):
                continue
        if is_marker(el):
            skip_next = True
            continue
        if not is_comment(el) and db_ports and opens(el, sysroot, db_ports):
            what = rich_text(el) if el.tag == "rule" else f"{el.tag} {el.attrib.get('name') or el.attrib.get('port')}"
            out.notes.append(f"removed from zone {zone}: {what} (it opens a database/cache port, FW-002)")
            out.commands.append(_remove_command(zone, el))
            continue
        kept.append(el)
    head = [e for e in kept if e.tag in ("short", "description")]
    rest = [e for e in kept if e.tag not in ("short", "description")]
    theirs = {element_key(e) for e in rest if not is_comment(e)}

    mine: list[tuple[ET.Element, str]] = []
    forwarded = [w for w in wants if w.forwarded and w.port is not None]
    strict_ok = (parse_version(fw.version) or (0,)) >= STRICT_SINCE
    for w in wants:
        if w.action == "allow" and w.port is not None:
            if w.source == "any":
                el = element("service", name="ssh") if w.port == 22 and w.proto == "tcp" else \
                    element("port", port=str(w.port), protocol=w.proto)
            else:
                el = rich_port_rule(w, "accept")
            mine.append((el, w.why or w.text()))
            if w.interface:
                out.notes.append(f"{w.text()}: firewalld matches interfaces by zone, so this is the rule "
                                 "for the sources; put the interface in a zone of its own to go further")
        elif w.action == "allow" and w.source != "any":
            mine.append((rich_port_rule(w, "accept"), w.why or w.text()))
        elif w.action == "deny" and w.port is not None and w.source != "any":
            mine.append((rich_port_rule(w, "reject"), w.why or w.text()))
        elif w.action == "deny" and w.port is None:
            target = root.attrib.get("target", "default")
            if target in _DENY_TARGETS:
                out.notes.append(f"zone {zone} keeps its target {target}: it rejects every new incoming "
                                 "connection the zone does not allow (default deny)")
            else:
                root.attrib.pop("target", None)
                out.notes.append(f"zone {zone}: target {target} -> default (reject what the zone does not allow)")
                out.commands.append(f"firewall-cmd --permanent --zone={zone} --set-target=default")
    if forwarded and strict_ok:
        for w in forwarded:
            if w.action == "allow":
                mine.append((forward_rule(w), f"{w.text()}: Docker publishes it; a forward port lets it "
                                               "through StrictForwardPorts"))
    elif forwarded:
        ports = ", ".join(sorted({str(w.port) for w in forwarded}, key=int))
        what = f"firewalld {fw.version} has no StrictForwardPorts" if fw.version else \
            "firewalld's version could not be read, so StrictForwardPorts cannot be relied on"
        out.refusals.append((
            "NET-007",
            f"{what}: Docker-published ports ({ports}) bypass its zones",
            "bind them to 127.0.0.1 (the network step, NET-001) or upgrade to firewalld 2.3"))

    added: list[ET.Element] = []
    for i, (el, why) in enumerate(mine):
        k = element_key(el)
        if k in theirs:
            if i == 0:  # the zone's own SSH rule comes to the front, unmarked: it stays theirs
                same = next(e for e in rest if not is_comment(e) and element_key(e) == k)
                rest.remove(same)
                added.append(same)
            continue
        theirs.add(k)
        added += [comment(f" {MARK}: {why.replace('--', '-')} "), el]
        out.commands.append(_add_command(zone, el))
    root[:] = head + added + rest
    after = render_zone(root)

    check = validate or validate_zone
    # The file as it is needs no second opinion: it is what firewalld loads now (and the parser is most
    # of the planning time).
    problem = None if after == before else check(after, zone)
    if problem is not None:
        out.refusals += [(c, f"the planned zone {zone} does not validate with firewalld: {problem}", "")
                         for c in CHECKS]
        out.commands.clear()
        return out
    if after != before:
        out.edits.append((path, before, after, 0o644 if before is None else None,
                          new_owner() if before is None else None))
    if forwarded and strict_ok:
        conf_path = sysroot.path(CONF)
        try:
            conf = read_system(conf_path)
            problem = None if conf is not None else f"{conf_path} is missing, so StrictForwardPorts cannot be set"
        except ValueError as exc:
            conf, problem = None, str(exc)
        if conf is None:
            out.refusals.append(("NET-007", problem or "", ""))
        elif strict_conf(conf) != conf:
            out.edits.append((conf_path, conf, strict_conf(conf), None, None))
            out.commands.append("sed -i 's/^StrictForwardPorts=.*/StrictForwardPorts=yes/' "
                                "/etc/firewalld/firewalld.conf")
    out.commands.append("firewall-cmd --reload")
    return out


def _add_command(zone: str, el: ET.Element) -> str:
    if el.tag == "service":
        return f"firewall-cmd --permanent --zone={zone} --add-service={el.attrib['name']}"
    if el.tag == "port":
        return f"firewall-cmd --permanent --zone={zone} --add-port={el.attrib['port']}/{el.attrib['protocol']}"
    if el.tag == "forward-port":
        a = el.attrib
        return (f"firewall-cmd --permanent --zone={zone} "
                f"--add-forward-port=port={a['port']}:proto={a['protocol']}:toport={a['to-port']}")
    return f"firewall-cmd --permanent --zone={zone} --add-rich-rule='{rich_text(el)}'"


def _remove_command(zone: str, el: ET.Element) -> str:
    return _add_command(zone, el).replace("--add-", "--remove-", 1)


def sync_argv(backend: str, sysroot: SystemRoot) -> tuple[str, ...]:
    """``python -m checks.firewall.sync BACKEND [--root DIR]`` with this interpreter."""
    argv: tuple[str, ...] = (sys.executable, "-m", "checks.firewall.sync", backend)
    return argv if sysroot.real else (*argv, "--root", sysroot.root)


# --- sync ----------------------------------------------------------------------------------------
def _docker_rules(runner: Runner) -> int | None:
    """How many rules Docker's nat chain has (None: there is no DOCKER chain, Docker's rules are not there)."""
    res = runner(["iptables", "-w", "-t", "nat", "-S", "DOCKER"], 5.0)
    if res.code != 0:
        return None
    return sum(1 for line in res.stdout.splitlines() if line.startswith("-A"))


_CLIENT_PY = r"""
import json, sys
try:
    from firewall.client import FirewallClient
except Exception as exc:
    print("firewalld's client module cannot be loaded (%s)" % exc); sys.exit(3)
try:
    c = FirewallClient(wait=0)
    if not c.connected:
        print("FirewallD is not running"); sys.exit(252)
    if sys.argv[1] == "reload":
        c.reload(); sys.exit(0)
    def view(s):
        return {"services": s.getServices(), "ports": ["%s/%s" % tuple(p) for p in s.getPorts()],
                "sources": s.getSources(), "rich": s.getRichRules(),
                "forward_ports": ["port=%s:proto=%s:toport=%s:toaddr=%s" % tuple(f) for f in s.getForwardPorts()]}
    zone = sys.argv[2]
    print(json.dumps({"runtime": view(c.getZoneSettings(zone)),
                      "permanent": view(c.config().getZoneByName(zone).getSettings())}))
except Exception as exc:
    print(str(exc).splitlines()[0] if str(exc) else type(exc).__name__); sys.exit(1)
"""
"""firewalld's own D-Bus client in firewalld's interpreter: the reload and both listings for about a third
of what three ``firewall-cmd`` runs cost (each is a whole interpreter and client start, about a second here)."""


def _client(runner: Runner, *args: str) -> RunResult | None:
    """The client script's answer; None when it cannot run (no firewalld interpreter, no client module)."""
    python = interpreter()
    if python is None:
        return None
    res = runner([python, "-I", "-c", _CLIENT_PY, *args], 60.0)
    return None if res.code in (3, 126, 127) else res


def _reload(runner: Runner) -> bool:
    """Reload firewalld (True), or False when it does not run; SyncError when the reload fails."""
    res = _client(runner, "reload")
    if res is None or res.code not in (0, NOT_RUNNING):  # the client failed: firewall-cmd says it best
        res = runner(["firewall-cmd", "--reload"], 60.0)
    if res.code == 127:
        raise SyncError("firewall-cmd is not installed: nothing can load the zone")
    if res.code == NOT_RUNNING:
        return False
    if res.code != 0:
        raise SyncError("firewall-cmd --reload failed: " + first_line(res.stderr + res.stdout, f"exit {res.code}"))
    return True


def _views(runner: Runner, zone: str) -> tuple[ZoneView, ZoneView]:
    """The zone's running and permanent settings."""
    res = _client(runner, "list", zone)
    if res is not None and res.code == 0:
        try:
            doc = json.loads(res.stdout)
            return tuple(  # type: ignore[return-value]
                ZoneView(services=set(d["services"]), ports=set(d["ports"]), sources=set(d["sources"]),
                         forward_ports=set(d["forward_ports"]), rich=list(d["rich"]))
                for d in (doc["runtime"], doc["permanent"]))
        except (ValueError, KeyError, TypeError):
            pass
    with ThreadPoolExecutor(2) as pool:  # two interpreters at once: the sync's time is mostly theirs
        asked = [pool.submit(runner, argv, 20.0) for argv in
                 (["firewall-cmd", f"--zone={zone}", "--list-all"],
                  ["firewall-cmd", "--permanent", f"--zone={zone}", "--list-all"])]
        live, perm = (f.result() for f in asked)
    for what, r in (("runtime", live), ("permanent", perm)):
        if r.code != 0:
            raise SyncError(f"firewall-cmd could not list the {what} zone {zone}: "
                            + first_line(r.stderr + r.stdout, f"exit {r.code}"))
    return parse_list_all(live.stdout), parse_list_all(perm.stdout)


def sync(sysroot: SystemRoot, runner: Runner) -> None:
    """Make the running firewalld equal the files and check it (see the module docstring); SyncError else."""
    zone = default_zone(sysroot)
    docker = _docker_rules(runner)
    # No `--state` first: the reload says it (252), and every round trip to firewalld costs.
    if not _reload(runner):
        return  # not running: it reads the files when it starts, there is no live zone to make equal
    if docker:
        deadline = time.monotonic() + DOCKER_WAIT
        while (_docker_rules(runner) or 0) < docker:
            if time.monotonic() > deadline:
                raise SyncError(f"Docker did not put its rules back within {DOCKER_WAIT:g} s of firewalld's "
                                "reload (published ports are down: restart docker)")
            time.sleep(0.05)
    running, permanent = _views(runner, zone)
    path = os.path.join(sysroot.path(ZONES), zone + ".xml")
    try:
        data = read_system(path)
        filed = file_view(parse_zone(data, path)) if data is not None else None
    except ValueError as exc:
        raise SyncError(str(exc)) from None
    for name in ("services", "ports", "sources", "forward_ports"):
        a, b = getattr(running, name), getattr(permanent, name)
        if a != b:
            raise SyncError(f"zone {zone}: the running {name} ({' '.join(sorted(a)) or 'none'}) differ from the "
                            f"permanent ones ({' '.join(sorted(b)) or 'none'}) after the reload")
    if sorted(running.rich) != sorted(permanent.rich):
        raise SyncError(f"zone {zone}: the running rich rules differ from the permanent ones after the reload")
    if filed is not None:
        for name in ("services", "ports", "sources"):
            a, b = getattr(filed, name), getattr(permanent, name)
            if a != b:
                raise SyncError(f"zone {zone}: firewalld did not load {path} ({name}: the file says "
                                f"{' '.join(sorted(a)) or 'none'}, firewalld has {' '.join(sorted(b)) or 'none'})")
        if len(filed.rich) != len(permanent.rich):
            raise SyncError(f"zone {zone}: firewalld did not load {path} ({len(filed.rich)} rich rules in the "
                            f"file, {len(permanent.rich)} loaded)")


__all__ = ["SyncError", "ZoneView", "plan", "sync", "validate_zone", "parse_zone", "render_zone", "rich_text",
           "parse_list_all", "file_view", "default_zone", "strict_conf", "service_ports", "sync_argv"]
