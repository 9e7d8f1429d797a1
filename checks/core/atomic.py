"""Durable atomic writes of dester-harden's own private files (journal, baseline, settings).

Install files are written by :mod:`checks.change.confined` (relative to the
install's directory descriptors, owner and metadata kept); this is for the
tool's own state, always 0600 and never through a symbolic link.
"""

from __future__ import annotations

import os


def fsync_dir(path: str) -> None:
    """Make a rename or creation in directory ``path`` durable."""
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_private(path: str, data: bytes) -> None:
    """Create or replace a 0600 file atomically and durably (never through a symbolic link)."""
    tmp = path + ".tmp"  # recovery removes a leftover by this name
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
    try:
        os.fchmod(fd, 0o600)
        view = memoryview(data)
        while view:
            n = os.write(fd, view)
            view = view[n:]
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(tmp, path)
    fsync_dir(os.path.dirname(path))


