"""A tree's state for byte-identical comparisons: every entry's type, mode, owner and content or target.

``snapshot(root)`` -> ``{relpath: (type, mode, uid, gid, sha256 | link target | None)}`` with
type ``d`` (directory), ``f`` (regular file), ``l`` (symbolic link, never followed) or ``o``
(anything else). The root itself is ``"."``. Two snapshots are equal exactly when the trees hold
the same entries with the same contents, link targets, modes and owners: an extra temp file, a
lost link or a file left 0644 instead of 0640 all show. Used by the engine's system-file tests and
the TLS tests (install then undo under ``--root`` leaves the tree byte-identical).
"""

from __future__ import annotations

import hashlib
import os
import stat

Snap = dict[str, tuple[str, int, int, int, str | None]]


def _entry(path: str) -> tuple[str, int, int, int, str | None]:
    st = os.lstat(path)
    mode = stat.S_IMODE(st.st_mode)
    if stat.S_ISLNK(st.st_mode):
        return ("l", mode, st.st_uid, st.st_gid, os.readlink(path))
    if stat.S_ISDIR(st.st_mode):
        return ("d", mode, st.st_uid, st.st_gid, None)
    if stat.S_ISREG(st.st_mode):
        with open(path, "rb") as fh:
            return ("f", mode, st.st_uid, st.st_gid, hashlib.sha256(fh.read()).hexdigest())
    return ("o", mode, st.st_uid, st.st_gid, None)


def snapshot(root: str | os.PathLike[str]) -> Snap:
    """Every entry under ``root`` (symbolic links recorded, not followed)."""
    root = os.fspath(root)
    out: Snap = {".": _entry(root)}
    for d, dirs, files in os.walk(root, followlinks=False):
        for name in dirs + files:
            full = os.path.join(d, name)
            out[os.path.relpath(full, root)] = _entry(full)
    return out


def differences(before: Snap, after: Snap) -> list[str]:
    """One line per entry that differs (for an assertion message)."""
    out = []
    for key in sorted(set(before) | set(after)):
        if before.get(key) != after.get(key):
            out.append(f"{key}: {before.get(key)} -> {after.get(key)}")
    return out
