"""System files: changed through their path, after a trust check of every directory above them.

A fix that sets up a front door changes files under ``/etc`` (``DIR/etc`` under ``--root DIR``):
an nginx site, its ``sites-enabled`` link, a password file. They are outside the installation, so
:class:`checks.change.confined.Confined` cannot descend to them from the install root. The user
chose the directories (:attr:`checks.change.plan.Plan.system`); the engine still never trusts a
path another user could redirect. :func:`open_dir` reaches a directory from ``/`` one component at
a time (``openat`` with ``O_NOFOLLOW``) and checks each level on its descriptor:

* owned by root or by the effective uid, and writable by nobody else: at or below the system
  directory without exception; above it a root-owned sticky directory (``/tmp``) is allowed too;
* no symbolic link at or below the system directory. Above it, a link whose owner is root or the
  effective uid (in a directory that passed the check, so nobody else can swap it) is followed,
  and the path it leads to is checked again from ``/``.

With the whole chain closed to other users, nobody but root and the user running dester-harden
can move or replace anything on the way, so the descriptor returned is the directory the path
names, and a file in it can be changed by name. :func:`system_problem` is the same rule for the
planner, asked before anything is planned.
"""

from __future__ import annotations

import errno
import os
import stat
from collections.abc import Iterable

from checks.change.confined import ConfinementError, _flag_word, _flags, _target
from checks.change.trust import who

_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
_MAX_LINKS = 40  # as the kernel's own limit on links followed in one lookup


def _inside(path: str, top: str) -> bool:
    return path == top or path.startswith(top.rstrip("/") + "/")


def containing(path: str, system_dirs: Iterable[str]) -> str | None:
    """The system directory ``path`` is in (or is), the deepest one; None when it is in none."""
    path = os.path.abspath(path)
    found = [d for d in (os.path.abspath(s) for s in system_dirs) if _inside(path, d)]
    return max(found, key=len) if found else None


def _parts(path: str) -> list[str]:
    return [p for p in path.split("/") if p]


def _check(fd: int, where: str, strict: bool, euid: int, path: str) -> None:
    st = os.fstat(fd)
    if not stat.S_ISDIR(st.st_mode):
        raise ConfinementError(f"{where} is not a directory; not changing {path}")
    if st.st_uid not in (0, euid):
        raise ConfinementError(f"{where} is owned by {who(st.st_uid)}, not by root or {who(euid)} who runs "
                               f"dester-harden, so it could redirect {path}; not changing it")
    if st.st_mode & 0o022 and not (not strict and st.st_uid == 0 and st.st_mode & stat.S_ISVTX):
        raise ConfinementError(f"{where} is writable by group or others (mode {stat.S_IMODE(st.st_mode):04o}), "
                               f"so another user could redirect {path}; not changing it")


def open_dir(directory: str, top: str, path: str | None = None) -> int:
    """A descriptor of ``directory`` (in or above the system directory ``top``), every level checked.

    ``path`` is what the caller is about to change, for the messages. Raises
    :class:`ConfinementError` (one line) for a level that fails the check or is missing.
    """
    return _open_dir(os.path.abspath(directory), os.path.abspath(top), path or directory, os.geteuid(), 0)


def _open_dir(directory: str, top: str, path: str, euid: int, hops: int) -> int:
    parts, top_n = _parts(directory), len(_parts(top))
    fd = os.open("/", _DIR_FLAGS)
    try:
        _check(fd, "/", top_n == 0, euid, path)
        for i, part in enumerate(parts):
            strict = i + 1 >= top_n  # this component is the system directory or below it
            where = "/" + "/".join(parts[:i + 1])
            try:
                nfd = os.open(part, _DIR_FLAGS, dir_fd=fd)
            except FileNotFoundError:
                raise ConfinementError(f"{where} does not exist; not changing {path}") from None
            except OSError as exc:
                if exc.errno not in (errno.ELOOP, errno.ENOTDIR):
                    raise
                st = os.stat(part, dir_fd=fd, follow_symlinks=False)
                if not stat.S_ISLNK(st.st_mode):
                    raise ConfinementError(f"{where} is not a directory; not changing {path}") from None
                if strict:
                    raise ConfinementError(f"{where} is a symbolic link (to {_target(where)}) inside the system "
                                           f"directory {top}; not following it to change {path}") from None
                if st.st_uid not in (0, euid) or hops >= _MAX_LINKS:
                    raise ConfinementError(f"{where} is a symbolic link (to {_target(where)}) owned by "
                                           f"{who(st.st_uid)}; not following it to change {path}") from None
                # Above the system directory: follow it, and check the directories it leads to from "/".
                target = os.readlink(part, dir_fd=fd)
                base = os.path.normpath(os.path.join(os.path.dirname(where), target))
                new_top = os.path.join(base, *parts[i + 1:top_n])
                new_dir = os.path.join(base, *parts[i + 1:])
                os.close(fd)
                fd = -1
                return _open_dir(new_dir, new_top, path, euid, hops + 1)
            os.close(fd)
            fd = nfd
            _check(fd, where, strict, euid, path)
    except BaseException:
        if fd >= 0:
            os.close(fd)
        raise
    return fd


