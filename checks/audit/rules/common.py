"""Shared recognisers: database services, the API service, passwords in places."""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from urllib.parse import unquote

from checks.core.secrets import url_parts
from checks.install.discovery import api_port as _api_port
from checks.install.discovery import find_api_service
from checks.install.model import EnvVar, Installation, Port, Service, Where

DB_PORTS = {5432, 3306, 6379, 27017}
_DB_REPOS = ("postgres", "postgis", "timescaledb", "pgvector", "mysql", "mariadb", "percona", "redis", "valkey",
             "keydb", "dragonfly", "mongo", "mongodb", "memcached")
_PG_REPOS = ("postgres", "postgis", "timescaledb", "pgvector")
_MYSQL_REPOS = ("mysql", "mariadb", "percona")
_REDIS_REPOS = ("redis", "valkey", "keydb", "dragonfly")
_BACKUP_HINT = re.compile(r"backup", re.I)


def _repo_is(svc: Service, repos: tuple[str, ...]) -> bool:
    repo = svc.image_repo
    return any(repo == r or repo.startswith(r + "-") or repo.startswith(r) for r in repos)


def is_db_service(svc: Service) -> bool:
    return _repo_is(svc, _DB_REPOS) and not _BACKUP_HINT.search(svc.image_repo)


def is_db_image(ref: str) -> bool:
    """Whether an image reference (``postgres:15-alpine``, as a running container has it) is a database's."""
    repo = ref.split("@", 1)[0].rsplit("/", 1)[-1].split(":", 1)[0].lower()
    return any(repo.startswith(r) for r in _DB_REPOS) and not _BACKUP_HINT.search(repo)


def is_postgres(svc: Service) -> bool:
    return _repo_is(svc, _PG_REPOS) and not _BACKUP_HINT.search(svc.image_repo)


def is_mysql(svc: Service) -> bool:
    return _repo_is(svc, _MYSQL_REPOS)


def is_redis(svc: Service) -> bool:
    return _repo_is(svc, _REDIS_REPOS)


def db_ports(svc: Service) -> Iterator[Port]:
    """Published ports that expose a database or cache."""
    db = is_db_service(svc)
    for port in svc.ports:
        if db or DB_PORTS.intersection(port.target_ports):
            yield port


def api_service(inst: Installation) -> Service | None:
    return find_api_service(inst)


def api_port(svc: Service) -> int:
    return _api_port(svc)


def service_hosts(inst: Installation) -> set[str]:
    """Host names that reach a service on the compose network."""
    names: set[str] = set()
    for svc in inst.services:
        names.add(svc.name)
        cn = svc.opt("container_name")
        if cn is not None and cn.value:
            names.add(str(cn.value))
    return names


@dataclass(slots=True)
class Password:
    """One place a database password is set."""

    user: str | None
    db: str | None
    password: str
    """Decoded (percent-decoding applied for URLs)."""
    where: Where
    service: str | None
    key: str
    from_url: bool


_URL_KEYS = re.compile(r"(^|_)(DATABASE|DB|POSTGRES|PG|MYSQL)_?URL$|^DATABASE_URL$", re.I)
_DB_SCHEMES = re.compile(r"^(postgres|postgresql|mysql|mariadb)(\+\w+)?://", re.I)


def parse_db_url(value: str) -> tuple[str | None, str, str | None, str | None] | None:
    """(user, password as written, host, database) of a database URL with a password."""
    if not _DB_SCHEMES.match(value):
        return None
    parts = url_parts(value)
    if parts is None:
        return None
    user, password, rest = parts
    host = re.split(r"[:/?#]", rest, maxsplit=1)[0] or None
    m = re.match(r"[^/?#]*/([^?#]*)", rest)
    db = m.group(1) if m else None
    return unquote(user), password, host, db or None


def _all_env_vars(inst: Installation) -> Iterator[tuple[Service | None, EnvVar]]:
    """Every env assignment that reaches a service or sits in the install's env files."""
    seen: set[tuple[str | None, int | None, str]] = set()
    for svc in inst.services:
        for var in list(svc.compose_env.values()) + svc.env_file_vars:
            key = (var.where.file, var.where.line, var.key)
            if key in seen:
                continue
            seen.add(key)
            yield svc, var
    for ef in inst.env_files:
        for entry in ef.entries:
            key = (ef.display, entry.line, entry.key)
            if key in seen:
                continue
            seen.add(key)
            yield None, EnvVar.from_env_entry(ef, entry)


def all_env_vars(inst: Installation) -> list[tuple[Service | None, EnvVar]]:
    """Every env assignment that reaches a service (with it) or sits in the install's env files (None)."""
    return list(_all_env_vars(inst))


def db_passwords(inst: Installation) -> list[Password]:
    """Every place that sets a password of the installation's database."""
    hosts = service_hosts(inst)
    out: list[Password] = []
    for svc in inst.services:
        env = svc.environment
        pw = env.get("POSTGRES_PASSWORD")
        if pw is not None and pw.value:
            user_var = env.get("POSTGRES_USER")
            db_var = env.get("POSTGRES_DB")
            u = user_var.value if user_var is not None and user_var.value else "postgres"
            dbname = db_var.value if db_var is not None and db_var.value else u
            out.append(Password(u, dbname, pw.value, pw.where, svc.name, "POSTGRES_PASSWORD", False))
        if is_mysql(svc):
            for key, ukey in (("MYSQL_PASSWORD", "MYSQL_USER"), ("MARIADB_PASSWORD", "MARIADB_USER"),
                              ("MYSQL_ROOT_PASSWORD", None), ("MARIADB_ROOT_PASSWORD", None)):
                mvar = env.get(key)
                uvar = env.get(ukey) if ukey else None
                if mvar is not None and mvar.value:
                    mu = uvar.value if uvar is not None else "root"
                    out.append(Password(mu, None, mvar.value, mvar.where, svc.name, key, False))
    local_db = any(is_db_service(s) and s.ports for s in inst.services)
    for owner, var in _all_env_vars(inst):
        if not var.value or not _URL_KEYS.search(var.key):
            continue
        if owner is not None and var.origin == "env_file" and owner.environment.get(var.key) is not var:
            continue  # overridden by the service's environment: never used
        parsed = parse_db_url(var.value)
        if parsed is None:
            continue
        user, password, host, db = parsed
        # Only URLs that reach this installation's database: a compose service, or
        # localhost when the compose file publishes a database port.
        if host not in hosts and not (local_db and host in ("localhost", "127.0.0.1", "::1", "[::1]")):
            continue
        out.append(Password(user, db, unquote(password), var.where, owner.name if owner else None, var.key, True))
    return out


def uses_sqlite(inst: Installation) -> bool:
    for _, var in _all_env_vars(inst):
        if var.key == "DATABASE_URL" and var.value and var.value.startswith("file:"):
            return True
    return False
