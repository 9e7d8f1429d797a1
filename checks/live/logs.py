"""Where the API's logs are, read for :mod:`checks.live.logscan`.

Three places, as DesterLib writes them: ``docker logs`` of the API container(s) (the last
2000 lines, with docker's timestamps); the host side of ``combined.log`` (the API writes it in
``API_LOG_PATH``, ``/app/logs`` by default, and a bind mount puts it in the installation); and
``GET /api/v1/logs``, which serves that file, asked only on a loopback-published port (a
published address that is not loopback is the probes' business, :mod:`checks.live.probe`).
The host file is opened one component at a time without following a link, must lie inside the
installation and is read as a size-capped tail.
"""

from __future__ import annotations

import errno
import json
import os
import posixpath
import stat
from collections.abc import Iterator, Sequence
from typing import Any

from checks.install.discovery import API_IMAGE, find_api_service
from checks.install.model import Installation
from checks.live.errors import LiveError, one_line
from checks.live.model import Binding, Container, LogFinding
from checks.live.probe import fetch, url_for

TAIL_LINES = 2000
TAIL_BYTES = 1024 * 1024
LOG_NAME = "combined.log"
DEFAULT_LOG_DIR = "/app/logs"


def api_service_names(inst: Installation, containers: tuple[Container, ...] = ()) -> list[str]:
    """The API's services: the one the audit calls the API, and any container running the API's image."""
    names: list[str] = []
    svc = find_api_service(inst)
    if svc is not None:
        names.append(svc.name)
    for c in containers:
        if c.service not in names and API_IMAGE.search(c.image):
            names.append(c.service)
    return names


def _log_dir(inst: Installation, service: str) -> str:
    svc = inst.service(service)
    var = svc.environment.get("API_LOG_PATH") if svc is not None else None
    value = (var.value or "").strip() if var is not None else ""
    # A relative API_LOG_PATH is relative to the API's working directory: /app in DesterLib's image.
    if not value:
        return DEFAULT_LOG_DIR
    return posixpath.normpath(value if value.startswith("/") else posixpath.join("/app", value))


def _under(path: str, top: str) -> str | None:
    """``path`` relative to ``top`` (both container paths) when inside it, else None."""
    top = posixpath.normpath(top)
    if path == top:
        return ""
    if path.startswith(top.rstrip("/") + "/"):
        return path[len(top.rstrip("/")) + 1 :]
    return None


def combined_log_paths(inst: Installation, service: str, containers: tuple[Container, ...] = ()) -> list[str]:
    """Host paths of the API's ``combined.log``: from the compose files' bind mounts and the running ones."""
    log_dir = _log_dir(inst, service)
    candidates: list[tuple[str, str]] = []  # (host source, container target)
    svc = inst.service(service)
    for m in svc.mounts if svc is not None else ():
        if m.host_path and m.target:
            candidates.append((m.host_path, m.target))
    for c in containers:
        if c.service == service:
            candidates.extend((lm.source, lm.target) for lm in c.mounts if lm.kind == "bind")
    out: list[str] = []
    for source, target in candidates:
        rel = _under(log_dir, target)
        if rel is None:
            continue
        path = os.path.normpath(os.path.join(source, rel, LOG_NAME))
        if path not in out:
            out.append(path)
    return out


def _components(root: str, path: str) -> list[str]:
    """The components of ``path`` below ``root`` (as given or with its links resolved), else refused."""
    path = os.path.normpath(path)
    for base in (os.path.normpath(root), os.path.realpath(root)):
        rel = os.path.relpath(path, base)
        if rel != os.curdir and rel != os.pardir and not rel.startswith(os.pardir + os.sep):
            return rel.split(os.sep)
    raise LiveError(f"{path} is outside the installation: not read")


def read_tail(root: str, path: str, *, lines: int = TAIL_LINES, limit: int = TAIL_BYTES) -> list[str]:
    """The last ``lines`` lines (at most ``limit`` bytes) of ``path``, which must lie inside ``root``.

    Every component is opened with ``O_NOFOLLOW`` from ``root`` down: a link planted by whoever
    owns the installation is refused, not followed. :class:`FileNotFoundError` when absent.
    """
    parts = _components(root, path)
    fd = os.open(os.path.realpath(root), os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        for part in parts[:-1]:
            nxt = os.open(part, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=fd)
            os.close(fd)
            fd = nxt
        nxt = os.open(parts[-1], os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC, dir_fd=fd)
        os.close(fd)
        fd = nxt
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise LiveError(f"{path} is not a regular file: not read")
        start = max(0, st.st_size - limit)
        data = os.pread(fd, limit, start)
    finally:
        os.close(fd)
    text = data.decode("utf-8", "replace").splitlines()
    if start > 0 and text:
        text = text[1:]  # the first line was cut by the byte cap
    return text[-lines:]


def _strings(data: Any) -> Iterator[str]:
    """The log lines in a ``/api/v1/logs`` answer: strings as they are, entries as their JSON text."""
    if isinstance(data, str):
        yield from data.splitlines()
    elif isinstance(data, list):
        for item in data:
            yield item if isinstance(item, str) else json.dumps(item)
    elif isinstance(data, dict):
        for key in ("logs", "data", "lines"):
            if key in data:
                yield from _strings(data[key])
                return


def endpoint_lines(address: str, port: int, timeout: float) -> list[str] | None:
    """The lines ``GET /api/v1/logs`` serves on ``address:port``; None when it did not answer 200."""
    status, body = fetch(url_for(address, port, "/api/v1/logs"), timeout)
    if status != 200:
        return None
    try:
        return list(_strings(json.loads(body.decode("utf-8", "replace"))))
    except ValueError:
        return body.decode("utf-8", "replace").splitlines()


def findings(inst: Installation, containers: tuple[Container, ...], engine: Any, published: Sequence[Binding] = (),
             *, timeout: float, now: float | None = None) -> tuple[tuple[LogFinding, ...], str | None]:
    """Every log finding of the API and the first reason a source could not be read (None when all were).

    ``published`` are the API's published TCP ports: when every one is on loopback, ``GET /api/v1/logs``
    is asked there too.
    """
    from checks.live.logscan import scan

    out: list[LogFinding] = []
    problems: list[str] = []
    services = api_service_names(inst, containers)
    for c in containers:
        if engine is not None and c.service in services:
            try:
                out.append(scan(engine.logs(c.id, TAIL_LINES), f"docker logs {c.service}", now=now))
            except LiveError as exc:
                problems.append(str(exc))
    seen: set[str] = set()
    for service in services:
        for path in combined_log_paths(inst, service, containers):
            if path in seen:
                continue
            seen.add(path)
            try:
                out.append(scan(read_tail(inst.root, path), inst.display(path), now=now))
            except FileNotFoundError:
                continue  # the API has not written it (yet): nothing leaked there
            except LiveError as exc:
                problems.append(str(exc))
            except OSError as exc:
                why = "a symbolic link is on the way" if exc.errno in (errno.ELOOP, errno.ENOTDIR) else one_line(exc)
                problems.append(f"cannot read {inst.display(path)}: {why} (not followed)")
    if published and all(b.loopback for b in published):
        b = published[0]
        lines = endpoint_lines("::1" if b.host_ip.strip("[]") == "::1" else "127.0.0.1", b.host_port, timeout)
        if lines is not None:
            out.append(scan(lines, "GET /api/v1/logs", now=now))
    return tuple(out), (problems[0] if problems else None)
