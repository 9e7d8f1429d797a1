"""SEC-004 and SEC-005: a password inside a connection URL percent-encoded; Redis given a password."""

from __future__ import annotations

import re
from typing import TYPE_CHECKING
from urllib.parse import quote, unquote

from checks.audit.rules.common import is_redis
from checks.audit.rules.sec import needs_encoding, requirepass_args, requires_password
from checks.change.plan import Login
from checks.core.interpolate import pure_ref, uses_of
from checks.core.secrets import url_parts, url_password_span
from checks.fix import edit, rotate
from checks.fix.edit import EditRefused
from checks.fix.sec import PASSWORD_BYTES
from checks.fix.svcedit import bound, insert_service
from checks.install.model import EnvVar, Installation, Service

if TYPE_CHECKING:  # pragma: no cover - the planner imports the fixers, not the other way round
    from checks.fix.planner import Planner, Targets

from checks.fix.sec import write_var

#: Named secrets of the Redis gate logins: the password, and none at all ("").
REDIS_SECRET = "SEC-005.redis.password"
REDIS_NONE = "SEC-005.redis.none"
REDIS_USER = "default"
"""Redis' own name for the user ``requirepass`` sets the password of (ACLs)."""


def fix_sec_004(p: Planner) -> None:
    def targets(inst: Installation) -> Targets:
        for svc in inst.services:
            for var in svc.compose_env_written + svc.env_file_vars:
                yield from _encode_target(p, var)
        for ef in inst.env_files:
            for entry in ef.entries:

                yield from _encode_target(p, EnvVar.from_env_entry(ef, entry))
    p.each("SEC-004", targets)


def _encode_target(p: Planner, var: EnvVar) -> Targets:
    if not var.value or not var.key.upper().endswith("URL"):
        return
    parts = url_parts(var.value)
    if parts is None or not parts[1] or not needs_encoding(parts[1]):
        return
    # What SEC-004 judged: the first URL with a password in the value. The edit is
    # placed in the raw text, whose first URL can be another one (${PRIMARY} url2):
    # the result must be the value with that one password encoded, nothing else.
    judged = url_password_span(var.value)
    if judged is None:  # pragma: no cover - url_parts found a password, so its span exists
        return
    expected = var.value[:judged[0]] + quote(unquote(parts[1]), safe="") + var.value[judged[1]:]

    def apply(inst: Installation, var: EnvVar = var) -> None:
        raw = var.raw or ""
        span = url_password_span(raw)
        if span is not None and "$" in raw[span[0]:span[1]].replace("$$", ""):
            _encode_referenced(p, inst, var, raw[span[0]:span[1]])
        elif span is None:
            raise EditRefused(f"cannot find the password in {var.key} at {var.where.file}:{var.where.line}; "
                              "percent-encode it by hand")
        else:
            pw = raw[span[0]:span[1]].replace("$$", "$") if var.origin == "compose" else raw[span[0]:span[1]]
            encoded = quote(unquote(pw), safe="")
            write_var(p, inst, var, raw[:span[0]] + encoded + raw[span[1]:])
        if _value_now(p.inst(), var) != expected:
            raise EditRefused(f"{var.key} at {var.where.file}:{var.where.line} is built from variables and the "
                              "URL whose password needs encoding is not the one written there; "
                              "percent-encode it by hand")
    yield (("SEC-004", var.where.file, var.where.line, var.key), apply)


def _value_now(inst: Installation, var: EnvVar) -> str | None:
    """The value of the entry ``var`` was, in a re-discovered installation."""
    if var.origin == "env_file":
        for ef in inst.env_files:
            if ef.display == var.where.file:
                entry = next((e for e in ef.entries if e.line == var.where.line and e.key == var.key), None)
                return entry.value if entry is not None else None
        return None
    for svc in inst.services:
        for v in svc.compose_env_written:
            if v.where.file == var.where.file and v.where.line == var.where.line and v.key == var.key:
                return v.value
    return None


