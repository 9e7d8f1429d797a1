"""The lock files: one ``flock()`` per journal, holding who has it (the installation's and the host's)."""

from __future__ import annotations

import errno
import fcntl
import json
import os
import stat
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from checks.change.trust import UntrustedJournal
from checks.core.errors import EngineError


class LockedError(EngineError):
    """Someone else is changing this installation (or the host) right now."""

    def __init__(self, holder: dict[str, Any], what: str = "this installation") -> None:
        who = holder.get("user", "?")
        pid = holder.get("pid", "?")
        cmd = holder.get("command", "?")
        since = holder.get("since", "?")
        super().__init__(f"another dester-harden ({cmd}, pid {pid}, user {who}, since {since}) is changing "
                         f"{what}; try again when it is done")
        self.holder = holder


@contextmanager
def hold(path: str, info: dict[str, Any], what: str = "this installation") -> Iterator[int]:
    """Hold the lock file ``path`` (private to the euid, never a link); refuse at once if someone else has it."""
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode) or st.st_uid != os.geteuid() or st.st_mode & 0o022:
            raise UntrustedJournal(path, "is not a private file of the user running dester-harden")
    except BaseException:
        os.close(fd)
        raise
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError as exc:
        if exc.errno not in (errno.EWOULDBLOCK, errno.EAGAIN):
            os.close(fd)
            raise
        holder: dict[str, Any] = {}
        for _ in range(20):  # the holder writes who it is just after taking the lock
            try:
                holder = json.loads(os.pread(fd, 4096, 0) or b"{}")
            except ValueError:
                holder = {}
            if holder:
                break
            time.sleep(0.025)
        os.close(fd)
        raise LockedError(holder, what) from None
    try:
        os.ftruncate(fd, 0)
        os.pwrite(fd, json.dumps(info).encode(), 0)
        yield fd
    finally:
        os.close(fd)  # closing releases the flock
