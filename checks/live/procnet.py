"""Listening TCP sockets from ``/proc/net/tcp`` and ``tcp6``: what really listens, without Docker.

A ``proc_net`` directory is read (``/proc/net`` for this process's network namespace,
``/proc/<pid>/net`` for another's). Addresses are hex in the kernel's native byte order,
one 32-bit word at a time (four words for IPv6); state ``0A`` is LISTEN.
"""

from __future__ import annotations

import os
import socket
import struct

from checks.live.errors import LiveError, one_line
from checks.live.model import Listener

LISTEN = "0A"
_MAX_BYTES = 16 * 1024 * 1024
"""A /proc/net/tcp of a busy host is a few MB at most; more is not a table we should trust."""


def _address(hexaddr: str) -> str:
    raw = bytes.fromhex(hexaddr)
    # The kernel prints each 32-bit word with %08X of its native value: swap per word back to bytes.
    words = [struct.pack("=I", struct.unpack(">I", raw[i : i + 4])[0]) for i in range(0, len(raw), 4)]
    packed = b"".join(words)
    return socket.inet_ntop(socket.AF_INET if len(packed) == 4 else socket.AF_INET6, packed)


def parse(text: str, family: int) -> list[Listener]:
    """The LISTEN entries of one ``tcp``/``tcp6`` table; malformed lines are skipped."""
    out: list[Listener] = []
    for line in text.splitlines()[1:]:
        fields = line.split()
        if len(fields) < 4 or fields[3] != LISTEN:
            continue
        addr, _, port = fields[1].partition(":")
        try:
            if len(addr) != (8 if family == 4 else 32):
                continue
            out.append(Listener(_address(addr), int(port, 16), family))
        except ValueError:
            continue
    return out


def _read(path: str) -> str:
    fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    try:
        chunks = []
        size = 0
        while chunk := os.read(fd, 65536):
            chunks.append(chunk)
            size += len(chunk)
            if size > _MAX_BYTES:
                raise LiveError(f"{path} is larger than {_MAX_BYTES} bytes")
        return b"".join(chunks).decode("ascii", "replace")
    finally:
        os.close(fd)


def listeners(proc_net: str = "/proc/net") -> tuple[Listener, ...]:
    """Every listening TCP socket of the namespace ``proc_net`` shows, sorted, without duplicates.

    ``tcp6`` may be absent (IPv6 disabled): that is no error. An unreadable ``tcp`` is:
    :class:`LiveError` with the reason.
    """
    found: set[Listener] = set()
    for name, family in (("tcp", 4), ("tcp6", 6)):
        path = os.path.join(proc_net, name)
        try:
            found.update(parse(_read(path), family))
        except FileNotFoundError:
            if family == 4:
                raise LiveError(f"cannot read {path}: it does not exist") from None
        except OSError as exc:
            raise LiveError(f"cannot read {path}: {one_line(exc)}") from None
    return tuple(sorted(found, key=lambda lst: (lst.port, lst.family, lst.address)))
