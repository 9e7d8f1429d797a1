"""Reading a system file for a firewall plan: never through a link, never a FIFO, at most 1 MiB."""

from __future__ import annotations

import errno
import os
import stat

_MAX = 1 << 20


class SystemFileError(ValueError):
    """A system file could not be read safely (one line)."""


def read_system(path: str) -> bytes | None:
    """The bytes of ``path`` (None: there is none); a link, a non-regular file or one over 1 MiB is an error."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_NOCTTY | os.O_CLOEXEC)
    except FileNotFoundError:
        return None
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise SystemFileError(f"{path} is a symbolic link") from None
        raise SystemFileError(f"{path}: {os.strerror(exc.errno or errno.EIO)}") from None
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise SystemFileError(f"{path} is not a regular file")
        if st.st_size > _MAX:
            raise SystemFileError(f"{path} is over 1 MiB")
        chunks = []
        while True:
            chunk = os.read(fd, _MAX + 1)
            if not chunk:
                break
            chunks.append(chunk)
        return b"".join(chunks)
    finally:
        os.close(fd)
