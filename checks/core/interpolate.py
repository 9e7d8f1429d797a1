"""Docker Compose variable interpolation.

Supports what Compose supports: ``$$`` (a literal ``$``), ``$VAR``, ``${VAR}``,
``${VAR:-default}``, ``${VAR-default}``, ``${VAR:?error}``, ``${VAR?error}``,
``${VAR:+alternative}``, ``${VAR+alternative}``, with nesting inside defaults.
The result also says which variables were used, which were missing, and which
parts of the text were written literally (SEC-003 needs that).

The ``${VAR}`` matching the rest of the code needs (is this value a reference, which name,
where is a name used) is here too, so that it is written once.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field

_NAME_START = set("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz_")
_NAME_CHARS = _NAME_START | set("0123456789")


@dataclass(slots=True)
class Interpolated:
    """The outcome of interpolating one string."""

    value: str
    """The text with every reference replaced (missing variables become "")."""
    refs: list[str] = field(default_factory=list)
    """Variable names referenced, in order."""
    missing: list[str] = field(default_factory=list)
    """Referenced variables that had no value and no default."""
    literal: str = ""
    """The text written literally, outside any ``${...}`` (``$$`` counted as ``$``)."""
    defaults: list[str] = field(default_factory=list)
    """Default or alternative values written inside references."""
    error: str | None = None
    """A ``${VAR?message}`` that failed, or a malformed reference."""

    @property
    def has_refs(self) -> bool:
        return bool(self.refs)

    @property
    def resolved(self) -> bool:
        return not self.missing and self.error is None


def interpolate(text: str, env: Mapping[str, str]) -> Interpolated:
    """Interpolate ``text`` against ``env`` with Compose's rules."""
    out = Interpolated("")
    out.value = _expand(text, env, out, top=True)
    return out


def _expand(text: str, env: Mapping[str, str], out: Interpolated, top: bool) -> str:
    if "$" not in text:
        if top:
            out.literal += text
        return text
    parts: list[str] = []
    i, n = 0, len(text)
    while i < n:
        ch = text[i]
        if ch != "$":
            j = text.find("$", i)
            j = n if j < 0 else j
            parts.append(text[i:j])
            if top:
                out.literal += text[i:j]
            i = j
            continue
        nxt = text[i + 1] if i + 1 < n else ""
        if nxt == "$":
            parts.append("$")
            if top:
                out.literal += "$"
            i += 2
        elif nxt == "{":
            end = _matching_brace(text, i + 2)
            if end < 0:
                out.error = out.error or "unterminated ${ in a value"
                parts.append(text[i:])
                if top:
                    out.literal += text[i:]
                break
            parts.append(_braced(text[i + 2:end], env, out))
            i = end + 1
        elif nxt in _NAME_START:
            j = i + 1
            while j < n and text[j] in _NAME_CHARS:
                j += 1
            name = text[i + 1:j]
            out.refs.append(name)
            if name in env:
                parts.append(env[name])
            else:
                out.missing.append(name)
            i = j
        else:  # a lone "$" is kept as written
            parts.append("$")
            if top:
                out.literal += "$"
            i += 1
    return "".join(parts)


def _matching_brace(text: str, start: int) -> int:
    depth = 1
    i = start
    while i < len(text):
        if text.startswith("${", i):
            depth += 1
            i += 2
            continue
        if text[i] == "}":
            depth -= 1
            if depth == 0:
                return i
        i += 1
    return -1


def _braced(body: str, env: Mapping[str, str], out: Interpolated) -> str:
    j = 0
    while j < len(body) and body[j] in _NAME_CHARS:
        j += 1
    name, rest = body[:j], body[j:]
    if not name or name[0] not in _NAME_START:
        out.error = out.error or "invalid ${...} reference"
        return ""
    out.refs.append(name)
    value = env.get(name)
    for op in (":-", ":?", ":+", "-", "?", "+"):
        if rest.startswith(op):
            arg = rest[len(op):]
            break
    else:
        if rest:
            out.error = out.error or "invalid ${...} reference"
            return ""
        op, arg = "", ""
    empty_counts = op.startswith(":")
    is_set = value is not None and (value != "" or not empty_counts)
    kind = op[-1:] if op else ""
    if kind == "-":
        if is_set:
            return value  # type: ignore[return-value]
        out.defaults.append(arg)
        return _expand(arg, env, out, top=False)
    if kind == "+":
        if is_set:
            out.defaults.append(arg)
            return _expand(arg, env, out, top=False)
        return ""
    if kind == "?":
        if is_set:
            return value  # type: ignore[return-value]
        out.missing.append(name)
        out.error = out.error or f"required variable {name} is not set"
        return ""
    if value is None:
        out.missing.append(name)
        return ""
    return value


#: ``${NAME}``, ``${NAME:-default}``, ``${NAME-default}`` or ``$NAME``: group 1 or 3 the name, 2 the default.
REF = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::?-([^}]*))?\}|\$([A-Za-z_][A-Za-z0-9_]*)")
#: Any one reference, whatever its operator (``:?``, ``+``...).
_ANY_REF = re.compile(r"\$\{[A-Za-z_][A-Za-z0-9_]*(?:[:?\-+][^}]*)?\}|\$[A-Za-z_][A-Za-z0-9_]*")


def is_reference(value: str) -> bool:
    """Whether ``value`` (surrounding blanks aside) is exactly one ``${...}`` or ``$NAME`` reference."""
    return bool(_ANY_REF.fullmatch(value.strip()))


def pure_ref(raw: str | None) -> str | None:
    """NAME when ``raw`` is exactly ``${NAME}``, ``${NAME:-x}`` or ``$NAME``."""
    if raw is None:
        return None
    m = REF.fullmatch(raw.strip())
    if not m:
        return None
    return m.group(1) or m.group(3)


def leading_ref(raw: str) -> str | None:
    """NAME when ``raw`` starts with a reference followed by ``:`` (``${HOST_IP:-0.0.0.0}:5432:5432``)."""
    m = REF.match(raw)
    if m is None or raw[m.end():m.end() + 1] != ":":
        return None
    return m.group(1) or m.group(3)


def default_refs(text: str) -> Iterator[tuple[str, str, str | None]]:
    """(reference as written, name, default or None) of each plain or defaulted reference in ``text``."""
    for m in REF.finditer(text):
        yield m.group(0), m.group(1) or m.group(3), m.group(2)


def uses_of(name: str) -> re.Pattern[str]:
    """A pattern that finds every reference to ``name`` (``$name``, ``${name}``, ``${name:-x}``...)."""
    return re.compile(r"\$\{?" + re.escape(name) + r"(?![A-Za-z0-9_])")
