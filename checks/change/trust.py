"""Is a journal ours? Ownership and permission checks done on open descriptors.

Root usually runs dester-harden on an installation another user owns, and the
journal decides what root writes where. So nothing in it is read unless every
level (the directory holding it, ``txn``, ``secrets``, each transaction
directory and each file) is not a symbolic link, is owned by the effective uid
and is not writable by group or others. Each level is opened relative to the
verified descriptor of its parent with ``O_NOFOLLOW``, so a name swapped after
the check cannot redirect it.

The directories above the journal are checked too (:func:`check_ancestors`):
each must be owned by root or the effective uid and not writable by others
(sticky ``/tmp`` excepted). With the whole chain closed to other users a path
cannot be redirected after the check either, which lets the engine keep
addressing journal files by path.

Imported on every audit start: ``os``, ``stat`` and ``pwd`` only.
"""

from __future__ import annotations

import os
import stat

from checks.core.errors import InputError

_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
_FILE_FLAGS = os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK


class UntrustedJournal(InputError):
    """A journal another user could have written: never acted on (no recovery, no undo, no deletion)."""

    def __init__(self, path: str, why: str) -> None:
        super().__init__(f"{why}; that journal is not used (nothing in it is recovered, undone or removed)", path)
        self.path = path


def who(uid: int) -> str:
    """``uid 65534 (nobody)``: how a message names an owner."""
    try:
        import pwd

        return f"uid {uid} ({pwd.getpwuid(uid).pw_name})"
    except (KeyError, ImportError):
        return f"uid {uid}"


def problem(st: os.stat_result, want_dir: bool, euid: int | None = None) -> str | None:
    """Why ``st`` cannot be part of a journal of ``euid``, or None."""
    euid = os.geteuid() if euid is None else euid
    owner = f"owned by {who(st.st_uid)}"
    if stat.S_ISLNK(st.st_mode):
        return f"is a symbolic link ({owner})"
    if want_dir and not stat.S_ISDIR(st.st_mode):
        return f"is not a directory ({owner})"
    if not want_dir and not stat.S_ISREG(st.st_mode):
        return f"is not a regular file ({owner})"
    if st.st_uid != euid:
        return f"is {owner}, not by {who(euid)} who runs dester-harden"
    if st.st_mode & 0o022:
        return f"is writable by group or others (mode {stat.S_IMODE(st.st_mode):04o}, {owner})"
    return None


def open_checked(name: str, dir_fd: int | None, path: str, want_dir: bool) -> int | None:
    """Open ``name`` (relative to ``dir_fd``) without following a link and check it; None if missing."""
    try:
        fd = os.open(name, _DIR_FLAGS if want_dir else _FILE_FLAGS, dir_fd=dir_fd)
    except FileNotFoundError:
        return None
    except OSError as exc:
        # ELOOP: a symbolic link; ENOTDIR: not a directory (or a link to a file).
        try:
            st = os.stat(name, dir_fd=dir_fd, follow_symlinks=False)
        except OSError:
            raise UntrustedJournal(path, f"cannot be opened ({exc.strerror})") from None
        raise UntrustedJournal(path, problem(st, want_dir) or f"cannot be opened ({exc.strerror})") from None
    why = problem(os.fstat(fd), want_dir)
    if why:
        os.close(fd)
        raise UntrustedJournal(path, why)
    return fd


def check_ancestors(path: str) -> None:
    """Every directory from ``/`` down to ``path`` (real, absolute) is closed to other users."""
    euid = os.geteuid()
    cur = "/"
    parts = [p for p in path.split("/") if p]
    for part in [""] + parts:
        cur = os.path.join(cur, part) if part else "/"
        try:
            st = os.lstat(cur)
        except FileNotFoundError:
            return
        if stat.S_ISLNK(st.st_mode):
            raise UntrustedJournal(cur, "is a symbolic link on the way to the journal")
        if st.st_uid not in (0, euid):
            raise UntrustedJournal(cur, f"is owned by {who(st.st_uid)} and lies on the way to {who(euid)}'s journal")
        if st.st_mode & 0o022 and not st.st_mode & stat.S_ISVTX:
            raise UntrustedJournal(cur, f"is writable by group or others (mode {stat.S_IMODE(st.st_mode):04o}) "
                                        "and lies on the way to the journal")


def closed_to_others(path: str) -> bool:
    """True when ``path`` and every directory above it are closed to other users (see check_ancestors)."""
    try:
        check_ancestors(path)
    except UntrustedJournal:
        return False
    return True


def verify_journal(journal: str) -> bool:
    """Check every level of ``journal`` (an absolute real path); False when it does not exist.

    Raises :class:`UntrustedJournal` naming the first offending path and its owner.
    """
    check_ancestors(os.path.dirname(journal))
    try:
        parent = os.open(os.path.dirname(journal), os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    except FileNotFoundError:
        return False
    try:
        jfd = open_checked(os.path.basename(journal), parent, journal, True)
    finally:
        os.close(parent)
    if jfd is None:
        return False
    try:
        for name in os.listdir(jfd):
            full = os.path.join(journal, name)
            st = os.stat(name, dir_fd=jfd, follow_symlinks=False)
            if name in ("txn", "secrets", "installs"):
                _verify_tree(name, jfd, full, depth=2 if name == "txn" else 1)
            elif problem(st, stat.S_ISDIR(st.st_mode)):
                raise UntrustedJournal(full, problem(st, stat.S_ISDIR(st.st_mode)) or "")
    finally:
        os.close(jfd)
    return True


def _verify_tree(name: str, dir_fd: int, path: str, depth: int) -> None:
    fd = open_checked(name, dir_fd, path, True)
    if fd is None:
        return
    try:
        for child in os.listdir(fd):
            full = os.path.join(path, child)
            st = os.stat(child, dir_fd=fd, follow_symlinks=False)
            if stat.S_ISDIR(st.st_mode) and depth > 1:
                _verify_tree(child, fd, full, depth - 1)
            else:
                why = problem(st, False)
                if why:
                    raise UntrustedJournal(full, why)
    finally:
        os.close(fd)


def read_checked(path: str, missing_ok: bool = True) -> bytes | None:
    """The bytes of a journal file, opened without following a link and checked on its descriptor."""
    try:
        parent = os.open(os.path.dirname(path) or ".", os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    except (FileNotFoundError, NotADirectoryError):
        parent = None
    if parent is None:
        fd = None
    else:
        try:
            fd = open_checked(os.path.basename(path), parent, path, False)
        finally:
            os.close(parent)
    if fd is None:
        if missing_ok:
            return None
        raise FileNotFoundError(2, "No such file or directory", path)
    try:
        chunks = []
        while True:
            chunk = os.read(fd, 1 << 20)
            if not chunk:
                break
            chunks.append(chunk)
        return b"".join(chunks)
    finally:
        os.close(fd)
