"""Reading configuration files safely, and showing what they hold safely.

Every file the audit reads goes through :func:`read_source`, so the limits and
the error wording are the same everywhere. Everything taken from input (a
service name, a path, a line of a file) goes through :func:`shown` on its way
to a terminal, so no byte of it can move the cursor, clear the screen, reorder
text (bidi overrides) or fake a line of a plan.
"""

from __future__ import annotations

import errno
import os
import re
import stat
from dataclasses import dataclass

from checks.core.errors import InputError

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


#: C0 and C1 controls, DEL, and the invisible format characters that change how
#: text around them is shown: bidi embeddings, overrides, isolates and marks,
#: zero-width characters, line/paragraph separators, tag characters, and lone
#: surrogates (undecodable file names).
_UNSAFE = re.compile("[\x00-\x1f\x7f-\x9f\xad\u061c\u115f\u1160\u180e\u200b-\u200f\u2028-\u202e"
                     "\u2060-\u206f\u3164\ufeff\ufff9-\ufffb\ud800-\udfff\U000e0000-\U000e007f]")
_NAMED = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}


def _escape(m: re.Match[str]) -> str:
    ch = m.group(0)
    if ch in _NAMED:
        return _NAMED[ch]
    code = ord(ch)
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}" if code < 0x10000 else f"\\U{code:08x}"


def shown(text: str) -> str:
    """``text`` with every control character escaped (``\\x1b``, ``\\r``, ``\\n``, ``\\u202e``).

    The one escaping function for text output: applied to each piece of input
    at the output boundary, after masking (a secret is matched as written).
    Idempotent: a backslash is left as it is, so escaping twice changes
    nothing. JSON keeps the raw data (see :func:`json_safe`).
    """
    return _UNSAFE.sub(_escape, text) if text else text


def shown_line(text: str) -> str:
    """A message as one line: whitespace runs collapsed, every control character escaped."""
    return " ".join(shown(text).split())


def json_safe(text: str) -> str:
    """JSON text (``ensure_ascii=False``) with the characters a terminal acts on as ``\\uXXXX`` escapes.

    json already escapes C0 controls; C1 controls, bidi overrides and lone
    surrogates would otherwise pass through raw. A parser reads the same data.
    """
    def esc(m: re.Match[str]) -> str:
        code = ord(m.group(0))
        if m.group(0) in "\n\r\t":  # outside strings: the layout (json escapes them inside)
            return m.group(0)
        if code < 0x10000:
            return f"\\u{code:04x}"
        code -= 0x10000
        return f"\\u{0xd800 + (code >> 10):04x}\\u{0xdc00 + (code & 0x3ff):04x}"

    return _UNSAFE.sub(esc, text)


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
        raise InputError(f"{kind} is not readable (permission denied); run as its owner or with sudo",
                         display) from None
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
                f"{kind} is {st.st_size / 1048576:.1f} MiB, over the {limit // 1048576} MiB limit "
                "for a configuration file",
                display,
            )
        data = read_capped(fd, limit)
        if data is None:  # grew while we read it
            raise InputError(f"{kind} is over the {limit // 1048576} MiB limit for a configuration file", display)
    except OSError as exc:
        raise InputError(f"cannot read {kind}: {os.strerror(exc.errno or errno.EIO)}", display) from None
    finally:
        os.close(fd)
    return decode_source(path, display, kind, data, st)


def read_capped(fd: int, limit: int) -> bytes | None:
    """All of ``fd`` in 1 MiB reads; None as soon as it is over ``limit`` bytes (it may grow as it is read)."""
    chunks: list[bytes] = []
    total = 0
    while True:
        chunk = os.read(fd, 1 << 20)
        if not chunk:
            return b"".join(chunks)
        total += len(chunk)
        if total > limit:
            return None
        chunks.append(chunk)


def decode_source(path: str, display: str, kind: str, data: bytes, st: os.stat_result | None = None) -> Source:
    """Decode bytes read from ``path``; refuse what no Compose or dotenv parser accepts."""
    bom = data.startswith(b"\xef\xbb\xbf")
    body = data[3:] if bom else data
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError as exc:
        off = exc.start + (3 if bom else 0)
        raise InputError(f"{kind} is not valid UTF-8 (byte 0x{data[off]:02x} at offset {off})", display,
                         _line_of(data, off)) from None
    nul = text.find("\x00")
    if nul >= 0:
        raise InputError(f"{kind} contains a NUL byte (binary file?)", display, text.count("\n", 0, nul) + 1)
    if "\ufeff" in text:
        pos = text.index("\ufeff")
        raise InputError(f"{kind} has a byte order mark in the middle of the text", display,
                         text.count("\n", 0, pos) + 1)
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
