"""SEC-001, SEC-002, SEC-006, SEC-007: the database password and the application secrets where they are set.

With a running database (a live state) the password changes inside it too: checks/fix/rotate.py.

Also what the other SEC fixers share: :func:`write_var` (a value replaced where it is written)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING
from urllib.parse import quote, unquote

from checks.audit.rules.common import is_postgres, parse_db_url, service_hosts
from checks.audit.rules.sec import DEFAULT_SECRET, weakness
from checks.core.interpolate import pure_ref
from checks.core.secrets import is_secret_key, url_password_span
from checks.fix import edit, envedit, rotate
from checks.fix.edit import EditRefused
from checks.fix.svcedit import bound, remove_entry
from checks.install.model import EnvEntry, EnvFile, EnvVar, Installation, Service

if TYPE_CHECKING:  # pragma: no cover - the planner imports the fixers, not the other way round
    from checks.fix.planner import Planner, Targets

#: (user or None, password) -> whether that password place is one to change.
UserFilter = Callable[[str | None, str], bool]

#: secrets.token_urlsafe(32): 43 characters of A-Z a-z 0-9 - _, so DATABASE_URL needs no encoding.
PASSWORD_BYTES = 32
APP_SECRET_BYTES = 48


def _password_vars(inst: Installation, user_filter: UserFilter) -> Iterator[tuple[Service | None, EnvVar, str]]:
    """(service or None, EnvVar, kind) for every place that sets the database password."""
    hosts = service_hosts(inst)
    seen = set()
    for svc in inst.services:
        for var in svc.compose_env_written + svc.env_file_vars:
            k = (var.where.file, var.where.line)
            if k in seen:
                continue
            seen.add(k)
            yield from _classify(svc, var, hosts, user_filter)
    for ef in inst.env_files:
        for entry in ef.entries:
            k = (ef.display, entry.line)
            if k in seen:
                continue
            seen.add(k)

            var = EnvVar.from_env_entry(ef, entry)
            yield from _classify(None, var, hosts, user_filter)


def _classify(svc: Service | None, var: EnvVar, hosts: set[str], user_filter: UserFilter
              ) -> Iterator[tuple[Service | None, EnvVar, str]]:
    if not var.value:
        return
    if var.key in ("POSTGRES_PASSWORD", "MYSQL_PASSWORD", "MARIADB_PASSWORD"):
        user_key = {"POSTGRES_PASSWORD": "POSTGRES_USER", "MYSQL_PASSWORD": "MYSQL_USER",
                    "MARIADB_PASSWORD": "MARIADB_USER"}[var.key]
        user = None
        if svc is not None and svc.environment.get(user_key) is not None:
            user = svc.environment[user_key].value
        if user_filter(user or ("postgres" if var.key == "POSTGRES_PASSWORD" else None), var.value):
            yield svc, var, "plain"
    elif var.key.upper().endswith("URL"):
        parsed = parse_db_url(var.value)
        if parsed is None:
            return
        user, pw, host, _ = parsed
        if (host in hosts or host in ("localhost", "127.0.0.1")) and user_filter(user, unquote(pw)):
            yield svc, var, "url"


def _set_password(p: Planner, inst: Installation, svc: Service | None, var: EnvVar, kind: str, new: str,
                  check: str) -> None:
    """Put ``new`` where ``var`` sets the password, following ``${VAR}`` to the .env that holds it."""
    raw = var.raw or ""
    whole = pure_ref(raw)
    if kind == "url" and whole is not None:
        # DATABASE_URL: ${NAME:-postgresql://...}: define NAME in .env with the new password.
        parts = url_password_span(var.value or "")
        if parts is None:
            raise EditRefused(f"cannot find the password in {var.key} at {var.where.file}:{var.where.line}")
        value = var.value or ""
        url = value[:parts[0]] + quote(new, safe="") + value[parts[1]:]
        p.set_env_var(inst, whole, url, f"set by dester-harden ({check})", var.where.file)
        return
    if kind == "url":
        span = url_password_span(raw)
        if span is None:
            raise EditRefused(f"cannot find the password in {var.key} at {var.where.file}:{var.where.line}")
        pw_raw = raw[span[0]:span[1]]
        ref = pure_ref(pw_raw)
        if ref is None and "$" in pw_raw.replace("$$", ""):
            raise EditRefused(f"the password in {var.key} at {var.where.file}:{var.where.line} is built from "
                              "variables; set it by hand")
        if ref is not None:
            p.set_env_var(inst, ref, new, f"set by dester-harden ({check})", var.where.file)
            return
        new_raw = raw[:span[0]] + quote(new, safe="") + raw[span[1]:]
    else:
        ref = pure_ref(raw)
        if ref is not None:
            p.set_env_var(inst, ref, new, f"set by dester-harden ({check})", var.where.file)
            return
        if "$" in raw.replace("$$", ""):
            raise EditRefused(f"{var.key} at {var.where.file}:{var.where.line} is built from variables; set it by hand")
        new_raw = new
    write_var(p, inst, var, new_raw)


def write_var(p: Planner, inst: Installation, var: EnvVar, new_raw: str) -> None:
    """Replace the value of ``var`` where it is written (compose or env file) with ``new_raw``."""
    if var.origin == "env_file" and var.env_file is not None:
        entry = next((e for e in var.env_file.entries if e.line == var.where.line and e.key == var.key), None)
        if entry is None:
            raise EditRefused(f"{var.key} not found at {var.where.file}:{var.where.line}")
        p.edit_env_entry(var.env_file, entry, new_raw)
        return
    node = var.setting.node if var.setting is not None else None
    if node is None:
        raise EditRefused(f"{var.key} at {var.where.file}:{var.where.line} has no value to replace")
    text_value = str(node.value)
    if text_value.startswith(var.key + "=") and node.style in (None, '"', "'"):
        new_text = var.key + "=" + new_raw  # list form: "- KEY=value"
    else:
        new_text = new_raw
    p.edit_node(inst, node, lambda t: edit.replace_scalar(t, node, new_text))


def old_passwords(inst: Installation) -> dict[str, str]:
    """user -> the password the database takes now, as the files say: the one in the URL the API logs in with."""
    out: dict[str, str] = {}
    for _svc, var, kind in _password_vars(inst, lambda u, pw: True):
        user, pw = _current(var, kind)
        if kind == "url" and user:
            out.setdefault(user, pw)
    return out


def rotated(p: Planner, inst: Installation) -> bool:
    """Whether a fix earlier in this plan already gave the database a new password."""
    return any(_current(var, kind)[1] in p.generated for _svc, var, kind in _password_vars(inst, lambda u, pw: True))


def rotate_everywhere(p: Planner, check: str, new: str) -> None:
    """``new`` in every place that sets the database password, and in the running database when it runs.

    Without a running database (no Docker, or ``--files-only``) the plan says how to change
    it there by hand; with one, the ALTER ROLE is part of the plan (checks/fix/rotate.py).
    """
    before = p.inst()
    old = old_passwords(before)
    refused = len(p.refusals)
    _rotate(p, check, new, lambda user, pw: True)
    # An ALTER ROLE only when every place got the new password: a half-changed file set
    # would leave the API with a password the database no longer takes.
    if len(p.refusals) == refused and rotate.record(p, check, before, old, new):
        return
    users = sorted(u for u in old) or ["<user>"]
    p.notes.append(
        f"{check}: PostgreSQL keeps the old password inside its data volume. Before `docker compose up -d`, run "
        f"`docker compose exec postgres psql -U {users[0]} -c '\\password {users[0]}'` and type the new password "
        "(POSTGRES_PASSWORD in .env: `fix --reveal` shows it, the assistant reveals or copies it), "
        "or the API cannot log in.")


def fix_sec_001(p: Planner) -> None:
    inst = p.inst()
    weak_users = set()
    for _svc, var, kind in _password_vars(inst, lambda u, pw: True):
        user, pw = _current(var, kind)
        if weakness(pw, user, None):
            weak_users.add(user or "*")
    if not weak_users:
        return
    if p.db_password is not None:
        new = p.db_password
        p.generated.add(new)
    else:
        new = p.new_secret(PASSWORD_BYTES)
    rotate_everywhere(p, "SEC-001", new)


def _current(var: EnvVar, kind: str) -> tuple[str | None, str]:
    """(user in a URL, password in use) of a password place :func:`_password_vars` found."""
    value = var.value or ""
    if kind == "url":
        parsed = parse_db_url(value)
        assert parsed is not None  # _classify yields "url" only for a URL it parsed
        return parsed[0], unquote(parsed[1])
    return None, value


def _rotate(p: Planner, check: str, new: str, user_filter: UserFilter) -> None:
    def targets(inst: Installation) -> Targets:
        for svc, var, kind in _password_vars(inst, user_filter):
            if _current(var, kind)[1] == new:
                continue
            # ${NAME}: _set_password follows it to NAME in .env, whatever NAME is called
            # (an entry that is a password place of its own is then already done).
            yield ((check, var.where.file, var.where.line, var.key),
                   bound(_set_password, p, svc, var, kind, new, check))
    p.each(check, targets)


def fix_sec_002(p: Planner) -> None:
    inst = p.inst()
    canonical = None
    for svc in inst.services:
        if is_postgres(svc):
            var = svc.environment.get("POSTGRES_PASSWORD")
            if var is not None and var.value:
                canonical = var.value
                break
    if canonical is None:
        p.refuse("SEC-002", "no POSTGRES_PASSWORD in the database service to take as the one that counts")
        return
    before = p.inst()
    refused = len(p.refusals)
    _rotate(p, "SEC-002", canonical, lambda user, pw: True)
    if len(p.refusals) == refused:
        # The running API logs in with its URL's password: the database gets the one that counts.
        rotate.record(p, "SEC-002", before, old_passwords(before), canonical)


def fix_sec_006(p: Planner) -> None:
    def targets(inst: Installation) -> Targets:
        for svc in inst.services:
            for var in svc.compose_env_written:
                if var.key == "POSTGRES_HOST_AUTH_METHOD" and (var.value or "").strip().lower() == "trust":
                    yield (("SEC-006", var.where.file, var.where.line), bound(_delete_env, p, svc, var))
        for ef in inst.env_files:
            for entry in ef.entries:
                if entry.key == "POSTGRES_HOST_AUTH_METHOD" and (entry.value or "").strip().lower() == "trust":
                    yield (("SEC-006", ef.display, entry.line), bound(_delete_env_entry, p, ef, entry))
    p.each("SEC-006", targets)


def _delete_env_entry(p: Planner, inst: Installation, ef: EnvFile, entry: EnvEntry) -> None:
    p.write_text(ef.path, envedit.delete_entry(p.read_text(ef.path), entry))


def _delete_env(p: Planner, inst: Installation, svc: Service, var: EnvVar) -> None:
    node = var.setting.node if var.setting is not None else None
    if node is None:
        raise EditRefused(f"{var.key} at {var.where.file}:{var.where.line} could not be found to remove")
    remove_entry(p, inst, node, var.key)


def fix_sec_007(p: Planner) -> None:
    def targets(inst: Installation) -> Targets:
        seen = set()
        vars_: list[EnvVar] = []
        for svc in inst.services:
            vars_ += svc.compose_env_written + svc.env_file_vars
        for ef in inst.env_files:

            vars_ += [EnvVar.from_env_entry(ef, e) for e in ef.entries]
        for var in vars_:
            k = (var.where.file, var.where.line)
            if k in seen or not var.value or not is_secret_key(var.key) or var.key.upper().endswith("URL"):
                continue
            seen.add(k)
            if "PASSWORD" in var.key.upper() or var.key.upper().endswith(("_PASS", "_PWD")):
                continue
            if not DEFAULT_SECRET.match(var.value.strip()):
                continue

            def apply(i: Installation, var: EnvVar = var) -> None:
                ref = pure_ref(var.raw)
                new = p.new_secret(APP_SECRET_BYTES)
                if ref is not None:
                    p.set_env_var(i, ref, new, "generated by dester-harden (SEC-007)")
                else:
                    write_var(p, i, var, new)
            yield (("SEC-007", var.where.file, var.where.line), apply)
    p.each("SEC-007", targets)
