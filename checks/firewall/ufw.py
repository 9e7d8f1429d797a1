"""The ufw backend: the wanted rules in ufw's own files, and the sync that loads them.

What :func:`plan` writes (ufw 0.36's formats, checked against files real ufw wrote in a sandbox):

* ``/etc/ufw/user.rules`` and ``user6.rules``: one ``### tuple ###`` line and its ``-A`` lines per
  rule, exactly as ``ufw allow`` writes them, so ``ufw status`` lists them and ``ufw reload`` loads
  them. Ours go first, in the wanted order (the SSH allows at the very top, before any existing
  deny); the user's other rules stay after them, except allows of a database or cache port (FW-002).
* ``/etc/default/ufw``: ``DEFAULT_INPUT_POLICY="DROP"`` (deny incoming); ``/etc/ufw/ufw.conf``:
  ``ENABLED=yes``.
* ``after.rules`` / ``after6.rules``: a marked block (``# BEGIN dester-harden`` ... ``# END
  dester-harden``, its own ``*filter`` ... ``COMMIT``) that declares ``DOCKER-USER`` and the own chain
  ``DH-DOCKER`` jumped to from it. Declaring a chain in ``iptables-restore -n`` flushes it, so every
  ``ufw reload`` rebuilds both and never duplicates a rule. DH-DOCKER returns (hands back to Docker's
  own rules) traffic from Docker's bridges and established connections, returns the allowed sources of
  each forwarded port (matched on conntrack's original destination port: after DNAT the packet's own
  port is the container's), and drops new connections to the other forwarded ports.

:func:`sync` (``python -m checks.firewall.sync ufw``) removes dester-harden's chain and jump from the
live tables itself (a ufw reload alone never deletes a chain whose block was removed: the "undo that
only a reboot fixed" of ufw-docker's users), reloads or disables ufw as ufw.conf says, then verifies
that the live chains equal the files.
"""

from __future__ import annotations

import ipaddress
import os
import re
import shlex
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from checks.core.sysroot import SystemRoot
from checks.firewall.sysfile import read_system
from checks.firewall.wants import BackendPlan, Want
from checks.live.fwmodel import FirewallState, Runner

if TYPE_CHECKING:
    from checks.install.model import Installation

CHAIN = "DH-DOCKER"
BEGIN = "# BEGIN dester-harden"
END = "# END dester-harden"
_TUPLE = "### tuple ### "
_RULES = "### RULES ###"
_END_RULES = "### END RULES ###"
_TIMEOUT = 30.0


class SyncError(RuntimeError):
    """The live firewall could not be made equal to the files, or differs from them (one line)."""


# -- user.rules ----------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class Tuple:
    """A ``### tuple ###`` line: ``action proto dport dst sport src direction[_iface] [comment=HEX]``."""

    action: str
    proto: str
    dport: str
    dst: str
    sport: str
    src: str
    direction: str
    interface: str | None = None
    comment: str | None = None

    @classmethod
    def parse(cls, text: str) -> Tuple | None:
        parts = text[len(_TUPLE):].split()
        if len(parts) < 7:
            return None
        comment = next((p[len("comment="):] for p in parts[7:] if p.startswith("comment=")), None)
        direction, _, iface = parts[6].partition("_")
        return cls(parts[0], parts[1], parts[2], parts[3], parts[4], parts[5], direction, iface or None, comment)

    def key(self) -> tuple[str, ...]:
        """What the rule does (its comment aside): two tuples with the same key are the same rule."""
        return (self.action, self.proto, self.dport, self.dst, self.sport, self.src, self.direction,
                self.interface or "")

    @property
    def ports(self) -> set[int]:
        out: set[int] = set()
        for part in self.dport.split(","):
            lo, _, hi = part.partition(":")
            if lo.isdigit() and (not hi or hi.isdigit()):
                out.update(range(int(lo), int(hi or lo) + 1))
        return out


