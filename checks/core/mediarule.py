"""The media rule, written once: what FS-005 flags in the media tree and what its fix takes off.

The audit's scan (:func:`checks.audit.rules.fs.scan_media`), the walk's per-entry mode
(:func:`target_mode`, used by :mod:`checks.change.walk` and the preview) and the bulk walk's
masks all come from here, so the check and the fix cannot drift apart. The fix only takes
bits away, never widens access; group write stays in a shared group library (:func:`shared_dir`).
"""

from __future__ import annotations

import os
import pwd
import stat

#: How every directory of the tree is opened: relative to its parent, never through a symlink.
DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC

WRITE_OFF = 0o022
"""Group and other write: what the rule takes off a directory or a file."""
WRITE_OFF_SHARED = 0o002
"""... off an entry of a shared group library (its group write is deliberate)."""
EXEC_OFF = 0o6111
"""Exec and setuid/setgid bits: what the rule takes off a regular file."""

DIR_OFF = WRITE_OFF
DIR_OFF_SHARED = WRITE_OFF_SHARED
FILE_OFF = WRITE_OFF | EXEC_OFF  # 0o6133
FILE_OFF_SHARED = WRITE_OFF_SHARED | EXEC_OFF  # 0o6113


def target_mode(st_mode: int, group_ok: bool = False) -> int | None:
    """The mode the media fix gives this entry, or None to leave it alone.

    It only takes bits away, never widens access: group/other write from
    directories and files, and exec plus setuid/setgid from regular files. A
    0777 directory becomes 0755 and a ``chmod -R 755`` video 0644 (what the
    docs' ``chmod -R u=rwX,go=rX`` intends), while a private 0700 directory
    stays 0700. Symlinks, devices, sockets and FIFOs are left alone.
    ``group_ok``: the entry belongs to a shared group library (see
    :func:`shared_dir`), whose group write is deliberate and stays.
    """
    perm = stat.S_IMODE(st_mode)
    if stat.S_ISDIR(st_mode):
        new = perm & ~(DIR_OFF_SHARED if group_ok else DIR_OFF)
    elif stat.S_ISREG(st_mode):
        new = perm & ~(FILE_OFF_SHARED if group_ok else FILE_OFF)
    else:
        return None
    return new if new != perm else None


def needs_change(st_mode: int, group_ok: bool = False) -> bool:
    """FS-005's test: group/other-writable, or a regular file with exec (or set-id) bits."""
    return target_mode(st_mode, group_ok) is not None


def primary_gids() -> frozenset[int]:
    """Every passwd entry's primary group: a group that may stand for "every user" (``users``)."""
    try:
        return frozenset(pw.pw_gid for pw in pwd.getpwall())
    except OSError:  # pragma: no cover - no passwd database at all
        return frozenset()


def shared_dir(st: os.stat_result, primary: frozenset[int]) -> bool:
    """A shared group library's directory: setgid, and its group nobody's primary group.

    ``chmod 2775`` with a ``media`` group is how a household or a Plex and a
    DesterLib user share one library (docs/adr/0002-media-permissions.md):
    its group write (and that of the files of the same group inside it) is
    deliberate. A primary group such as ``users`` may hold every account, so
    group write there is as good as others-write and is taken off.
    """
    return bool(st.st_mode & stat.S_ISGID) and stat.S_ISDIR(st.st_mode) and st.st_gid not in primary
