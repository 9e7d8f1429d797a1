"""System paths, relative to ``--root DIR``.

Every command accepts ``--root DIR``: every system path dester-harden reads or
changes (``/etc/caddy``, ``/etc/nginx``, later ``/etc/ufw``, cron and systemd
units) is then taken relative to DIR, so tests and cautious users can run
against a copy of /etc. The installation itself (``--dir``) is not moved by it.
"""

from __future__ import annotations

import os
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class SystemRoot:
    """Where ``/`` is for system paths (``/`` itself unless ``--root`` named another directory)."""

    root: str = "/"

    def __post_init__(self) -> None:
        object.__setattr__(self, "root", os.path.abspath(self.root or "/"))

    @property
    def real(self) -> bool:
        """True when the system paths are the machine's own (no ``--root``)."""
        return self.root == "/"

    def path(self, system_path: str) -> str:
        """``/etc/nginx/nginx.conf`` under this root (the path itself when the root is ``/``)."""
        if not system_path.startswith("/"):
            raise ValueError(f"not an absolute system path: {system_path!r}")
        if self.real:
            return os.path.normpath(system_path)
        return os.path.normpath(os.path.join(self.root, system_path.lstrip("/")))

    def system(self, path: str) -> str:
        """The system path a path under this root stands for (``DIR/etc/x`` -> ``/etc/x``)."""
        path = os.path.abspath(path)
        if self.real:
            return path
        rel = os.path.relpath(path, self.root)
        if rel == ".." or rel.startswith("../"):
            raise ValueError(f"{path} is not under {self.root}")
        return "/" if rel == "." else "/" + rel

    def shown(self, path: str) -> str:
        """How a path under this root is named to the user: ``/etc/nginx/x`` (``DIR/etc/nginx/x`` under --root)."""
        return os.path.abspath(path)