@dataclass(slots=True)
class Block:
    """One rule of user.rules: its tuple line and the ``-A`` lines ufw generated for it."""

    tuple_line: str
    lines: list[str]

    @property
    def tuple(self) -> Tuple | None:
        return Tuple.parse(self.tuple_line)


@dataclass(slots=True)
class UserRules:
    """user.rules split where ufw itself splits it: the chain declarations, the rules, the rest."""

    head: list[str]
    blocks: list[Block]
    tail: list[str]
    """From ``### END RULES ###`` to the end (logging, rate limiting, COMMIT)."""
    loose: list[str] = field(default_factory=list)
    """``-A`` lines inside the RULES section outside any tuple (the package's pristine file has them)."""

    def render(self) -> str:
        out = list(self.head) + [_RULES]
        for b in self.blocks:
            out += ["", b.tuple_line, *b.lines]
        out += ["", *self.tail]
        return "\n".join(out) + "\n"


def parse_user_rules(text: str) -> UserRules:
    """Split user.rules (or user6.rules); raises ValueError when it is not in ufw's format."""
    lines = text.splitlines()
    if _RULES not in lines:
        raise ValueError("no '### RULES ###' line: not a ufw user rules file")
    start = lines.index(_RULES)
    head = lines[:start]
    if _END_RULES in lines[start:]:
        end = start + lines[start:].index(_END_RULES)
        tail = lines[end:]
    else:
        end = next((i for i in range(start + 1, len(lines)) if lines[i] == "COMMIT"), len(lines))
        tail = lines[end:]
    blocks: list[Block] = []
    loose: list[str] = []
    for line in lines[start + 1:end]:
        if line.startswith(_TUPLE):
            blocks.append(Block(line, []))
        elif line.startswith("-"):
            if blocks:
                blocks[-1].lines.append(line)
            else:
                loose.append(line)
        elif line.strip() and not line.startswith("#"):
            raise ValueError(f"unexpected line in the RULES section: {line[:60]!r}")
    return UserRules(head, blocks, tail, loose)


def _prefix(v6: bool) -> str:
    return "ufw6" if v6 else "ufw"


_LOG_LOW = [
    '-A {p}-after-logging-input -j LOG --log-prefix "[UFW BLOCK] " -m limit --limit 3/min --limit-burst 10',
    '-A {p}-after-logging-forward -j LOG --log-prefix "[UFW BLOCK] " -m limit --limit 3/min --limit-burst 10',
    '-I {p}-logging-deny -m conntrack --ctstate INVALID -j RETURN -m limit --limit 3/min --limit-burst 10',
    '-A {p}-logging-deny -j LOG --log-prefix "[UFW BLOCK] " -m limit --limit 3/min --limit-burst 10',
    '-A {p}-logging-allow -j LOG --log-prefix "[UFW ALLOW] " -m limit --limit 3/min --limit-burst 10',
]
_CHAINS = ("user-input", "user-output", "user-forward", "before-logging-input", "before-logging-output",
           "before-logging-forward", "user-logging-input", "user-logging-output", "user-logging-forward",
           "after-logging-input", "after-logging-output", "after-logging-forward", "logging-deny",
           "logging-allow", "user-limit", "user-limit-accept")


def fresh_user_rules(v6: bool, loglevel: str = "low") -> UserRules:
    """user.rules as ufw 0.36 writes it with no rules (the package ships a shorter file: ufw rewrites it
    in this form on its first change, and so do we)."""
    p = _prefix(v6)
    head = ["*filter", *(f":{p}-{c} - [0:0]" for c in _CHAINS)]
    logging = [x.format(p=p) for x in _LOG_LOW] if loglevel == "low" else []
    tail = [_END_RULES, "", "### LOGGING ###", *logging, "### END LOGGING ###", "", "### RATE LIMITING ###",
            f'-A {p}-user-limit -m limit --limit 3/minute -j LOG --log-prefix "[UFW LIMIT BLOCK] "',
            f"-A {p}-user-limit -j REJECT", f"-A {p}-user-limit-accept -j ACCEPT", "### END RATE LIMITING ###",
            "COMMIT"]
    return UserRules(head, [], tail)


