"""Reading configuration files safely: size limits, encodings, file types.

Every file the audit reads goes through :func:`read_source`, so the limits and
the error wording are the same everywhere.
"""

from __future__ import annotations

import errno
import os
import stat
from dataclasses import dataclass

from .errors import InputError

#: Compose and env files of real installations are a few KB; 4 MiB leaves room
#: for generous comments while refusing logs or dumps given by mistake.
MAX_CONFIG_BYTES = 4 * 1024 * 1024


@dataclass(frozen=True, slots=True)
class Source:
    """A text file as read from disk, with what the change engine must preserve."""

    path: str
    """Absolute path."""
    display: str
    """Path shown to the user (relative to the install dir where possible)."""
    text: str
    """Decoded text without a leading BOM."""
    raw: bytes
    """The exact bytes on disk."""
    bom: bool
    """Whether the file starts with a UTF-8 byte order mark."""
    newline: str
    """The dominant line ending: ``"\\n"`` or ``"\\r\\n"``."""
    mode: int
    """Permission bits (``st_mode & 0o7777``)."""
    uid: int
    gid: int
    mtime: float


def _line_of(data: bytes, offset: int) -> int:
    return data.count(b"\n", 0, offset) + 1


def read_source(path: str, display: str, kind: str = "file", limit: int = MAX_CONFIG_BYTES) -> Source:
    """Read ``path`` as UTF-8 text or raise :class:`InputError` naming the file."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOCTTY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_CLOEXEC", 0))
    except FileNotFoundError:
        raise InputError(f"{kind} not found", display) from None
    except IsADirectoryError:
        raise InputError(f"{kind} is a directory, not a file", display) from None
    except PermissionError:
        raise InputError(f"{kind} is not readable (permission denied); run as its owner or with sudo", display) from None
    except OSError as exc:
        raise InputError(f"cannot open {kind}: {os.strerror(exc.errno or errno.EIO)}", display) from None
    try:
        st = os.fstat(fd)
        if stat.S_ISDIR(st.st_mode):
            raise InputError(f"{kind} is a directory, not a file", display)
        if not stat.S_ISREG(st.st_mode):
            raise InputError(f"{kind} is not a regular file", display)
        if st.st_size > limit:
            raise InputError(
                f"{kind} is {st.st_size / 1048576:.1f} MiB, over the {limit // 1048576} MiB limit for a configuration file",
                display,
            )
        chunks = []
        total = 0
        while True:
            chunk = os.read(fd, 1 << 20)
            if not chunk:
                break
            total += len(chunk)
            if total > limit:  # grew while we read it
                raise InputError(f"{kind} is over the {limit // 1048576} MiB limit for a configuration file", display)
            chunks.append(chunk)
        data = b"".join(chunks)
    except OSError as exc:
        raise InputError(f"cannot read {kind}: {os.strerror(exc.errno or errno.EIO)}", display) from None
    finally:
        os.close(fd)
    return decode_source(path, display, kind, data, st)


def decode_source(path: str, display: str, kind: str, data: bytes, st: os.stat_result | None = None) -> Source:
    """Decode bytes read from ``path``; refuse what no Compose or dotenv parser accepts."""
    bom = data.startswith(b"\xef\xbb\xbf")
    body = data[3:] if bom else data
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError as exc:
        off = exc.start + (3 if bom else 0)
        raise InputError(f"{kind} is not valid UTF-8 (byte 0x{data[off]:02x} at offset {off})", display, _line_of(data, off)) from None
    nul = text.find("\x00")
    if nul >= 0:
        raise InputError(f"{kind} contains a NUL byte (binary file?)", display, text.count("\n", 0, nul) + 1)
    if "\ufeff" in text:
        pos = text.index("\ufeff")
        raise InputError(f"{kind} has a byte order mark in the middle of the text", display, text.count("\n", 0, pos) + 1)
    crlf = text.count("\r\n")
    newline = "\r\n" if crlf and crlf * 2 >= text.count("\n") else "\n"
    if st is None:
        st = os.stat(path)
    return Source(
        path=path,
        display=display,
        text=text,
        raw=data,
        bom=bom,
        newline=newline,
        mode=stat.S_IMODE(st.st_mode),
        uid=st.st_uid,
        gid=st.st_gid,
        mtime=st.st_mtime,
    )
