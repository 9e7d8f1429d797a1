"""iptables rules as comparable keys, and ufw's own files (user.rules, after.rules) as rules.

``iptables -S`` prints a rule the way the kernel holds it (``-m tcp`` added, ``/32`` added, the
``recent`` match's defaults spelled out); the files hold it the way it was written. A rule's
:func:`rule_key` is the same for both, so "live but not in the files" (FW-004) is a set difference.
"""

from __future__ import annotations

import ipaddress
import shlex

from checks.live.fwmodel import FwRule

_IGNORED = {"-m", "--name", "--mask", "--rsource"}
"""Options that only name a match module or spell out a default: not part of what a rule means."""
_ACTIONS = {"ACCEPT": "allow", "DROP": "deny", "REJECT": "reject"}


def _address(value: str) -> str:
    try:
        return str(ipaddress.ip_network(value, strict=False))
    except ValueError:
        return value


def parse_rule(line: str) -> tuple[str, dict[str, tuple[str, ...]]] | None:
    """``-A CHAIN opts...`` -> (chain, {option: args}); None for anything else (``-N``, ``-P``, comments)."""
    try:
        words = shlex.split(line)
    except ValueError:
        return None
    if len(words) < 2 or words[0] not in ("-A", "-I"):
        return None
    chain, rest = words[1], words[2:]
    if words[0] == "-I" and rest and rest[0].isdigit():
        rest = rest[1:]
    opts: dict[str, tuple[str, ...]] = {}
    negate = False
    i = 0
    while i < len(rest):
        word = rest[i]
        if word == "!":
            negate, i = True, i + 1
            continue
        if not word.startswith("-"):
            i += 1
            continue
        args = []
        i += 1
        while i < len(rest) and not rest[i].startswith("-") and rest[i] != "!":
            args.append(rest[i])
            i += 1
        if word in ("-s", "-d", "--source", "--destination"):
            args = [_address(a) for a in args]
            word = {"--source": "-s", "--destination": "-d"}.get(word, word)
        if word not in _IGNORED:
            opts[("!" if negate else "") + word] = tuple(args)
        negate = False
    return chain, opts


def rule_key(line: str) -> tuple[str, frozenset[tuple[str, tuple[str, ...]]]] | None:
    """What a rule means, equal for the file's and the kernel's spelling of it."""
    parsed = parse_rule(line)
    if parsed is None:
        return None
    chain, opts = parsed
    return chain, frozenset(opts.items())


def chain_lines(lines: list[str], chain: str) -> tuple[str, ...] | None:
    """``iptables -S CHAIN`` from the output of ``iptables -S``; None when the chain does not exist."""
    if f"-N {chain}" not in lines and not any(line.startswith(f"-P {chain} ") for line in lines):
        return None
    return tuple(line for line in lines if line == f"-N {chain}" or line.startswith(f"-A {chain} "))


def fw_rule(line: str, v6: bool, persistent: bool) -> FwRule | None:
    """A live ufw-user chain rule as :class:`FwRule` (for one the files do not hold)."""
    parsed = parse_rule(line)
    if parsed is None:
        return None
    _, opts = parsed
    target = (opts.get("-j") or ("",))[0]
    action = _ACTIONS.get(target, "limit" if target.startswith("ufw-user-limit") else "")
    if not action:
        return None
    dport = (opts.get("--dport") or opts.get("--dports") or ("",))[0]
    port = int(dport) if dport.isdigit() else None
    source = (opts.get("-s") or ("any",))[0]
    if source in ("0.0.0.0/0", "::/0"):
        source = "any"
    return FwRule(action, port, (opts.get("-p") or ("any",))[0], source, (opts.get("-i") or (None,))[0], v6,
                  line, persistent=persistent, live=True)


def _ports(spec: str) -> list[int | None]:
    if spec == "any":
        return [None]
    out: list[int | None] = []
    for part in spec.split(","):
        lo, _, hi = part.partition(":")
        if lo.isdigit() and (not hi or hi.isdigit()):
            out += list(range(int(lo), min(int(hi or lo), int(lo) + 4096) + 1))
    return out


def _shown(port: str, proto: str, iface: str | None) -> str:
    where = "Anywhere" if port == "any" else (port if proto == "any" else f"{port}/{proto}")
    return f"{where} on {iface}" if iface else where


def user_rules(text: str, v6: bool) -> tuple[list[FwRule], list[str], list[str]]:
    """ufw's user.rules (or user6.rules): its rules, the iptables lines it loads, and its route tuples.

    A rule is the ``### tuple ### ACTION PROTO DPORT DST SPORT SRC [DAPP SAPP] DIRECTION`` comment
    ufw writes above the lines it loads; ``route:`` tuples (``ufw route allow``) govern forwarding,
    not this host's ports, and come back as text only (for the container-IP check).
    """
    rules: list[FwRule] = []
    lines: list[str] = []
    routes: list[str] = []
    for raw in text.splitlines():
        line = raw.strip()
        if line.startswith(("-A ufw", "-I ufw")):
            lines.append(line)
        if not line.startswith("### tuple ###"):
            continue
        words = line[len("### tuple ###"):].split()
        if len(words) not in (7, 9):
            continue
        action, proto, dport, dst, _sport, src = words[:6]
        direction = words[-1]
        if action.startswith("route:"):
            routes.append(line)
            continue
        if not direction.startswith("in"):
            continue
        iface = direction.partition("_")[2] or None
        source = "any" if src in ("0.0.0.0/0", "::/0") else src
        text_shown = f"{_shown(dport, proto, iface)} {action.upper()} IN {'Anywhere' if source == 'any' else source}"
        if v6:
            text_shown += " (v6)"
        for port in _ports(dport):
            rules.append(FwRule(action, port, proto, source, iface, v6, text_shown))
    return rules, lines, routes


def chain_rules_in(text: str, chain: str) -> list[str]:
    """The ``-A CHAIN`` lines of a rules file (ufw's after.rules, iptables-persistent's rules.v4)."""
    out = []
    for raw in text.splitlines():
        line = raw.strip()
        if line.startswith((f"-A {chain} ", f"-I {chain} ")):
            out.append(line)
    return out


def addresses_in(line: str) -> list[str]:
    """The ``-s``/``-d`` addresses of an iptables line, or the DST and SRC of a ufw tuple."""
    if line.startswith("### tuple ###"):
        words = line[len("### tuple ###"):].split()
        return [words[3], words[5]] if len(words) >= 6 else []
    parsed = parse_rule(line)
    if parsed is None:
        return []
    _, opts = parsed
    return [a for k in ("-s", "-d", "!-s", "!-d") for a in opts.get(k, ())]


def inside(address: str, networks: list[ipaddress.IPv4Network | ipaddress.IPv6Network]) -> bool:
    """Whether ``address`` is one host (or a part) of a network in ``networks``, narrower than it."""
    try:
        net = ipaddress.ip_network(address, strict=False)
    except ValueError:
        return False
    for n in networks:
        if isinstance(net, ipaddress.IPv4Network) and isinstance(n, ipaddress.IPv4Network):
            if net.subnet_of(n) and net.prefixlen > n.prefixlen:
                return True
        elif isinstance(net, ipaddress.IPv6Network) and isinstance(n, ipaddress.IPv6Network) and \
                net.subnet_of(n) and net.prefixlen > n.prefixlen:
            return True
    return False
