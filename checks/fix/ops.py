"""OPS-002: the database password leaked into the API's logs: rotate it, and empty the leaked log.

The password in the logs is as good as public (``GET /api/v1/logs`` serves them without
authentication), so the fix changes it even when it is strong otherwise: the SEC-001
machinery (:func:`checks.fix.sec.rotate_everywhere`), live when the database runs.

Where the leak lies decides the rest:

* ``combined.log`` on the host, inside the installation (the newer layout's
  ``desterlib-data/logs/combined.log``): a journaled :class:`FileEdit` to empty. Its old
  content holds the password, which is one of the plan's secrets, so the journal keeps
  it redacted and an undo puts it back byte for byte.
* only inside the container (``docker logs``, the CLI layout's ``/app/logs``): recreating
  the API discards the old container's log and its writable layer; the plan says so.

DesterLib v0.1/v0.2 logs ``DATABASE_URL`` again at every start: after the recreate the new
password is in the new log. The note says that keeping ``/api/v1/logs`` unreachable (NET-009)
is what protects it.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

from checks.audit.rules.common import is_postgres, is_redis
from checks.fix import sec
from checks.fix.sec import PASSWORD_BYTES
from checks.install.discovery import find_api_service

if TYPE_CHECKING:  # pragma: no cover - the planner imports the fixers, not the other way round
    from checks.fix.planner import Planner
    from checks.install.model import Installation

LOG_NAME = "combined.log"


def fix_ops_002(p: Planner) -> None:
    live = p.live
    if live is None:
        return
    leaks = [lf for lf in live.logs if lf.leaked_lines]
    if not leaks:
        p.refuse("OPS-002", "the logs hold no password, only bursts of 429 or 5xx answers: no change to the "
                 "installation stops those; keep the API unreachable from outside (NET-009) and read the logs")
        return
    inst = p.inst()
    if not sec.rotated(p, inst):
        new = p.db_password if p.db_password is not None else p.new_secret(PASSWORD_BYTES)
        p.generated.add(new)
        sec.rotate_everywhere(p, "OPS-002", new)
    files: list[str] = []
    in_container = False
    for lf in leaks:
        path = _host_file(p, inst, lf.source)
        if path is None:
            in_container = True
        elif path not in files:
            files.append(path)
    for path in files:
        p.write_text(path, "")  # confined: a log outside the installation is refused with the whole fix
    if files:
        shown = ", ".join(os.path.relpath(f, p.root) for f in files)
        p.notes.append(f"OPS-002: {shown} is emptied (its old lines held the password; undo restores them).")
    if in_container:
        api = find_api_service(inst)
        if api is not None and api.name not in p.recreate_also:
            p.recreate_also.append(api.name)  # recreated even if the rotation was files only
        p.notes.append("OPS-002: the leaked lines inside the API container (docker logs) go with the container: "
                       "recreating the API discards its old log and writable layer.")
    p.notes.append("OPS-002: DesterLib writes DATABASE_URL to its log at every start, so the new password is in "
                   "the new log too; keep /api/v1/logs unreachable from the network (NET-009).")


def _host_file(p: Planner, inst: Installation, source: str) -> str | None:
    """The host file a log finding names, when it is a regular file in the installation (else None)."""
    if source.startswith("docker "):
        return None  # the container's own log
    if source.startswith(("GET ", "http:", "https:")):
        return _mounted_log(inst)  # the endpoint serves combined.log: on the host when it is mounted
    path = source if os.path.isabs(source) else os.path.join(p.root, source)
    path = os.path.abspath(path)
    if os.path.isfile(path) and not os.path.islink(path):
        return path
    return None


def _mounted_log(inst: Installation) -> str | None:
    """combined.log on the host side of the API's bind mount of its logs directory, when there is one.

    The logs endpoint serves the file the container writes; with ``desterlib-data/logs``
    mounted, that file is on the host and outlives the container.
    """
    for svc in inst.services:
        if is_postgres(svc) or is_redis(svc):
            continue
        for m in svc.mounts:
            if m.kind != "bind" or not m.host_path or not (m.target or "").rstrip("/").endswith("/logs"):
                continue
            path = os.path.join(m.host_path, LOG_NAME)
            if os.path.isfile(path) and not os.path.islink(path):
                return path
    return None
