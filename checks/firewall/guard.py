"""FW-003, the SSH lockout guard: would this rule set cut the SSH session dester-harden runs in?

Rules are evaluated as ufw (and iptables) do: the first rule that matches the session's packets
decides, and the default policy when none does. A rule the guard cannot decide for this session
(an interface it does not know the session comes in on) counts against the plan when it denies and
not for it when it allows: the guard may refuse a safe plan, never pass one that cuts the session.

:func:`check_order` is the structural half: in a planned order, no deny comes before the SSH allows.
"""

from __future__ import annotations

import ipaddress
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from checks.firewall.wants import Want
from checks.live.fwmodel import FirewallState, FwRule, SshSession

Rule = Want | FwRule


@dataclass(frozen=True, slots=True)
class Verdict:
    """Whether a rule order keeps the session; ``reason`` is one line when it does not."""

    ok: bool
    reason: str = ""


def _text(rule: Rule) -> str:
    if isinstance(rule, Want):
        return rule.text()
    return rule.text or Want(rule.action, rule.port, rule.proto, rule.source, rule.interface).text()


def _source_matches(source: str, client: str) -> bool | None:
    """True/False when the rule's source does/does not hold the client; None: undecidable."""
    if source in ("any", "", "0.0.0.0/0", "::/0"):
        try:
            ipaddress.ip_address(client)
        except ValueError:
            return None
        return True
    try:
        net = ipaddress.ip_network(source, strict=False)
        addr = ipaddress.ip_address(client)
    except ValueError:
        return None
    if isinstance(addr, ipaddress.IPv6Address) and addr.ipv4_mapped is not None:
        addr = addr.ipv4_mapped
    if net.version != addr.version:
        return False
    return addr in net


def _matches(rule: Rule, session: SshSession) -> bool | None:
    """Whether ``rule`` matches the session's incoming packets (None: cannot tell)."""
    if rule.port is not None and rule.port != session.port:
        return False
    if rule.proto not in ("tcp", "any"):
        return False
    fam = getattr(rule, "v6", None)
    if fam is not None and rule.source in ("any", ""):
        client_v6 = ":" in session.client and not session.client.startswith("::ffff:")
        if fam is not client_v6:
            return False
    src = _source_matches(rule.source, session.client)
    if src is False:
        return False
    if rule.interface:
        return None  # the session's incoming interface is not known here
    return src


def evaluate(rules: Sequence[Rule], session: SshSession, default: str = "deny") -> Verdict:
    """First-match evaluation of ``rules`` for the session's packets; ``default`` when none matches."""
    for i, rule in enumerate(rules, 1):
        m = _matches(rule, session)
        allow = rule.action in ("allow", "limit")
        if m is None and not allow:
            return Verdict(False, f"rule {i} ({_text(rule)}) may match this SSH session "
                           f"({session.client} to port {session.port}) before any allow does, so it could cut it")
        if m is None:
            continue
        if m:
            if allow:
                return Verdict(True)
            return Verdict(False, f"rule {i} ({_text(rule)}) matches this SSH session ({session.client} to port "
                           f"{session.port}) before any allow does: it would cut the session")
    if default in ("allow", "accept"):
        return Verdict(True)
    return Verdict(False, f"no rule allows this SSH session ({session.client} to port {session.port}) and the "
                   f"default is {default} incoming: it would be cut")


def check_order(rules: Sequence[Rule], ssh_ports: Sequence[int]) -> Verdict:
    """No deny (of any port) before the last SSH allow: the SSH allows lead every rule list we write."""
    ssh = set(ssh_ports)
    seen_deny: Rule | None = None
    for rule in rules:
        if rule.action in ("allow", "limit") and rule.port in ssh and rule.source in ("any", "") \
                and not rule.interface:
            if seen_deny is not None:
                return Verdict(False, f"{_text(seen_deny)} is ordered before the SSH allow {_text(rule)}")
            ssh.discard(rule.port)
            if not ssh:
                return Verdict(True)
        elif rule.action not in ("allow", "limit") and seen_deny is None:
            seen_deny = rule
    if ssh:
        return Verdict(False, "no allow for SSH port(s) " + ", ".join(str(p) for p in sorted(ssh)) +
                       " in the planned rules")
    return Verdict(True)


def over_ssh(environ: Mapping[str, str] | None = None) -> bool:
    """Whether this process runs in an SSH session by its environment (``SSH_CONNECTION``, ``SSH_TTY``...)."""
    env = os.environ if environ is None else environ
    return any(env.get(k) for k in ("SSH_CONNECTION", "SSH_CLIENT", "SSH_TTY"))


def guard(fw: FirewallState, planned: Sequence[Rule], default: str = "deny",
          environ: Mapping[str, str] | None = None) -> Verdict:
    """FW-003 for a planned rule order (the whole list as the firewall will evaluate it).

    Refused: a session whose port cannot be determined (the environment says SSH but no session was
    read, or its port is not a port), any order that puts a deny before the SSH allows, and any order
    under which the session's packets would be dropped."""
    session = fw.ssh_session
    if session is None and over_ssh(environ):
        return Verdict(False, "this runs over SSH but the session's port could not be determined "
                       "(SSH_CONNECTION unreadable): no firewall change is made on a guess")
    if session is not None and not 0 < session.port < 65536:
        return Verdict(False, f"the SSH session's port ({session.port}) is not a port: no firewall change is made "
                       "on a guess")
    ports = sorted({*fw.ssh_ports, *((session.port,) if session is not None else ())}) or [22]
    order = check_order(planned, ports)
    if not order.ok:
        return order
    if session is None:
        return Verdict(True)
    return evaluate(planned, session, default)
