"""SEC-*: passwords and other secrets in the configuration."""

from __future__ import annotations

import re
from collections import defaultdict

from checks.audit.findings import FAIL, PASS, SKIPPED, Outcome
from checks.audit.rules import Context, check
from checks.audit.rules.common import all_env_vars, db_passwords, is_postgres, is_redis, uses_sqlite
from checks.core.interpolate import interpolate
from checks.core.secrets import (
    is_credential_key,
    is_flag_value,
    is_knob_key,
    is_quantity,
    is_secret_key,
    url_parts,
)
from checks.core.yamlpos import Node
from checks.install.model import EnvVar, Installation, Service, Where

MIN_PASSWORD_LENGTH = 32

#: Defaults from DesterLib's installers, docs and history, and the usual suspects.
COMMON_PASSWORDS = {
    "postgres", "password", "desterlib", "changeme", "change-me", "change_me", "secret", "admin", "root",
    "123456", "12345678", "123456789", "qwerty", "letmein", "example", "dester", "dester_dev",
    "dester_password", "desterlib_prod", "desterlib_dev", "desterlib_test", "test", "default", "pass",
    "passw0rd", "password1", "password123", "postgrespassword", "postgres123", "mysecretpassword",
    "redis_password", "redis_dev", "your_password", "yourpassword", "db_password",
}


def weakness(password: str, user: str | None, db: str | None) -> list[str]:
    notes = []
    low = password.lower()
    if low in COMMON_PASSWORDS:
        notes.append("a well-known default password")
    if user and password == user:
        notes.append("the same as the database user name")
    if db and password == db and password != user:
        notes.append("the same as the database name")
    if len(password) < MIN_PASSWORD_LENGTH:
        notes.append(f"{len(password)} characters, fewer than {MIN_PASSWORD_LENGTH}")
    return notes


@check("SEC-001")
def sec_001(ctx: Context) -> Outcome:
    places = db_passwords(ctx.inst)
    if not places:
        if uses_sqlite(ctx.inst) and not any(is_postgres(s) for s in ctx.inst.services):
            return Outcome(SKIPPED, reason="this installation uses SQLite: there is no database password")
        if any(is_postgres(s) for s in ctx.inst.services):
            return Outcome(SKIPPED,
                           reason="the database password is not set in the files (a _FILE secret or an unset variable)")
        return Outcome(SKIPPED, reason="no database password found")
    ev = []
    seen = set()
    for p in places:
        notes = weakness(p.password, p.user, p.db)
        if notes and (p.where.file, p.where.line) not in seen:
            seen.add((p.where.file, p.where.line))
            ev.append(ctx.ev(p.where, p.service, "; ".join(notes)))
    return Outcome(FAIL if ev else PASS, ev)


@check("SEC-002")
def sec_002(ctx: Context) -> Outcome:
    places = db_passwords(ctx.inst)
    if len(places) < 2:
        return Outcome(PASS if places else SKIPPED, reason=None if places else "no database password found")
    by_user = defaultdict(list)
    for p in places:
        by_user[p.user or "postgres"].append(p)
    ev = []
    for user, group in by_user.items():
        distinct = {p.password for p in group}
        if len(distinct) < 2:
            continue
        order = [p.password for p in group]
        labels = {pw: chr(ord("A") + i) for i, pw in enumerate(sorted(distinct, key=order.index))}
        for p in group:
            what = f"user {user}: password {labels[p.password]} of {len(distinct)} different ones ({p.key})"
            ev.append(ctx.ev(p.where, p.service, what))
    return Outcome(FAIL if ev else PASS, ev)


def literal_secret_note(var: EnvVar, project_env: dict[str, str]) -> str | None:
    """Why a compose ``environment`` entry counts as a literal secret, or None."""
    raw = var.raw
    if raw is None or raw == "":
        return None
    s = var.setting
    if is_credential_key(var.key):
        value = var.value or ""
        literal_only = s is None or not s.refs
        if literal_only:
            if is_flag_value(value):
                return None
            if is_knob_key(var.key) and is_quantity(value):
                return None
            return f"{var.key} is set to a literal value"
        # ${VAR:-default}: the default ships in the file and is used when VAR is unset.
        if (s is not None and ships_default(s.defaults) and any(r not in project_env for r in s.refs)
                and not (is_knob_key(var.key) and is_quantity(value)) and not is_flag_value(value)):
            return f"{var.key} falls back to a default written in the file"
        return None
    parts = url_parts(raw)
    if parts is not None:
        password = parts[1]
        if password and not interpolate(password, {}).refs:
            return "a connection URL with a literal password"
        # postgresql://u:${PW:-dester_password}@...: with PW unset, the password in use is in the file.
        if password and ships_default(interpolate(password, project_env).defaults):
            return "a connection URL whose password falls back to a default written in the file"
    return None


def ships_default(defaults: list[str]) -> bool:
    """Whether interpolation used a default that has literal text in it.

    ``${TMDB_API_KEY:-}`` and ``${A:-${B}}`` fall back to nothing written in the
    file; ``${PW:-dester_password}`` falls back to a secret that is.
    """
    return any(interpolate(d, {}).literal for d in defaults)


def command_words(svc: Service) -> list[tuple[str, Node]]:
    """The service's command split into words, each with the node it came from."""
    cmd = svc.opt("command")
    if cmd is None or cmd.value is None:
        return []
    items = cmd.value if cmd.is_seq() else [cmd]
    return [(word, n) for n in items if n.value is not None for word in str(n.value).split()]


