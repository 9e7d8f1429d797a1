"""Applying a plan to the running stack: which services it changes, and the Recreate pair around it.

After the file plan is built, :func:`affected` compares the installation model before
and after it, service by service: ports, environment values (env files' content included,
as the service reads them), mounts, image, and every other option of the service's
mapping with the variables it interpolates resolved. A service that differs, and whose
container runs now (:class:`checks.live.model.LiveState`), must be recreated to run with
the new files. :func:`add_recreates` wraps the plan in ``Recreate(when="rollback")`` first
and ``Recreate(when="apply")`` last (docs/adr/0007-health-gate.md), and asks for a
confirmation before a DesterLib API container is recreated without a recent backup.

Variables an official database image reads only when it initialises an empty data directory
(``POSTGRES_PASSWORD``...) do not make a database service affected: recreating it would not
change the running database's password (an ``ALTER ROLE`` does, see checks/fix/rotate.py).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

from checks.change.plan import Login, Plan, Recreate
from checks.install.discovery import find_api_service
from checks.install.model import Installation, Service
from checks.live.model import LiveState

INIT_ONLY = frozenset({
    "POSTGRES_PASSWORD", "POSTGRES_USER", "POSTGRES_DB", "POSTGRES_INITDB_ARGS", "POSTGRES_INITDB_WALDIR",
    "MYSQL_ROOT_PASSWORD", "MYSQL_PASSWORD", "MYSQL_USER", "MYSQL_DATABASE", "MARIADB_ROOT_PASSWORD",
    "MARIADB_PASSWORD", "MARIADB_USER", "MARIADB_DATABASE", "MONGO_INITDB_ROOT_PASSWORD",
    "MONGO_INITDB_ROOT_USERNAME",
})
"""Read by the official database images only when the data directory is empty."""
_DB_IMAGES = ("postgres", "postgis", "mysql", "mariadb", "mongo")
_REF = re.compile(r"\$\{?([A-Za-z_][A-Za-z0-9_]*)")
BACKUP_MAX_AGE = 24 * 3600.0
PRISMA = ("recreating {api} runs `prisma db push --accept-data-loss` at start; no backup younger than 24 h was "
          "found (OPS-001 looks for them); go on?")


def _refs(value: Any, out: set[str]) -> None:
    if isinstance(value, str):
        out.update(_REF.findall(value))
    elif isinstance(value, dict):
        for k, v in value.items():
            _refs(k, out)
            _refs(v, out)
    elif isinstance(value, list):
        for v in value:
            _refs(v, out)


def _is_db(svc: Service) -> bool:
    return any(svc.image_repo.startswith(name) for name in _DB_IMAGES)


def _without(raw: Any, skip: frozenset[str]) -> Any:
    """The service mapping without the ``environment`` entries named in ``skip``."""
    if not skip or not isinstance(raw, dict) or "environment" not in raw:
        return raw
    env = raw["environment"]
    if isinstance(env, dict):
        env = {k: v for k, v in env.items() if k not in skip}
    elif isinstance(env, list):
        env = [e for e in env if not (isinstance(e, str) and e.split("=", 1)[0] in skip)]
    return {**raw, "environment": env}


def signature(inst: Installation, svc: Service) -> dict[str, Any]:
    """What a service runs with, resolved: two equal signatures, no need to recreate (values stay in memory)."""
    skip = INIT_ONLY if _is_db(svc) else frozenset()
    raw = _without(svc.node.plain(), skip)
    refs: set[str] = set()
    _refs(raw, refs)
    env = inst.env_for(svc.compose_file.display if svc.compose_file else None)
    return {
        "options": raw,
        "variables": {name: env.get(name) for name in sorted(refs) if name not in skip},
        "environment": {k: v.value for k, v in svc.environment.items() if k not in skip},
        "ports": sorted((p.host_ip or "", p.published or "", p.target, p.protocol) for p in svc.ports),
        "mounts": sorted((m.kind, m.source or "", m.target or "", m.read_only, m.host_path or "")
                         for m in svc.mounts),
        "image": svc.image_name,
    }


def affected(before: Installation, after: Installation) -> list[str]:
    """Services (in the files' order) whose resolved configuration differs between the two models."""
    out = []
    for svc in after.services:
        old = before.service(svc.name)
        if old is None or signature(before, old) != signature(after, svc):
            out.append(svc.name)
    return out


def running(live: LiveState | None) -> bool:
    """Whether the live state says Docker answered and the project has containers."""
    return live is not None and live.docker_reachable and bool(live.containers)


def add_recreates(plan: Plan, before: Installation, after: Installation, live: LiveState | None, *,
                  timeout: float = 120.0, logins: Sequence[Login] = (), backup_age: float | None = None,
                  extra: Sequence[str] = ()) -> list[str]:
    """Put the Recreate pair around ``plan`` for the running services it changes; those services.

    ``extra``: services a fixer knows must be recreated even when the files say nothing new
    (a leaked log, a password rotated in the database). ``backup_age``: seconds since the
    newest backup OPS-001 finds (None: none found).
    """
    if not running(live) or (plan.empty and not extra):
        return []
    assert live is not None
    changed = affected(before, after)
    wanted = [s.name for s in after.services if s.name in changed or s.name in extra]
    up = [s for s in wanted if live.container(s) is not None]
    stopped = [s for s in wanted if live.container(s) is None]
    if stopped:
        plan.notes.append(f"Not running now, so not recreated: {', '.join(stopped)} (it starts with the new files "
                          "when the stack is next started).")
    if not up:
        return []
    api = find_api_service(after)
    http = tuple(s for s in up if api is not None and s == api.name)
    files = tuple(src.path for src in after.command_line_files)
    def pair(when: str, description: str) -> Recreate:
        return Recreate(live.project, after.project_dir, files, tuple(up), when, timeout, http, tuple(logins),
                        description)

    plan.changes.insert(0, pair("rollback", "put the running services back"))
    plan.changes.append(pair("apply", "run with the new files"))
    if http and (backup_age is None or backup_age > BACKUP_MAX_AGE):
        plan.confirm.append(PRISMA.format(api=", ".join(http)))
    return up


def drifted(inst: Installation, live: LiveState | None) -> list[str]:
    """Running services whose container differs from the files (DKR-009): fixed on disk, not applied."""
    from checks.live.drift import drift

    if not running(live):
        return []
    assert live is not None
    out = []
    for svc in inst.services:
        container = live.container(svc.name)
        if container is not None and drift(svc, container):
            out.append(svc.name)
    return out

