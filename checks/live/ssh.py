"""The SSH side of the firewall: the session dester-harden runs in, and the ports sshd listens on.

Who must never be cut off (FW-003). The session is ``SSH_CONNECTION``; under ``sudo`` (which
drops it from the environment) the nearest ancestor process that still has it. sshd's ports come
from the running daemon first (its listening sockets, matched by inode in its own
``/proc/PID/net/tcp``), else from ``/etc/ssh/sshd_config`` and the files it ``Include``s.
Read-only, no program is run.
"""

from __future__ import annotations

import glob
import os
import re
from collections.abc import Mapping

from checks.core.sysroot import SystemRoot
from checks.live.fwmodel import SshSession

_MAX_ANCESTORS = 32
_MAX_CONFIG = 1024 * 1024
_LISTEN = "0A"


def parse_connection(value: str) -> SshSession | None:
    """``client cport server sport`` (``SSH_CONNECTION``) -> :class:`SshSession`; None when malformed."""
    parts = value.split()
    if len(parts) != 4:
        return None
    try:
        return SshSession(parts[0], int(parts[1]), parts[2], int(parts[3]))
    except ValueError:
        return None


def _read(path: str, limit: int = _MAX_CONFIG) -> bytes:
    with open(path, "rb") as fh:
        return fh.read(limit)


def _ancestor_connection(proc: str, pid: int) -> SshSession | None:
    """``SSH_CONNECTION`` of the nearest ancestor of ``pid`` that has it (sudo cleans its own environment)."""
    for _ in range(_MAX_ANCESTORS):
        try:
            stat = _read(os.path.join(proc, str(pid), "stat")).decode("ascii", "replace")
            ppid = int(stat.rsplit(")", 1)[1].split()[1])
        except (OSError, ValueError, IndexError):
            return None
        if ppid <= 1:
            return None
        pid = ppid
        try:
            env = _read(os.path.join(proc, str(pid), "environ"))
        except OSError:
            continue
        for entry in env.split(b"\0"):
            if entry.startswith(b"SSH_CONNECTION="):
                return parse_connection(entry[len(b"SSH_CONNECTION="):].decode("ascii", "replace"))
    return None


def ssh_session(environ: Mapping[str, str], proc: str = "/proc", pid: int | None = None) -> SshSession | None:
    """The SSH session this process runs in, or None (a local console, a cron job)."""
    value = environ.get("SSH_CONNECTION")
    if value:
        return parse_connection(value)
    return _ancestor_connection(proc, os.getpid() if pid is None else pid)


def _sshd_pids(proc: str) -> list[str]:
    out: list[str] = []
    try:
        names = os.listdir(proc)
    except OSError:
        return out
    for name in names:
        if not name.isdigit():
            continue
        try:
            if _read(os.path.join(proc, name, "comm"), 64).strip() == b"sshd":
                out.append(name)
        except OSError:
            continue
    return out


def _socket_inodes(proc: str, pid: str) -> set[str]:
    inodes: set[str] = set()
    fd_dir = os.path.join(proc, pid, "fd")
    try:
        fds = os.listdir(fd_dir)
    except OSError:
        return inodes
    for fd in fds:
        try:
            link = os.readlink(os.path.join(fd_dir, fd))
        except OSError:
            continue
        if link.startswith("socket:["):
            inodes.add(link[8:-1])
    return inodes


def _listening_by_inode(proc: str, pid: str) -> dict[str, int]:
    out: dict[str, int] = {}
    for name in ("tcp", "tcp6"):
        try:
            text = _read(os.path.join(proc, pid, "net", name), 16 * 1024 * 1024).decode("ascii", "replace")
        except OSError:
            continue
        for line in text.splitlines()[1:]:
            fields = line.split()
            if len(fields) > 9 and fields[3] == _LISTEN:
                try:
                    out[fields[9]] = int(fields[1].rpartition(":")[2], 16)
                except ValueError:
                    continue
    return out


def listening_ports(proc: str = "/proc") -> tuple[int, ...]:
    """The TCP ports the running sshd processes listen on (empty: no sshd seen, or not readable)."""
    ports: set[int] = set()
    for pid in _sshd_pids(proc):
        inodes = _socket_inodes(proc, pid)
        if not inodes:
            continue
        ports.update(port for inode, port in _listening_by_inode(proc, pid).items() if inode in inodes)
    return tuple(sorted(ports))


_PORT = re.compile(r"^\s*port\s+(\d+)\s*(?:#.*)?$", re.I)
_LISTEN_ADDR = re.compile(r"^\s*listenaddress\s+(\S+)", re.I)
_INCLUDE = re.compile(r"^\s*include\s+(.+?)\s*$", re.I)
_MATCH = re.compile(r"^\s*match\s", re.I)


def _config_lines(root: SystemRoot, path: str, depth: int = 0) -> list[str]:
    """The lines of ``path`` with each ``Include`` expanded in place (globs, relative to /etc/ssh)."""
    if depth > 8:
        return []
    try:
        text = _read(root.path(path)).decode("utf-8", "replace")
    except OSError:
        return []
    out: list[str] = []
    for line in text.splitlines():
        m = _INCLUDE.match(line)
        if not m:
            out.append(line)
            continue
        for pattern in m.group(1).split():
            full = pattern if pattern.startswith("/") else "/etc/ssh/" + pattern
            for found in sorted(glob.glob(root.path(full))):
                out += _config_lines(root, root.system(found), depth + 1)
    return out


def configured_ports(root: SystemRoot) -> tuple[int, ...] | None:
    """The ports sshd_config asks for (22 when it names none); None without an sshd_config.

    ``ListenAddress host:port`` adds its port; lines after the first ``Match`` are per-connection
    settings, not listeners, and are ignored.
    """
    if not os.path.isfile(root.path("/etc/ssh/sshd_config")):
        return None
    ports: list[int] = []
    for line in _config_lines(root, "/etc/ssh/sshd_config"):
        if _MATCH.match(line):
            break
        if m := _PORT.match(line):
            ports.append(int(m.group(1)))
        elif m := _LISTEN_ADDR.match(line):
            addr = m.group(1)
            tail = addr.rpartition("]:")[2] if addr.startswith("[") else (
                addr.rpartition(":")[2] if addr.count(":") == 1 else "")
            if tail.isdigit():
                ports.append(int(tail))
    return tuple(sorted(set(ports or [22])))


def ssh_ports(root: SystemRoot, proc: str = "/proc") -> tuple[int, ...]:
    """What sshd listens on (the running daemon), else what its configuration says; empty: no sshd."""
    return listening_ports(proc) or configured_ports(root) or ()
