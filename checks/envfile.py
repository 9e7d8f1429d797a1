"""Env files with python-dotenv's parser, Compose's interpolation and line numbers."""

from __future__ import annotations

import io
import re
from typing import Mapping

from dotenv.parser import parse_stream

from .errors import InputError
from .interpolate import interpolate
from .model import EnvEntry, EnvFile
from .textio import Source

_ASSIGN = re.compile(r"^\s*(?:export\s+)?[^=\s]+\s*=\s*(?P<q>['\"]?)")


def parse_env(source: Source, lookup: Mapping[str, str] | None = None) -> list[EnvEntry]:
    """Parse ``source`` as a dotenv file.

    Values are interpolated (except single-quoted ones) against the variables
    defined earlier in the same file, then ``lookup``; that is what Compose does.
    """
    entries: list[EnvEntry] = []
    known: dict[str, str] = {}
    for binding in parse_stream(io.StringIO(source.text)):
        if binding.error:
            raise InputError("cannot parse this line of the env file (expected KEY=value)", source.display, binding.original.line)
        if binding.key is None:
            continue
        original = binding.original.string
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
            line=binding.original.line,
            text=original.rstrip("\r\n"),
            quote=quote,
        ))
    return entries


def load_env_file(source: Source, role: str, lookup: Mapping[str, str] | None = None) -> EnvFile:
    env = EnvFile(path=source.path, display=source.display, source=source, roles=[role])
    env.entries = parse_env(source, lookup)
    return env
