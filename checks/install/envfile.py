"""Env files with python-dotenv's parser, Compose's interpolation and line numbers."""

from __future__ import annotations

import io
import re
from collections.abc import Mapping

from dotenv.parser import parse_stream

from checks.core.errors import InputError
from checks.core.interpolate import interpolate
from checks.core.textio import Source
from checks.install.model import EnvEntry, EnvFile

_BREAK = re.compile(r"\r\n|\n|\r")
_ASSIGN = re.compile(r"^\s*(?:export\s+)?[^=\s]+\s*=\s*(?P<q>['\"]?)")


def parse_env(source: Source, lookup: Mapping[str, str] | None = None) -> list[EnvEntry]:
    """Parse ``source`` as a dotenv file.

    Values are interpolated (except single-quoted ones) against the variables
    defined earlier in the same file, then ``lookup``; that is what Compose does.
    """
    entries: list[EnvEntry] = []
    known: dict[str, str] = {}
    # python-dotenv reads a file in text mode, so CRLF (and a lone CR) arrive as
    # "\n": without this a CRLF file's multi-line value would keep its "\r".
    # Line numbers do not move: python-dotenv counts \r\n and \r as one line each,
    # so each entry's text as written is sliced from the file by line.
    written = source.text
    starts = [0] + [m.end() for m in _BREAK.finditer(written)]
    for binding in parse_stream(io.StringIO(_BREAK.sub("\n", written))):
        # A binding's original text starts with the blank lines before it; cite
        # the line the key (or the error) is on, not the first blank line.
        original, line = _skip_blank_lines(binding.original.string, binding.original.line)
        if binding.error:
            raise InputError("cannot parse this line of the env file (expected KEY=value)", source.display, line)
        if binding.key is None:
            continue
        match = _ASSIGN.match(original)
        quote = match.group("q") if match else ""
        raw = binding.value
        value = raw
        if raw is not None and quote != "'" and "$" in raw:
            env = dict(lookup or {})
            env.update(known)
            value = interpolate(raw, env).value
        if value is not None:
            known[binding.key] = value
        entries.append(EnvEntry(
            key=binding.key,
            value=value,
            raw=raw,
            line=line,
            text=_as_written(written, starts, line, original.rstrip("\n").count("\n")),
            quote=quote,
        ))
    return entries


def _as_written(text: str, starts: list[int], line: int, extra_lines: int) -> str:
    """Lines ``line`` .. ``line + extra_lines`` of ``text`` as written, without the final line break."""
    last = line + extra_lines  # 1-based number of the line after the entry
    chunk = text[starts[line - 1]: starts[last] if last < len(starts) else len(text)]
    return chunk[:-2] if chunk.endswith("\r\n") else chunk[:-1] if chunk.endswith(("\n", "\r")) else chunk


def _skip_blank_lines(original: str, line: int) -> tuple[str, int]:
    """Drop the whole blank lines python-dotenv attaches to the front of a binding."""
    stripped = original.lstrip()
    if not stripped:
        return original, line
    cut = original.rfind("\n", 0, len(original) - len(stripped)) + 1
    return original[cut:], line + original.count("\n", 0, cut)


def load_env_file(source: Source, role: str, lookup: Mapping[str, str] | None = None) -> EnvFile:
    env = EnvFile(path=source.path, display=source.display, source=source, roles=[role])
    env.entries = parse_env(source, lookup)
    return env