def _for_family(w: Want, v6: bool) -> str | None:
    """The want's source in this family's form (``0.0.0.0/0``/``::/0`` for any); None: not this family."""
    if w.v6 is not None and w.v6 is not v6:
        return None
    if w.source == "any":
        return "::/0" if v6 else "0.0.0.0/0"
    net = ipaddress.ip_network(w.source, strict=False)
    return str(net) if (net.version == 6) is v6 else None


def rule_block(w: Want, v6: bool) -> Block | None:
    """The user.rules block ufw writes for ``w`` (``ufw allow from SRC to any port P proto tcp``)."""
    src = _for_family(w, v6)
    if src is None or w.action not in ("allow", "deny"):
        return None
    anyaddr = "::/0" if v6 else "0.0.0.0/0"
    direction = f"in_{w.interface}" if w.interface else "in"
    dport = str(w.port) if w.port is not None else "any"
    tuple_line = f"{_TUPLE}{w.action} {w.proto} {dport} {anyaddr} any {src} {direction}"
    target = "ACCEPT" if w.action == "allow" else "DROP"
    base = f"-A {_prefix(v6)}-user-input" + (f" -i {w.interface}" if w.interface else "")
    srcpart = f" -s {src}" if src != anyaddr else ""
    if w.port is None:
        lines = [f"{base}{srcpart} -j {target}"]
    else:
        protos = ("tcp", "udp") if w.proto == "any" else (w.proto,)
        lines = [f"{base} -p {p} --dport {w.port}{srcpart} -j {target}" for p in protos]
    return Block(tuple_line, lines)


def user_wants(wants: Sequence[Want]) -> list[Want]:
    """The wants that are user rules (the default deny is the policy, not a rule)."""
    return [w for w in wants if not (w.port is None and w.source == "any" and not w.interface)]


def merge_user_rules(current: UserRules, wants: Sequence[Want], v6: bool,
                     denied: set[int]) -> tuple[UserRules, list[str]]:
    """Ours first in the wanted order, then the user's other rules, without allows of ``denied`` ports.

    Returns the new rules and the removed rules' tuple lines (FW-002)."""
    ours = [b for b in (rule_block(w, v6) for w in user_wants(wants)) if b is not None]
    our_keys = {t.key() for b in ours if (t := b.tuple) is not None}
    kept: list[Block] = []
    removed: list[str] = []
    for b in current.blocks:
        t = b.tuple
        if t is not None and t.key() in our_keys:
            continue  # ours from an earlier run: written again at its place
        if t is not None and t.action in ("allow", "limit") and t.ports & denied:
            removed.append(b.tuple_line[len(_TUPLE):])
            continue
        kept.append(b)
    return UserRules(current.head, ours + kept, current.tail, current.loose), removed


# -- after.rules ---------------------------------------------------------------------------------
def chain_rules(wants: Sequence[Want], v6: bool) -> list[str]:
    """DH-DOCKER's rules for this family, in ``iptables -S`` form (so the sync can compare them)."""
    out = [f"-A {CHAIN} -i docker0 -j RETURN", f"-A {CHAIN} -i br-+ -j RETURN",
           f"-A {CHAIN} -m conntrack --ctstate RELATED,ESTABLISHED -j RETURN"]
    fwd = [w for w in wants if w.forwarded and w.port is not None]
    open_to_all: set[int] = set()
    for w in fwd:
        src = _for_family(w, v6)
        if src is None:
            continue
        anyaddr = "::/0" if v6 else "0.0.0.0/0"
        s = f" -s {src}" if src != anyaddr else ""
        i = f" -i {w.interface}" if w.interface else ""
        target = "RETURN" if w.action == "allow" else "DROP"
        if w.action == "allow" and not s and not i:
            open_to_all.add(w.port or 0)
        line = f"-A {CHAIN}{s}{i} -p tcp -m conntrack --ctorigdstport {w.port} --ctdir ORIGINAL -j {target}"
        if line not in out:
            out.append(line)
    if any(w.port is None and w.action == "deny" for w in wants):
        for w in fwd:
            line = f"-A {CHAIN} -p tcp -m conntrack --ctorigdstport {w.port} --ctdir ORIGINAL -j DROP"
            if w.port not in open_to_all and line not in out:
                out.append(line)
    return out


