"""The secret values an installation holds, gathered for masking (checks/core/secrets.py masks them)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from checks.core.secrets import (
    _BLOCK_HEADER,
    _REQUIREPASS,
    closing_quote,
    is_flag_value,
    is_knob_key,
    is_quantity,
    is_secret_key,
    structural_values,
    url_userinfo,
)

if TYPE_CHECKING:  # pragma: no cover
    from checks.core.textio import Source
    from checks.install.model import EnvVar, Installation


def collect_secrets(inst: Installation) -> set[str]:
    """Every secret value in the installation's env files and compose environment.

    Besides each value, the text it is written as (escapes and all, from the
    file) and each line of a multi-line value: a diff or an evidence line shows
    one line of a block scalar at a time.
    """
    found: set[str] = set()
    sources = {src.display: src for src in inst.compose_files}

    def add(key: str, value: str | None, written: str | None = None) -> None:
        if not value:
            return
        if is_secret_key(key) and not is_flag_value(value) and not (is_knob_key(key) and is_quantity(value)):
            found.add(value)
            for text in (value, written):
                if text and (text is value or "$" not in text):  # ${VAR} as written is a name
                    found.update(line_pieces(text))
        userinfo = url_userinfo(value)
        if userinfo and userinfo[1]:
            found.add(userinfo[1])
            from urllib.parse import unquote

            found.add(unquote(userinfo[1]))
        found.update(structural_values(value))
        for m in _REQUIREPASS.finditer(value):
            if "$" not in m.group("pw"):
                found.add(m.group("pw"))

    for ef in inst.env_files:
        for e in ef.entries:
            written = _env_written(e.text)
            add(e.key, e.value, written)
            if e.raw and "$" not in e.raw:
                add(e.key, e.raw)
    for svc in inst.services:
        for var in list(svc.environment.values()) + list(svc.compose_env_written):
            written = _yaml_written(var, sources) if var.origin == "compose" else _env_written(var.where.text)
            add(var.key, var.value, written)
            if var.raw and "$" not in var.raw:
                add(var.key, var.raw)
        cmd = svc.opt("command")
        if cmd is not None:
            words = [str(n.value) for n in cmd.value] if cmd.is_seq() else [str(cmd.value)]
            joined = " ".join(words)
            for m in _REQUIREPASS.finditer(joined):
                if "$" not in m.group("pw"):
                    found.add(m.group("pw"))  # a ${VAR} is a name, not a secret; its value is in .env
            found.update(structural_values(joined))
    for value in inst.project_env.values():
        userinfo = url_userinfo(value)
        if userinfo and userinfo[1]:
            found.add(userinfo[1])
        found.update(structural_values(value))
    return {s for s in found if s and s.strip()}


def line_pieces(text: str) -> set[str]:
    """The value as written without its quotes, and each of its lines (3 characters or more)."""
    inner = text.strip()
    if inner[:1] in "\"'" and inner[-1:] == inner[:1] and len(inner) >= 2:
        inner = inner[1:-1]
    out = {inner} if inner else set()
    lines = inner.splitlines()
    if len(lines) > 1:
        for line in lines:
            piece = line.strip().strip("\"'").strip()
            if len(piece) >= 3 and not _BLOCK_HEADER.match(piece):
                out.add(piece)
    return out


def _env_written(text: str | None) -> str | None:
    """The value part of a ``KEY=value`` entry as written (quotes and escapes kept)."""
    if not text or "=" not in text:
        return None
    value = text.split("=", 1)[1].lstrip()
    quote = value[:1]
    if quote in "\"'":
        close = closing_quote(value, quote)
        return value[: close + 1] if close > 0 else value
    return value.split(" #", 1)[0].rstrip()


def _yaml_written(var: EnvVar, sources: dict[str, Source]) -> str | None:
    """A compose value's scalar as written in its file (block and folded scalars included)."""
    node = var.setting.node if var.setting is not None else None
    if node is None:
        return None
    src = sources.get(node.file)
    if src is None or not node.is_scalar():
        return None
    text = src.text[node.start:node.end]
    if node.style in ("|", ">"):
        text = text.split("\n", 1)[1] if "\n" in text else ""
    if isinstance(node.value, str) and node.value.startswith(var.key + "=") and "=" in text:
        text = text.split("=", 1)[1]  # `- "KEY=value"`: the value only
        if text[-1:] in "\"'" and text[-1:] not in text[:-1]:
            text = text[:-1]
    return text
