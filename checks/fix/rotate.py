"""Live password rotation: the new database password set inside the running PostgreSQL, taken back by the old one.

When the live state (:class:`checks.live.model.LiveState`) says the project's PostgreSQL
container runs, a fix that changes the database password (SEC-001, SEC-002, OPS-002)
records a :class:`Rotation` here, and the plan gets, in this order::

    Recreate(when="rollback")            (the stack hook, checks/fix/live.py: first)
    Command  ALTER ROLE ... new password  (this module; inverse: ALTER ROLE ... old password)
    FileEdit .env / compose files         (the fixers, as without Docker)
    Recreate(when="apply")               (the stack hook: last; its logins come from :func:`logins`)

Why this order:

* ALTER ROLE before the files: the database is the one place that cannot be written
  atomically with the files, and the running API keeps its open connections through an
  ALTER ROLE (PostgreSQL checks a password at login only), so the window where the
  database and the running API disagree is the few seconds until the recreate; the
  files in between are written atomically and rolled back with the rest.
* The recreate of the API last: it must start with the new files *and* a database
  that already accepts the new password (DesterLib exits when its login fails at start).
  Its gate logs in with the new password (must succeed) and the old one (must be
  refused): the rotation is verified, not assumed.
* ``Recreate(when="rollback")`` before the ALTER ROLE: a rollback (the gate failed,
  or recovery after a kill) runs the entries in reverse, so the old password is back in
  the database (the inverse) and in the files before the API is recreated with them.

The statement reaches ``psql`` on its stdin (``docker exec -i``), as a named secret of the
plan (:attr:`checks.change.plan.Plan.named_secrets`); the inverse has its own
(``inverse_stdin_secret``): no password is ever in an argv. ``docker exec`` goes through
the container's socket, which is ``trust`` in the official image (and DesterLib's), so no
password is needed to change one; a direct connection to a port published on loopback
would need the old password in the environment, and is not needed. The inverse is
idempotent, so a kill at any instant is rolled back by running it (no ``check``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from checks.audit.rules.common import is_postgres, is_redis
from checks.change.plan import Command, Login, Plan

if TYPE_CHECKING:  # pragma: no cover - the planner imports the fixers, not the other way round
    from checks.fix.planner import Planner
    from checks.install.model import Installation, Service
    from checks.live.model import Container


@dataclass(slots=True)
class Rotation:
    """One database role whose password changes in the running database."""

    check: str
    service: str
    """The database's compose service."""
    container: str
    """Its running container (``docker exec`` target)."""
    user: str
    database: str
    old: str
    new: str


def quote_ident(name: str) -> str:
    """``name`` as a PostgreSQL identifier: always double-quoted, ``"`` doubled."""
    return '"' + name.replace('"', '""') + '"'


def quote_literal(text: str) -> str:
    """``text`` as a standard SQL string literal: ``'`` doubled (standard_conforming_strings: ``\\`` is itself)."""
    if "\x00" in text:
        raise ValueError("a password cannot hold a NUL character")
    return "'" + text.replace("'", "''") + "'"


def alter_role(user: str, password: str) -> str:
    """The statement psql gets on stdin (a secret: it holds the password)."""
    return f"ALTER ROLE {quote_ident(user)} WITH PASSWORD {quote_literal(password)};\n"


def running(p: Planner, service: str) -> Container | None:
    """The running container of ``service``, when the planner has a live state that has one."""
    live = p.live
    if live is None or not live.docker_reachable:  # fix --files-only plans with no live state
        return None
    c = live.container(service)
    return c if c is not None and c.status == "running" else None


def database_service(inst: Installation) -> Service | None:
    for svc in inst.services:
        if is_postgres(svc):
            return svc
    return None


def _env(svc: Service, key: str) -> str | None:
    var = svc.environment.get(key)
    return var.value if var is not None and var.value else None


def record(p: Planner, check: str, inst: Installation, old_by_user: dict[str, str], new: str) -> bool:
    """Plan the password ``new`` into the running database for the role of its service.

    ``inst``: the installation before the fix; ``old_by_user``: user -> the password the
    database takes now, as the files say (the URL the running API logs in with first).
    False when there is nothing live to rotate (no Docker, the database not running):
    the fix is then files only, as before.
    """
    svc = database_service(inst)
    if svc is None:
        return False
    container = running(p, svc.name)
    if container is None:
        return False
    user = _env(svc, "POSTGRES_USER") or "postgres"
    database = _env(svc, "POSTGRES_DB") or user
    rotations = p.rotations
    if user in rotations:
        rotations[user].new = new  # a later fix of the same plan (SEC-002 after SEC-001): one ALTER ROLE
        return True
    old = old_by_user.get(user) or _env(svc, "POSTGRES_PASSWORD")
    if old is None or old == new:
        return False
    rotations[user] = Rotation(check, svc.name, container.name, user, database, old, new)
    return True


def _names(r: Rotation) -> tuple[str, str, str, str]:
    """The named secrets of a rotation (names only: they are journaled in the plaintext)."""
    base = f"{r.check}.{r.user}"
    return f"{base}.alter-new", f"{base}.alter-old", f"{base}.password-new", f"{base}.password-old"


def finish(p: Planner, plan: Plan) -> None:
    """Put the ALTER ROLE commands before the file edits, with their named secrets."""
    commands: list[Command] = []
    for r in p.rotations.values():
        alter_new, alter_old, pw_new, pw_old = _names(r)
        argv = ("docker", "exec", "-i", r.container, "psql", "-v", "ON_ERROR_STOP=1", "-q", "-U", r.user,
                "-d", r.database)
        commands.append(Command(argv, argv, f"{r.check}: ALTER ROLE {r.user} WITH PASSWORD (the new one, on "
                                f"psql's stdin) in the running database ({r.container})",
                                stdin_secret=alter_new, inverse_stdin_secret=alter_old))
        plan.named_secrets.update({alter_new: alter_role(r.user, r.new), alter_old: alter_role(r.user, r.old),
                                   pw_new: r.new, pw_old: r.old})
        plan.secrets |= {r.new, r.old}
        plan.notes.append(f"{r.check}: the password of {r.user} changes in the running database too (ALTER ROLE "
                          f"in {r.container}), then the API is recreated and must log in with the new password "
                          "while the old one is refused; otherwise everything is put back.")
    plan.changes[0:0] = commands
    p.logins[0:0] = logins(p)  # the stack hook (checks/fix/live.py) puts p.logins in Recreate(when="apply")


def logins(p: Planner) -> tuple[Login, ...]:
    """The health gate's database logins: each new password accepted, each old one refused."""
    out: list[Login] = []
    for r in p.rotations.values():
        _, _, pw_new, pw_old = _names(r)
        out += [Login(r.service, r.user, r.database, pw_new, True), Login(r.service, r.user, r.database, pw_old, False)]
    return tuple(out)


def redis_service_running(p: Planner, inst: Installation) -> str | None:
    """The name of the running Redis service, when the live state has one."""
    for svc in inst.services:
        if is_redis(svc) and running(p, svc.name) is not None:
            return svc.name
    return None