def requirepass_args(svc: Service) -> list[tuple[str, Node]]:
    """Each ``--requirepass`` argument as written, with its node."""
    words = command_words(svc)
    out = []
    for i, (word, node) in enumerate(words):
        if word == "--requirepass" and i + 1 < len(words):
            out.append(words[i + 1])
        elif word.startswith("--requirepass="):
            out.append((word.split("=", 1)[1], node))
    return out


def literal_secrets(inst: Installation) -> list[tuple[Service, Where, str]]:
    """Secrets written literally in compose files (SEC-003, and FS-002 needs it too)."""
    out = []
    for svc in inst.services:
        # Written, not effective: the text of an overridden entry is still in its file.
        for var in svc.compose_env_written:
            note = literal_secret_note(var, inst.env_for(var.where.file))
            if note:
                out.append((svc, var.where, note))
        for arg, node in requirepass_args(svc):
            if not arg.strip("\"'"):
                continue
            if not interpolate(arg, {}).refs:
                note = "Redis password written in the command"
            elif ships_default(interpolate(arg, inst.env_for(node.file)).defaults):
                note = "Redis password falls back to a default written in the command"
            else:
                continue
            src = next((c for c in inst.compose_files if c.display == node.file), None)
            lines = src.text.splitlines() if src else []
            text = lines[node.line - 1] if 0 < node.line <= len(lines) else ""
            out.append((svc, Where(node.file, node.line, text), note))
    return out


@check("SEC-003")
def sec_003(ctx: Context) -> Outcome:
    ev = [ctx.ev(where, svc.name, note) for svc, where, note in literal_secrets(ctx.inst)]
    return Outcome(FAIL if ev else PASS, ev)


#: A password that needs no encoding: unreserved characters and %XX escapes only.
#: One match (not a regex call per character: a 2 MB password took seconds).
_ENCODED = re.compile(r"(?:[A-Za-z0-9\-._~]|%[0-9A-Fa-f]{2})*")


def needs_encoding(password: str) -> bool:
    """Whether a URL password has characters that must be percent-encoded (SEC-004)."""
    return _ENCODED.fullmatch(password) is None


@check("SEC-004")
def sec_004(ctx: Context) -> Outcome:
    ev = []
    for svc, var in all_env_vars(ctx.inst):
        if not var.value or not var.key.upper().endswith("URL"):
            continue
        parts = url_parts(var.value)
        if parts is None or not parts[1]:
            continue
        if needs_encoding(parts[1]):
            ev.append(ctx.ev(var.where, svc.name if svc else None,
                             f"the password in {var.key} has URL-reserved characters that are not percent-encoded"))
    return Outcome(FAIL if ev else PASS, ev)


def requires_password(svc: Service) -> bool:
    """Whether Redis requires a password."""
    args = requirepass_args(svc)
    if args:
        return any(a.strip("\"'") for a, _ in args)
    env = svc.environment
    for key in ("REDIS_PASSWORD", "VALKEY_PASSWORD", "KEYDB_PASSWORD"):
        var = env.get(key)
        if var is not None and var.value:
            return True
    extra = env.get("REDIS_ARGS")
    return extra is not None and bool(extra.value) and "--requirepass" in (extra.value or "")


@check("SEC-005")
def sec_005(ctx: Context) -> Outcome:
    ev = []
    for svc in ctx.inst.services:
        if not is_redis(svc) or not svc.ports:
            continue
        if not requires_password(svc):
            for port in svc.ports:
                ip = port.host_ip or "0.0.0.0"
                ev.append(ctx.ev(port.where, svc.name,
                                 f"no requirepass; published on {ip}:{port.published or port.target}"))
    return Outcome(FAIL if ev else PASS, ev)


@check("SEC-006")
def sec_006(ctx: Context) -> Outcome:
    ev = []
    for svc, var in all_env_vars(ctx.inst):
        if var.key == "POSTGRES_HOST_AUTH_METHOD" and (var.value or "").strip().lower() == "trust":
            ev.append(ctx.ev(var.where, svc.name if svc else None, "every client may log in without a password"))
    return Outcome(FAIL if ev else PASS, ev)


#: An application secret as published in examples (SEC-007): the rule and its fix match it.
DEFAULT_SECRET = re.compile(
    r"^(change[-_ ]?(this|me)([-_ ].*)?|changeme.*|your[-_ ].*(secret|key|token).*|(super)?secret(key)?|"
    r"my[-_]?secret.*|jwt[-_]?secret|replace[-_]?me.*|please[-_]?change.*|insecure[-_].*|default[-_]?secret.*)$",
    re.I)


@check("SEC-007")
def sec_007(ctx: Context) -> Outcome:
    ev = []
    seen = set()
    for svc, var in all_env_vars(ctx.inst):
        if not var.value or not is_secret_key(var.key) or var.key.upper().endswith("URL"):
            continue
        if "PASSWORD" in var.key.upper() or var.key.upper().endswith(("_PASS", "_PWD")):
            continue  # passwords are SEC-001's
        if DEFAULT_SECRET.match(var.value.strip()) and (var.where.file, var.where.line) not in seen:
            seen.add((var.where.file, var.where.line))
            ev.append(ctx.ev(var.where, svc.name if svc else None, f"{var.key} is a published default"))
    return Outcome(FAIL if ev else PASS, ev)
