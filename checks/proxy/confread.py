"""Reading proxy configuration safely, and the small text helpers the parsers share.

Only regular files are read (a mount can expose anything: a FIFO would hang the
audit, /dev/zero never ends, /proc/self/environ holds this process's
environment), each opened without following a last-moment link and capped.
"""

from __future__ import annotations

import contextlib
import errno
import fnmatch
import glob
import itertools
import os
import re
import stat
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

from checks.core.errors import InputError
from checks.core.textio import MAX_CONFIG_BYTES, Source, decode_source, read_capped, shown

#: Kernel and device filesystems: their "files" are not configuration, and
#: reading some of them blocks, never ends, or returns this process's secrets.
_PSEUDO = ("proc", "sys", "dev")

#: An include or import glob that matches more than this is not a configuration directory.
MAX_GLOB = 256


def _pseudo_devices() -> set[int]:
    out = set()
    for top in ("/proc", "/sys"):
        with contextlib.suppress(OSError):
            out.add(os.stat(top).st_dev)
    return out


def in_pseudo(real: str, host_root: str) -> bool:
    """Whether ``real`` lies in /proc, /sys or /dev (of the machine or of the host root)."""
    for top in _PSEUDO:
        for base in {"/", host_root}:
            d = os.path.join(base, top)
            if real == d or real.startswith(d + os.sep):
                return True
    return False


def regular_config(path: str, host_root: str) -> str | None:
    """The real path of ``path`` if it is a regular file outside /proc, /sys and /dev, else None."""
    real = os.path.realpath(path)
    if in_pseudo(real, host_root):
        return None
    try:
        st = os.lstat(real)
    except OSError:
        return None
    if not stat.S_ISREG(st.st_mode) or st.st_dev in _pseudo_devices():
        return None
    return real


def read_config(path: str, display: str, host_root: str = "/") -> Source | None:
    """A proxy configuration file's text; None when it is not a regular file
    (skipped, not an error); InputError when it cannot be read or is too big."""
    real = regular_config(path, host_root)
    if real is None:
        return None
    flags = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_NOCTTY | os.O_CLOEXEC
    try:
        fd = os.open(real, flags)
    except OSError as exc:
        if exc.errno in (errno.ELOOP, errno.ENOENT, errno.ENXIO):
            return None  # replaced by a link (or gone, or a socket) since it was looked at
        raise InputError(f"cannot open proxy configuration: {os.strerror(exc.errno or errno.EIO)}", display) from None
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode) or st.st_dev in _pseudo_devices():
            return None  # swapped for a FIFO or a device since it was looked at
        if st.st_size > MAX_CONFIG_BYTES:
            raise InputError(f"proxy configuration is over the {MAX_CONFIG_BYTES // 1048576} MiB limit", display)
        data = read_capped(fd, MAX_CONFIG_BYTES)
        if data is None:  # grew while we read it
            raise InputError(f"proxy configuration is over the {MAX_CONFIG_BYTES // 1048576} MiB limit", display)
    except OSError as exc:
        raise InputError(f"cannot read proxy configuration: {os.strerror(exc.errno or errno.EIO)}", display) from None
    finally:
        os.close(fd)
    return decode_source(real, display, "proxy configuration", data, st)


