"""Editing env files in place: order, comments, quoting and line endings kept."""

from __future__ import annotations

import re

from checks.fix.edit import EditRefused, newline_of
from checks.install.model import EnvEntry

_UNQUOTED_SAFE = re.compile(r"^[A-Za-z0-9_./:@?=&%+,~-]*$")
_HEAD = re.compile(r"^(?P<head>\s*(?:export\s+)?[^=\s]+\s*=\s*)")


def render_value(value: str, quote: str = "") -> str:
    """A dotenv value that python-dotenv and Compose read back as ``value``, uninterpolated."""
    if quote == "'" and "'" not in value and "\n" not in value:
        return f"'{value}'"
    if _UNQUOTED_SAFE.match(value):
        return f'"{value}"' if quote == '"' else value
    if "'" not in value and "\n" not in value:
        return f"'{value}'"  # single quotes: no escapes, no ${...} interpolation
    raise EditRefused("the value holds both a single quote and characters that need quoting; set it by hand")


def _line_span(text: str, entry: EnvEntry) -> tuple[int, int]:
    pos = 0
    for _ in range(entry.line - 1):
        nl = text.find("\n", pos)
        if nl < 0:
            raise EditRefused(f"line {entry.line} not found")
        pos = nl + 1
    end = pos + len(entry.text)
    if text[pos:end] != entry.text:
        raise EditRefused(f"line {entry.line} is not where it was; run again")
    return pos, end


def set_value(text: str, entry: EnvEntry, value: str) -> str:
    """Give ``entry`` a new value, keeping ``export``, quoting and any inline comment."""
    start, end = _line_span(text, entry)
    line = text[start:end]
    m = _HEAD.match(line)
    if not m:
        raise EditRefused(f"cannot read line {entry.line}")
    rest = line[m.end():]
    comment = ""
    if rest[:1] in ("'", '"'):
        close = rest.find(rest[0], 1)
        while close > 0 and rest[0] == '"' and rest[close - 1] == "\\":
            close = rest.find('"', close + 1)
        if close < 0:
            raise EditRefused(f"unterminated quote at line {entry.line}")
        comment = rest[close + 1:]
    else:
        cm = re.search(r"\s+#", rest)
        comment = rest[cm.start():] if cm else ""
    return text[:start] + m.group("head") + render_value(value, entry.quote) + comment + text[end:]


def delete_entry(text: str, entry: EnvEntry) -> str:
    start, end = _line_span(text, entry)
    if end < len(text) and text[end:end + 2] == "\r\n":
        end += 2
    elif end < len(text) and text[end] == "\n":
        end += 1
    return text[:start] + text[end:]


def append(text: str, lines: list[tuple[str, str]], comment: str | None = None) -> str:
    """Add ``KEY=value`` lines at the end (a new file gets LF endings)."""
    nl = newline_of(text) if text else "\n"
    out = text
    if out and not out.endswith("\n"):
        out += nl
    if comment:
        out += f"# {comment}{nl}"
    for key, value in lines:
        out += f"{key}={render_value(value)}{nl}"
    return out