def _encode_referenced(p: Planner, inst: Installation, var: EnvVar, pw_raw: str) -> None:
    """The URL's password is ``${NAME}``: percent-encode NAME's value where it is defined,
    if NAME serves only as a URL password (anywhere else the encoding would change the password)."""
    name = pure_ref(pw_raw)
    where = f"{var.key} at {var.where.file}:{var.where.line}"
    if name is None:
        raise EditRefused(f"the password in {where} is built from variables; percent-encode it by hand")
    entry, ef = None, None
    if var.origin == "env_file" and var.env_file is not None:
        entry, ef = var.env_file.get(name), var.env_file  # env files read their own earlier entries first
    if entry is None:
        ef = p.project_env(inst)
        entry = ef.get(name) if ef is not None else None
    if entry is None or entry.value is None or ef is None:
        raise EditRefused(f"the password in {where} comes from ${{{name}}}, which is not set in an env file here; "
                          "percent-encode its value where it is set")
    other = _plain_use(p, inst, name)
    if other is not None:
        raise EditRefused(f"the password in {where} comes from ${{{name}}}, which {other} also uses outside a URL: "
                          f"encoding it would change that password too; give {name} a password without URL-reserved "
                          "characters (or use a separate, percent-encoded variable in the URL)")
    p.edit_env_entry(ef, entry, quote(unquote(entry.value), safe=""))


def _plain_use(p: Planner, inst: Installation, name: str) -> str | None:
    """Where ``${name}`` is used other than as a connection URL's password (None: nowhere)."""

    pat = uses_of(name)
    places: list[EnvVar] = []
    for svc in inst.services:
        places += svc.compose_env_written
    for ef in inst.env_files:
        places += [EnvVar.from_env_entry(ef, e) for e in ef.entries]
    seen = set()
    in_compose_urls = 0
    for v in places:
        if (v.where.file, v.where.line) in seen:
            continue
        seen.add((v.where.file, v.where.line))
        raw = v.raw or ""
        refs = len(pat.findall(raw))
        if not refs:
            continue
        span = url_password_span(raw) if v.key.upper().endswith("URL") else None
        inside = len(pat.findall(raw[span[0]:span[1]])) if span is not None else 0
        if refs > inside:
            return f"{v.where.file}:{v.where.line}"
        if v.origin == "compose":
            in_compose_urls += inside
    # Anything else in the compose files (a command, a healthcheck, a label) is a use of its own.
    counts = [(src.display, len(pat.findall(p.read_text(src.path)))) for src in inst.compose_files]
    if sum(n for _, n in counts) > in_compose_urls:
        return next(d for d, n in counts if n)
    return None


def fix_sec_005(p: Planner) -> None:
    inst = p.inst()
    redis = [s for s in inst.services if is_redis(s) and s.ports and not _redis_protected(s)]
    if not redis:
        return
    ef = p.project_env(inst)
    entry = ef.get("REDIS_PASSWORD") if ef is not None else None
    password = entry.value if entry is not None and entry.value else None
    if password is None:
        password = p.new_secret(PASSWORD_BYTES)
        p.set_env_var(inst, "REDIS_PASSWORD", password, "generated by dester-harden (SEC-005)")
    names = {s.name for s in redis}

    def targets(inst: Installation) -> Targets:
        for svc in inst.services:
            if svc.name not in names:
                continue
            if not requirepass_args(svc):
                yield (("SEC-005", svc.name, "command"), bound(_add_requirepass, p, svc))
            if svc.environment.get("REDISCLI_AUTH") is None:
                yield (("SEC-005", svc.name, "cli"), bound(_add_env, p, svc, "REDISCLI_AUTH", "${REDIS_PASSWORD}"))
        hosts = set()
        for svc in inst.services:
            if svc.name in names:
                hosts.add(svc.name)
                cn = svc.opt("container_name")
                if cn is not None and cn.value:
                    hosts.add(str(cn.value))
        for svc in inst.services:
            for var in svc.compose_env_written + svc.env_file_vars:
                yield from _redis_url_target(p, var, hosts, password)
    p.each("SEC-005", targets)
    running = rotate.redis_service_running(p, p.inst())
    if running is None:
        p.notes.append("SEC-005: Redis now requires REDIS_PASSWORD (in .env); recreate it and the API with "
                       "`docker compose up -d`.")
        return
    # Recreated with the plan (Redis and the API: their configuration changed); the gate
    # checks that a client without the password is refused and one with it gets in.
    p.named_secrets.update({REDIS_SECRET: password, REDIS_NONE: ""})
    p.logins += [Login(running, REDIS_USER, "0", REDIS_SECRET, True, kind="redis"),
                 Login(running, REDIS_USER, "0", REDIS_NONE, False, kind="redis")]
    p.notes.append("SEC-005: Redis now requires REDIS_PASSWORD (in .env); it and the API are recreated with it, "
                   "and the health gate checks that Redis refuses a client without the password.")