def after_block(wants: Sequence[Want], v6: bool) -> str:
    """The marked block appended to after.rules (after6.rules)."""
    lines = [f"{BEGIN}: Docker-published ports, checked after DNAT (generated by dester-harden; "
             "undo removes it)", "*filter", ":DOCKER-USER - [0:0]", f":{CHAIN} - [0:0]",
             f"-A DOCKER-USER -j {CHAIN}", *chain_rules(wants, v6), "COMMIT", END]
    return "\n".join(lines) + "\n"


def strip_block(text: str) -> str:
    """after.rules without dester-harden's block (the text unchanged when it has none)."""
    out: list[str] = []
    inside = False
    for line in text.splitlines(keepends=True):
        if line.startswith(BEGIN):
            inside = True
            if out and out[-1] == "\n":
                out.pop()  # the blank line with_block put before the block
            continue
        if inside:
            if line.startswith(END):
                inside = False
            continue
        out.append(line)
    if inside:
        raise ValueError(f"'{BEGIN}' without '{END}'")
    return "".join(out)


def block_lines(text: str) -> list[str] | None:
    """The DH-DOCKER rules of the block in an after.rules text; None: no block."""
    if BEGIN not in text:
        return None
    inside = False
    out: list[str] = []
    for line in text.splitlines():
        if line.startswith(BEGIN):
            inside = True
        elif line.startswith(END):
            inside = False
        elif inside and line.startswith(f"-A {CHAIN} "):
            out.append(line)
    return out


def with_block(text: str, wants: Sequence[Want], v6: bool) -> str:
    base = strip_block(text)
    if not any(w.forwarded for w in wants):
        return base
    sep = "\n" if base.endswith("\n") else ("\n\n" if base else "")
    return base + sep + after_block(wants, v6)


# -- settings files ------------------------------------------------------------------------------
def set_var(text: str, name: str, value: str) -> str:
    """``NAME=value`` in a shell-style settings file (replaced in place, else appended)."""
    pat = re.compile(rf"^{re.escape(name)}=.*$", re.M)
    if pat.search(text):
        return pat.sub(f"{name}={value}", text, count=1)
    return text + ("" if text.endswith("\n") or not text else "\n") + f"{name}={value}\n"


def get_var(text: str, name: str) -> str | None:
    m = re.search(rf"^{re.escape(name)}=(.*)$", text, re.M)
    return m.group(1).strip().strip("\"'") if m else None


# -- the plan ------------------------------------------------------------------------------------
def _ufw_command(w: Want, first: bool) -> str:
    verb = "insert 1 " + w.action if first else w.action
    if w.source == "any" and not w.interface and w.port is not None:
        return f"ufw {verb} {w.port}/{w.proto}"
    on = f" in on {w.interface}" if w.interface else ""
    src = f" from {w.source}" if w.source != "any" else ""
    port = f" to any port {w.port} proto {w.proto}" if w.port is not None else ""
    return f"ufw {verb}{on}{src}{port}"


def sync_argv(sysroot: SystemRoot, backend: str = "ufw") -> tuple[str, ...]:
    """The command a plan runs to make the live firewall equal the files (and verify it)."""
    return (sys.executable, "-m", "checks.firewall.sync", backend) + (() if sysroot.real else ("--root",
                                                                                               sysroot.root))