@dataclass(slots=True)
class Reader:
    """Reads each configuration file once, remembering what could not be read."""

    host_root: str
    display: Callable[[str], str]
    """``Installation.display``: a path as shown."""
    unreadable: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    planned: Mapping[str, bytes] = field(default_factory=dict)
    """Contents the fix planner is about to write (``Installation.planned``): its re-audit reads them
    instead of the disk, so a planned front door is judged like an installed one."""
    planned_links: Mapping[str, str] = field(default_factory=dict)
    """Symbolic links the planner is about to create (path -> target)."""
    _seen: dict[str, Source | None] = field(default_factory=dict)

    def show(self, path: str) -> str:
        return self.display(path)

    def _planned_path(self, path: str) -> str | None:
        """The planned file ``path`` stands for (through a planned link), or None."""
        path = os.path.abspath(path)
        for _ in range(8):
            if path in self.planned:
                return path
            target = self.planned_links.get(path)
            if target is None:
                return None
            path = os.path.normpath(os.path.join(os.path.dirname(path), target))
        return None

    def read(self, path: str) -> Source | None:
        """The file's text, or None (not a regular file, unreadable: recorded, too big: recorded)."""
        planned = self._planned_path(path) if self.planned else None
        if planned is not None:
            data = self.planned[planned]
            st = os.stat_result((stat.S_IFREG | 0o644, 0, 0, 1, 0, 0, len(data), 0, 0, 0))
            try:
                src: Source | None = decode_source(planned, self.show(path), "proxy configuration", data, st)
            except InputError:
                src = None
            self._seen[planned] = src
            return src
        real = regular_config(path, self.host_root)
        if real is None:
            return None
        if real in self._seen:
            return self._seen[real]
        display = self.show(path)
        try:
            src = read_config(path, display, self.host_root)
        except InputError:
            if display not in self.unreadable:
                self.unreadable.append(display)
            src = None
        self._seen[real] = src
        return src

    def sources(self) -> list[Source | None]:
        """Every file read so far (planned ones included)."""
        return list(self._seen.values())

    def glob(self, pattern: str) -> list[str]:
        """Regular files matching ``pattern``, sorted (as Caddy and nginx load them), capped."""
        if in_pseudo(os.path.realpath(os.path.dirname(pattern) or "/"), self.host_root):
            return []
        # Lazily, and stopped past the cap: a pattern such as /*/*/*/* must not walk the whole disk.
        hits = sorted(itertools.islice(glob.iglob(pattern), MAX_GLOB + 1)) if glob.has_magic(pattern) else [pattern]
        if len(hits) > MAX_GLOB:
            self.notes.append(f"{shown(pattern)}: more than {MAX_GLOB} files match; only {MAX_GLOB} were read")
            hits = hits[:MAX_GLOB]
        if self.planned or self.planned_links:
            extra = [p for p in (*self.planned, *self.planned_links)
                     if fnmatch.fnmatchcase(p, pattern) and p not in hits and self._planned_path(p) is not None]
            hits = sorted(hits + extra)[:MAX_GLOB]
        return [h for h in hits if (self.planned and self._planned_path(h) is not None)
                or regular_config(h, self.host_root) is not None]


def strip_comments(text: str) -> str:
    """Without ``#`` comments (a ``#`` that starts a word), lines kept in place."""
    return "\n".join(re.sub(r"(^|\s)#.*$", "", line) for line in text.split("\n"))


def blocks(text: str) -> tuple[list[tuple[str, int, str, int]], list[tuple[int, str]]]:
    """Top-level ``header { body }`` blocks (header, header line, body, body's first line) and the
    lines outside any block (line, text), 1-based."""
    out = []
    loose: list[tuple[int, str]] = []
    depth = 0
    header_start = 0
    body_start = 0
    outside_from = 0
    for i, ch in enumerate(text):
        if ch == "{":
            if depth == 0:
                line_start = text.rfind("\n", 0, i) + 1
                header_start = line_start
                body_start = i + 1
                _loose(text, outside_from, line_start, loose)
            depth += 1
        elif ch == "}" and depth:
            depth -= 1
            if depth == 0:
                header = text[header_start:body_start - 1].strip()
                out.append((header, text.count("\n", 0, header_start) + 1, text[body_start:i],
                            text.count("\n", 0, body_start) + 1))
                outside_from = i + 1
    if depth == 0:
        _loose(text, outside_from, len(text), loose)
    return out, loose


def _loose(text: str, start: int, end: int, out: list[tuple[int, str]]) -> None:
    first = text.count("\n", 0, start) + 1
    for n, line in enumerate(text[start:end].split("\n")):
        if line.strip():
            out.append((first + n, line.strip()))


def targets_port(upstream: str, port: int) -> bool:
    """Whether an upstream (``localhost:3001``, ``http://api:3001/``, ``:3001``) is on ``port``."""
    return (re.search(rf"(^|[\s/:@])([\w.\-\[\]]*):{port}(\b|/)", upstream) is not None
            or re.search(rf"^:{port}\b", upstream.strip()) is not None)


#: The requests that stand for each :data:`checks.proxy.model.PROTECTED` key: a key is refused only
#: when every one of them is (``/api/v1/settings/providers`` holds every provider's key on dev,
#: ``/api/docs.json`` and ``/api/docs/swagger.json`` are the spec on dev and main).
PROBES: dict[str, tuple[str, ...]] = {
    "logs": ("/api/v1/logs", "/api/v1/logs/"),
    "settings": ("/api/v1/settings", "/api/v1/settings/providers"),
    "docs": ("/api/docs", "/api/docs/", "/api/docs.json", "/api/docs/swagger.json"),
}