def _redis_protected(svc: Service) -> bool:
    return requires_password(svc)


def _add_requirepass(p: Planner, inst: Installation, svc: Service) -> None:
    cmd = svc.opt("command")
    if cmd is None:
        insert_service(p, inst, svc, lambda t, n: ["command: redis-server --requirepass ${REDIS_PASSWORD}"])
        return
    cmd = p.own(inst, cmd)
    if cmd.is_seq():
        if not cmd.value:
            raise EditRefused(f"the command of {svc.name} is an empty list; add --requirepass by hand")
        p.edit_node(inst, cmd, lambda t: edit.append_item(t, cmd, '"--requirepass"'))
        inst2 = p.inst()  # fresh positions for the second item
        svc2 = inst2.service(svc.name)
        cmd2_node = svc2.opt("command") if svc2 is not None else None
        if cmd2_node is None:
            raise EditRefused(f"the command of {svc.name} moved while planning; run the fix again")
        cmd2 = p.own(inst2, cmd2_node)
        p.edit_node(inst2, cmd2, lambda t: edit.append_item(t, cmd2, '"${REDIS_PASSWORD}"'))
    elif cmd.value is None or str(cmd.value).strip() == "":
        # ``command: null`` or an empty one: the image's default, redis-server.
        p.edit_node(inst, cmd, lambda t: edit.replace_scalar(t, cmd, "redis-server --requirepass ${REDIS_PASSWORD}"))
    elif cmd.is_scalar():
        with_pass = str(cmd.value) + " --requirepass ${REDIS_PASSWORD}"
        p.edit_node(inst, cmd, lambda t: edit.replace_scalar(t, cmd, with_pass))
    else:
        raise EditRefused(f"the command of {svc.name} is neither a string nor a list")


def _add_env(p: Planner, inst: Installation, svc: Service, key: str, value: str) -> None:
    """Add ``key: value`` to the service's environment in the first file that defines the service."""
    own = p.own_service(inst, svc)
    env = own.get("environment")  # one merged in from an anchor is refused by the edit
    if env is None:
        insert_service(p, inst, svc, lambda t, n: ["environment:", f"{edit.child_indent(t, n)}{key}: {value}"])
    elif env.value is None:
        raise EditRefused(f"the environment of {svc.name} is empty (null); add {key} by hand")
    elif env.is_map():
        p.edit_node(inst, env, lambda t: edit.insert_lines(t, env, [f"{key}: {value}"]))
    elif env.is_seq():
        p.edit_node(inst, env, lambda t: edit.append_item(t, env, edit.render_scalar(f"{key}={value}", '"')))
    else:
        raise EditRefused(f"the environment of {svc.name} is neither a mapping nor a list")


def _redis_url_target(p: Planner, var: EnvVar, hosts: set[str], password: str) -> Targets:
    value = var.value or ""
    m = re.match(r"^(rediss?://)([^@/]*@)?([^:/?#]+)", value)
    if not m or m.group(2) or m.group(3) not in hosts:
        return

    def apply(inst: Installation, var: EnvVar = var) -> None:
        raw = var.raw or ""
        mm = re.match(r"^(rediss?://)", raw)
        if not mm:
            raise EditRefused(f"{var.key} at {var.where.file}:{var.where.line} is built from variables; "
                              "add the password by hand")
        auth = ":${REDIS_PASSWORD}@" if var.origin == "compose" else f":{quote(password, safe='')}@"
        write_var(p, inst, var, mm.group(1) + auth + raw[mm.end():])
    yield (("SEC-005", var.where.file, var.where.line, var.key), apply)