def plan(wants: Sequence[Want], fw: FirewallState, sysroot: SystemRoot,
         inst: Installation | None = None) -> BackendPlan:
    """What ufw's files must say for ``wants``; raises ValueError (one line) when a file cannot be used."""
    etc = sysroot.path("/etc/ufw")
    if not os.path.isdir(etc) or os.path.islink(etc):
        raise ValueError(f"{etc} is not a directory: is ufw installed? (apt install ufw)")
    default_path = sysroot.path("/etc/default/ufw")
    bp = BackendPlan("ufw", [], sorted({etc, os.path.dirname(default_path)}), sync_argv(sysroot))
    conf_path = os.path.join(etc, "ufw.conf")
    conf = (read_system(conf_path) or b"").decode("utf-8", "replace")
    loglevel = get_var(conf, "LOGLEVEL") or "low"
    defaults = (read_system(default_path) or b"").decode("utf-8", "replace")
    ipv6 = (get_var(defaults, "IPV6") or "yes").lower() == "yes"
    denied = {w.port for w in wants if w.action == "deny" and w.port is not None}

    def edit(path: str, after: str, before: bytes | None) -> None:
        if before is None:
            raise ValueError(f"{path} does not exist: reinstall ufw (apt install --reinstall ufw)")
        if after.encode() != before:
            bp.edits.append((path, before, after.encode(), None, None))

    for v6 in (False, True):
        if v6 and not ipv6:
            bp.notes.append("IPv6 is off in /etc/default/ufw (IPV6=no): only the IPv4 rules are written.")
            continue
        name = "user6.rules" if v6 else "user.rules"
        path = os.path.join(etc, name)
        raw = read_system(path)
        if raw is None:
            raise ValueError(f"{path} does not exist: reinstall ufw (apt install --reinstall ufw)")
        try:
            current = parse_user_rules(raw.decode("utf-8", "replace"))
        except ValueError as exc:
            raise ValueError(f"{path}: {exc}") from None
        if _END_RULES not in raw.decode("utf-8", "replace"):
            fresh = fresh_user_rules(v6, loglevel)
            current = UserRules(fresh.head, current.blocks, fresh.tail)
        merged, removed = merge_user_rules(current, wants, v6, denied)
        for r in removed:
            bp.notes.append(f"FW-002: the rule '{r}' ({name}) allowed a database or cache port: removed.")
        edit(path, merged.render(), raw)
        after_path = os.path.join(etc, "after6.rules" if v6 else "after.rules")
        after_raw = read_system(after_path)
        if after_raw is None:
            raise ValueError(f"{after_path} does not exist: reinstall ufw (apt install --reinstall ufw)")
        edit(after_path, with_block(after_raw.decode("utf-8", "replace"), wants, v6), after_raw)
    if any(w.port is None and w.action == "deny" for w in wants):
        edit(default_path, set_var(defaults, "DEFAULT_INPUT_POLICY", '"DROP"'), read_system(default_path))
    edit(conf_path, set_var(conf, "ENABLED", "yes"), read_system(conf_path))
    for i, w in enumerate(user_wants(wants)):
        bp.commands.append(_ufw_command(w, i == 0))
    bp.commands.append("ufw default deny incoming")
    if any(w.forwarded for w in wants):
        bp.commands.append("# and in /etc/ufw/after.rules (after6.rules): the DOCKER-USER block shown in the diff")
    bp.commands.append("ufw --force enable   # or ufw reload when it is active")
    if fw.docker_user and any(CHAIN not in line and line not in ("-N DOCKER-USER", "-A DOCKER-USER -j RETURN")
                              for line in fw.docker_user):
        bp.notes.append("DOCKER-USER holds rules dester-harden did not write; ufw's reload flushes that chain "
                        "(it declares it in after.rules): keep the ones you need in after.rules too.")
    return bp