def check_entry(dfd: int, name: str, path: str) -> os.stat_result | None:
    """The lstat of ``name`` in the checked directory: None when absent; a link, a special file or a
    hard-linked file is refused (:class:`ConfinementError`)."""
    try:
        st = os.stat(name, dir_fd=dfd, follow_symlinks=False)
    except FileNotFoundError:
        return None
    if stat.S_ISLNK(st.st_mode):
        raise ConfinementError(f"{path} is a symbolic link (to {_target(path)}); not changing its target")
    if not stat.S_ISREG(st.st_mode):
        raise ConfinementError(f"{path} is not a regular file; not changing it")
    if st.st_nlink > 1:
        raise ConfinementError(f"{path} has {st.st_nlink} hard links: another name for the same file may be "
                               "anywhere; not changing it")
    return st


def system_problem(path: str, system_dirs: Iterable[str], *, link: bool = False) -> str | None:
    """Why the planner must not change the system file ``path`` (None: it may).

    ``link``: ``path`` is where a symbolic link is to be created (nothing may be there).
    A path in none of ``system_dirs`` (or that is one of them) is refused.
    """
    path = os.path.abspath(path)
    top = containing(path, system_dirs)
    if top is None or path == top:
        return f"{path} is not inside the system directories chosen for this change"
    try:
        dfd = open_dir(os.path.dirname(path), top, path)
    except ConfinementError as exc:
        return str(exc)
    try:
        word = _flag_word(_flags(dfd))
        if word:
            return f"the directory of {path} is {word}; remove the flag first (chattr -i / chattr -a)"
        name = os.path.basename(path)
        if link:
            if os.path.lexists(os.path.join(os.path.dirname(path), name)):
                return f"{path} exists already; not replacing it with a link"
            return None
        try:
            st = check_entry(dfd, name, path)
        except ConfinementError as exc:
            return str(exc)
        if st is not None:
            fd = os.open(name, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_NOCTTY | os.O_CLOEXEC, dir_fd=dfd)
            try:
                word = _flag_word(_flags(fd))
            finally:
                os.close(fd)
            if word:
                return f"{path} is {word}; remove the flag first (chattr -i / chattr -a) if it should be changed"
        return None
    finally:
        os.close(dfd)


def refuse_overlap(system_dirs: Iterable[str], install_root: str) -> tuple[str, ...]:
    """The system directories, absolute; one inside the installation (or holding it) is refused."""
    root = os.path.abspath(install_root)
    out = []
    for d in system_dirs:
        d = os.path.abspath(d)
        if _inside(root, d) or _inside(d, root):
            raise ConfinementError(f"the system directory {d} overlaps the installation directory {root}; "
                                   "not changing it as a system directory")
        out.append(d)
    return tuple(sorted(set(out)))


def changes_system(changes: Iterable[object], system_dirs: Iterable[str], named: Iterable[str],
                   install_root: str) -> bool:
    """Some change is of a path under one of ``system_dirs`` (not named, not in the installation)."""
    dirs = tuple(os.path.abspath(d) for d in system_dirs)
    if not dirs:
        return False
    root, named_set = os.path.abspath(install_root), {os.path.abspath(p) for p in named}
    for c in changes:
        path = getattr(c, "path", None)
        if isinstance(path, str):
            path = os.path.abspath(path)
            if path not in named_set and not _inside(path, root) and containing(path, dirs) is not None:
                return True
    return False
