"""Reading the firewall's system files (under the :class:`~checks.core.sysroot.SystemRoot`) and its programs.

Shared by the ufw, firewalld and nft backends: a file is read without following a last-moment link and
only when it is a regular file of sane size; a program is run without a shell, with a timeout, in
the C locale (its messages are parsed), a missing one answering 127 as :data:`checks.live.fwmodel.Runner`
promises.
"""

from __future__ import annotations

import errno
import os
import stat

from checks.live.firewall import run as run  # the default Runner: the firewall read's own

MAX_BYTES = 1 << 20


def read_system(path: str) -> bytes | None:
    """A system file's bytes (None: there is none); never through a symbolic link, never a FIFO.

    Raises ValueError (one line) for a link, a non-regular file, one over 1 MiB or one that cannot be read.
    """
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_NOCTTY | os.O_CLOEXEC)
    except FileNotFoundError:
        return None
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise ValueError(f"{path} is a symbolic link") from None
        raise ValueError(f"{path}: {os.strerror(exc.errno or errno.EIO)}") from None
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise ValueError(f"{path} is not a regular file")
        if st.st_size > MAX_BYTES:
            raise ValueError(f"{path} is over 1 MiB")
        chunks = []
        while chunk := os.read(fd, MAX_BYTES + 1):  # a short read is not the end of the file
            chunks.append(chunk)
        return b"".join(chunks)
    finally:
        os.close(fd)


def new_owner() -> tuple[int, int] | None:
    """The owner a new firewall file gets: root's when dester-harden runs as root (firewalld and
    nftables read root-owned files), else the directory's (a test under ``--root``)."""
    return (0, 0) if os.geteuid() == 0 else None


def first_line(text: str, default: str = "") -> str:
    """The first non-empty line of a program's message (for one-line errors)."""
    for line in text.splitlines():
        if line.strip():
            return line.strip()
    return default