# -- the sync ------------------------------------------------------------------------------------
def _norm(line: str) -> tuple[str, ...]:
    """An ``-A`` line in a form both ufw's file and ``iptables -S`` agree on (``-m tcp`` dropped)."""
    toks = shlex.split(line)
    out: list[str] = []
    i = 0
    while i < len(toks):
        if toks[i] == "-m" and i + 1 < len(toks) and toks[i + 1] in ("tcp", "udp"):
            i += 2
            continue
        out.append(toks[i])
        i += 1
    chain = out[1] if len(out) > 1 else ""
    pairs: list[str] = []
    j = 2
    while j < len(out):  # option and value together, order-free but for -j (always last)
        k = j + 1
        while k < len(out) and not out[k].startswith("-"):
            k += 1
        pairs.append(" ".join(out[j:k]))
        j = k
    return (out[0], chain, *sorted(p for p in pairs if not p.startswith("-j ")),
            *(p for p in pairs if p.startswith("-j ")))


def _run(runner: Runner, argv: Sequence[str]) -> str:
    r = runner(list(argv), _TIMEOUT)
    if r.code != 0:
        msg = (r.stderr or r.stdout).strip().splitlines()
        raise SyncError(f"{' '.join(argv)} failed ({r.code}): {msg[-1] if msg else 'no message'}")
    return r.stdout


def _reset_chain(runner: Runner, exe: str) -> None:
    """Remove dester-harden's jump(s) from DOCKER-USER and its chain, whatever the files say now."""
    for _ in range(64):
        if runner([exe, "-w", "-D", "DOCKER-USER", "-j", CHAIN], _TIMEOUT).code != 0:
            break
    if runner([exe, "-w", "-S", CHAIN], _TIMEOUT).code == 0:
        _run(runner, [exe, "-w", "-F", CHAIN])
        _run(runner, [exe, "-w", "-X", CHAIN])
    du = runner([exe, "-w", "-S", "DOCKER-USER"], _TIMEOUT)
    if du.code == 0 and du.stdout.split() == ["-N", "DOCKER-USER"]:
        # Empty: the one our block declared before Docker ran. Deleting fails (and is left) while Docker's
        # FORWARD jumps to it; Docker creates it again when it starts.
        runner([exe, "-w", "-X", "DOCKER-USER"], _TIMEOUT)


def _check_ufw_dir(sysroot: SystemRoot) -> None:
    if sysroot.real:
        return
    mine, real = sysroot.path("/etc/ufw"), "/etc/ufw"
    try:
        same = os.path.samefile(mine, real)
    except OSError:
        same = False
    if not same:
        raise SyncError(f"ufw reads /etc/ufw, not {mine}: under --root the sync runs only where {mine} is "
                        "mounted over /etc/ufw (a private mount namespace), so the host's firewall is never "
                        "loaded from other files")


UFW_INIT = ("/lib/ufw/ufw-init", "/usr/lib/ufw/ufw-init")
"""ufw's own loader (what ufw.service runs at boot): ``force-reload`` loads the files whether ufw runs or
not, ``force-stop`` stops it; about 0.7 s faster than ``ufw reload`` (no Python start, no rule parse)."""


def sync(sysroot: SystemRoot, runner: Runner) -> None:
    """Make the live ufw and DOCKER-USER rules equal the files, then verify; raises SyncError (one line)."""
    _check_ufw_dir(sysroot)
    etc = sysroot.path("/etc/ufw")
    conf = (read_system(os.path.join(etc, "ufw.conf")) or b"").decode("utf-8", "replace")
    enabled = (get_var(conf, "ENABLED") or "no").lower() == "yes"
    defaults = (read_system(sysroot.path("/etc/default/ufw")) or b"").decode("utf-8", "replace")
    ipv6 = (get_var(defaults, "IPV6") or "yes").lower() == "yes"
    for exe in ("iptables", "ip6tables"):
        _reset_chain(runner, exe)
    init = next((p for p in UFW_INIT if os.access(p, os.X_OK)), None)
    if init is not None:
        _run(runner, [init, "force-reload" if enabled else "force-stop"])
    else:
        status = runner(["ufw", "status"], _TIMEOUT)
        if status.code == 127:
            raise SyncError("ufw is not installed (apt install ufw)")
        active = "Status: active" in status.stdout
        if enabled:
            _run(runner, ["ufw", "reload"] if active else ["ufw", "--force", "enable"])
        elif active:
            _run(runner, ["ufw", "disable"])
    policy = (get_var(defaults, "DEFAULT_INPUT_POLICY") or "DROP").upper()
    verify(sysroot, runner, enabled, ipv6, "DROP" if policy == "REJECT" else policy)


