"""SEC-003: secrets written in the compose file move to the project's .env (the file keeps ``${NAME}``)."""

from __future__ import annotations

import functools
import re
from typing import TYPE_CHECKING

from checks.audit.rules.sec import literal_secret_note, requirepass_args, ships_default
from checks.core.interpolate import default_refs, interpolate, pure_ref, uses_of
from checks.core.secrets import is_credential_key, url_password_span
from checks.core.yamlpos import Node
from checks.fix import edit
from checks.fix.edit import EditRefused
from checks.fix.svcedit import bound
from checks.install.model import EnvVar, Installation

if TYPE_CHECKING:  # pragma: no cover - the planner imports the fixers, not the other way round
    from checks.fix.planner import Planner, Targets


def fix_sec_003(p: Planner) -> None:
    def targets(inst: Installation) -> Targets:
        for svc in inst.services:
            for var in svc.compose_env_written:
                if literal_secret_note(var, inst.env_for(var.where.file)) is None:
                    continue
                yield (("SEC-003", var.where.file, var.where.line, var.key), bound(_move_to_env, p, var))
            for arg, node in requirepass_args(svc):
                if arg.strip("\"'") and (not interpolate(arg, {}).refs or _ships_default(arg, inst, node.file)):
                    yield (("SEC-003", node.file, node.line, "requirepass"), bound(_move_requirepass, p, arg, node))
    p.each("SEC-003", targets)


def _ships_default(raw: str, inst: Installation, file: str | None = None) -> bool:
    return ships_default(interpolate(raw, inst.env_for(file)).defaults)


_MOVED = "moved out of the compose file by dester-harden (SEC-003)"


def _var_name(key: str) -> str:
    """``key`` as a name ``${...}`` can hold (Compose keys may have dots and dashes)."""
    name = re.sub(r"[^A-Za-z0-9_]", "_", key)
    return "_" + name if name[:1].isdigit() else name


def _free_name(p: Planner, inst: Installation, base: str, value: str) -> str:
    """``base`` (or base_2, base_3, ...) that the project's .env does not hold with another
    value and no compose file refers to already: the name will mean ``value`` and nothing else."""
    ef = p.project_env(inst)
    texts = [p.read_text(src.path) for src in inst.compose_files]
    for n in range(1, 100):
        name = base if n == 1 else f"{base}_{n}"
        entry = ef.get(name) if ef is not None else None
        if entry is not None:
            if entry.value == value:
                return name
            continue
        uses = uses_of(name)
        if any(uses.search(t) for t in texts):
            continue
        return name
    raise EditRefused(f"no free variable name for {base}; move the value by hand")


def _url_password_name(p: Planner, inst: Installation, var: EnvVar, password: str) -> str:
    """The variable to hold a connection URL's password: one that already holds exactly
    this password (POSTGRES_PASSWORD in .env or in the compose file), else <KEY>_PASSWORD."""
    ef = p.project_env(inst)
    for entry in (ef.entries if ef is not None else []):
        if entry.value == password and "PASS" in entry.key.upper() and is_credential_key(entry.key):
            return entry.key
    for svc in inst.services:
        for other in svc.compose_env_written:
            if other.value != password or "PASS" not in other.key.upper() or not is_credential_key(other.key):
                continue
            ref = pure_ref(other.raw)
            if ref is not None:
                return ref
            name = _var_name(other.key)
            if _free_name(p, inst, name, password) == name:
                return name
    base = re.sub(r"_?URL$", "", _var_name(var.key), flags=re.I) or _var_name(var.key)
    return _free_name(p, inst, base.upper() + "_PASSWORD", password)


def _move_to_env(p: Planner, inst: Installation, var: EnvVar) -> None:
    """SEC-003: the secret goes to the project's .env; the compose file keeps ``${NAME}``.

    A connection URL keeps everything but its password in place; a
    ``${NAME:-secret}`` default becomes NAME in .env.
    """
    node = var.setting.node if var.setting is not None else None
    if node is None:
        raise EditRefused(f"{var.key} has no value to move")
    edit.ensure_editable(p.own(inst, node), var.key)
    raw = var.raw or ""
    ef = p.project_env(inst)
    refs = list(default_refs(raw))
    span = url_password_span(raw)
    if not is_credential_key(var.key) and span is not None and not interpolate(raw[span[0]:span[1]], {}).refs:
        value = var.value or ""
        vspan = url_password_span(value)
        if vspan is None:
            raise EditRefused(f"cannot find the password in {var.key} at {var.where.file}:{var.where.line}; "
                              "move it by hand")
        password = value[vspan[0]:vspan[1]]
        name = _url_password_name(p, inst, var, password)
        if ef is None or ef.get(name) is None:
            p.set_env_var(inst, name, password, _MOVED)
        new_raw = raw[:span[0]] + "${" + name + "}" + raw[span[1]:]
    elif refs:
        # ${NAME:-literal}: define NAME in .env and drop the written default.
        new_raw = raw
        for written, name, default in refs:
            if default is None:
                continue
            entry = ef.get(name) if ef is not None else None
            if entry is None:
                p.set_env_var(inst, name, interpolate(default, inst.project_env).value, _MOVED)
                inst = p.inst()
                ef = p.project_env(inst)
            new_raw = new_raw.replace(written, "${" + name + "}")
    else:
        value = var.value or ""
        name = _free_name(p, inst, _var_name(var.key), value)
        if ef is None or ef.get(name) is None:
            p.set_env_var(inst, name, value, _MOVED)
        new_raw = "${" + name + "}"
    inst = p.inst()
    # Find the same entry in the re-discovered model (positions may have moved).
    node = p.own(inst, _same_node(inst, var))
    text_value = str(node.value)
    new_text = var.key + "=" + new_raw if text_value.startswith(var.key + "=") else new_raw
    p.edit_node(inst, node, lambda t: edit.replace_scalar(t, node, new_text))


def _same_node(inst: Installation, var: EnvVar) -> Node:
    for svc in inst.services:
        for v in svc.compose_env_written:
            same = v.where.file == var.where.file and v.where.line == var.where.line and v.key == var.key
            if same and v.setting is not None:
                return v.setting.node
    raise EditRefused(f"{var.key} moved while planning; run the fix again")


def _replace(text: str, node: Node, value: str) -> str:
    return edit.replace_scalar(text, node, value)


def _move_requirepass(p: Planner, inst: Installation, arg: str, node: Node) -> None:
    edit.ensure_editable(node, "the command")
    value = interpolate(arg, inst.project_env).value
    name = "REDIS_PASSWORD"
    ef = p.project_env(inst)
    entry = ef.get(name) if ef is not None else None
    if entry is not None and entry.value != value:
        raise EditRefused(f"{name} in .env differs from the password in the command; make them agree by hand")
    if entry is None:
        p.set_env_var(inst, name, value, "moved out of the compose file by dester-harden (SEC-003)")
    inst = p.inst()
    for svc in inst.services:
        for a, n in requirepass_args(svc):
            if n.file == node.file and n.line == node.line and a == arg:
                raw = str(n.value)
                new = raw.replace(arg, "${REDIS_PASSWORD}", 1)
                p.edit_node(inst, n, functools.partial(_replace, node=n, value=new))
                return
    raise EditRefused("the Redis command moved while planning; run the fix again")
