"""Walking the media tree safely: directory file descriptors, never a symlink.

Every directory is opened relative to its parent's descriptor with
``O_NOFOLLOW`` and checked against the inode seen while listing it, so
swapping a directory for a symlink mid-walk cannot lead the walk (or a chmod)
outside the tree. Files are changed through an ``O_PATH`` descriptor for the
same reason.
"""

from __future__ import annotations

import errno
import os
import stat
from dataclasses import dataclass
from typing import Callable, Iterator

_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
_PATH_FLAGS = getattr(os, "O_PATH", os.O_RDONLY) | os.O_NOFOLLOW | os.O_CLOEXEC


class TreeError(Exception):
    """The tree's root cannot be walked (missing, a symlink, unreadable)."""


@dataclass(slots=True)
class Entry:
    """One entry seen by the walk."""

    parent_fd: int
    name: str
    rel: str
    """Path relative to the root ("" for the root itself)."""
    st: os.stat_result
    parent: tuple[int, int]
    """(st_dev, st_ino) of the parent directory; (dev, 0) for the root itself."""


def open_root(root: str) -> int:
    try:
        return os.open(root, _DIR_FLAGS)
    except FileNotFoundError:
        raise TreeError(f"{root} does not exist") from None
    except NotADirectoryError:
        raise TreeError(f"{root} is not a directory") from None
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise TreeError(f"{root} is a symbolic link; not following it") from None
        if exc.errno == errno.EACCES:
            raise TreeError(f"{root} is not readable (permission denied)") from None
        raise TreeError(f"{root}: {exc.strerror}") from None


def walk(root: str, on_error: Callable[[str, OSError], None] | None = None,
         before_close: Callable[[], None] | None = None) -> Iterator[Entry]:
    """Yield every entry under ``root`` (the root first), depth first.

    An entry's parent descriptor stays open until ``before_close`` has been
    called for that directory, so a caller may batch :func:`chmod_entry` calls
    and run them from ``before_close``.
    """
    root_fd = open_root(root)
    try:
        st = os.fstat(root_fd)
        yield Entry(-1, root, "", st, (st.st_dev, 0))
        yield from _walk_dir(root_fd, "", (st.st_dev, st.st_ino), on_error, before_close)
    finally:
        if before_close:
            before_close()
        os.close(root_fd)


def _walk_dir(dir_fd: int, rel: str, key: tuple[int, int], on_error, before_close) -> Iterator[Entry]:
    try:
        it = os.scandir(dir_fd)
    except OSError as exc:
        if on_error:
            on_error(rel or ".", exc)
        return
    subdirs: list[tuple[str, os.stat_result]] = []
    with it:
        for de in it:
            name = de.name
            try:
                st = de.stat(follow_symlinks=False)
            except OSError as exc:
                if on_error:
                    on_error(_join(rel, name), exc)
                continue
            yield Entry(dir_fd, name, _join(rel, name), st, key)
            if stat.S_ISDIR(st.st_mode):
                subdirs.append((name, st))
    for name, st in subdirs:
        child_rel = _join(rel, name)
        try:
            fd = os.open(name, _DIR_FLAGS, dir_fd=dir_fd)
        except OSError as exc:  # replaced by a symlink (ELOOP), gone, or unreadable
            if on_error:
                on_error(child_rel, exc)
            continue
        try:
            now = os.fstat(fd)
            if (now.st_dev, now.st_ino) != (st.st_dev, st.st_ino):
                if on_error:
                    on_error(child_rel, OSError(errno.ESTALE, "replaced during the walk; skipped"))
                continue
            yield from _walk_dir(fd, child_rel, (now.st_dev, now.st_ino), on_error, before_close)
        finally:
            if before_close:
                before_close()
            os.close(fd)


def _join(rel: str, name: str) -> str:
    return f"{rel}/{name}" if rel else name


def chmod_entry(entry: Entry, mode: int) -> bool:
    """chmod ``entry`` without following symlinks; False when it changed identity meanwhile."""
    try:
        if entry.parent_fd < 0:  # the root itself
            fd = os.open(entry.name, _DIR_FLAGS)
        else:
            flags = _DIR_FLAGS if stat.S_ISDIR(entry.st.st_mode) else _PATH_FLAGS
            fd = os.open(entry.name, flags, dir_fd=entry.parent_fd)
    except (FileNotFoundError, NotADirectoryError):
        return False  # removed, or a directory replaced by a symlink or a file, since the listing
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            return False
        raise
    try:
        now = os.fstat(fd)
        if (now.st_dev, now.st_ino) != (entry.st.st_dev, entry.st.st_ino) or stat.S_IFMT(now.st_mode) != stat.S_IFMT(entry.st.st_mode):
            return False
        if stat.S_ISDIR(now.st_mode):
            os.fchmod(fd, mode)
        else:
            # An O_PATH descriptor cannot be fchmod'ed; its /proc magic link
            # names exactly this inode (what glibc's fchmodat emulation does).
            os.chmod(f"/proc/self/fd/{fd}", mode)
        return True
    finally:
        os.close(fd)


def target_mode(st_mode: int) -> int | None:
    """The mode the media fix gives this entry, or None to leave it alone.

    It only takes bits away, never widens access: group/other write from
    directories and files, and exec plus setuid/setgid from regular files. A
    0777 directory becomes 0755 and a ``chmod -R 755`` video 0644 (what the
    docs' ``chmod -R u=rwX,go=rX`` intends), while a private 0700 directory
    stays 0700. Symlinks, devices, sockets and FIFOs are left alone.
    """
    perm = stat.S_IMODE(st_mode)
    if stat.S_ISDIR(st_mode):
        new = perm & ~0o022
    elif stat.S_ISREG(st_mode):
        new = perm & ~0o6133
    else:
        return None
    return new if new != perm else None


def needs_change(st_mode: int) -> bool:
    """FS-005's test: group/other-writable, or a regular file with exec (or set-id) bits."""
    return target_mode(st_mode) is not None