def _chains(text: str) -> tuple[dict[str, str], dict[str, list[str]]]:
    """``iptables -S`` as (builtin policies, chain -> its ``-A`` lines); a user chain with no rules is []."""
    policies: dict[str, str] = {}
    chains: dict[str, list[str]] = {}
    for line in text.splitlines():
        parts = line.split()
        if len(parts) >= 3 and parts[0] == "-P":
            policies[parts[1]] = parts[2]
        elif len(parts) >= 2 and parts[0] == "-N":
            chains.setdefault(parts[1], [])
        elif len(parts) >= 2 and parts[0] == "-A":
            chains.setdefault(parts[1], []).append(line)
    return policies, chains


def verify(sysroot: SystemRoot, runner: Runner, enabled: bool, ipv6: bool, policy: str = "DROP") -> None:
    """The live rules equal the files: ufw's user chains and input policy (or nothing of them when ufw is
    off), DH-DOCKER and its one jump from DOCKER-USER. One ``iptables -S`` per family."""
    etc = sysroot.path("/etc/ufw")
    for v6, exe in ((False, "iptables"), (True, "ip6tables")):
        loaded = enabled and (ipv6 or not v6)
        r = runner([exe, "-w", "-S"], _TIMEOUT)
        if r.code != 0:
            if v6 and not loaded:
                continue  # no ip6tables (IPv6 off in the kernel): nothing of ours can be there
            raise SyncError(f"{exe} -S failed ({r.code}): {(r.stderr or r.stdout).strip()[:200]}")
        policies, chains = _chains(r.stdout)
        after = (read_system(os.path.join(etc, "after6.rules" if v6 else "after.rules")) or b"").decode(
            "utf-8", "replace")
        want_chain = block_lines(after) if loaded else None
        if want_chain is None:
            if CHAIN in chains:
                raise SyncError(f"{exe}: chain {CHAIN} is still loaded although the files have no such block")
        else:
            got = chains.get(CHAIN)
            if got is None or [_norm(x) for x in got] != [_norm(x) for x in want_chain]:
                raise SyncError(f"{exe}: chain {CHAIN} differs from {'after6' if v6 else 'after'}.rules "
                                f"({len(got or [])} live rules, {len(want_chain)} in the file)")
        jumps = sum(1 for ln in chains.get("DOCKER-USER", []) if ln.split()[-1:] == [CHAIN])
        if jumps != (0 if want_chain is None else 1):
            raise SyncError(f"{exe}: DOCKER-USER jumps to {CHAIN} {jumps} times, the files say "
                            f"{0 if want_chain is None else 1}")
        chain = f"{_prefix(v6)}-user-input"
        got_user = [_norm(ln) for ln in chains.get(chain, [])]
        if not loaded:
            if got_user:
                raise SyncError(f"{exe}: {chain} still holds {len(got_user)} rules although ufw is disabled")
            continue
        if chain not in chains:
            raise SyncError(f"{exe}: ufw is not running ({chain} is missing) although ufw.conf says ENABLED=yes")
        if policies.get("INPUT") != policy:
            raise SyncError(f"{exe}: the INPUT policy is {policies.get('INPUT')}, /etc/default/ufw says {policy}")
        rules = parse_user_rules((read_system(os.path.join(etc, "user6.rules" if v6 else "user.rules")) or
                                  b"").decode("utf-8", "replace"))
        want = [_norm(ln) for b in rules.blocks for ln in b.lines if ln.split()[1:2] == [chain]]
        if got_user != want:
            raise SyncError(f"{exe}: {chain} differs from {'user6' if v6 else 'user'}.rules "
                            f"({len(got_user)} live rules, {len(want)} in the file)")
