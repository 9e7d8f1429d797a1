"""ufw 0.36's user.rules and user6.rules: parsed, and rules rendered exactly as ``ufw allow`` writes them.

A rule is a ``### tuple ###`` line (``action proto dport dst sport src direction[_iface] [comment=HEX]``)
followed by the ``-A`` lines ufw generated for it; ``ufw status`` reads the tuples, ``ufw reload``
loads the lines. Checked against files real ufw wrote in the firewall sandbox (tests/data/ufw).
"""

from __future__ import annotations

import ipaddress
from collections.abc import Sequence
from dataclasses import dataclass, field

from checks.firewall.wants import Want

_TUPLE = "### tuple ### "
_RULES = "### RULES ###"
END_RULES = "### END RULES ###"


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
    if END_RULES in lines[start:]:
        end = start + lines[start:].index(END_RULES)
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


def prefix(v6: bool) -> str:
    """ufw's chain prefix: ``ufw`` (IPv4) or ``ufw6``."""
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
    p = prefix(v6)
    head = ["*filter", *(f":{p}-{c} - [0:0]" for c in _CHAINS)]
    logging = [x.format(p=p) for x in _LOG_LOW] if loglevel == "low" else []
    tail = [END_RULES, "", "### LOGGING ###", *logging, "### END LOGGING ###", "", "### RATE LIMITING ###",
            f'-A {p}-user-limit -m limit --limit 3/minute -j LOG --log-prefix "[UFW LIMIT BLOCK] "',
            f"-A {p}-user-limit -j REJECT", f"-A {p}-user-limit-accept -j ACCEPT", "### END RATE LIMITING ###",
            "COMMIT"]
    return UserRules(head, [], tail)


def family_source(w: Want, v6: bool) -> str | None:
    """The want's source in this family's form (``0.0.0.0/0``/``::/0`` for any); None: not this family."""
    if w.v6 is not None and w.v6 is not v6:
        return None
    if w.source == "any":
        return "::/0" if v6 else "0.0.0.0/0"
    net = ipaddress.ip_network(w.source, strict=False)
    return str(net) if (net.version == 6) is v6 else None


def rule_block(w: Want, v6: bool) -> Block | None:
    """The user.rules block ufw writes for ``w`` (``ufw allow from SRC to any port P proto tcp``)."""
    src = family_source(w, v6)
    if src is None or w.action not in ("allow", "deny"):
        return None
    anyaddr = "::/0" if v6 else "0.0.0.0/0"
    direction = f"in_{w.interface}" if w.interface else "in"
    dport = str(w.port) if w.port is not None else "any"
    tuple_line = f"{_TUPLE}{w.action} {w.proto} {dport} {anyaddr} any {src} {direction}"
    target = "ACCEPT" if w.action == "allow" else "DROP"
    base = f"-A {prefix(v6)}-user-input" + (f" -i {w.interface}" if w.interface else "")
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
        if t is not None and t.action.split(":")[-1] in ("allow", "limit") and t.ports & denied:  # route:allow too
            removed.append(b.tuple_line[len(_TUPLE):])
            continue
        kept.append(b)
    return UserRules(current.head, ours + kept, current.tail, current.loose), removed
