"""Private scratch directories for validating planned files, and removing the
ones a killed run left behind.

``docker compose config`` validates planned compose files copied into a 0700
directory in the system temporary directory. A run killed meanwhile cannot
remove it (and the copies may hold secrets), so every run first removes such
leftovers, and only those that are provably its own kind and abandoned:

* the name is ``dester-harden-validate-`` plus mkdtemp's 8 characters, and it
  is a real directory (not a link), owned by this user, mode 0700;
* it holds a ``.lock`` file that no process holds locked. Its creator holds
  an exclusive ``flock`` on it for the directory's whole life, taken before
  the name ``.lock`` exists (it is locked as ``.lock.new``, then renamed), so
  a directory being set up or in use is never seen as abandoned; the kernel
  drops the lock when its holder dies, however it dies.

Anything else in the temporary directory is never touched.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import re
import shutil
import stat
import tempfile
from collections.abc import Iterator

PREFIX = "dester-harden-validate-"
_NAME = re.compile(re.escape(PREFIX) + r"[a-z0-9_]{8}")
LOCK = ".lock"


@contextlib.contextmanager
def validation_dir() -> Iterator[str]:
    """A fresh private directory, locked as in use while the block runs, then removed."""
    tmp = tempfile.mkdtemp(prefix=PREFIX)
    fd = -1
    try:
        flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
        fd = os.open(os.path.join(tmp, LOCK + ".new"), flags, 0o600)
        fcntl.flock(fd, fcntl.LOCK_EX)
        os.rename(os.path.join(tmp, LOCK + ".new"), os.path.join(tmp, LOCK))
        yield tmp
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
        if fd >= 0:
            os.close(fd)


def remove_abandoned(tmpdir: str | None = None) -> list[str]:
    """Remove validation directories that killed runs left in ``tmpdir``; the names removed."""
    tmpdir = tmpdir or tempfile.gettempdir()
    try:
        dfd = os.open(tmpdir, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    except OSError:
        return []
    removed = []
    try:
        for name in os.listdir(dfd):
            if _NAME.fullmatch(name) and _remove_if_abandoned(dfd, name):
                removed.append(name)
    finally:
        os.close(dfd)
    return removed


def _remove_if_abandoned(dfd: int, name: str) -> bool:
    try:
        fd = os.open(name, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=dfd)
    except OSError:
        return False  # gone, a link, or not a directory
    try:
        st = os.fstat(fd)
        if st.st_uid != os.geteuid() or stat.S_IMODE(st.st_mode) != 0o700:
            return False
        try:
            lock = os.open(LOCK, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK, dir_fd=fd)
        except OSError:
            return False  # no lock file: not one of ours, or still being set up
        try:
            if not stat.S_ISREG(os.fstat(lock).st_mode):
                return False
            try:
                fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError:
                return False  # its run is still alive
            # Still the directory we checked (the name could have been swapped meanwhile)?
            now = os.stat(name, dir_fd=dfd, follow_symlinks=False)
            if (now.st_dev, now.st_ino) != (st.st_dev, st.st_ino):
                return False
            shutil.rmtree(name, dir_fd=dfd)  # fd-based: never follows a link inside
            return True
        finally:
            os.close(lock)
    except OSError:
        return False
    finally:
        os.close(fd)
